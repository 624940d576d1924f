//! The selection state machine: decide an action against the rules, then apply the
//! resulting events.
//!
//! Deciding never changes state; applying an event is the only way state changes. So the
//! event log alone rebuilds the state ([`Selection::replay`]), and the embedded engine is
//! exactly this machine plus a journal. The Redis engine mirrors it in Lua.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use crate::domain::{Batch, BatchError, FamilyId, Session, SessionId, SessionKind, UnitId};
use crate::error_code::{ErrorCode, Rejection};
use crate::rules::{self, Phase, Stage, LIST_CAP};
use crate::supplementary;
use crate::time::Millis;

/// The two ordered lists a family keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    /// 预选 cart, edited in pre-selection.
    Cart,
    /// 我的意向, edited in formal selection.
    Intentions,
}

/// One edit of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Edit {
    Add,
    Remove,
    Up,
    Down,
    Top,
}

/// What a family asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// 我已阅读并同意声明.
    Declare { stage: Stage },
    Edit {
        list: ListKind,
        edit: Edit,
        unit: UnitId,
    },
    /// Replace the whole list with a new order (validated like single edits).
    SetList { list: ListKind, units: Vec<UnitId> },
    /// 同步预选房源: intentions := cart.
    Sync,
    /// 确认正选.
    Confirm { unit: UnitId },
    /// 主动放弃.
    Waive,
    /// 补选申请.
    ApplySupplementary,
}

/// How a family came by its unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum How {
    /// The family pressed 确认正选.
    Confirmed,
    /// The system chose at the deadline.
    Automatic,
}

/// Why a family ended a session with no unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NoUnitReason {
    /// It never accepted the formal declaration: its pre-selection is void.
    Absent,
    /// It entered formal selection but its intention list was empty (it had no
    /// pre-selection and chose nothing, or deleted every intention).
    NoIntentions,
    /// Every intention was taken by families that confirmed or ranked earlier.
    NoFreeIntention,
}

/// A family's final result for its current session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Selected { unit: UnitId, how: How, at: Millis },
    NoUnit { reason: NoUnitReason, at: Millis },
    Waived { at: Millis },
}

impl Outcome {
    pub fn unit(&self) -> Option<&UnitId> {
        match self {
            Outcome::Selected { unit, .. } => Some(unit),
            _ => None,
        }
    }
}

/// Everything that ever changes, one variant per kind of change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    BatchLoaded {
        batch: Batch,
    },
    Declared {
        family: FamilyId,
        stage: Stage,
    },
    /// A list after an edit, sync or set: always the whole new list.
    ListChanged {
        family: FamilyId,
        list: ListKind,
        units: Vec<UnitId>,
    },
    Selected {
        family: FamilyId,
        unit: UnitId,
        how: How,
    },
    NoUnit {
        family: FamilyId,
        reason: NoUnitReason,
    },
    Waived {
        family: FamilyId,
    },
    AppliedSupplementary {
        family: FamilyId,
    },
    /// Every family of the session has its outcome.
    SessionClosed {
        session: SessionId,
    },
    SupplementaryPublished {
        session: Session,
    },
}

impl EventKind {
    /// Whether the public board (hall screens, every phone) is told of this event.
    pub fn is_public(&self) -> bool {
        matches!(
            self,
            EventKind::BatchLoaded { .. }
                | EventKind::Selected { .. }
                | EventKind::SessionClosed { .. }
                | EventKind::SupplementaryPublished { .. }
        )
    }

    /// The family whose private channel is told of this event.
    pub fn family(&self) -> Option<&FamilyId> {
        match self {
            EventKind::Declared { family, .. }
            | EventKind::ListChanged { family, .. }
            | EventKind::Selected { family, .. }
            | EventKind::NoUnit { family, .. }
            | EventKind::Waived { family }
            | EventKind::AppliedSupplementary { family } => Some(family),
            _ => None,
        }
    }
}

/// One entry of a batch's event log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// 1, 2, 3, ... per batch, without gaps.
    pub seq: u64,
    /// Server time of the change.
    pub at: Millis,
    pub event: EventKind,
}

/// What changes for one family during a selection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyState {
    pub preselect_declared_at: Option<Millis>,
    pub formal_declared_at: Option<Millis>,
    pub cart: Vec<UnitId>,
    pub intentions: Vec<UnitId>,
    pub outcome: Option<Outcome>,
    pub applied_supplementary_at: Option<Millis>,
    /// Set when a supplementary session takes the family in.
    pub supplementary_session: Option<SessionId>,
}

/// Who holds a unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub family: FamilyId,
    pub how: How,
    pub at: Millis,
}

