//! xuanfang-loadtest: the bundled load tool.
//!
//! - [`cli`]: scenarios and options.
//! - [`scenario`]: the parent's run: batch set-up, plans, workers, audit, report.
//! - [`workers`]: worker processes (one process holds at most ~20,000 sockets).
//! - [`client`]: one simulated hall screen, phone or family, and its board chain.
//! - [`clock`]: server clock offset from ping/pong.
//! - [`metrics`]: HDR histograms and counters, their wire form and merging.
//! - [`operator`]: the operator API, batch generation and tokens.
//! - [`audit`]: the consistency audit; [`report`]: summary, JSON report, thresholds.

pub mod audit;
pub mod cli;
pub mod client;
pub mod clock;
pub mod metrics;
pub mod operator;
pub mod report;
pub mod scenario;
pub mod workers;
