//! The end of a run: the summary table (k6-like), the JSON report, and thresholds.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::audit::Audit;
use crate::metrics::{name, Counts, Merged, Summary};
use crate::usage::ToolCpu;

/// Errors that are part of a healthy run: losing a race for a unit.
pub const EXPECTED_ERRORS: [&str; 1] = ["unit_taken"];

/// The whole report, as written to `--report`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub urls: Vec<String>,
    pub encoding: String,
    pub workers: usize,
    pub watchers: usize,
    pub families: usize,
    pub batch: Option<String>,
    /// Seconds from the first connect to the end of the run.
    pub elapsed_s: f64,
    pub peak_open: u64,
    pub latency_ms: BTreeMap<String, Summary>,
    pub counts: Counts,
    pub rates: Rates,
    pub errors: BTreeMap<String, u64>,
    pub errors_unexpected: u64,
    pub server_rss: Option<Rss>,
    /// The server's CPU time while broadcasts were delivered (with `--server-pid`).
    #[serde(default)]
    pub server_cpu: Option<Cpu>,
    /// The tool's own CPU (parent and workers, per thread) and whether it was saturated.
    #[serde(default)]
    pub tool_cpu: Option<ToolCpu>,
    /// Distinct broadcasts (taken units) received live, and the fewest clients any of
    /// them reached: with every watcher live, equal to the watchers for a complete run.
    #[serde(default)]
    pub broadcasts: u64,
    #[serde(default)]
    pub broadcast_reach_min: u64,
    /// `server − local` clock offset used, ms, and the RTT of its sample.
    pub clock_offset_ms: Option<f64>,
    pub clock_rtt_ms: Option<f64>,
    pub audit: Option<Audit>,
    /// The run second by second (latency quantiles, deliveries, CPU), for `--report-html`.
    #[serde(default)]
    pub timeline: Option<crate::timeline::Timeline>,
    pub thresholds: Vec<ThresholdResult>,
    pub passed: bool,
}

/// Per-second rates over the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Rates {
    pub messages_in_per_s: f64,
    pub bytes_in_per_s: f64,
    pub messages_out_per_s: f64,
    /// Live `Taken` deliveries per second, between the first and last delivery.
    pub deliveries_per_s: f64,
}

/// The server's resident memory before the clients and with all of them connected.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Rss {
    pub pid: u32,
    pub before_kib: u64,
    pub peak_kib: u64,
    pub connections: u64,
    pub per_connection_bytes: f64,
}

/// The server's user + system CPU over the delivery span (first to last live delivery,
/// widened to the nearest samples taken every ~250 ms).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Cpu {
    pub pid: u32,
    /// Wall-clock seconds between the two samples.
    pub window_s: f64,
    /// utime + stime consumed between them.
    pub cpu_s: f64,
    /// Live deliveries divided by `cpu_s`.
    pub deliveries_per_cpu_s: f64,
}

/// Reads utime + stime of a process, in seconds (`/proc/PID/stat`, fields 14 and 15).
pub fn cpu_s(pid: u32) -> Option<f64> {
    crate::usage::process_cpu(pid).map(|(u, s)| u + s)
}

/// The CPU between the last sample at or before `from` and the first at or after `to`
/// (samples: local ms, CPU s, in time order).
pub fn cpu_between(samples: &[(f64, f64)], from: f64, to: f64) -> Option<(f64, f64)> {
    let a = samples.iter().rev().find(|s| s.0 <= from)?;
    let b = samples.iter().find(|s| s.0 >= to)?;
    Some(((b.0 - a.0) / 1000.0, b.1 - a.1))
}

/// Reads `VmRSS` of a process in KiB.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

impl Report {
    /// Fills latency, counts, errors and rates from merged metrics.
    pub fn fill(&mut self, m: &Merged) {
        for n in name::ALL {
            self.latency_ms.insert(n.to_owned(), m.summary(n));
        }
        self.latency_ms.insert(
            name::BROADCAST_ALL.to_owned(),
            Summary::of(&m.slowest_histogram()),
        );
        (self.broadcasts, self.broadcast_reach_min) = m.broadcast_reach();
        self.counts = m.counts.clone();
        self.errors = m.errors.clone();
        self.errors_unexpected = m
            .errors
            .iter()
            .filter(|(k, _)| !EXPECTED_ERRORS.contains(&k.as_str()))
            .map(|(_, v)| v)
            .sum();
        let secs = self.elapsed_s.max(1e-3);
        self.rates.messages_in_per_s = m.counts.messages_in as f64 / secs;
        self.rates.bytes_in_per_s = m.counts.bytes_in as f64 / secs;
        self.rates.messages_out_per_s = m.counts.messages_out as f64 / secs;
        if let (Some(a), Some(b)) = (m.first_delivery_ms, m.last_delivery_ms) {
            let span = ((b - a) / 1000.0).max(1e-3);
            self.rates.deliveries_per_s = m.counts.deliveries as f64 / span;
        }
    }

