//! xuanfang-loadtest: the bundled load tool.
//!
//! - [`cli`]: scenarios and options.
//! - [`scenario`]: the parent's run: batch set-up, plans, workers, audit, report.
//! - [`workers`]: worker processes (one process holds at most ~20,000 sockets).
//! - [`client`]: one simulated hall screen, phone or family, and its board chain.
//! - [`clock`]: server clock offset from ping/pong.
//! - [`ws`]: the WebSocket client side (handshake, frames) over a plain byte buffer.
//! - [`readers`]: reader threads that follow the board for thousands of sockets each.
//! - [`frame`]: server frames read only as far as the measurement needs (deltas lite).
//! - [`usage`]: the tool's own CPU (per process, per thread) and its saturation.
//! - [`floor`]: the raw-socket floor: one writer, N loopback TCP pairs.
//! - [`metrics`]: HDR histograms and counters, their wire form and merging.
//! - [`operator`]: the operator API, batch generation and tokens.
//! - [`audit`]: the consistency audit; [`report`]: summary, JSON report, thresholds.
//! - [`timeline`]: the run per second; [`html`]: the self-contained HTML report.

pub mod audit;
pub mod cli;
pub mod client;
pub mod clock;
pub mod floor;
pub mod frame;
pub mod html;
pub mod metrics;
pub mod operator;
pub mod readers;
pub mod report;
pub mod scenario;
pub mod stall;
pub mod timeline;
pub mod usage;
pub mod workers;
pub mod ws;
