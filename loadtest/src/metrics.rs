//! Histograms and counters: recorded by every client of a worker, shipped to the
//! parent as JSON (histograms in HDR's V2 encoding, base64) and merged there.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Histogram names, so parent, workers and thresholds agree.
pub mod name {
    /// TCP connect + WebSocket upgrade until the `welcome` arrives.
    pub const CONNECT: &str = "connect";
    /// `confirm` sent until its `ok`/`error` arrives.
    pub const CONFIRM: &str = "confirm";
    /// Server event time (`Taken.at`) until a client receives the delta, clock-corrected.
    pub const BROADCAST: &str = "broadcast";
    /// Storm: from the drop until the client is back at the hub's seq.
    pub const STORM: &str = "storm";
    /// All names, in report order.
    pub const ALL: [&str; 4] = [CONNECT, CONFIRM, BROADCAST, STORM];
    /// Per broadcast (one `Taken` unit), the slowest watcher's latency: the maximum over
    /// every client of every worker of receipt − event time. Built by the parent from
    /// the workers' per-unit maxima, not recorded by clients, so not in [`ALL`].
    pub const BROADCAST_ALL: &str = "broadcast_all";
}

/// Errors of the metrics encoding.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("histogram encoding: {0}")]
    Encode(String),
    #[error("histogram decoding: {0}")]
    Decode(String),
    #[error("histogram merge: {0}")]
    Merge(String),
}

/// A latency histogram in microseconds, 1 µs to 10 minutes, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts; this cannot fail.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// A per-second histogram of the timeline: 2 significant digits (1% resolution) is
/// plenty for a chart and a quarter of the memory of [`histogram`].
pub fn second_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 2).expect("valid histogram bounds")
}

/// One histogram per second of local wall-clock time (Unix seconds), for the report's
/// timeline. Values arrive nearly in time order, so recording is a check of the last
/// second, not a map lookup.
#[derive(Clone, Debug, Default)]
pub struct PerSecond(Vec<(u64, Histogram<u64>)>);

impl PerSecond {
    /// Records `us` in the second of local time `at_ms`.
    pub fn record(&mut self, at_ms: f64, us: u64) {
        let sec = (at_ms / 1000.0) as u64;
        let h = match self.0.last_mut() {
            Some((s, h)) if *s == sec => h,
            _ => {
                let i = match self.0.binary_search_by_key(&sec, |(s, _)| *s) {
                    Ok(i) => i,
                    Err(i) => {
                        self.0.insert(i, (sec, second_histogram()));
                        i
                    }
                };
                &mut self.0[i].1
            }
        };
        h.saturating_record(us.max(1));
    }

    /// Adds another series second by second.
    pub fn merge(&mut self, o: &PerSecond) -> Result<(), MetricsError> {
        for (sec, h) in &o.0 {
            self.add(*sec, h)?;
        }
        Ok(())
    }

    fn add(&mut self, sec: u64, h: &Histogram<u64>) -> Result<(), MetricsError> {
        let i = match self.0.binary_search_by_key(&sec, |(s, _)| *s) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (sec, second_histogram()));
                i
            }
        };
        self.0[i]
            .1
            .add(h)
            .map_err(|e| MetricsError::Merge(format!("{e:?}")))
    }

    /// (Unix second, histogram), in time order.
    pub fn seconds(&self) -> &[(u64, Histogram<u64>)] {
        &self.0
    }

    fn to_wire(&self) -> Result<Vec<(u64, String)>, MetricsError> {
        self.0.iter().map(|(s, h)| Ok((*s, encode(h)?))).collect()
    }
}

/// A histogram in V2 encoding, base64.
pub fn encode(h: &Histogram<u64>) -> Result<String, MetricsError> {
    let mut buf = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| MetricsError::Encode(format!("{e:?}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}

/// The inverse of [`encode`].
pub fn decode(s: &str) -> Result<Histogram<u64>, MetricsError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| MetricsError::Decode(e.to_string()))?;
    Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(bytes))
        .map_err(|e| MetricsError::Decode(format!("{e:?}")))
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    /// Added after the first reports; absent (0) in older ones.
    #[serde(default)]
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// Summarises a microsecond histogram in milliseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// Counters every client adds to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub connects_ok: u64,
    pub connects_failed: u64,
    /// Connections the server closed or that failed while open.
    pub disconnects: u64,
    pub reconnects: u64,
    pub messages_in: u64,
    pub bytes_in: u64,
    pub messages_out: u64,
    pub bytes_out: u64,
    /// Board deltas received.
    pub deltas: u64,
    /// Snapshots received after the first one (the server resynchronised a lagging client).
    pub resyncs: u64,
    /// `Taken` changes received live (one per unit per client): broadcast deliveries.
    pub deliveries: u64,
    pub confirms_ok: u64,
    pub confirms_taken: u64,
    pub auto_confirmed: u64,
    pub no_unit: u64,
}

