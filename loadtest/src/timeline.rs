//! The run second by second: latency quantiles per second (from per-second histograms
//! merged over every worker, so they are exact, not averages of percentiles), events
//! per second, and the tool's and the server's CPU, for the HTML report's charts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metrics::Merged;

/// Quantiles of one second of one histogram, in ms.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    /// Values recorded in that second (for `broadcast`: live deliveries that second).
    pub count: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// One second of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the timeline's start.
    pub t: u64,
    /// Histogram name → that second's quantiles (absent: nothing recorded).
    pub latency_ms: BTreeMap<String, Quantiles>,
}

/// CPU use between two samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuPoint {
    /// Seconds since the timeline's start, at the middle of the interval.
    pub t: f64,
    pub percent_of_core: f64,
}

/// The run over time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// Unix seconds (local clock) of `t = 0`: the second of the first planned connect.
    pub start_unix_s: u64,
    /// Every second from 0 to the last with anything recorded.
    pub seconds: Vec<Second>,
    /// The tool (parent and workers), sampled as worker lines arrive (~4 per second).
    pub tool_cpu: Vec<CpuPoint>,
    /// The server (with `--server-pid`).
    pub server_cpu: Vec<CpuPoint>,
}

/// Shortest interval a CPU point covers: shorter ones are mostly sampling jitter.
const CPU_POINT_MS: f64 = 1000.0;

impl Timeline {
    /// Builds the timeline from `start_ms` (local) on; CPU samples are (local ms,
    /// cumulative CPU s) in time order.
    pub fn build(m: &Merged, start_ms: f64, tool: &[(f64, f64)], server: &[(f64, f64)]) -> Self {
        let start = (start_ms / 1000.0).floor().max(0.0) as u64;
        let mut by_t: BTreeMap<u64, Second> = BTreeMap::new();
        for (name, per_s) in &m.series {
            for (sec, h) in per_s.seconds() {
                if h.is_empty() {
                    continue;
                }
                let t = sec.saturating_sub(start);
                let ms = |us: u64| us as f64 / 1000.0;
                by_t.entry(t).or_default().latency_ms.insert(
                    name.clone(),
                    Quantiles {
                        count: h.len(),
                        p50: ms(h.value_at_quantile(0.50)),
                        p95: ms(h.value_at_quantile(0.95)),
                        p99: ms(h.value_at_quantile(0.99)),
                        max: ms(h.max()),
                    },
                );
            }
        }
        let last = by_t.keys().next_back().copied();
        let seconds = match last {
            Some(last) => (0..=last)
                .map(|t| {
                    let mut s = by_t.remove(&t).unwrap_or_default();
                    s.t = t;
                    s
                })
                .collect(),
            None => Vec::new(),
        };
        let origin = start as f64 * 1000.0;
        Self {
            start_unix_s: start,
            seconds,
            tool_cpu: cpu_points(tool, origin),
            server_cpu: cpu_points(server, origin),
        }
    }

    /// Per second, the count of a histogram (e.g. `broadcast`: deliveries per second).
    pub fn counts(&self, name: &str) -> Vec<(f64, f64)> {
        self.seconds
            .iter()
            .map(|s| {
                let n = s.latency_ms.get(name).map_or(0, |q| q.count);
                (s.t as f64, n as f64)
            })
            .collect()
    }

    /// Per second with values, one quantile of a histogram.
    pub fn quantile(&self, name: &str, pick: fn(&Quantiles) -> f64) -> Vec<(f64, f64)> {
        self.seconds
            .iter()
            .filter_map(|s| s.latency_ms.get(name).map(|q| (s.t as f64, pick(q))))
            .collect()
    }
}

fn cpu_points(samples: &[(f64, f64)], origin_ms: f64) -> Vec<CpuPoint> {
    let mut out = Vec::new();
    let Some(mut from) = samples.first().copied() else {
        return out;
    };
    for s in &samples[1..] {
        let dt = s.0 - from.0;
        if dt >= CPU_POINT_MS {
            out.push(CpuPoint {
                t: ((from.0 + s.0) / 2.0 - origin_ms) / 1000.0,
                percent_of_core: ((s.1 - from.1) / (dt / 1000.0) * 100.0).max(0.0),
            });
            from = *s;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{name, Recorder};

    #[test]
    fn seconds_hold_exact_quantiles_merged_over_workers() {
        let t0 = 1_000_000_000.0; // a Unix second, in ms
        let a = Recorder::new();
        let b = Recorder::new();
        for i in 0..100u64 {
            a.delivery("u1", 5, 1_000 * (i + 1), t0 + 2_100.0);
        }
        b.delivery("u1", 5, 500_000, t0 + 2_900.0);
        b.record_us_at(name::CONFIRM, 7_000, t0 + 4_000.0);
        let mut m = Merged::default();
        m.add(&a.to_wire().unwrap()).unwrap();
        m.add(&b.to_wire().unwrap()).unwrap();
        let tl = Timeline::build(&m, t0 + 300.0, &[], &[]);
        assert_eq!(tl.seconds.len(), 5, "seconds 0..=4, the empty ones too");
        let s2 = &tl.seconds[2].latency_ms[name::BROADCAST];
        assert_eq!(s2.count, 101);
        assert!((s2.p50 - 51.0).abs() < 1.0, "{s2:?}");
        assert!((s2.max - 500.0).abs() < 5.0, "{s2:?}");
        assert!(tl.seconds[3].latency_ms.is_empty());
        assert_eq!(tl.seconds[4].latency_ms[name::CONFIRM].count, 1);
        assert_eq!(tl.counts(name::BROADCAST)[2], (2.0, 101.0));
        assert_eq!(tl.counts(name::BROADCAST)[1], (1.0, 0.0));
    }

    #[test]
    fn cpu_points_are_the_rate_over_at_least_a_second() {
        let s = [(0.0, 1.0), (500.0, 1.2), (1000.0, 1.5), (3000.0, 2.5)];
        let p = cpu_points(&s, 0.0);
        assert_eq!(p.len(), 2);
        assert!((p[0].percent_of_core - 50.0).abs() < 1e-9);
        assert!((p[0].t - 0.5).abs() < 1e-9);
        assert!((p[1].percent_of_core - 50.0).abs() < 1e-9);
        assert!(cpu_points(&[], 0.0).is_empty());
    }
}
