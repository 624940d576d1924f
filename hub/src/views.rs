//! Views built from state: what the board, a family and the catalog show.
//!
//! Both engines keep the same pieces (batch, family states, holders, closed sessions),
//! so both build their answers with these functions.

use std::collections::HashMap;

use crate::domain::{Batch, Family, FamilyId, Session, SessionId, UnitId};
use crate::protocol::{Catalog, FamilyView, SessionInfo, TakenUnit};
use crate::rules;
use crate::selection::{FamilyState, Holder, Selection};
use crate::time::Millis;

pub fn session_info(batch: &Batch, s: &Session, closed: bool) -> SessionInfo {
    session_info_by(s, closed, |f| batch.family(f).map(|f| f.rank))
}

/// [`session_info`] with the ranks looked up through `index` (family -> position in
/// `batch.families`): a family view is built on every `ok`, and a search of the
/// families for each would cost a large session thousands of comparisons per action.
pub fn session_info_indexed(
    batch: &Batch,
    index: &HashMap<FamilyId, usize>,
    s: &Session,
    closed: bool,
) -> SessionInfo {
    session_info_by(s, closed, |f| {
        index
            .get(f)
            .and_then(|&i| batch.families.get(i))
            .map(|f| f.rank)
    })
}

fn session_info_by(
    s: &Session,
    closed: bool,
    rank_of: impl Fn(&FamilyId) -> Option<u32>,
) -> SessionInfo {
    // Sessions list their families in rank order (checked by `Batch::validate`), so the
    // ends give the range without scanning every family.
    let rank = |f: Option<&FamilyId>| f.and_then(&rank_of).unwrap_or(0);
    SessionInfo {
        id: s.id.clone(),
        kind: s.kind,
        start: s.start,
        deadline: s.deadline(),
        families: s.families.len() as u32,
        first_rank: rank(s.families.first()),
        last_rank: rank(s.families.last()),
        closed,
    }
}

/// Every session's info. Linear in sessions + families: ranks are looked up in one map,
/// not by a search of the families per session (that was sessions × families: seconds
/// for a large batch, on an anonymous endpoint).
pub fn sessions(batch: &Batch, closed: &[SessionId]) -> Vec<SessionInfo> {
    let ranks: std::collections::HashMap<&crate::domain::FamilyId, u32> =
        batch.families.iter().map(|f| (&f.id, f.rank)).collect();
    let closed: std::collections::HashSet<&SessionId> = closed.iter().collect();
    let rank =
        |f: Option<&crate::domain::FamilyId>| f.and_then(|f| ranks.get(f)).copied().unwrap_or(0);
    let mut v: Vec<_> = batch
        .sessions
        .iter()
        .map(|s| SessionInfo {
            id: s.id.clone(),
            kind: s.kind,
            start: s.start,
            deadline: s.deadline(),
            families: s.families.len() as u32,
            first_rank: rank(s.families.first()),
            last_rank: rank(s.families.last()),
            closed: closed.contains(&s.id),
        })
        .collect();
    v.sort_by_key(|s| (s.start, s.first_rank));
    v
}

pub fn catalog(batch: &Batch, closed: &[SessionId]) -> Catalog {
    Catalog {
        batch: batch.id.clone(),
        name: batch.name.clone(),
        preselect_start: batch.preselect_start,
        preselect_end: batch.preselect_end,
        units: batch.units.clone(),
        sessions: sessions(batch, closed),
        list_cap: crate::rules::LIST_CAP,
    }
}

/// A taken unit as the board shows it, with its holder's masked name and rank.
fn taken_with(unit: &UnitId, holder: &Holder, family: Option<&Family>) -> TakenUnit {
    TakenUnit {
        unit: unit.clone(),
        family_name: family.map(|f| f.name.clone()).unwrap_or_default(),
        rank: family.map(|f| f.rank).unwrap_or(0),
        how: holder.how,
        at: holder.at,
    }
}

pub fn taken_unit(batch: &Batch, unit: &UnitId, holder: &Holder) -> TakenUnit {
    taken_with(unit, holder, batch.family(&holder.family))
}

/// Every taken unit, in the order they were taken.
pub fn taken(batch: &Batch, holders: &HashMap<UnitId, Holder>) -> Vec<TakenUnit> {
    let families: HashMap<_, _> = batch.families.iter().map(|f| (&f.id, f)).collect();
    let mut v: Vec<_> = holders
        .iter()
        .map(|(u, h)| taken_with(u, h, families.get(&h.family).copied()))
        .collect();
    v.sort_by_key(|t| (t.at, t.rank));
    v
}

/// What a family view is read at: the server time, and the batch's event seq (every
/// change of a family's state is an event, so a view at a higher seq is never older).
#[derive(Clone, Copy, Debug)]
pub struct ReadAt {
    pub now: Millis,
    pub seq: u64,
}

/// The family's view; `index` maps family ids to their position in `batch.families`.
pub fn family_view(
    batch: &Batch,
    index: &HashMap<FamilyId, usize>,
    family: &Family,
    state: &FamilyState,
    closed: &[SessionId],
    at: ReadAt,
) -> Option<FamilyView> {
    let current = state
        .supplementary_session
        .as_ref()
        .unwrap_or(&family.session);
    let session = batch.session(current)?;
    let own = batch.session(&family.session)?;
    let now = at.now;
    Some(FamilyView {
        family: family.id.clone(),
        name: family.name.clone(),
        rank: family.rank,
        eligible_layouts: family.eligible_layouts.clone(),
        session: session_info_indexed(batch, index, session, closed.contains(&session.id)),
        phase: rules::phase_at(batch, session, state.outcome.is_some(), now),
        preselect_start: batch.preselect_start,
        preselect_end: batch.preselect_end,
        preselect_declared_at: state.preselect_declared_at,
        formal_declared_at: state.formal_declared_at,
        cart: state.cart.clone(),
        intentions: state.intentions.clone(),
        outcome: state.outcome.clone(),
        supplementary_window: rules::supplementary_window(batch, own),
        applied_supplementary_at: state.applied_supplementary_at,
        server_time: now,
        seq: at.seq,
    })
}

impl Selection {
    /// The family's view at `now` (and at this selection's seq).
    pub fn family_view(&self, family: &FamilyId, now: Millis) -> Option<FamilyView> {
        let f = self
            .batch()
            .families
            .get(*self.family_index().get(family)?)?;
        let st = self.state(family)?;
        let at = ReadAt {
            now,
            seq: self.seq(),
        };
        family_view(
            self.batch(),
            self.family_index(),
            f,
            st,
            self.closed_sessions(),
            at,
        )
    }
}
