//! `/metrics` after a real selection: a family acts over its socket, a watcher follows
//! the board, the deadline passes on an injected clock. The scrape must be strict
//! OpenMetrics text, carry every family operators and the dashboard rely on, and count
//! what happened. The Grafana dashboard's queries may name only metrics that a real
//! scrape has, so a renamed metric breaks this test rather than a panel on the day.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use xuanfang_allocator::embedded::EmbeddedEngine;
use xuanfang_allocator::Allocator;
use xuanfang_hub::protocol::{BoardChange, ClientMsg, Encoding, ServerMsg};
use xuanfang_hub::{ErrorCode, ManualClock, Millis, Phase, Stage, UnitId};

/// Generous: the deadline keeper looks at the clock at least once a second.
const T: Duration = Duration::from_secs(30);

/// Every family the gateway exposes, with its OpenMetrics type.
const FAMILIES: [(&str, &str); 23] = [
    ("xuanfang_connections_opened", "counter"),
    ("xuanfang_connections_closed", "counter"),
    ("xuanfang_connections_refused", "counter"),
    ("xuanfang_tcp_refused", "counter"),
    ("xuanfang_messages_in", "counter"),
    ("xuanfang_messages_out", "counter"),
    ("xuanfang_bytes_out", "counter"),
    ("xuanfang_actions_ok", "counter"),
    ("xuanfang_deltas", "counter"),
    ("xuanfang_delta_deliveries", "counter"),
    ("xuanfang_lagging_resyncs", "counter"),
    ("xuanfang_slow_disconnects", "counter"),
    ("xuanfang_auto_confirmed", "counter"),
    ("xuanfang_errors", "counter"),
    ("xuanfang_action_seconds", "histogram"),
    ("xuanfang_engine_seconds", "histogram"),
    ("xuanfang_delta_publish_seconds", "histogram"),
    ("xuanfang_delta_delivery_seconds", "histogram"),
    ("xuanfang_deadline_seconds", "histogram"),
    ("xuanfang_watchers", "gauge"),
    ("xuanfang_families_online", "gauge"),
    ("xuanfang_tcp_connections", "gauge"),
    ("xuanfang_board_seq", "gauge"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_after_real_actions_is_strict_openmetrics_with_every_family() {
    let day = selection_day().await;
    let m = &day.scrape;
    let types: BTreeMap<&str, &str> = m
        .types
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for (family, kind) in FAMILIES {
        assert_eq!(types.get(family), Some(&kind), "{family} in\n{}", day.text);
    }
    assert_eq!(
        day.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );

    // What the test did, counted.
    assert_eq!(m.value("xuanfang_connections_opened_total", &[]), Some(2.0));
    assert_eq!(m.value("xuanfang_watchers", &[]), Some(2.0));
    assert_eq!(m.value("xuanfang_families_online", &[]), Some(1.0));
    assert_eq!(m.value("xuanfang_actions_ok_total", &[]), Some(4.0));
    for (action, n) in [
        ("declare", 2.0),
        ("edit", 1.0),
        ("confirm", 1.0),
        ("waive", 1.0),
    ] {
        assert_eq!(
            m.value("xuanfang_action_seconds_count", &[("action", action)]),
            Some(n),
            "{action}"
        );
    }
    assert_eq!(
        m.value("xuanfang_errors_total", &[("code", "unauthorized")]),
        Some(1.0)
    );
    // Only the family's four actions reached the engine; the anonymous waive did not.
    assert_eq!(
        m.value("xuanfang_engine_seconds_count", &[("operation", "act")]),
        Some(4.0)
    );
    assert!(
        m.value(
            "xuanfang_engine_seconds_count",
            &[("operation", "close_session_step")]
        ) >= Some(1.0)
    );
    // F2..F4 never entered formal selection: decided (no unit) at the deadline.
    assert_eq!(m.value("xuanfang_auto_confirmed_total", &[]), Some(3.0));
    assert!(m.value("xuanfang_deadline_seconds_count", &[]) >= Some(1.0));
    assert!(
        m.value("xuanfang_deltas_total", &[]) >= Some(2.0),
        "the confirm and the close"
    );
    assert!(m.value("xuanfang_delta_deliveries_total", &[]) >= Some(2.0));
    assert!(m.value("xuanfang_delta_publish_seconds_count", &[]) >= Some(2.0));
    assert!(m.value("xuanfang_delta_delivery_seconds_count", &[]) >= Some(2.0));
    assert_eq!(m.value("xuanfang_lagging_resyncs_total", &[]), Some(0.0));
    assert!(m.value("xuanfang_board_seq", &[]) > Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_in_a_real_scrape() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/xuanfang.json"
    );
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard file"))
            .expect("the dashboard is JSON");
    assert!(dash["uid"].is_string() && dash["title"].is_string());
    let panels = dash["panels"].as_array().expect("panels");
    let mut queries = Vec::new();
    for p in panels {
        assert!(p["title"].is_string(), "{p}");
        let targets = p["targets"].as_array().expect("every panel has queries");
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            queries.push(t["expr"].as_str().expect("a PromQL expr").to_owned());
        }
    }
    for v in dash["templating"]["list"].as_array().expect("variables") {
        if let Some(q) = v["definition"].as_str() {
            queries.push(q.to_owned());
        }
    }
    let named: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
    assert!(named.len() >= 15, "{named:?}");

    let day = selection_day().await;
    let scraped: BTreeSet<&str> = day.scrape.samples.iter().map(|s| s.name.as_str()).collect();
    let missing: Vec<_> = named
        .iter()
        .filter(|n| !scraped.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "dashboard names {missing:?}, not in\n{}",
        day.text
    );
    // The panels of a selection day are there.
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Connections",
        "Actions/s",
        "Action latency",
        "Deliveries/s",
        "Lagging resyncs",
        "Errors by code",
        "Engine latency",
        "Deadline processing",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(want)),
            "no panel {want}: {titles:?}"
        );
    }
}

