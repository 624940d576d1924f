//! Prometheus metrics at `/metrics`, hand-rolled: a handful of counters needs no registry.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;
use std::collections::HashMap;
use xuanfang_hub::ErrorCode;

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    pub connections_refused: AtomicU64,
    /// TCP connections over `max_connections`, answered 503 or closed.
    pub tcp_refused: AtomicU64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub actions_ok: AtomicU64,
    pub deltas: AtomicU64,
    pub delta_deliveries: AtomicU64,
    pub lagging_resyncs: AtomicU64,
    pub slow_disconnects: AtomicU64,
    pub auto_confirmed: AtomicU64,
    errors: Mutex<HashMap<ErrorCode, u64>>,
    /// Family actions by server-side latency (frame read to reply queued), per bucket.
    action_latency: [AtomicU64; ACTION_BUCKETS_MS.len() + 1],
    action_latency_sum_us: AtomicU64,
}

/// Upper bounds (ms) of the action latency histogram; one more bucket is +Inf.
const ACTION_BUCKETS_MS: [u64; 11] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000];

impl Metrics {
    pub fn error(&self, code: ErrorCode) {
        *self.errors.lock().entry(code).or_default() += 1;
    }

    /// Records how long the hub took to answer one family action.
    pub fn action_took(&self, d: std::time::Duration) {
        let ms = d.as_millis() as u64;
        let i = ACTION_BUCKETS_MS
            .iter()
            .position(|b| ms < *b)
            .unwrap_or(ACTION_BUCKETS_MS.len());
        self.action_latency[i].fetch_add(1, Relaxed);
        self.action_latency_sum_us
            .fetch_add(d.as_micros() as u64, Relaxed);
    }

    pub fn deltas_published(&self, receivers: usize) {
        self.deltas.fetch_add(1, Relaxed);
        self.delta_deliveries.fetch_add(receivers as u64, Relaxed);
    }

    pub fn render(
        &self,
        watchers: usize,
        families_online: usize,
        seq: u64,
        tcp_open: usize,
    ) -> String {
        let mut s = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP xuanfang_{name} {help}\n# TYPE xuanfang_{name} counter\nxuanfang_{name} {v}");
        };
        counter(
            "connections_opened_total",
            "WebSocket connections accepted",
            self.connections_opened.load(Relaxed),
        );
        counter(
            "connections_closed_total",
            "WebSocket connections ended",
            self.connections_closed.load(Relaxed),
        );
        counter(
            "connections_refused_total",
            "Connections refused (auth, limits)",
            self.connections_refused.load(Relaxed),
        );
        counter(
            "tcp_refused_total",
            "TCP connections over max_connections, answered 503 and closed",
            self.tcp_refused.load(Relaxed),
        );
        counter(
            "messages_in_total",
            "Client frames received",
            self.messages_in.load(Relaxed),
        );
        counter(
            "messages_out_total",
            "Frames sent",
            self.messages_out.load(Relaxed),
        );
        counter(
            "bytes_out_total",
            "Bytes sent in frames",
            self.bytes_out.load(Relaxed),
        );
        counter(
            "actions_ok_total",
            "Family actions answered ok",
            self.actions_ok.load(Relaxed),
        );
        counter(
            "deltas_total",
            "Board deltas published",
            self.deltas.load(Relaxed),
        );
        counter(
            "delta_deliveries_total",
            "Board deltas queued to connections",
            self.delta_deliveries.load(Relaxed),
        );
        counter(
            "lagging_resyncs_total",
            "Slow connections sent a snapshot instead of a backlog",
            self.lagging_resyncs.load(Relaxed),
        );
        counter(
            "slow_disconnects_total",
            "Connections dropped for not reading",
            self.slow_disconnects.load(Relaxed),
        );
        counter(
            "auto_confirmed_total",
            "Families decided at a deadline by this gateway",
            self.auto_confirmed.load(Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP xuanfang_errors_total Refusals by code\n# TYPE xuanfang_errors_total counter"
        );
        let mut errors: Vec<(String, u64)> = self
            .errors
            .lock()
            .iter()
            .map(|(c, n)| (code_name(*c), *n))
            .collect();
        errors.sort();
        for (code, n) in errors {
            let _ = writeln!(s, "xuanfang_errors_total{{code=\"{code}\"}} {n}");
        }
        let _ = writeln!(s, "# HELP xuanfang_action_seconds Family actions, frame read to reply queued\n# TYPE xuanfang_action_seconds histogram");
        let mut cumulative = 0;
        for (i, n) in self.action_latency.iter().enumerate() {
            cumulative += n.load(Relaxed);
            let le = ACTION_BUCKETS_MS
                .get(i)
                .map(|ms| format!("{}", *ms as f64 / 1000.0))
                .unwrap_or_else(|| "+Inf".to_owned());
            let _ = writeln!(
                s,
                "xuanfang_action_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = self.action_latency_sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(
            s,
            "xuanfang_action_seconds_sum {sum}\nxuanfang_action_seconds_count {cumulative}"
        );
        let _ = writeln!(s, "# HELP xuanfang_watchers Open WebSocket connections\n# TYPE xuanfang_watchers gauge\nxuanfang_watchers {watchers}");
        let _ = writeln!(s, "# HELP xuanfang_families_online Families with a connection here\n# TYPE xuanfang_families_online gauge\nxuanfang_families_online {families_online}");
        let _ = writeln!(s, "# HELP xuanfang_tcp_connections Open TCP connections (HTTP and WebSocket)\n# TYPE xuanfang_tcp_connections gauge\nxuanfang_tcp_connections {tcp_open}");
        let _ = writeln!(s, "# HELP xuanfang_board_seq Last event seq broadcast\n# TYPE xuanfang_board_seq gauge\nxuanfang_board_seq {seq}");
        s
    }
}

/// The wire name of a code, e.g. `unit_taken`.
pub fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
