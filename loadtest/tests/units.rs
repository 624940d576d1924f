//! Thresholds and histogram merging.

use xuanfang_loadtest::metrics::{self, Merged, Recorder};
use xuanfang_loadtest::report::{Op, Threshold, ThresholdError};

#[test]
fn thresholds_parse_metric_operator_and_unit() {
    let t = Threshold::parse("confirm_p99<20ms").unwrap();
    assert_eq!(
        (t.metric.as_str(), t.op, t.value),
        ("confirm_p99", Op::Lt, 20.0)
    );
    let t = Threshold::parse(" broadcast_p999 <= 0.2s ").unwrap();
    assert_eq!((t.op, t.value), (Op::Le, 200.0));
    let t = Threshold::parse("connect_max<500us").unwrap();
    assert!((t.value - 0.5).abs() < 1e-9);
    let t = Threshold::parse("errors<1").unwrap();
    assert_eq!((t.metric.as_str(), t.value), ("errors", 1.0));
    assert!(t.holds(0.0) && !t.holds(1.0));
    let t = Threshold::parse("deliveries_per_s>=1000").unwrap();
    assert!(t.holds(1000.0) && !t.holds(999.0));
}

#[test]
fn bad_thresholds_are_refused_with_the_reason() {
    assert!(matches!(
        Threshold::parse("confirm_p99"),
        Err(ThresholdError::Syntax(_))
    ));
    assert!(matches!(
        Threshold::parse("<20ms"),
        Err(ThresholdError::Syntax(_))
    ));
    assert!(matches!(
        Threshold::parse("latency_p99<20ms"),
        Err(ThresholdError::Metric(..))
    ));
    assert!(matches!(
        Threshold::parse("confirm_p42<20ms"),
        Err(ThresholdError::Metric(..))
    ));
    assert!(matches!(
        Threshold::parse("confirm_p99<fast"),
        Err(ThresholdError::Value(..))
    ));
}

#[test]
fn merged_histograms_give_the_percentiles_of_all_samples() {
    // Worker A saw 1..=900 ms, worker B 901..=1000 ms: only the merge knows that the
    // p99 is 990 ms (worker A alone would say 891, worker B 999).
    let a = Recorder::new();
    let b = Recorder::new();
    for ms in 1..=900u64 {
        a.record_us(metrics::name::CONFIRM, ms * 1000);
    }
    for ms in 901..=1000u64 {
        b.record_us(metrics::name::CONFIRM, ms * 1000);
    }
    a.error("unit_taken");
    b.error("unit_taken");
    b.error("close:4009");
    let mut m = Merged::default();
    // Through the wire form, as workers ship them.
    let wa: metrics::WireMetrics =
        serde_json::from_str(&serde_json::to_string(&a.to_wire().unwrap()).unwrap()).unwrap();
    let wb = b.to_wire().unwrap();
    m.add(&wa).unwrap();
    m.add(&wb).unwrap();
    let s = m.summary(metrics::name::CONFIRM);
    assert_eq!(s.count, 1000);
    assert!((s.p99 - 990.0).abs() < 1.0, "p99 {}", s.p99);
    assert!((s.p50 - 500.0).abs() < 1.0, "p50 {}", s.p50);
    assert!((s.max - 1000.0).abs() < 1.0, "max {}", s.max);
    assert_eq!(m.errors["unit_taken"], 2);
    assert_eq!(m.errors["close:4009"], 1);
}

#[test]
fn histogram_encoding_round_trips() {
    let mut h = metrics::histogram();
    for v in [1u64, 10, 1_000, 123_456, 9_000_000] {
        h.record(v).unwrap();
    }
    let back = metrics::decode(&metrics::encode(&h).unwrap()).unwrap();
    assert_eq!(back.len(), 5);
    assert_eq!(back.max(), h.max());
    assert!(metrics::decode("not base64!").is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_floor_delivers_every_byte_and_reports_writes_per_cpu_second() {
    use xuanfang_loadtest::floor::{self, FloorArgs};
    let args = FloorArgs {
        sockets: 40,
        rounds: 25,
        size: "150-400".into(),
        report: None,
    };
    let r = floor::run(&args).await.expect("floor runs");
    assert_eq!(r.writes, 1_000);
    assert!(r.bytes >= 150_000 && r.bytes <= 400_000, "{}", r.bytes);
    assert!(r.writer_cpu_s > 0.0 && r.writes_per_cpu_s > 0.0);
    assert!(r.pairs_fit >= 40);
    assert!(r.render().contains("writes per writer CPU-second"));
}

#[tokio::test]
async fn the_floor_refuses_more_pairs_than_descriptors_and_says_how_many_fit() {
    use xuanfang_loadtest::floor::{self, FloorArgs, FloorError};
    let args = FloorArgs {
        sockets: 10_000_000,
        rounds: 1,
        size: "200".into(),
        report: None,
    };
    match floor::run(&args).await {
        Err(e @ FloorError::TooMany { .. }) => assert!(e.to_string().contains("pairs fit"), "{e}"),
        other => panic!("expected TooMany, got {other:?}"),
    }
    let bad = FloorArgs {
        size: "400-150".into(),
        ..args
    };
    assert!(matches!(floor::run(&bad).await, Err(FloorError::Size(_))));
}