impl Counts {
    /// Adds another worker's counts.
    pub fn add(&mut self, o: &Counts) {
        self.connects_ok += o.connects_ok;
        self.connects_failed += o.connects_failed;
        self.disconnects += o.disconnects;
        self.reconnects += o.reconnects;
        self.messages_in += o.messages_in;
        self.bytes_in += o.bytes_in;
        self.messages_out += o.messages_out;
        self.bytes_out += o.bytes_out;
        self.deltas += o.deltas;
        self.resyncs += o.resyncs;
        self.deliveries += o.deliveries;
        self.confirms_ok += o.confirms_ok;
        self.confirms_taken += o.confirms_taken;
        self.auto_confirmed += o.auto_confirmed;
        self.no_unit += o.no_unit;
    }
}

/// Live counters of one worker, shared by its clients.
#[derive(Debug, Default)]
pub struct LiveCounts {
    pub connects_ok: AtomicU64,
    pub connects_failed: AtomicU64,
    pub disconnects: AtomicU64,
    pub reconnects: AtomicU64,
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub deltas: AtomicU64,
    pub resyncs: AtomicU64,
    pub deliveries: AtomicU64,
    pub confirms_ok: AtomicU64,
    pub confirms_taken: AtomicU64,
    pub auto_confirmed: AtomicU64,
    pub no_unit: AtomicU64,
    /// Connections open now (for progress).
    pub open: AtomicU64,
    /// Families with a final outcome (for progress).
    pub families_done: AtomicU64,
}

impl LiveCounts {
    /// A plain copy for the report.
    pub fn snapshot(&self) -> Counts {
        let g = |a: &AtomicU64| a.load(Relaxed);
        Counts {
            connects_ok: g(&self.connects_ok),
            connects_failed: g(&self.connects_failed),
            disconnects: g(&self.disconnects),
            reconnects: g(&self.reconnects),
            messages_in: g(&self.messages_in),
            bytes_in: g(&self.bytes_in),
            messages_out: g(&self.messages_out),
            bytes_out: g(&self.bytes_out),
            deltas: g(&self.deltas),
            resyncs: g(&self.resyncs),
            deliveries: g(&self.deliveries),
            confirms_ok: g(&self.confirms_ok),
            confirms_taken: g(&self.confirms_taken),
            auto_confirmed: g(&self.auto_confirmed),
            no_unit: g(&self.no_unit),
        }
    }
}

/// Everything a worker measured, as it travels to the parent.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WireMetrics {
    /// Histogram name → V2 + base64.
    pub histograms: BTreeMap<String, String>,
    pub counts: Counts,
    /// Error code (or `connect:<status>`, `close:<code>`) → occurrences.
    pub errors: BTreeMap<String, u64>,
    /// Local wall-clock ms of the first and last live delivery, for the delivery rate.
    pub first_delivery_ms: Option<f64>,
    pub last_delivery_ms: Option<f64>,
    /// Per broadcast, this worker's slowest delivery and how many clients received it.
    #[serde(default)]
    pub slowest: Vec<Slowest>,
    /// Histogram name → (Unix second, that second's histogram, V2 + base64).
    #[serde(default)]
    pub series: BTreeMap<String, Vec<(u64, String)>>,
}

/// One broadcast (a unit taken at a server time) as seen by the clients of a worker
/// (or, merged, of all workers).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slowest {
    pub unit: String,
    /// Server time of the event (`Taken.at`), ms.
    pub at: u64,
    /// The largest receipt − event time, µs.
    pub max_us: u64,
    /// Clients that received it live.
    pub reached: u64,
}

/// FNV-1a: the per-delivery maps are keyed by short unit ids and times from our own
/// hub, so SipHash's flooding defence buys nothing and costs ~2× the lookup.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

type FnvMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

/// Event time → (slowest µs, clients reached), for one unit.
type UnitSlowest = FnvMap<u64, (u64, u64)>;

/// Broadcast key → (slowest µs, clients reached).
type SlowestMap = HashMap<(String, u64), (u64, u64)>;

fn note_slowest(m: &mut SlowestMap, key: (String, u64), max_us: u64, reached: u64) {
    let e = m.entry(key).or_default();
    e.0 = e.0.max(max_us);
    e.1 += reached;
}