/// The strict check is a check: each of these breaks one rule and is refused.
#[test]
fn the_strict_check_refuses_broken_text() {
    let good = "# HELP a_total_x A.\n# TYPE a counter\na_total 1\n\
                # TYPE h histogram\nh_bucket{k=\"v\",le=\"0.1\"} 1\n\
                h_bucket{k=\"v\",le=\"+Inf\"} 2\nh_sum{k=\"v\"} 0.3\nh_count{k=\"v\"} 2\n# EOF\n";
    let parsed = parse(good).expect("the good text parses");
    assert_eq!(parsed.value("h_count", &[("k", "v")]), Some(2.0));
    for (why, bad) in [
        ("no EOF", good.replace("# EOF\n", "")),
        ("counter without _total", good.replace("a_total 1", "a 1")),
        ("sample before TYPE", format!("x 1\n{good}")),
        ("not cumulative", good.replace("} 1\n", "} 3\n")),
        (
            "+Inf differs from count",
            good.replace("h_count{k=\"v\"} 2", "h_count{k=\"v\"} 5"),
        ),
        ("unquoted label", good.replace("k=\"v\",le", "k=v,le")),
        ("bad value", good.replace("a_total 1", "a_total one")),
        (
            "family declared twice",
            good.replace("# TYPE h histogram", "# TYPE a counter"),
        ),
    ] {
        assert!(parse(&bad).is_err(), "{why} was accepted:\n{bad}");
    }
}

