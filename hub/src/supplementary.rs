//! 补选 (supplementary selection): who waits for a session, what the next one is called,
//! and when an operator may schedule it. Decided here once; the engines enforce it
//! (`Selection::decide_publish`, the Redis engine's `publish_supplementary.lua`) and the
//! gateway only asks.

use std::collections::{HashMap, HashSet};

use crate::domain::{Batch, FamilyId, Session, SessionId, SessionKind};
use crate::error_code::ErrorCode;
use crate::rules;
use crate::selection::{FamilyState, Outcome};
use crate::time::Millis;

/// Whether a family waits for a supplementary session: it applied, got no unit and has
/// no supplementary session yet.
pub fn awaits_session(st: &FamilyState) -> bool {
    st.applied_supplementary_at.is_some()
        && st.supplementary_session.is_none()
        && matches!(st.outcome, Some(Outcome::NoUnit { .. }))
}

/// The id of the next supplementary session: 补选1, 补选2, ... (the first one unused).
pub fn next_session_id(batch: &Batch) -> SessionId {
    let n = batch
        .sessions
        .iter()
        .filter(|s| s.kind == SessionKind::Supplementary)
        .count();
    (n + 1..)
        .map(|i| SessionId(format!("补选{i}")))
        .find(|id| batch.session(id).is_none())
        .expect("an unused id")
}

/// The session an operator asks for: `families` (default: every family waiting), in
/// rank order. `NothingToSchedule` when there is nobody.
pub fn plan<'a>(
    batch: &Batch,
    states: impl IntoIterator<Item = (&'a crate::domain::Family, &'a FamilyState)>,
    start: Millis,
    window_ms: i64,
    families: Option<Vec<FamilyId>>,
) -> Result<Session, ErrorCode> {
    let mut ranked: Vec<(u32, FamilyId)> = match families {
        Some(list) => {
            // One map, not a search per family: a list may hold thousands.
            let ranks: HashMap<&FamilyId, u32> =
                batch.families.iter().map(|f| (&f.id, f.rank)).collect();
            list.into_iter()
                .map(|f| (ranks.get(&f).copied().unwrap_or(u32::MAX), f))
                .collect()
        }
        None => states
            .into_iter()
            .filter(|(_, st)| awaits_session(st))
            .map(|(f, _)| (f.rank, f.id.clone()))
            .collect(),
    };
    if ranked.is_empty() {
        return Err(ErrorCode::NothingToSchedule);
    }
    ranked.sort_by_key(|(rank, _)| *rank);
    Ok(Session {
        id: next_session_id(batch),
        kind: SessionKind::Supplementary,
        start,
        window_ms,
        families: ranked.into_iter().map(|(_, f)| f).collect(),
    })
}

/// The earliest start for a supplementary session of `families`: applications of a
/// family's day close when that day's last formal session ends, and 补选 is announced
/// after that (guide §2.5). `None` when no listed family has an application window.
pub fn earliest_start(batch: &Batch, families: &[FamilyId]) -> Option<Millis> {
    // Linear: the families' own sessions first (a set), then one window per session.
    let listed: HashSet<&FamilyId> = families.iter().collect();
    let own: HashSet<&SessionId> = batch
        .families
        .iter()
        .filter(|f| listed.contains(&f.id))
        .map(|f| &f.session)
        .collect();
    batch
        .sessions
        .iter()
        .filter(|s| own.contains(&s.id))
        .filter_map(|s| rules::supplementary_window(batch, s))
        .map(|(_, until)| until)
        .max()
}

/// Whether the session's window overlaps a formal session's.
pub fn overlaps_formal(batch: &Batch, session: &Session) -> bool {
    let (a, b) = (session.start, session.deadline());
    batch
        .sessions
        .iter()
        .filter(|s| s.kind == SessionKind::Formal)
        .any(|s| s.start < b && a < s.deadline())
}

/// The timing rules of a supplementary session at server time `now`: not in the past,
/// not before its families' applications close, not during a formal session.
pub fn check_timing(batch: &Batch, session: &Session, now: Millis) -> Result<(), ErrorCode> {
    let too_early = earliest_start(batch, &session.families).is_some_and(|e| session.start < e);
    if session.start < now || too_early || overlaps_formal(batch, session) {
        return Err(ErrorCode::InvalidSession);
    }
    Ok(())
}