    /// A metric's value for thresholds: `<hist>_<p50|p90|p95|p99|p999|max|mean>` in ms
    /// (`broadcast_all_p95`: per broadcast the slowest watcher, then the p95 of those),
    /// or `errors` (unexpected), `connect_errors`, `deliveries_per_s`, `rss_per_conn`,
    /// `tool_cpu` (the tool's CPU in the measured phase, % of one core).
    pub fn metric(&self, metric: &str) -> Option<f64> {
        match metric {
            "errors" => return Some(self.errors_unexpected as f64),
            "connect_errors" => return Some(self.counts.connects_failed as f64),
            "deliveries_per_s" => return Some(self.rates.deliveries_per_s),
            "rss_per_conn" => return self.server_rss.as_ref().map(|r| r.per_connection_bytes),
            "tool_cpu" => return self.tool_cpu.as_ref().map(|c| c.phase_percent_of_core),
            _ => {}
        }
        let (hist, stat) = metric.rsplit_once('_')?;
        let s = self.latency_ms.get(hist)?;
        Some(match stat {
            "p50" => s.p50,
            "p90" => s.p90,
            "p95" => s.p95,
            "p99" => s.p99,
            "p999" => s.p999,
            "max" => s.max,
            "mean" => s.mean,
            _ => return None,
        })
    }

    /// Evaluates thresholds and sets `passed` (thresholds and audit).
    pub fn judge(&mut self, thresholds: &[Threshold]) {
        self.thresholds = thresholds
            .iter()
            .map(|t| {
                let value = self.metric(&t.metric);
                ThresholdResult {
                    expr: t.expr.clone(),
                    value,
                    passed: value.is_some_and(|v| t.holds(v)),
                }
            })
            .collect();
        self.passed = self.thresholds.iter().all(|t| t.passed)
            && self.audit.as_ref().is_none_or(|a| a.passed);
    }