/// What every live delivery updates, under one lock (one lock per delivery, not three).
#[derive(Debug)]
struct Deliveries {
    /// The `broadcast` histogram: merged into the named ones when shipped.
    latency: Histogram<u64>,
    span: Option<(f64, f64)>,
    /// The same latencies per second of receipt.
    per_second: PerSecond,
    /// Unit → event time → (slowest µs, clients reached): keyed by `&str` first so a
    /// delivery allocates nothing.
    slowest: FnvMap<String, UnitSlowest>,
}

impl Deliveries {
    fn reached(&mut self, unit: &str, at: u64, us: u64) {
        let per_unit = match self.slowest.get_mut(unit) {
            Some(p) => p,
            None => self.slowest.entry(unit.to_owned()).or_default(),
        };
        let e = per_unit.entry(at).or_default();
        e.0 = e.0.max(us);
        e.1 += 1;
    }

    fn at(&mut self, at_ms: f64) {
        self.span = Some(match self.span {
            None => (at_ms, at_ms),
            Some((a, b)) => (a.min(at_ms), b.max(at_ms)),
        });
    }
}

/// The shared recorder of one worker.
#[derive(Debug)]
pub struct Recorder {
    histograms: Mutex<BTreeMap<&'static str, (Histogram<u64>, PerSecond)>>,
    errors: Mutex<BTreeMap<String, u64>>,
    deliveries: Mutex<Deliveries>,
    /// The counters, updated lock-free.
    pub counts: LiveCounts,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder with every named histogram.
    pub fn new() -> Self {
        let histograms = name::ALL
            .iter()
            .map(|n| (*n, (histogram(), PerSecond::default())))
            .collect();
        Self {
            histograms: Mutex::new(histograms),
            errors: Mutex::new(BTreeMap::new()),
            deliveries: Mutex::new(Deliveries {
                latency: histogram(),
                span: None,
                per_second: PerSecond::default(),
                slowest: FnvMap::default(),
            }),
            counts: LiveCounts::default(),
        }
    }

    /// Records a duration in microseconds (clamped into the histogram's range), also
    /// in the timeline at the second it ended.
    pub fn record_us(&self, hist: &'static str, us: u64) {
        self.record_us_at(hist, us, crate::clock::now_ms());
    }

    /// [`Recorder::record_us`] of a duration that ended at local time `at_ms`.
    pub fn record_us_at(&self, hist: &'static str, us: u64, at_ms: f64) {
        let mut hs = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((h, per_s)) = hs.get_mut(hist) {
            h.saturating_record(us.max(1));
            per_s.record(at_ms, us);
        }
    }

    /// Counts one error.
    pub fn error(&self, key: impl Into<String>) {
        let mut e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *e.entry(key.into()).or_default() += 1;
    }

    fn deliveries(&self) -> std::sync::MutexGuard<'_, Deliveries> {
        self.deliveries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One live broadcast delivery: the unit taken at server time `at`, received `us`
    /// after it at local time `now_ms`. Latency histogram, slowest-watcher map, delivery
    /// span and counter in one lock.
    pub fn delivery(&self, unit: &str, at: u64, us: u64, now_ms: f64) {
        let mut d = self.deliveries();
        d.latency.saturating_record(us.max(1));
        d.per_second.record(now_ms, us);
        d.reached(unit, at, us);
        d.at(now_ms);
        drop(d);
        self.counts.deliveries.fetch_add(1, Relaxed);
    }

    /// Notes a live delivery at local time `at_ms`.
    pub fn delivery_at(&self, at_ms: f64) {
        self.deliveries().at(at_ms);
    }

    /// Notes one live delivery of the unit taken at server time `at`, `us` after it.
    pub fn broadcast_reached(&self, unit: &str, at: u64, us: u64) {
        self.deliveries().reached(unit, at, us);
    }