/// The `xuanfang_…` identifiers of a PromQL expression.
fn metric_names(q: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = q;
    while let Some(i) = rest.find("xuanfang_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

struct Day {
    text: String,
    content_type: String,
    scrape: Scrape,
}

/// One session of a small batch on a manual clock: F1 pre-selects, enters and confirms;
/// an anonymous watcher tries to act and follows the board; the deadline decides the
/// rest. Then one scrape.
async fn selection_day() -> Day {
    let t0 = Millis(1_900_000_000_000);
    let clock = Arc::new(ManualClock::new(t0));
    let alloc: Arc<dyn Allocator> = Arc::new(EmbeddedEngine::in_memory(clock.clone()));
    let batch = batch_at(t0, "metrics", Duration::from_secs(3600));
    let (start, deadline) = (batch.sessions[0].start, batch.sessions[0].deadline());
    alloc.load_batch(batch.clone()).await.unwrap();
    let (app, addr) = gateway_on_clock(alloc, clock.clone(), &batch).await;

    let mut watcher = connect(addr, None, Encoding::Json).await;
    let r = watcher.request(|req_id| ClientMsg::Waive { req_id }).await;
    assert_eq!(error_code(&r), Some(ErrorCode::Unauthorized));
    let mut f = connect(addr, Some(&family_token("F1")), Encoding::Json).await;
    preselect(&mut f, &["U03"]).await;

    clock.set(start);
    f.until(T, |m| match m {
        ServerMsg::Family { family } if family.phase == Phase::Formal => Some(()),
        _ => None,
    })
    .await
    .expect("the formal phase at the session start");
    let r = f
        .request(|req_id| ClientMsg::Declare {
            req_id,
            stage: Stage::Formal,
        })
        .await;
    assert!(is_ok(&r), "{r:?}");
    let r = f
        .request(|req_id| ClientMsg::Confirm {
            req_id,
            unit: UnitId::from("U03"),
        })
        .await;
    assert!(is_ok(&r), "{r:?}");
    watcher
        .until(T, |m| match m {
            ServerMsg::Delta { changes, .. }
                if changes.iter().any(|c| matches!(c, BoardChange::Taken(_))) =>
            {
                Some(())
            }
            _ => None,
        })
        .await
        .expect("the confirm reached the watcher");

    clock.set(deadline);
    watcher
        .until(T, |m| match m {
            ServerMsg::Delta { changes, .. }
                if changes
                    .iter()
                    .any(|c| matches!(c, BoardChange::SessionClosed { .. })) =>
            {
                Some(())
            }
            _ => None,
        })
        .await
        .expect("the deadline closed the session");

    // The deadline keeper records its work after the engine answered, and a socket its
    // delivery after the write returned: either may be a moment after the client saw it.
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/metrics");
    let waited = tokio::time::Instant::now();
    loop {
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = resp.text().await.unwrap();
        let scrape = match parse(&text) {
            Ok(s) => s,
            Err(e) => panic!("not strict OpenMetrics: {e}\n{text}"),
        };
        if scrape.value("xuanfang_deadline_seconds_count", &[]) >= Some(1.0)
            && scrape.value("xuanfang_delta_delivery_seconds_count", &[]) >= Some(2.0)
        {
            app.shutdown.cancel();
            return Day {
                text,
                content_type,
                scrape,
            };
        }
        assert!(waited.elapsed() < T, "deadline never recorded:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One sample line.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape: each family's type, every sample.
#[derive(Debug)]
struct Scrape {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Scrape {
    /// The value of the sample with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }
}

/// A strict reading of the OpenMetrics text format (the subset a gateway writes):
/// `# HELP`/`# TYPE`/`# UNIT` before a family's samples, samples of one family together,
/// names and labels well formed, counters as `_total`, histograms with cumulative
/// buckets ending in `+Inf` equal to `_count`, and `# EOF` as the last line.
fn parse(text: &str) -> Result<Scrape, String> {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    let mut current: Option<(String, String)> = None;
    let lines: Vec<&str> = text.split('\n').collect();
    if lines.last() != Some(&"") {
        return Err("the text must end with a newline".into());
    }
    let lines = &lines[..lines.len() - 1];
    if lines.last() != Some(&"# EOF") {
        return Err("the last line must be # EOF".into());
    }
    for (n, line) in lines[..lines.len() - 1].iter().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (kind, name, rest) = (parts.next(), parts.next(), parts.next());
            let (Some(kind), Some(name)) = (kind, name) else {
                return Err(at("a metadata line needs a name".into()));
            };
            if !valid_name(name) {
                return Err(at("bad metric name".into()));
            }
            match kind {
                "HELP" | "UNIT" => {}
                "TYPE" => {
                    let t = rest.ok_or_else(|| at("TYPE without a type".into()))?;
                    if ![
                        "counter",
                        "gauge",
                        "histogram",
                        "summary",
                        "info",
                        "stateset",
                        "unknown",
                    ]
                    .contains(&t)
                    {
                        return Err(at(format!("unknown type {t}")));
                    }
                    if types.insert(name.to_owned(), t.to_owned()).is_some() {
                        return Err(at("family declared twice".into()));
                    }
                    current = Some((name.to_owned(), t.to_owned()));
                }
                _ => return Err(at(format!("unknown metadata {kind}"))),
            }
            continue;
        }
        let s = sample(line).map_err(at)?;
        let Some((family, t)) = &current else {
            return Err(at("a sample before any TYPE".into()));
        };
        let suffix = s.name.strip_prefix(family.as_str()).unwrap_or("?");
        let allowed: &[&str] = match t.as_str() {
            "counter" => &["_total", "_created"],
            "gauge" => &[""],
            "histogram" => &["_bucket", "_count", "_sum", "_created"],
            _ => &["", "_total", "_count", "_sum", "_bucket"],
        };
        if !allowed.contains(&suffix) {
            return Err(at(format!("not a sample of the {t} {family}")));
        }
        if (suffix == "_bucket") != s.labels.contains_key("le") {
            return Err(at("le belongs on buckets only".into()));
        }
        samples.push(s);
    }
    check_histograms(&types, &samples)?;
    Ok(Scrape { types, samples })
}

/// A histogram's series by their labels (without `le`): `(le, count)` buckets, `_count`.
type Series = BTreeMap<Vec<(String, String)>, (Vec<(f64, f64)>, Option<f64>)>;

fn check_histograms(types: &BTreeMap<String, String>, samples: &[Sample]) -> Result<(), String> {
    for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        // Per series (labels without `le`): its buckets in order, then its count.
        let mut series: Series = BTreeMap::new();
        for s in samples {
            let key: Vec<(String, String)> = s
                .labels
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if s.name == format!("{family}_bucket") {
                let le = number(&s.labels["le"]).map_err(|e| format!("{family}: le {e}"))?;
                series.entry(key).or_default().0.push((le, s.value));
            } else if s.name == format!("{family}_count") {
                series.entry(key).or_default().1 = Some(s.value);
            }
        }
        if series.is_empty() {
            return Err(format!("{family}: a histogram without series"));
        }
        for (labels, (buckets, count)) in series {
            let what = format!("{family}{labels:?}");
            if !buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
            {
                return Err(format!("{what}: buckets not cumulative: {buckets:?}"));
            }
            match buckets.last() {
                Some((le, n)) if le.is_infinite() && Some(*n) == count => {}
                _ => return Err(format!("{what}: +Inf bucket must equal _count {count:?}")),
            }
        }
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn number(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("{s:?} is not a number")),
    }
}

/// `name{k="v",…} value [timestamp]`.
fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| "a sample needs a value".to_owned())?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err("bad metric name".into());
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let end = loop {
            if let Some((i, '}')) = chars.peek().copied() {
                break i;
            }
            let key: String = chars
                .by_ref()
                .take_while(|(_, c)| *c != '=')
                .map(|(_, c)| c)
                .collect();
            if !valid_name(&key) || key.contains(':') {
                return Err(format!("bad label name {key:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("a label value is quoted".into());
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(c @ ('\\' | '"')) => value.push(c),
                        _ => return Err("bad escape in a label value".into()),
                    },
                    Some(c) => value.push(c),
                    None => return Err("unterminated label value".into()),
                }
            }
            if labels.insert(key, value).is_some() {
                return Err("a label repeated".into());
            }
            match chars.peek().copied() {
                Some((_, ',')) => {
                    chars.next();
                }
                Some((_, '}')) => {}
                _ => return Err("labels are separated by commas".into()),
            }
        };
        rest = &body[end + 1..];
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| "one space before the value".to_owned())?;
    let mut fields = rest.split(' ');
    let value = number(fields.next().unwrap_or_default())?;
    if let Some(ts) = fields.next() {
        number(ts)?;
    }
    if fields.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}
