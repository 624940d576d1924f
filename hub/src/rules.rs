//! Selection rules as pure functions of server time and state.
//!
//! Phases, what each phase allows, and the supplementary window. The state machine
//! that applies them lives in [`crate::selection`]; the Redis engine's Lua scripts
//! implement the same rules and are held to them by the allocator's conformance suite.

use serde::{Deserialize, Serialize};

use crate::domain::{Batch, Session, SessionKind};
use crate::time::Millis;

/// The cart (预选) and the intention list (我的意向) hold at most this many units.
pub const LIST_CAP: usize = 5;

/// Where a family stands at a given server time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Pre-selection has not opened yet.
    BeforePreselection,
    /// 预选: the cart may be edited.
    Preselection,
    /// Pre-selection has closed and the family's session has not started.
    Waiting,
    /// 正选: from session start (inclusive) to deadline (exclusive).
    Formal,
    /// The family has a result, or its window has passed.
    Done,
}

/// Which declaration (声明) a family accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Preselection,
    Formal,
}

/// The phase of a family whose current session is `session`, at server time `t`,
/// given whether it already has a final outcome.
pub fn phase_at(batch: &Batch, session: &Session, has_outcome: bool, t: Millis) -> Phase {
    if has_outcome || t >= session.deadline() {
        return Phase::Done;
    }
    if t >= session.start {
        return Phase::Formal;
    }
    if session.kind == SessionKind::Supplementary {
        return Phase::Waiting;
    }
    if t < batch.preselect_start {
        return Phase::BeforePreselection;
    }
    if batch.preselect_end.is_some_and(|end| t >= end) {
        return Phase::Waiting;
    }
    Phase::Preselection
}

/// The phase a declaration of `stage` must be made in.
pub fn declaration_phase(stage: Stage) -> Phase {
    match stage {
        Stage::Preselection => Phase::Preselection,
        Stage::Formal => Phase::Formal,
    }
}

/// The supplementary application window (补选申请) of a family whose formal session is
/// `own`: from that session's deadline until the last formal session of the same local
/// day ends. `None` when no such instant exists (own session is the day's last).
pub fn supplementary_window(batch: &Batch, own: &Session) -> Option<(Millis, Millis)> {
    let from = own.deadline();
    let day = own.start.local_day(batch.utc_offset_minutes);
    let until = batch
        .sessions
        .iter()
        .filter(|s| s.kind == SessionKind::Formal)
        .filter(|s| s.start.local_day(batch.utc_offset_minutes) == day)
        .map(Session::deadline)
        .max()?;
    (until > from).then_some((from, until))
}

/// Whether `t` lies in the half-open window.
pub fn within(window: Option<(Millis, Millis)>, t: Millis) -> bool {
    window.is_some_and(|(from, until)| from <= t && t < until)
}
