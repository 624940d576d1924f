//! xuanfang-hub: the shared core of the xuanfang selection hub.
//!
//! - [`domain`]: batches, units, families, sessions (static data).
//! - [`time`]: server time and clocks; clients never decide a window.
//! - [`rules`]: phases and windows as pure functions of time.
//! - [`selection`]: the state machine (decide, then apply events); the event log
//!   rebuilds it.
//! - [`supplementary`]: 补选 — who waits, session naming, when it may start.
//! - [`signing`]: the online signing of a selected unit (网上签约), its own state machine
//!   with its own events and log; [`blob`]: references to stored files it records.
//! - [`error_code`]: every refusal with a stable code and zh/en messages.
//! - [`protocol`]: client/server messages in JSON and MessagePack.
//! - [`views`]: board, family and catalog views built from a selection.
//! - [`import`]: units and families from CSV/XLSX; [`demo`]: realistic demo batches.
//!
//! With the `openapi` feature, the types the gateway's HTTP API carries derive
//! `utoipa::ToSchema` (its `/api/openapi.json`); without it the crate has no utoipa.

pub mod blob;
pub mod demo;
pub mod domain;
pub mod error_code;
pub mod import;

pub mod protocol;
pub mod rules;
pub mod selection;
pub mod signing;
pub mod supplementary;
pub mod time;
pub mod views;

pub use domain::{
    Batch, BatchId, Family, FamilyId, Layout, OperatorId, Session, SessionId, SessionKind, Unit,
    UnitId,
};
pub use error_code::{ErrorCode, Rejection};
pub use rules::{Phase, Stage};
pub use selection::{Action, Edit, Event, EventKind, How, ListKind, Outcome, Selection};
pub use signing::{SigningAction, SigningBook, SigningEntry, SigningEvent, SigningRecord};
pub use time::{Clock, ManualClock, Millis, SystemClock};