    /// The human summary.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let line = |s: &mut String, k: &str, v: String| {
            let dots = 34usize.saturating_sub(k.chars().count());
            let _ = writeln!(s, "  {k} {}: {v}", ".".repeat(dots));
        };
        let _ = writeln!(
            s,
            "\n  xuanfang-loadtest {} — {} watcher(s), {} famil{} over {} worker(s), {}, {}",
            self.scenario,
            self.watchers,
            self.families,
            if self.families == 1 { "y" } else { "ies" },
            self.workers,
            self.encoding,
            self.urls.join(" ")
        );
        if let Some(b) = &self.batch {
            line(&mut s, "batch", b.clone());
        }
        line(
            &mut s,
            "connections",
            format!(
                "{} ok, {} failed, peak {} open, {} reconnects",
                self.counts.connects_ok,
                self.counts.connects_failed,
                self.peak_open,
                self.counts.reconnects
            ),
        );
        for (n, sm) in &self.latency_ms {
            if sm.count == 0 {
                continue;
            }
            line(
                &mut s,
                &format!("{n} (ms)"),
                format!(
                    "p50={:.2} p90={:.2} p95={:.2} p99={:.2} p99.9={:.2} max={:.2} n={}",
                    sm.p50, sm.p90, sm.p95, sm.p99, sm.p999, sm.max, sm.count
                ),
            );
        }
        line(
            &mut s,
            "messages in",
            format!(
                "{} ({:.0}/s, {:.1} KiB/s)",
                self.counts.messages_in,
                self.rates.messages_in_per_s,
                self.rates.bytes_in_per_s / 1024.0
            ),
        );
        line(
            &mut s,
            "messages out",
            format!(
                "{} ({:.0}/s)",
                self.counts.messages_out, self.rates.messages_out_per_s
            ),
        );
        if self.counts.deliveries > 0 {
            line(
                &mut s,
                "broadcast deliveries",
                format!(
                    "{} ({:.0}/s)",
                    self.counts.deliveries, self.rates.deliveries_per_s
                ),
            );
        }
        if self.broadcasts > 0 {
            line(
                &mut s,
                "broadcasts",
                format!(
                    "{} received live, the least reached {} client(s)",
                    self.broadcasts, self.broadcast_reach_min
                ),
            );
        }
        if let Some(c) = &self.server_cpu {
            line(
                &mut s,
                "server CPU while delivering",
                format!(
                    "{:.2} s over {:.2} s: {:.0} deliveries/CPU-s",
                    c.cpu_s, c.window_s, c.deliveries_per_cpu_s
                ),
            );
        }
        if let Some(c) = &self.tool_cpu {
            let threads = c
                .processes
                .iter()
                .map(|p| {
                    let busiest = p
                        .threads
                        .iter()
                        .take(4)
                        .map(|t| format!("{:.0}%", t.percent_of_core))
                        .collect::<Vec<_>>()
                        .join("/");
                    format!("{} {:.0}% [{busiest}]", p.role, p.percent_of_core)
                })
                .collect::<Vec<_>>()
                .join(", ");
            line(
                &mut s,
                "tool CPU",
                format!(
                    "{:.2} s user + {:.2} s sys, {:.0}% of a core over the run; {:.0}% over the {} ({:.1} s) of {} core(s); {threads}",
                    c.user_s,
                    c.sys_s,
                    c.percent_of_core,
                    c.phase_percent_of_core,
                    c.phase,
                    c.phase_window_s,
                    c.cores
                ),
            );
        }
        if self.families > 0 {
            line(
                &mut s,
                "confirms",
                format!(
                    "{} ok, {} lost a race; {} automatic, {} no unit",
                    self.counts.confirms_ok,
                    self.counts.confirms_taken,
                    self.counts.auto_confirmed,
                    self.counts.no_unit
                ),
            );
        }
        let errs = if self.errors.is_empty() {
            "none".to_owned()
        } else {
            self.errors
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        line(&mut s, "errors", errs);
        if let Some(r) = &self.server_rss {
            line(
                &mut s,
                "server RSS",
                format!(
                    "{} KiB → {} KiB with {} connections: {:.0} B/connection",
                    r.before_kib, r.peak_kib, r.connections, r.per_connection_bytes
                ),
            );
        }
        if let Some(w) = self.tool_cpu.as_ref().and_then(ToolCpu::warning) {
            let _ = writeln!(s, "\n  ⚠ WARNING: {w}");
        }
        if let Some(a) = &self.audit {
            let _ = writeln!(
                s,
                "\n  audit: {} (final seq {}, {} units taken)",
                if a.passed { "✓ passed" } else { "✗ FAILED" },
                a.final_seq,
                a.taken
            );
            for c in &a.checks {
                let _ = writeln!(
                    s,
                    "    {} {}: {}",
                    if c.passed { "✓" } else { "✗" },
                    c.name,
                    c.detail
                );
            }
        }
        if !self.thresholds.is_empty() {
            let _ = writeln!(s, "\n  thresholds:");
            for t in &self.thresholds {
                let _ = writeln!(
                    s,
                    "    {} {} (value {})",
                    if t.passed { "✓" } else { "✗" },
                    t.expr,
                    t.value
                        .map(|v| format!("{v:.3}"))
                        .unwrap_or_else(|| "unknown".into())
                );
            }
        }
        let _ = writeln!(
            s,
            "\n  result: {}\n",
            if self.passed { "PASS" } else { "FAIL" }
        );
        s
    }
}

/// A comparison in a threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

/// `--threshold 'confirm_p99<20ms'`: a metric, a comparison, a value (latencies in ms).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    pub expr: String,
    pub metric: String,
    pub op: Op,
    /// In the metric's unit: ms for latencies, plain numbers otherwise.
    pub value: f64,
}

/// One threshold after the run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ThresholdResult {
    pub expr: String,
    pub value: Option<f64>,
    pub passed: bool,
}

/// Why a threshold does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ThresholdError {
    #[error("threshold {0:?}: expected METRIC<VALUE (or <=, >, >=)")]
    Syntax(String),
    #[error("threshold {0:?}: unknown metric {1:?}")]
    Metric(String, String),
    #[error("threshold {0:?}: bad value {1:?}")]
    Value(String, String),
}