/// The whole state of one batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    batch: Batch,
    units: HashMap<UnitId, usize>,
    families: HashMap<FamilyId, usize>,
    states: Vec<FamilyState>,
    taken: HashMap<UnitId, Holder>,
    closed: Vec<SessionId>,
    seq: u64,
}

impl Selection {
    /// A fresh selection of a valid batch; `seq` is 0 until the first event is applied.
    pub fn new(batch: Batch) -> Result<Self, BatchError> {
        batch.validate()?;
        Ok(Self::of_valid(batch))
    }

    /// A selection of a batch that passed [`Batch::validate_structure`].
    fn of_valid(batch: Batch) -> Self {
        let units = batch
            .units
            .iter()
            .enumerate()
            .map(|(i, u)| (u.id.clone(), i))
            .collect();
        let families = batch
            .families
            .iter()
            .enumerate()
            .map(|(i, f)| (f.id.clone(), i))
            .collect();
        let states = vec![FamilyState::default(); batch.families.len()];
        Self {
            batch,
            units,
            families,
            states,
            taken: HashMap::new(),
            closed: Vec::new(),
            seq: 0,
        }
    }

    /// Rebuilds the state from a log that starts with `BatchLoaded`. The batch is held
    /// to [`Batch::validate_structure`], not to today's id rules: a log accepted when
    /// they were looser must still replay after an upgrade.
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> Result<Self, ReplayError> {
        let mut it = events.into_iter();
        let first = it.next().ok_or(ReplayError::Empty)?;
        let EventKind::BatchLoaded { batch } = &first.event else {
            return Err(ReplayError::NoBatch);
        };
        batch.validate_structure().map_err(ReplayError::Batch)?;
        let mut sel = Selection::of_valid(batch.clone());
        sel.seq = first.seq;
        for e in it {
            if e.seq != sel.seq + 1 {
                return Err(ReplayError::Gap {
                    expected: sel.seq + 1,
                    found: e.seq,
                });
            }
            sel.apply(e);
        }
        Ok(sel)
    }

    pub fn batch(&self) -> &Batch {
        &self.batch
    }
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// Family id -> its position in `batch().families`.
    pub fn family_index(&self) -> &HashMap<FamilyId, usize> {
        &self.families
    }
    pub fn taken(&self) -> &HashMap<UnitId, Holder> {
        &self.taken
    }
    pub fn closed_sessions(&self) -> &[SessionId] {
        &self.closed
    }
    pub fn state(&self, family: &FamilyId) -> Option<&FamilyState> {
        self.families.get(family).map(|&i| &self.states[i])
    }
    /// Every family with its state, in import order.
    pub fn family_states(&self) -> impl Iterator<Item = (&crate::domain::Family, &FamilyState)> {
        self.batch.families.iter().zip(self.states.iter())
    }

    /// The session a family currently selects in: its supplementary session once it
    /// has one, else its formal session.
    pub fn current_session(&self, family: &FamilyId) -> Option<&Session> {
        let i = *self.families.get(family)?;
        let sid = self.states[i]
            .supplementary_session
            .as_ref()
            .unwrap_or(&self.batch.families[i].session);
        self.batch.session(sid)
    }

    pub fn phase(&self, family: &FamilyId, t: Millis) -> Option<Phase> {
        let session = self.current_session(family)?;
        let state = self.state(family)?;
        Some(rules::phase_at(
            &self.batch,
            session,
            state.outcome.is_some(),
            t,
        ))
    }

    /// The supplementary application window of a family (from its formal session).
    pub fn supplementary_window(&self, family: &FamilyId) -> Option<(Millis, Millis)> {
        let f = self.batch.family(family)?;
        let own = self.batch.session(&f.session)?;
        rules::supplementary_window(&self.batch, own)
    }

