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
}

impl Metrics {
    pub fn error(&self, code: ErrorCode) {
        *self.errors.lock().entry(code).or_default() += 1;
    }

    pub fn deltas_published(&self, receivers: usize) {
        self.deltas.fetch_add(1, Relaxed);
        self.delta_deliveries.fetch_add(receivers as u64, Relaxed);
    }

    pub fn render(&self, watchers: usize, families_online: usize, seq: u64) -> String {
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
        let _ = writeln!(s, "# HELP xuanfang_watchers Open WebSocket connections\n# TYPE xuanfang_watchers gauge\nxuanfang_watchers {watchers}");
        let _ = writeln!(s, "# HELP xuanfang_families_online Families with a connection here\n# TYPE xuanfang_families_online gauge\nxuanfang_families_online {families_online}");
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
