//! Prometheus metrics at `/metrics`, kept by `prometheus-client` (the Prometheus
//! project's own Rust client) and served in the OpenMetrics text format.
//!
//! The names are the ones operators, the dashboard (`deploy/grafana/xuanfang.json`) and
//! `docs/operations.md` use: changing one breaks an alert somewhere, so the test
//! `tests/tests/metrics_scrape.rs` scrapes a real gateway and checks every family.
//! [`engine`] times every allocator call by operation.

pub mod engine;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use xuanfang_hub::{Action, ErrorCode};

pub use engine::TimedEngine;

/// The content type of [`Metrics::render`]'s text: Prometheus then parses it as
/// OpenMetrics (counter families are declared without their `_total` suffix).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets (seconds) shared by the request-like histograms: 1 ms to 5 s, the
/// range a family action or an engine call lives in (the old hand-written histogram's
/// bounds, so dashboards keep their quantiles comparable).
const LATENCY_BUCKETS: [f64; 11] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];

/// Deadline processing decides up to thousands of families in chunks: 1 ms to 60 s.
const DEADLINE_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

fn latency() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

/// Every metric of one gateway. Counters are public: call sites `inc()` them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub connections_opened: Counter,
    pub connections_closed: Counter,
    pub connections_refused: Counter,
    /// TCP connections over `max_connections`, answered 503 or closed.
    pub tcp_refused: Counter,
    pub messages_in: Counter,
    pub messages_out: Counter,
    pub bytes_out: Counter,
    pub actions_ok: Counter,
    pub deltas: Counter,
    pub delta_deliveries: Counter,
    pub lagging_resyncs: Counter,
    pub slow_disconnects: Counter,
    pub auto_confirmed: Counter,
    errors: Family<CodeLabel, Counter>,
    actions: HistogramFamily<ActionLabel>,
    engine: HistogramFamily<OperationLabel>,
    delta_publish: Histogram,
    delta_delivery: Histogram,
    deadline: Histogram,
    watchers: Gauge,
    families_online: Gauge,
    tcp_connections: Gauge,
    board_seq: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("xuanfang"),
            connections_opened: Counter::default(),
            connections_closed: Counter::default(),
            connections_refused: Counter::default(),
            tcp_refused: Counter::default(),
            messages_in: Counter::default(),
            messages_out: Counter::default(),
            bytes_out: Counter::default(),
            actions_ok: Counter::default(),
            deltas: Counter::default(),
            delta_deliveries: Counter::default(),
            lagging_resyncs: Counter::default(),
            slow_disconnects: Counter::default(),
            auto_confirmed: Counter::default(),
            errors: Family::default(),
            actions: Family::new_with_constructor(latency as fn() -> Histogram),
            engine: Family::new_with_constructor(latency as fn() -> Histogram),
            delta_publish: latency(),
            delta_delivery: latency(),
            deadline: Histogram::new(DEADLINE_BUCKETS),
            watchers: Gauge::default(),
            families_online: Gauge::default(),
            tcp_connections: Gauge::default(),
            board_seq: Gauge::default(),
        };
        m.register();
        m
    }

    /// Names every metric once. Counters get `_total` from the library.
    fn register(&mut self) {
        let r = &mut self.registry;
        let counters = [
            (
                "connections_opened",
                "WebSocket connections accepted",
                &self.connections_opened,
            ),
            (
                "connections_closed",
                "WebSocket connections ended",
                &self.connections_closed,
            ),
            (
                "connections_refused",
                "Connections refused (auth, limits)",
                &self.connections_refused,
            ),
            (
                "tcp_refused",
                "TCP connections over max_connections, answered 503 and closed",
                &self.tcp_refused,
            ),
            ("messages_in", "Client frames received", &self.messages_in),
            ("messages_out", "Frames sent", &self.messages_out),
            ("bytes_out", "Bytes sent in frames", &self.bytes_out),
            ("actions_ok", "Family actions answered ok", &self.actions_ok),
            ("deltas", "Board deltas published", &self.deltas),
            (
                "delta_deliveries",
                "Board deltas queued to connections",
                &self.delta_deliveries,
            ),
            (
                "lagging_resyncs",
                "Slow connections sent a snapshot instead of a backlog",
                &self.lagging_resyncs,
            ),
            (
                "slow_disconnects",
                "Connections dropped for not reading",
                &self.slow_disconnects,
            ),
            (
                "auto_confirmed",
                "Families decided at a deadline by this gateway",
                &self.auto_confirmed,
            ),
        ];
        for (name, help, c) in counters {
            r.register(name, help, c.clone());
        }
        r.register("errors", "Refusals by code", self.errors.clone());
        r.register(
            "action_seconds",
            "Family actions by kind, frame read to reply queued",
            self.actions.clone(),
        );
        r.register(
            "engine_seconds",
            "Allocator (engine) calls by operation, call to answer",
            self.engine.clone(),
        );
        r.register(
            "delta_publish_seconds",
            "Per board delta: encode once and queue to every connection",
            self.delta_publish.clone(),
        );
        r.register(
            "delta_delivery_seconds",
            "Per delivery: board delta published to written on a connection",
            self.delta_delivery.clone(),
        );
        r.register(
            "deadline_seconds",
            "Per session deadline this gateway processed: auto-confirm of its families",
            self.deadline.clone(),
        );
        let gauges = [
            ("watchers", "Open WebSocket connections", &self.watchers),
            (
                "families_online",
                "Families with a connection here",
                &self.families_online,
            ),
            (
                "tcp_connections",
                "Open TCP connections (HTTP and WebSocket)",
                &self.tcp_connections,
            ),
            ("board_seq", "Last event seq broadcast", &self.board_seq),
        ];
        for (name, help, g) in gauges {
            r.register(name, help, g.clone());
        }
    }

    pub fn error(&self, code: ErrorCode) {
        self.errors
            .get_or_create(&CodeLabel {
                code: code_name(code),
            })
            .inc();
    }

    /// Records how long the hub took to answer one family action.
    pub fn action_took(&self, action: &'static str, d: Duration) {
        self.actions
            .get_or_create(&ActionLabel { action })
            .observe(d.as_secs_f64());
    }

    /// Records one allocator call.
    pub fn engine_took(&self, operation: &'static str, d: Duration) {
        self.engine
            .get_or_create(&OperationLabel { operation })
            .observe(d.as_secs_f64());
    }

    /// One delta encoded and queued to `receivers` connections in `took`.
    pub fn deltas_published(&self, receivers: usize, took: Duration) {
        self.deltas.inc();
        self.delta_deliveries.inc_by(receivers as u64);
        self.delta_publish.observe(took.as_secs_f64());
    }

    /// One delta written on one connection, `since` its publication.
    pub fn delta_delivered(&self, since: Duration) {
        self.delta_delivery.observe(since.as_secs_f64());
    }

    /// One session deadline processed: `decided` families in `took`.
    pub fn deadline_processed(&self, decided: usize, took: Duration) {
        self.auto_confirmed.inc_by(decided as u64);
        self.deadline.observe(took.as_secs_f64());
    }

    /// The OpenMetrics text, with the gauges read now.
    pub fn render(
        &self,
        watchers: usize,
        families_online: usize,
        seq: u64,
        tcp_open: usize,
    ) -> String {
        let as_gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.watchers.set(as_gauge(watchers as u64));
        self.families_online.set(as_gauge(families_online as u64));
        self.tcp_connections.set(as_gauge(tcp_open as u64));
        self.board_seq.set(as_gauge(seq));
        let mut s = String::new();
        // Writing to a String cannot fail; the library only forwards fmt errors.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}

/// The label of an action, its wire type (`docs/protocol.md`).
pub fn action_name(a: &Action) -> &'static str {
    match a {
        Action::Declare { .. } => "declare",
        Action::Edit { .. } => "edit",
        Action::SetList { .. } => "set_list",
        Action::Sync => "sync",
        Action::Confirm { .. } => "confirm",
        Action::Waive => "waive",
        Action::ApplySupplementary => "apply_supplementary",
    }
}

/// The wire name of a code, e.g. `unit_taken`.
pub fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