    /// Decides an action of `family` at server time `now`: the events it causes, or why
    /// it is refused. Changes nothing.
    pub fn decide(
        &self,
        family: &FamilyId,
        action: &Action,
        now: Millis,
    ) -> Result<Vec<EventKind>, Rejection> {
        let &fi = self
            .families
            .get(family)
            .ok_or(Rejection::new(ErrorCode::UnknownFamily))?;
        let st = &self.states[fi];
        let session = self
            .current_session(family)
            .ok_or(Rejection::new(ErrorCode::UnknownSession))?;
        let phase = rules::phase_at(&self.batch, session, st.outcome.is_some(), now);

        // A final outcome answers every action but the supplementary application.
        if !matches!(action, Action::ApplySupplementary) {
            match &st.outcome {
                Some(Outcome::Selected { unit, .. }) => {
                    return Err(Rejection::with_unit(
                        ErrorCode::AlreadyHasUnit,
                        unit.clone(),
                    ))
                }
                Some(Outcome::Waived { .. }) => return Err(ErrorCode::Waived.into()),
                Some(Outcome::NoUnit { .. }) => return Err(ErrorCode::WindowClosed.into()),
                None => {}
            }
        }

        let fam = family.clone();
        match action {
            Action::Declare { stage } => {
                if phase != rules::declaration_phase(*stage) {
                    return Err(ErrorCode::WindowClosed.into());
                }
                let already = match stage {
                    Stage::Preselection => st.preselect_declared_at.is_some(),
                    Stage::Formal => st.formal_declared_at.is_some(),
                };
                // Accepting twice is harmless: the first acceptance time stands.
                if already {
                    return Ok(vec![]);
                }
                let mut events = vec![EventKind::Declared {
                    family: fam.clone(),
                    stage: *stage,
                }];
                // Entering formal selection syncs the pre-selection (guide §1: only a
                // family that does not take part loses it), so an idle family is
                // auto-assigned from the cart it ordered. 同步 then matters only after
                // edits. A supplementary session starts from an empty list: the
                // pre-selection belonged to the formal session.
                if *stage == Stage::Formal && session.kind == SessionKind::Formal {
                    events.extend(self.list_changed(
                        fam,
                        ListKind::Intentions,
                        &st.intentions,
                        st.cart.clone(),
                    ));
                }
                Ok(events)
            }
            Action::Edit { list, edit, unit } => {
                let current = self.check_list_access(st, *list, phase)?;
                let units = self.edited(fi, current, *edit, unit)?;
                Ok(self.list_changed(fam, *list, current, units))
            }
            Action::SetList { list, units } => {
                let current = self.check_list_access(st, *list, phase)?;
                self.validate_whole_list(fi, current, units)?;
                Ok(self.list_changed(fam, *list, current, units.clone()))
            }
            Action::Sync => {
                self.check_list_access(st, ListKind::Intentions, phase)?;
                Ok(self.list_changed(fam, ListKind::Intentions, &st.intentions, st.cart.clone()))
            }
            Action::Confirm { unit } => {
                if phase != Phase::Formal {
                    return Err(ErrorCode::WindowClosed.into());
                }
                if st.formal_declared_at.is_none() {
                    return Err(ErrorCode::DeclarationRequired.into());
                }
                if !self.units.contains_key(unit) {
                    return Err(ErrorCode::UnknownUnit.into());
                }
                if !st.intentions.contains(unit) {
                    return Err(Rejection::with_unit(
                        ErrorCode::NotInIntentions,
                        unit.clone(),
                    ));
                }
                if self.taken.contains_key(unit) {
                    return Err(Rejection::with_unit(ErrorCode::UnitTaken, unit.clone()));
                }
                Ok(vec![EventKind::Selected {
                    family: fam,
                    unit: unit.clone(),
                    how: How::Confirmed,
                }])
            }
            Action::Waive => {
                if phase == Phase::Done {
                    return Err(ErrorCode::WindowClosed.into());
                }
                Ok(vec![EventKind::Waived { family: fam }])
            }
            Action::ApplySupplementary => {
                if !matches!(st.outcome, Some(Outcome::NoUnit { .. })) {
                    return Err(ErrorCode::NotEligibleForSupplementary.into());
                }
                if st.applied_supplementary_at.is_some() {
                    return Err(ErrorCode::AlreadyApplied.into());
                }
                if !rules::within(self.supplementary_window(family), now) {
                    return Err(ErrorCode::WindowClosed.into());
                }
                Ok(vec![EventKind::AppliedSupplementary { family: fam }])
            }
        }
    }

