//! What `WAIT 1` costs a confirm: `cargo run --release -p xuanfang-allocator --example
//! replica_wait` (docs/benchmarks.md, "Replica wait").
//!
//! Starts the test deployment of `xuanfang_allocator::testing::sentinel` (a primary
//! and its replica, both `appendonly yes`, here also `appendfsync always` as on
//! selection day, and three Sentinels), then two engines through the same Sentinels: one that waits for
//! the replica on every write (the default, 1000 ms bound) and one that does not
//! (`replica_wait` 0). They take turns, phase after phase, on the same families, so
//! both see the same machine noise; each phase is N requests in flight sending
//! confirm attempts that are refused (`unit_taken`, the common case on selection day;
//! a refusal is written too: the answer is stored for retries).
//!
//! Environment: `ROUNDS` (default 5) alternations per level, `PER_PHASE` (default
//! 2,000) requests per phase.
//!
//! The last column counts the `WAIT`s the primary ran (`INFO commandstats`) per write of
//! the waiting engine: 1 when each write waits on its own, less when waits are grouped.
//! Unlike the rates, it does not depend on how busy the machine is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use xuanfang_allocator::redis_engine::conn::Target;
use xuanfang_allocator::redis_engine::{RedisEngine, RedisOptions};
use xuanfang_allocator::testing::sentinel;
use xuanfang_allocator::{AllocError, Allocator};
use xuanfang_hub::{
    Action, Batch, BatchId, Edit, Family, FamilyId, Layout, ListKind, ManualClock, Millis, Session,
    SessionId, SessionKind, Stage, Unit, UnitId,
};

const T0: i64 = 1_900_000_000_000;
const FAMILIES: usize = 256;

fn batch() -> Batch {
    let layout = Layout::new("一房一厅");
    let families: Vec<Family> = (0..FAMILIES)
        .map(|i| Family {
            id: FamilyId::new(format!("F{i:03}")),
            name: "家*".into(),
            rank: i as u32 + 1,
            session: SessionId::new("S1"),
            eligible_layouts: vec![layout.clone()],
        })
        .collect();
    Batch {
        id: BatchId::new("replica-wait"),
        name: "replica wait".into(),
        preselect_start: Millis(T0 - 3_600_000),
        preselect_end: None,
        utc_offset_minutes: 480,
        sessions: vec![Session {
            id: SessionId::new("S1"),
            kind: SessionKind::Formal,
            start: Millis(T0),
            window_ms: 3_600_000,
            families: families.iter().map(|f| f.id.clone()).collect(),
        }],
        units: vec![Unit {
            id: UnitId::new("U1"),
            building: "1栋".into(),
            number: "101".into(),
            floor: 1,
            layout,
            area: 40.0,
            orientation: "南".into(),
            rent: 1000.0,
        }],
        families,
    }
}