    /// Everything recorded so far, for the parent.
    pub fn to_wire(&self) -> Result<WireMetrics, MetricsError> {
        let d = self.deliveries();
        let hs = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let mut histograms = BTreeMap::new();
        let mut series = BTreeMap::new();
        for (n, (h, per_s)) in hs.iter() {
            let enc = if *n == name::BROADCAST {
                let mut all = h.clone();
                all.add(&d.latency)
                    .map_err(|e| MetricsError::Merge(format!("{e:?}")))?;
                encode(&all)?
            } else {
                encode(h)?
            };
            histograms.insert((*n).to_owned(), enc);
            let mut per_s = per_s.clone();
            if *n == name::BROADCAST {
                per_s.merge(&d.per_second)?;
            }
            series.insert((*n).to_owned(), per_s.to_wire()?);
        }
        let span = d.span;
        Ok(WireMetrics {
            histograms,
            series,
            counts: self.counts.snapshot(),
            errors: self
                .errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            first_delivery_ms: span.map(|s| s.0),
            last_delivery_ms: span.map(|s| s.1),
            slowest: d
                .slowest
                .iter()
                .flat_map(|(unit, per_at)| {
                    per_at.iter().map(|(at, (max_us, reached))| Slowest {
                        unit: unit.clone(),
                        at: *at,
                        max_us: *max_us,
                        reached: *reached,
                    })
                })
                .collect(),
        })
    }
}

/// Metrics of all workers merged.
#[derive(Debug, Default)]
pub struct Merged {
    pub histograms: BTreeMap<String, Histogram<u64>>,
    pub counts: Counts,
    pub errors: BTreeMap<String, u64>,
    pub first_delivery_ms: Option<f64>,
    pub last_delivery_ms: Option<f64>,
    slowest: SlowestMap,
    /// Histogram name → per-second histograms of every worker, added.
    pub series: BTreeMap<String, PerSecond>,
}

impl Merged {
    /// Adds one worker's metrics: histograms are added bucket by bucket, so the
    /// merged percentiles are exact, not averages of percentiles.
    pub fn add(&mut self, w: &WireMetrics) -> Result<(), MetricsError> {
        for (n, enc) in &w.histograms {
            let h = decode(enc)?;
            match self.histograms.get_mut(n) {
                Some(acc) => acc
                    .add(&h)
                    .map_err(|e| MetricsError::Merge(format!("{e:?}")))?,
                None => {
                    self.histograms.insert(n.clone(), h);
                }
            }
        }
        for (n, secs) in &w.series {
            let acc = self.series.entry(n.clone()).or_default();
            for (sec, enc) in secs {
                acc.add(*sec, &decode(enc)?)?;
            }
        }
        self.counts.add(&w.counts);
        for (k, v) in &w.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.first_delivery_ms = min_opt(self.first_delivery_ms, w.first_delivery_ms, f64::min);
        self.last_delivery_ms = min_opt(self.last_delivery_ms, w.last_delivery_ms, f64::max);
        for b in &w.slowest {
            note_slowest(
                &mut self.slowest,
                (b.unit.clone(), b.at),
                b.max_us,
                b.reached,
            );
        }
        Ok(())
    }

    /// Per broadcast, the slowest delivery over every worker: one value per taken unit.
    pub fn slowest_histogram(&self) -> Histogram<u64> {
        let mut h = histogram();
        for (max_us, _) in self.slowest.values() {
            h.saturating_record((*max_us).max(1));
        }
        h
    }

    /// Broadcasts seen, and the fewest clients any of them reached (0 when none).
    pub fn broadcast_reach(&self) -> (u64, u64) {
        let n = self.slowest.len() as u64;
        let min = self.slowest.values().map(|(_, r)| *r).min().unwrap_or(0);
        (n, min)
    }

    /// The summary of a named histogram (empty when nothing was recorded).
    pub fn summary(&self, name: &str) -> Summary {
        self.histograms
            .get(name)
            .map(Summary::of)
            .unwrap_or_default()
    }
}

fn min_opt(a: Option<f64>, b: Option<f64>, pick: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(pick(x, y)),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slowest_is_the_max_over_workers_per_broadcast() {
        let a = Recorder::new();
        a.broadcast_reached("u1", 100, 5_000);
        a.broadcast_reached("u1", 100, 9_000);
        a.broadcast_reached("u2", 200, 1_000);
        let b = Recorder::new();
        b.broadcast_reached("u1", 100, 700_000);
        b.broadcast_reached("u2", 200, 2_000);
        let mut m = Merged::default();
        m.add(&a.to_wire().unwrap()).unwrap();
        m.add(&b.to_wire().unwrap()).unwrap();
        let h = m.slowest_histogram();
        assert_eq!(h.len(), 2);
        assert!(h.equivalent(h.max(), 700_000));
        assert!(h.equivalent(h.min(), 2_000));
        assert_eq!(m.broadcast_reach(), (2, 2));
        // The same unit taken again after a reset is another broadcast.
        let c = Recorder::new();
        c.broadcast_reached("u1", 300, 10);
        m.add(&c.to_wire().unwrap()).unwrap();
        assert_eq!(m.broadcast_reach(), (3, 1));
    }
}
