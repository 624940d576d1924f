//! xuanfang-gateway: what phones and hall screens connect to.
//!
//! - [`server`]: the router; [`listen`]: the accept loop (timeouts, connection cap,
//!   graceful shutdown); [`app`]: shared state of one process.
//! - [`connection`]: one WebSocket's life (welcome, deltas, family channel, actions).
//! - [`fanout`]: follows the batch's event stream and broadcasts deltas; resume.
//! - [`deadline`]: auto-confirm at each session deadline, exactly once across gateways.
//! - [`auth`]: JWT of the identity platform (and [`auth::expiry`]: a socket's token
//!   warned and closed on time); [`token_refresh`]: where pages get a new token;
//!   [`limits`]: governor rate limits;
//!   [`client_ip`]: the client's address, also behind trusted proxies.
//! - [`api`], [`ops`], [`import_api`], [`templates`]: HTTP API for families and
//!   operators (the upload templates in `templates`).
//! - [`web`]: the embedded web client; [`demo`]: demo batch, login links, bots.
//! - [`metrics`]: Prometheus metrics (`prometheus-client`), engine calls timed;
//!   [`openapi`]: the OpenAPI document built from the route list;
//!   [`frames`]: encode once, send to many.
//! - [`reconcile`]: the payment reconciliation sweep; [`refunds`]: refunds of payments
//!   the hub did not take, in one ledger per deployment; [`vendors`]: the providers `[payment]`
//!   and `[face]` name.

pub mod api;
pub mod app;
pub mod auth;
pub mod blobs;
pub mod caller;
pub mod client_ip;
pub mod config;
pub mod connection;
pub mod deadline;
pub mod demo;
pub mod fanout;
pub mod frames;
pub mod http_error;
pub mod import_api;
pub mod limits;
pub mod listen;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod providers;
pub mod reconcile;
pub mod refunds;
pub mod server;
pub mod signing_api;
pub mod templates;
pub mod token_refresh;
pub mod vendors;
pub mod web;