fn known_metric(m: &str) -> bool {
    if [
        "errors",
        "connect_errors",
        "deliveries_per_s",
        "rss_per_conn",
        "tool_cpu",
    ]
    .contains(&m)
    {
        return true;
    }
    m.rsplit_once('_').is_some_and(|(h, s)| {
        (name::ALL.contains(&h) || h == name::BROADCAST_ALL)
            && ["p50", "p90", "p95", "p99", "p999", "max", "mean"].contains(&s)
    })
}

impl Threshold {
    /// Parses `metric<value`, `metric<=value`, `>` and `>=`; values may end in
    /// `us`, `ms` or `s` for latencies (converted to ms).
    pub fn parse(expr: &str) -> Result<Self, ThresholdError> {
        let e = expr.trim();
        let pos = e
            .find(['<', '>'])
            .ok_or_else(|| ThresholdError::Syntax(expr.into()))?;
        let (metric, rest) = e.split_at(pos);
        let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
            (Op::Le, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Op::Ge, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Op::Lt, v)
        } else if let Some(v) = rest.strip_prefix('>') {
            (Op::Gt, v)
        } else {
            return Err(ThresholdError::Syntax(expr.into()));
        };
        let metric = metric.trim();
        if metric.is_empty() {
            return Err(ThresholdError::Syntax(expr.into()));
        }
        if !known_metric(metric) {
            return Err(ThresholdError::Metric(expr.into(), metric.into()));
        }
        let v = value.trim();
        let (num, scale) = if let Some(n) = v.strip_suffix("ms") {
            (n, 1.0)
        } else if let Some(n) = v.strip_suffix("us").or_else(|| v.strip_suffix("µs")) {
            (n, 0.001)
        } else if let Some(n) = v.strip_suffix('s') {
            (n, 1000.0)
        } else {
            (v, 1.0)
        };
        let value: f64 = num
            .trim()
            .parse()
            .map_err(|_| ThresholdError::Value(expr.into(), v.into()))?;
        Ok(Self {
            expr: e.to_owned(),
            metric: metric.to_owned(),
            op,
            value: value * scale,
        })
    }

    /// Whether a measured value meets the threshold.
    pub fn holds(&self, v: f64) -> bool {
        match self.op {
            Op::Lt => v < self.value,
            Op::Le => v <= self.value,
            Op::Gt => v > self.value,
            Op::Ge => v >= self.value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_watcher_metric_has_a_threshold_name() {
        let t = Threshold::parse("broadcast_all_p95<500ms").unwrap();
        assert_eq!((t.metric.as_str(), t.value), ("broadcast_all_p95", 500.0));
        assert!(Threshold::parse("broadcast_all_p42<500ms").is_err());
        let mut r = Report::default();
        r.latency_ms.insert(
            name::BROADCAST_ALL.into(),
            Summary {
                p95: 620.0,
                ..Summary::default()
            },
        );
        r.judge(&[t]);
        assert!(!r.passed);
        assert_eq!(r.thresholds[0].value, Some(620.0));
    }

    #[test]
    fn a_saturated_tool_is_warned_about_in_the_summary() {
        let mut r = Report {
            tool_cpu: Some(ToolCpu::new(
                1,
                Vec::new(),
                "delivery span",
                (4.0, 3.8),
                10.0,
            )),
            ..Report::default()
        };
        let s = r.render();
        assert!(s.contains("WARNING") && s.contains("saturated"), "{s}");
        assert!((r.metric("tool_cpu").unwrap() - 95.0).abs() < 1e-6);
        r.tool_cpu = Some(ToolCpu::new(
            2,
            Vec::new(),
            "delivery span",
            (4.0, 3.8),
            10.0,
        ));
        assert!(!r.render().contains("WARNING"));
    }

    #[test]
    fn cpu_is_charged_between_the_samples_around_the_span() {
        let s = [
            (0.0, 1.0),
            (250.0, 1.1),
            (500.0, 1.5),
            (750.0, 1.9),
            (1000.0, 2.0),
        ];
        let (w, c) = cpu_between(&s, 300.0, 700.0).unwrap();
        assert!((w - 0.5).abs() < 1e-9 && (c - 0.8).abs() < 1e-9);
        assert!(cpu_between(&s, 300.0, 1200.0).is_none());
        // Our own process is running, so its CPU reads.
        assert!(cpu_s(std::process::id()).is_some());
    }
}