/// How often the node on `port` ran `WAIT`.
fn waits(port: u16) -> u64 {
    sentinel::query(port, &["INFO", "commandstats"])
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
        .and_then(|r| r.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `per_phase` confirm attempts, `in_flight` at a time; latencies in µs into `hist`.
async fn phase(
    engine: Arc<RedisEngine>,
    in_flight: usize,
    per_phase: usize,
    tag: &str,
    hist: &mut Histogram<u64>,
) -> (Duration, u64) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..in_flight {
        let engine = engine.clone();
        let tag = tag.to_owned();
        let n = per_phase / in_flight;
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).unwrap();
            let mut timeouts = 0u64;
            let batch = BatchId::new("replica-wait");
            for k in 0..n {
                // Family 0 holds U1: every other family's confirm is refused.
                let f = FamilyId::new(format!("F{:03}", 1 + (t + k * in_flight) % (FAMILIES - 1)));
                let at = Instant::now();
                // A wait that timed out is retried with the same request id, as a
                // client would; the latency is until the answer.
                let answer = loop {
                    match engine
                        .act(
                            &batch,
                            &f,
                            &format!("{tag}-{t}-{k}"),
                            Action::Confirm {
                                unit: UnitId::new("U1"),
                            },
                        )
                        .await
                    {
                        Err(AllocError::NotReplicated { .. }) => timeouts += 1,
                        other => break other.expect("confirm attempt"),
                    }
                };
                assert!(answer.is_err(), "U1 is taken");
                h.record(at.elapsed().as_micros() as u64).unwrap();
            }
            (h, timeouts)
        }));
    }
    let mut timeouts = 0;
    for t in tasks {
        let (h, n) = t.await.unwrap();
        hist.add(h).unwrap();
        timeouts += n;
    }
    (started.elapsed(), timeouts)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds = env("ROUNDS", 5);
    let per_phase = env("PER_PHASE", 2_000);
    let set = tokio::task::spawn_blocking(sentinel::SentinelSet::start_durable)
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(Millis(T0 + 1_000)));
    let connect = |wait: Duration| {
        let url = set.url();
        let clock = clock.clone();
        async move {
            let options = RedisOptions {
                clock: Some(clock),
                replica_wait: wait,
                ..RedisOptions::default()
            };
            Arc::new(
                RedisEngine::connect_to(Target::parse(&url).unwrap(), options)
                    .await
                    .expect("connect"),
            )
        }
    };
    let waiting = connect(Duration::from_secs(1)).await;
    let plain = connect(Duration::ZERO).await;
    let spec = batch();
    waiting.load_batch(spec.clone()).await.unwrap();
    for f in &spec.families {
        let r = |s: &str| format!("setup-{s}");
        waiting
            .act(
                &spec.id,
                &f.id,
                &r("declare"),
                Action::Declare {
                    stage: Stage::Formal,
                },
            )
            .await
            .unwrap()
            .unwrap();
        waiting
            .act(
                &spec.id,
                &f.id,
                &r("add"),
                Action::Edit {
                    list: ListKind::Intentions,
                    edit: Edit::Add,
                    unit: UnitId::new("U1"),
                },
            )
            .await
            .unwrap()
            .unwrap();
    }
    waiting
        .act(
            &spec.id,
            &spec.families[0].id,
            "setup-confirm",
            Action::Confirm {
                unit: UnitId::new("U1"),
            },
        )
        .await
        .unwrap()
        .unwrap();

    println!(
        "| in flight | replica wait | attempts | attempts/s | p50 ms | p99 ms | max ms | waits timed out | WAITs per write |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    let primary = set.port(0);
    for in_flight in [1, 16, 64] {
        let mut hist = [
            Histogram::<u64>::new(3).unwrap(),
            Histogram::new(3).unwrap(),
        ];
        let mut took = [Duration::ZERO; 2];
        let mut timeouts = [0u64; 2];
        let mut wait_calls = [0u64; 2];
        for round in 0..rounds {
            for (i, engine) in [&waiting, &plain].into_iter().enumerate() {
                let tag = format!("{in_flight}-{round}-{i}");
                let w0 = waits(primary);
                let (t, n) = phase(engine.clone(), in_flight, per_phase, &tag, &mut hist[i]).await;
                wait_calls[i] += waits(primary) - w0;
                took[i] += t;
                timeouts[i] += n;
            }
        }
        for (i, name) in ["WAIT 1 (default)", "none"].into_iter().enumerate() {
            let h = &hist[i];
            println!(
                "| {in_flight} | {name} | {} | {:.0} | {:.3} | {:.3} | {:.1} | {} | {:.3} |",
                h.len(),
                h.len() as f64 / took[i].as_secs_f64(),
                h.value_at_quantile(0.5) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0,
                h.max() as f64 / 1000.0,
                timeouts[i],
                // Retries after a timed-out wait are writes too.
                wait_calls[i] as f64 / (h.len() + timeouts[i]) as f64,
            );
        }
    }
}