    /// The list an edit may touch in this phase, or why not.
    fn check_list_access<'s>(
        &self,
        st: &'s FamilyState,
        list: ListKind,
        phase: Phase,
    ) -> Result<&'s Vec<UnitId>, Rejection> {
        let (needed, declared, current) = match list {
            ListKind::Cart => (Phase::Preselection, st.preselect_declared_at, &st.cart),
            ListKind::Intentions => (Phase::Formal, st.formal_declared_at, &st.intentions),
        };
        if phase != needed {
            return Err(ErrorCode::WindowClosed.into());
        }
        if declared.is_none() {
            return Err(ErrorCode::DeclarationRequired.into());
        }
        Ok(current)
    }

    /// Checks that a family may add `unit` to a list.
    fn check_addable(&self, fi: usize, unit: &UnitId) -> Result<(), Rejection> {
        let &ui = self
            .units
            .get(unit)
            .ok_or_else(|| Rejection::with_unit(ErrorCode::UnknownUnit, unit.clone()))?;
        let layout = &self.batch.units[ui].layout;
        if !self.batch.families[fi].eligible_layouts.contains(layout) {
            return Err(Rejection::with_unit(ErrorCode::NotEligible, unit.clone()));
        }
        if self.taken.contains_key(unit) {
            return Err(Rejection::with_unit(ErrorCode::UnitTaken, unit.clone()));
        }
        Ok(())
    }

    fn edited(
        &self,
        fi: usize,
        current: &[UnitId],
        edit: Edit,
        unit: &UnitId,
    ) -> Result<Vec<UnitId>, Rejection> {
        let mut units = current.to_vec();
        let pos = units.iter().position(|u| u == unit);
        match (edit, pos) {
            (Edit::Add, Some(_)) => {
                return Err(Rejection::with_unit(ErrorCode::AlreadyInList, unit.clone()))
            }
            (Edit::Add, None) => {
                self.check_addable(fi, unit)?;
                if units.len() >= LIST_CAP {
                    return Err(ErrorCode::ListFull.into());
                }
                units.push(unit.clone());
            }
            (_, None) => return Err(Rejection::with_unit(ErrorCode::NotInList, unit.clone())),
            (Edit::Remove, Some(i)) => {
                units.remove(i);
            }
            (Edit::Up, Some(i)) => {
                if i > 0 {
                    units.swap(i - 1, i);
                }
            }
            (Edit::Down, Some(i)) => {
                if i + 1 < units.len() {
                    units.swap(i, i + 1);
                }
            }
            (Edit::Top, Some(i)) => {
                let u = units.remove(i);
                units.insert(0, u);
            }
        }
        Ok(units)
    }

    /// A whole new order: at most five distinct units; units newly added obey the rules
    /// of Add, units already in the list may stay even if taken since.
    fn validate_whole_list(
        &self,
        fi: usize,
        current: &[UnitId],
        units: &[UnitId],
    ) -> Result<(), Rejection> {
        if units.len() > LIST_CAP {
            return Err(ErrorCode::InvalidList.into());
        }
        for (i, u) in units.iter().enumerate() {
            if units[..i].contains(u) {
                return Err(Rejection::with_unit(ErrorCode::InvalidList, u.clone()));
            }
            if !current.contains(u) {
                self.check_addable(fi, u)?;
            }
        }
        Ok(())
    }

    fn list_changed(
        &self,
        family: FamilyId,
        list: ListKind,
        current: &[UnitId],
        units: Vec<UnitId>,
    ) -> Vec<EventKind> {
        // No event when nothing changes (e.g. moving the first unit up).
        if current == units.as_slice() {
            return vec![];
        }
        vec![EventKind::ListChanged {
            family,
            list,
            units,
        }]
    }

    /// Decides the next chunk of at most `max` families of `session` at its deadline,
    /// in rank order: the first intention no other family holds, else no unit. Families
    /// that already have an outcome are skipped, so calling again never repeats work:
    /// the last call returns `SessionClosed` (once), later calls return nothing.
    pub fn close_session_step(
        &self,
        session: &SessionId,
        now: Millis,
        max: usize,
    ) -> Result<Vec<EventKind>, Rejection> {
        let s = self
            .batch
            .session(session)
            .ok_or(Rejection::new(ErrorCode::UnknownSession))?;
        if now < s.deadline() {
            return Err(ErrorCode::TooEarly.into());
        }
        if self.closed.contains(session) {
            return Ok(vec![]);
        }
        let mut events = Vec::new();
        let mut chosen: Vec<&UnitId> = Vec::new();
        let mut pending = s.families.iter().filter(|f| {
            let i = self.families[*f];
            let st = &self.states[i];
            st.outcome.is_none() && self.current_session(f).map(|c| &c.id) == Some(session)
        });
        for family in pending.by_ref().take(max) {
            let st = &self.states[self.families[family]];
            if st.formal_declared_at.is_none() {
                events.push(EventKind::NoUnit {
                    family: family.clone(),
                    reason: NoUnitReason::Absent,
                });
                continue;
            }
            let free = st
                .intentions
                .iter()
                .find(|u| !self.taken.contains_key(*u) && !chosen.contains(u));
            match free {
                None if st.intentions.is_empty() => events.push(EventKind::NoUnit {
                    family: family.clone(),
                    reason: NoUnitReason::NoIntentions,
                }),
                Some(unit) => {
                    chosen.push(unit);
                    events.push(EventKind::Selected {
                        family: family.clone(),
                        unit: unit.clone(),
                        how: How::Automatic,
                    });
                }
                None => events.push(EventKind::NoUnit {
                    family: family.clone(),
                    reason: NoUnitReason::NoFreeIntention,
                }),
            }
        }
        if pending.next().is_none() {
            events.push(EventKind::SessionClosed {
                session: session.clone(),
            });
        }
        Ok(events)
    }

    /// Checks an operator's supplementary session at server time `now`: a new id, kind
    /// supplementary with a window, listed families in rank order, each of which applied
    /// and has no unit, then the timing rules of [`supplementary::check_timing`].
    pub fn decide_publish(
        &self,
        session: &Session,
        now: Millis,
    ) -> Result<Vec<EventKind>, Rejection> {
        if session.kind != SessionKind::Supplementary || session.window_ms <= 0 {
            return Err(ErrorCode::InvalidSession.into());
        }
        if self.batch.session(&session.id).is_some() {
            return Err(ErrorCode::Conflict.into());
        }
        let mut last_rank = 0;
        for f in &session.families {
            let &i = self
                .families
                .get(f)
                .ok_or(Rejection::new(ErrorCode::UnknownFamily))?;
            if !supplementary::awaits_session(&self.states[i]) {
                return Err(ErrorCode::NotEligibleForSupplementary.into());
            }
            let rank = self.batch.families[i].rank;
            if rank <= last_rank {
                return Err(ErrorCode::InvalidList.into());
            }
            last_rank = rank;
        }
        supplementary::check_timing(&self.batch, session, now)?;
        Ok(vec![EventKind::SupplementaryPublished {
            session: session.clone(),
        }])
    }

    /// Applies one event. Events come from [`Selection::decide`] and friends, so they
    /// are trusted: an event naming an unknown family is ignored rather than a panic.
    pub fn apply(&mut self, e: &Event) {
        self.seq = e.seq;
        let at = e.at;
        let idx = |fams: &HashMap<FamilyId, usize>, f: &FamilyId| fams.get(f).copied();
        match &e.event {
            EventKind::BatchLoaded { .. } => {}
            EventKind::Declared { family, stage } => {
                if let Some(i) = idx(&self.families, family) {
                    let st = &mut self.states[i];
                    match stage {
                        Stage::Preselection => st.preselect_declared_at = Some(at),
                        Stage::Formal => st.formal_declared_at = Some(at),
                    }
                }
            }
            EventKind::ListChanged {
                family,
                list,
                units,
            } => {
                if let Some(i) = idx(&self.families, family) {
                    let st = &mut self.states[i];
                    match list {
                        ListKind::Cart => st.cart = units.clone(),
                        ListKind::Intentions => st.intentions = units.clone(),
                    }
                }
            }
            EventKind::Selected { family, unit, how } => {
                if let Some(i) = idx(&self.families, family) {
                    self.states[i].outcome = Some(Outcome::Selected {
                        unit: unit.clone(),
                        how: *how,
                        at,
                    });
                    self.taken.insert(
                        unit.clone(),
                        Holder {
                            family: family.clone(),
                            how: *how,
                            at,
                        },
                    );
                }
            }
            EventKind::NoUnit { family, reason } => {
                if let Some(i) = idx(&self.families, family) {
                    self.states[i].outcome = Some(Outcome::NoUnit {
                        reason: *reason,
                        at,
                    });
                }
            }
            EventKind::Waived { family } => {
                if let Some(i) = idx(&self.families, family) {
                    self.states[i].outcome = Some(Outcome::Waived { at });
                }
            }
            EventKind::AppliedSupplementary { family } => {
                if let Some(i) = idx(&self.families, family) {
                    self.states[i].applied_supplementary_at = Some(at);
                }
            }
            EventKind::SessionClosed { session } => {
                if !self.closed.contains(session) {
                    self.closed.push(session.clone());
                }
            }
            EventKind::SupplementaryPublished { session } => {
                for f in &session.families {
                    if let Some(i) = idx(&self.families, f) {
                        let st = &mut self.states[i];
                        st.supplementary_session = Some(session.id.clone());
                        st.outcome = None;
                        st.formal_declared_at = None;
                        st.intentions.clear();
                    }
                }
                self.batch.sessions.push(session.clone());
            }
        }
    }
}

/// Why an event log does not rebuild a state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplayError {
    #[error("the event log is empty")]
    Empty,
    #[error("the event log does not start with batch_loaded")]
    NoBatch,
    #[error("the logged batch is invalid: {0}")]
    Batch(BatchError),
    #[error("the event log has a gap: expected seq {expected}, found {found}")]
    Gap { expected: u64, found: u64 },
}
