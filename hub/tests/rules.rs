//! The selection rules as a specification: each test name states one rule of the guide
//! (or of MISSION.md) and the test holds `rules.rs` and `selection.rs` to it.
//!
//! Every refusal is also checked to change nothing (see [`World::refused`]), and every
//! scenario's event log is replayed and compared with the live state.

use proptest::prelude::*;
use xuanfang_hub::domain::DEFAULT_WINDOW_MS;
use xuanfang_hub::rules::{self, LIST_CAP};
use xuanfang_hub::selection::{FamilyState, NoUnitReason, ReplayError};
use xuanfang_hub::{
    Action, Batch, BatchId, Edit, ErrorCode, Event, EventKind, Family, FamilyId, How, Layout,
    ListKind, Millis, Outcome, Phase, Rejection, Selection, Session, SessionId, SessionKind, Stage,
    Unit, UnitId,
};

const MIN: i64 = 60_000;
const DAY: i64 = 86_400_000;
/// 2025-06-07 09:00 Beijing time (01:00 UTC).
const T0: i64 = 1_749_258_000_000;
const W: i64 = DEFAULT_WINDOW_MS;

const ONE: &str = "一房一厅";
const TWO: &str = "两房一厅";
const THREE: &str = "三房一厅";

fn t(ms: i64) -> Millis {
    Millis(ms)
}
fn f(id: &str) -> FamilyId {
    FamilyId::new(id)
}
fn u(id: &str) -> UnitId {
    UnitId::new(id)
}
fn s(id: &str) -> SessionId {
    SessionId::new(id)
}

fn unit(id: &str, layout: &str) -> Unit {
    Unit {
        id: u(id),
        building: "1栋".into(),
        number: id.into(),
        floor: 5,
        layout: Layout::new(layout),
        area: 50.0,
        orientation: "南".into(),
        rent: 1500.0,
    }
}

fn family(id: &str, rank: u32, session: &str, layouts: &[&str]) -> Family {
    Family {
        id: f(id),
        name: format!("张*{rank}"),
        rank,
        session: s(session),
        eligible_layouts: layouts.iter().map(|l| Layout::new(*l)).collect(),
    }
}

fn session(id: &str, start: i64, families: &[&str]) -> Session {
    Session {
        id: s(id),
        kind: SessionKind::Formal,
        start: t(start),
        window_ms: W,
        families: families.iter().map(|x| f(x)).collect(),
    }
}

/// S1 (F1..F3) at 09:00, S2 (F4) at 09:05, S3 (F5) at 09:00 the next day.
/// U1..U6 are 一房一厅, U7..U8 两房一厅, U9 三房一厅. Pre-selection opens a day early.
fn batch() -> Batch {
    let mut units: Vec<Unit> = (1..=6).map(|i| unit(&format!("U{i}"), ONE)).collect();
    units.push(unit("U7", TWO));
    units.push(unit("U8", TWO));
    units.push(unit("U9", THREE));
    Batch {
        id: BatchId::new("b"),
        name: "测试".into(),
        preselect_start: t(T0 - DAY),
        preselect_end: None,
        utc_offset_minutes: 480,
        units,
        families: vec![
            family("F1", 1, "S1", &[ONE, TWO]),
            family("F2", 2, "S1", &[ONE, TWO]),
            family("F3", 3, "S1", &[ONE]),
            family("F4", 4, "S2", &[ONE, TWO]),
            family("F5", 5, "S3", &[ONE]),
        ],
        sessions: vec![
            session("S1", T0, &["F1", "F2", "F3"]),
            session("S2", T0 + 5 * MIN, &["F4"]),
            session("S3", T0 + DAY, &["F5"]),
        ],
    }
}

/// Times around the fixture.
const PRE: i64 = T0 - DAY + 1_000; // inside pre-selection
const S1: i64 = T0;
const D1: i64 = T0 + W;
const S2: i64 = T0 + 5 * MIN;
const D2: i64 = S2 + W;

/// A selection with its event log, driven the way an engine drives it: decide, then
/// append and apply the events.
struct World {
    sel: Selection,
    log: Vec<Event>,
}

impl World {
    fn new(b: Batch) -> Self {
        let mut w = World {
            sel: Selection::new(b.clone()).expect("fixture is valid"),
            log: Vec::new(),
        };
        w.append(vec![EventKind::BatchLoaded { batch: b }], t(0));
        w
    }

    fn append(&mut self, events: Vec<EventKind>, at: Millis) {
        for event in events {
            let e = Event {
                seq: self.sel.seq() + 1,
                at,
                event,
            };
            self.sel.apply(&e);
            self.log.push(e);
        }
    }

    fn act(&mut self, fam: &str, a: Action, at: i64) -> Result<Vec<EventKind>, Rejection> {
        let events = self.sel.decide(&f(fam), &a, t(at))?;
        self.append(events.clone(), t(at));
        Ok(events)
    }

    /// The action must succeed.
    fn ok(&mut self, fam: &str, a: Action, at: i64) -> Vec<EventKind> {
        let dbg = format!("{fam} {a:?} at {at}");
        self.act(fam, a, at)
            .unwrap_or_else(|r| panic!("{dbg} refused: {r:?}"))
    }

    /// The action must be refused, and the refusal must change nothing.
    fn refused(&mut self, fam: &str, a: Action, at: i64) -> Rejection {
        let before = self.sel.clone();
        let dbg = format!("{fam} {a:?} at {at}");
        let r = match self.act(fam, a, at) {
            Err(r) => r,
            Ok(ev) => panic!("{dbg} was accepted: {ev:?}"),
        };
        assert_eq!(self.sel, before, "a refusal changed the state");
        r
    }

    fn code(&mut self, fam: &str, a: Action, at: i64) -> ErrorCode {
        self.refused(fam, a, at).code
    }

    /// Auto-confirms `session` at `at` in chunks of `chunk`, returning every event.
    fn close(&mut self, session: &str, at: i64, chunk: usize) -> Vec<EventKind> {
        let mut all = Vec::new();
        for _ in 0..10_000 {
            let step = self
                .sel
                .close_session_step(&s(session), t(at), chunk)
                .expect("close step");
            if step.is_empty() {
                break;
            }
            all.extend(step.clone());
            self.append(step, t(at));
        }
        all
    }

    fn state(&self, fam: &str) -> &FamilyState {
        self.sel.state(&f(fam)).expect("known family")
    }

    fn outcome(&self, fam: &str) -> Option<Outcome> {
        self.state(fam).outcome.clone()
    }

    fn phase(&self, fam: &str, at: i64) -> Phase {
        self.sel.phase(&f(fam), t(at)).expect("known family")
    }

    /// Declares for pre-selection and fills the cart.
    fn preselect(&mut self, fam: &str, units: &[&str]) {
        self.ok(fam, declare(Stage::Preselection), PRE);
        for x in units {
            self.ok(fam, add(ListKind::Cart, x), PRE);
        }
    }

    /// Declares for formal selection at `at` and sets the intentions.
    fn enter_formal(&mut self, fam: &str, at: i64, units: &[&str]) {
        self.ok(fam, declare(Stage::Formal), at);
        self.ok(fam, set(ListKind::Intentions, units), at);
    }

    /// The log replays to the live state.
    fn assert_replays(&self) {
        let replayed = Selection::replay(&self.log).expect("log replays");
        assert_eq!(replayed, self.sel);
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Every scenario doubles as a replay test, unless it already failed.
        if !std::thread::panicking() {
            self.assert_replays();
        }
    }
}

fn declare(stage: Stage) -> Action {
    Action::Declare { stage }
}
fn add(list: ListKind, unit: &str) -> Action {
    edit(list, Edit::Add, unit)
}
fn edit(list: ListKind, edit: Edit, unit: &str) -> Action {
    Action::Edit {
        list,
        edit,
        unit: u(unit),
    }
}
fn set(list: ListKind, units: &[&str]) -> Action {
    Action::SetList {
        list,
        units: units.iter().map(|x| u(x)).collect(),
    }
}
fn confirm(unit: &str) -> Action {
    Action::Confirm { unit: u(unit) }
}
fn ids(v: &[UnitId]) -> Vec<&str> {
    v.iter().map(UnitId::as_str).collect()
}

use ListKind::{Cart, Intentions};

// ===========================================================================
// Phases

#[test]
fn phase_is_before_preselection_until_preselect_start_exclusive() {
    let w = World::new(batch());
    assert_eq!(w.phase("F1", T0 - DAY - 1), Phase::BeforePreselection);
    assert_eq!(w.phase("F1", T0 - DAY), Phase::Preselection);
    assert_eq!(w.phase("F1", T0 - DAY + 1), Phase::Preselection);
}

#[test]
fn phase_is_preselection_until_own_session_start_exclusive() {
    let w = World::new(batch());
    assert_eq!(w.phase("F1", S1 - 1), Phase::Preselection);
    assert_eq!(w.phase("F1", S1), Phase::Formal);
    // A later session's family keeps pre-selecting while S1 runs.
    assert_eq!(w.phase("F4", S1), Phase::Preselection);
    assert_eq!(w.phase("F4", S2 - 1), Phase::Preselection);
    assert_eq!(w.phase("F4", S2), Phase::Formal);
}

#[test]
fn phase_is_formal_from_start_inclusive_to_deadline_exclusive() {
    let w = World::new(batch());
    assert_eq!(w.phase("F1", S1 - 1), Phase::Preselection);
    assert_eq!(w.phase("F1", S1), Phase::Formal);
    assert_eq!(w.phase("F1", D1 - 1), Phase::Formal);
    assert_eq!(w.phase("F1", D1), Phase::Done);
    assert_eq!(w.phase("F1", D1 + 1), Phase::Done);
}

#[test]
fn preselect_end_puts_families_into_waiting_until_their_session() {
    let mut b = batch();
    let end = T0 - 12 * 60 * MIN;
    b.preselect_end = Some(t(end));
    let w = World::new(b);
    assert_eq!(w.phase("F1", end - 1), Phase::Preselection);
    assert_eq!(w.phase("F1", end), Phase::Waiting);
    assert_eq!(w.phase("F1", S1 - 1), Phase::Waiting);
    assert_eq!(w.phase("F1", S1), Phase::Formal);
}

#[test]
fn cart_edits_are_refused_while_waiting() {
    let mut b = batch();
    let end = T0 - 12 * 60 * MIN;
    b.preselect_end = Some(t(end));
    let mut w = World::new(b);
    w.ok("F1", declare(Stage::Preselection), end - 1);
    w.ok("F1", add(Cart, "U1"), end - 1);
    assert_eq!(w.code("F1", add(Cart, "U2"), end), ErrorCode::WindowClosed);
}

#[test]
fn a_final_outcome_ends_the_phase_inside_the_window() {
    let mut w = World::new(batch());
    w.preselect("F1", &["U1"]);
    w.ok("F1", declare(Stage::Formal), S1);
    w.ok("F1", Action::Sync, S1);
    w.ok("F1", confirm("U1"), S1 + 10);
    assert_eq!(w.phase("F1", S1 + 11), Phase::Done);
    assert_eq!(w.phase("F2", S1 + 11), Phase::Formal);
}

#[test]
fn phase_rules_agree_with_the_pure_function() {
    let b = batch();
    let w = World::new(b.clone());
    for at in [T0 - DAY - 1, T0 - DAY, S1 - 1, S1, D1 - 1, D1] {
        let direct = rules::phase_at(&b, &b.sessions[0], false, t(at));
        assert_eq!(w.phase("F1", at), direct);
        assert_eq!(
            rules::phase_at(&b, &b.sessions[0], true, t(at)),
            Phase::Done
        );
    }
}

// ===========================================================================
// Declarations

#[test]
fn preselection_declaration_is_accepted_only_in_preselection() {
    let mut w = World::new(batch());
    let before = T0 - DAY - 1;
    assert_eq!(
        w.code("F1", declare(Stage::Preselection), before),
        ErrorCode::WindowClosed
    );
    assert_eq!(
        w.code("F1", declare(Stage::Preselection), S1),
        ErrorCode::WindowClosed
    );
    w.ok("F1", declare(Stage::Preselection), T0 - DAY);
    assert_eq!(w.state("F1").preselect_declared_at, Some(t(T0 - DAY)));
}

#[test]
fn formal_declaration_is_accepted_from_start_inclusive_to_deadline_exclusive() {
    let mut w = World::new(batch());
    assert_eq!(
        w.code("F1", declare(Stage::Formal), S1 - 1),
        ErrorCode::WindowClosed
    );
    assert_eq!(
        w.code("F2", declare(Stage::Formal), D1),
        ErrorCode::WindowClosed
    );
    w.ok("F1", declare(Stage::Formal), S1);
    w.ok("F2", declare(Stage::Formal), D1 - 1);
    assert_eq!(w.state("F2").formal_declared_at, Some(t(D1 - 1)));
}

#[test]
fn formal_declaration_does_not_need_a_preselection_declaration() {
    // A family that skipped pre-selection may still take part in its session.
    let mut w = World::new(batch());
    w.ok("F1", declare(Stage::Formal), S1);
    w.ok("F1", add(Intentions, "U1"), S1);
    w.ok("F1", confirm("U1"), S1);
}

#[test]
fn declaring_twice_keeps_the_first_acceptance_time() {
    let mut w = World::new(batch());
    assert_eq!(w.ok("F1", declare(Stage::Preselection), PRE).len(), 1);
    assert!(w.ok("F1", declare(Stage::Preselection), PRE + 5).is_empty());
    assert_eq!(w.state("F1").preselect_declared_at, Some(t(PRE)));
}

#[test]
fn unknown_family_is_refused() {
    let mut w = World::new(batch());
    assert_eq!(
        w.code("F99", declare(Stage::Preselection), PRE),
        ErrorCode::UnknownFamily
    );
}

// ===========================================================================
// The cart (预选)

#[test]
fn cart_edit_needs_the_preselection_declaration() {
    let mut w = World::new(batch());
    assert_eq!(
        w.code("F1", add(Cart, "U1"), PRE),
        ErrorCode::DeclarationRequired
    );
}

#[test]
fn cart_is_closed_before_preselection_and_from_session_start() {
    let mut w = World::new(batch());
    assert_eq!(
        w.code("F1", add(Cart, "U1"), T0 - DAY - 1),
        ErrorCode::WindowClosed
    );
    w.preselect("F1", &["U1"]);
    w.ok("F1", add(Cart, "U2"), S1 - 1);
    assert_eq!(w.code("F1", add(Cart, "U3"), S1), ErrorCode::WindowClosed);
    assert_eq!(
        w.code("F1", edit(Cart, Edit::Remove, "U1"), S1),
        ErrorCode::WindowClosed
    );
}

#[test]
fn cart_holds_at_most_five() {
    let mut w = World::new(batch());
    w.preselect("F1", &["U1", "U2", "U3", "U4", "U5"]);
    assert_eq!(w.state("F1").cart.len(), LIST_CAP);
    assert_eq!(w.code("F1", add(Cart, "U6"), PRE), ErrorCode::ListFull);
    // Removing one makes room again.
    w.ok("F1", edit(Cart, Edit::Remove, "U3"), PRE);
    w.ok("F1", add(Cart, "U6"), PRE);
    assert_eq!(ids(&w.state("F1").cart), ["U1", "U2", "U4", "U5", "U6"]);
}

#[test]
fn adding_a_unit_already_in_the_list_is_refused() {
    let mut w = World::new(batch());
    w.preselect("F1", &["U1"]);
    let r = w.refused("F1", add(Cart, "U1"), PRE);
    assert_eq!(r, Rejection::with_unit(ErrorCode::AlreadyInList, u("U1")));
}

#[test]
fn adding_an_unknown_unit_is_refused() {
    let mut w = World::new(batch());
    w.preselect("F1", &[]);
    let r = w.refused("F1", add(Cart, "Z9"), PRE);
    assert_eq!(r, Rejection::with_unit(ErrorCode::UnknownUnit, u("Z9")));
}

#[test]
fn only_eligible_layouts_can_be_added() {
    let mut w = World::new(batch());
    w.preselect("F3", &["U1"]);
    let r = w.refused("F3", add(Cart, "U7"), PRE);
    assert_eq!(r, Rejection::with_unit(ErrorCode::NotEligible, u("U7")));
    w.preselect("F1", &["U7"]);
    assert_eq!(w.code("F1", add(Cart, "U9"), PRE), ErrorCode::NotEligible);
}

#[test]
fn a_unit_taken_by_an_earlier_family_cannot_be_added() {
    let mut w = World::new(batch());
    w.enter_formal("F1", S1, &["U1"]);
    w.ok("F1", confirm("U1"), S1 + 1);
    w.preselect("F4", &[]);
    let r = w.refused("F4", add(Cart, "U1"), S1 + 2);
    assert_eq!(r, Rejection::with_unit(ErrorCode::UnitTaken, u("U1")));
}

#[test]
fn a_taken_unit_stays_in_the_cart_until_deleted() {
    // Guide §2.3: units taken by earlier families show as taken and can be deleted.
    let mut w = World::new(batch());
    w.preselect("F4", &["U1", "U2"]);
    w.enter_formal("F1", S1, &["U1"]);
    w.ok("F1", confirm("U1"), S1 + 1);
    assert_eq!(ids(&w.state("F4").cart), ["U1", "U2"]);
    w.ok("F4", edit(Cart, Edit::Down, "U1"), S1 + 2);
    w.ok("F4", edit(Cart, Edit::Remove, "U1"), S1 + 3);
    w.ok("F4", add(Cart, "U3"), S1 + 4);
    assert_eq!(ids(&w.state("F4").cart), ["U2", "U3"]);
}

#[test]
fn up_down_top_and_remove_reorder_the_list() {
    let mut w = World::new(batch());
    w.preselect("F1", &["U1", "U2", "U3", "U4"]);
    w.ok("F1", edit(Cart, Edit::Up, "U3"), PRE);
    assert_eq!(ids(&w.state("F1").cart), ["U1", "U3", "U2", "U4"]);
    w.ok("F1", edit(Cart, Edit::Down, "U1"), PRE);
    assert_eq!(ids(&w.state("F1").cart), ["U3", "U1", "U2", "U4"]);
    w.ok("F1", edit(Cart, Edit::Top, "U4"), PRE);
    assert_eq!(ids(&w.state("F1").cart), ["U4", "U3", "U1", "U2"]);
    w.ok("F1", edit(Cart, Edit::Remove, "U3"), PRE);
    assert_eq!(ids(&w.state("F1").cart), ["U4", "U1", "U2"]);
}

#[test]
fn moving_past_either_end_changes_nothing_and_logs_nothing() {
    let mut w = World::new(batch());
    w.preselect("F1", &["U1", "U2"]);
    let seq = w.sel.seq();
    assert!(w.ok("F1", edit(Cart, Edit::Up, "U1"), PRE).is_empty());
    assert!(w.ok("F1", edit(Cart, Edit::Top, "U1"), PRE).is_empty());
    assert!(w.ok("F1", edit(Cart, Edit::Down, "U2"), PRE).is_empty());
    assert_eq!(w.sel.seq(), seq);
}

#[test]
fn moving_or_removing_a_unit_not_in_the_list_is_refused() {
    let mut w = World::new(batch());
    w.preselect("F1", &["U1"]);
    for e in [Edit::Remove, Edit::Up, Edit::Down, Edit::Top] {
        let r = w.refused("F1", edit(Cart, e, "U2"), PRE);
        assert_eq!(r, Rejection::with_unit(ErrorCode::NotInList, u("U2")));
    }
}

#[test]
fn set_list_replaces_the_order() {
    let mut w = World::new(batch());
    w.preselect("F1", &["U1", "U2", "U3"]);
    w.ok("F1", set(Cart, &["U3", "U1", "U2"]), PRE);
    assert_eq!(ids(&w.state("F1").cart), ["U3", "U1", "U2"]);
    w.ok("F1", set(Cart, &["U4"]), PRE);
    assert_eq!(ids(&w.state("F1").cart), ["U4"]);
    w.ok("F1", set(Cart, &[]), PRE);
    assert!(w.state("F1").cart.is_empty());
}

#[test]
fn set_list_refuses_duplicates_and_more_than_five() {
    let mut w = World::new(batch());
    w.preselect("F1", &[]);
    let r = w.refused("F1", set(Cart, &["U1", "U2", "U1"]), PRE);
    assert_eq!(r, Rejection::with_unit(ErrorCode::InvalidList, u("U1")));
    assert_eq!(
        w.code("F1", set(Cart, &["U1", "U2", "U3", "U4", "U5", "U6"]), PRE),
        ErrorCode::InvalidList
    );
}

#[test]
fn set_list_checks_new_units_like_add_but_lets_taken_ones_stay() {
    let mut w = World::new(batch());
    w.preselect("F4", &["U1", "U2"]);
    w.enter_formal("F1", S1, &["U1"]);
    w.ok("F1", confirm("U1"), S1 + 1);
    // U1 was in the list before it was taken: it may stay, in any position.
    w.ok("F4", set(Cart, &["U2", "U1"]), S1 + 2);
    // U1 dropped and re-added is a new unit, which must be free.
    w.ok("F4", set(Cart, &["U2"]), S1 + 3);
    let r = w.refused("F4", set(Cart, &["U2", "U1"]), S1 + 4);
    assert_eq!(r, Rejection::with_unit(ErrorCode::UnitTaken, u("U1")));
    assert_eq!(
        w.code("F4", set(Cart, &["U9"]), S1 + 4),
        ErrorCode::NotEligible
    );
    assert_eq!(
        w.code("F4", set(Cart, &["Z"]), S1 + 4),
        ErrorCode::UnknownUnit
    );
}

// ===========================================================================
// Formal selection: sync, intentions, confirm, waive

#[test]
fn sync_copies_the_cart_over_the_intentions() {
    let mut w = World::new(batch());
    w.preselect("F1", &["U2", "U1"]);
    w.ok("F1", declare(Stage::Formal), S1);
    w.ok("F1", Action::Sync, S1);
    assert_eq!(ids(&w.state("F1").intentions), ["U2", "U1"]);
    // Intentions chosen in formal selection are overwritten by a later sync.
    w.ok("F1", set(Intentions, &["U3"]), S1 + 1);
    w.ok("F1", Action::Sync, S1 + 2);
    assert_eq!(ids(&w.state("F1").intentions), ["U2", "U1"]);
    // The cart is untouched by formal edits.
    assert_eq!(ids(&w.state("F1").cart), ["U2", "U1"]);
}

#[test]
fn sync_needs_the_formal_window_and_declaration() {
    let mut w = World::new(batch());
    w.preselect("F1", &["U1"]);
    assert_eq!(w.code("F1", Action::Sync, S1 - 1), ErrorCode::WindowClosed);
    assert_eq!(
        w.code("F1", Action::Sync, S1),
        ErrorCode::DeclarationRequired
    );
    w.ok("F1", declare(Stage::Formal), S1);
    assert_eq!(w.code("F1", Action::Sync, D1), ErrorCode::WindowClosed);
}

#[test]
fn intentions_are_edited_only_in_the_formal_window() {
    let mut w = World::new(batch());
    w.preselect("F1", &[]);
    assert_eq!(
        w.code("F1", add(Intentions, "U1"), PRE),
        ErrorCode::WindowClosed
    );
    assert_eq!(
        w.code("F1", add(Intentions, "U1"), S1),
        ErrorCode::DeclarationRequired
    );
    w.ok("F1", declare(Stage::Formal), S1);
    w.ok("F1", add(Intentions, "U1"), D1 - 1);
    assert_eq!(
        w.code("F2", add(Intentions, "U2"), D1),
        ErrorCode::WindowClosed
    );
}

#[test]
fn intentions_hold_at_most_five() {
    let mut w = World::new(batch());
    w.enter_formal("F1", S1, &["U1", "U2", "U3", "U4", "U5"]);
    assert_eq!(w.code("F1", add(Intentions, "U6"), S1), ErrorCode::ListFull);
}

#[test]
fn confirm_is_refused_outside_the_formal_window() {
    let mut w = World::new(batch());
    w.preselect("F1", &["U1"]);
    assert_eq!(w.code("F1", confirm("U1"), S1 - 1), ErrorCode::WindowClosed);
    w.enter_formal("F1", S1, &["U1"]);
    assert_eq!(w.code("F1", confirm("U1"), D1), ErrorCode::WindowClosed);
    w.ok("F1", confirm("U1"), D1 - 1);
}

#[test]
fn confirm_needs_the_formal_declaration() {
    let mut w = World::new(batch());
    assert_eq!(
        w.code("F1", confirm("U1"), S1),
        ErrorCode::DeclarationRequired
    );
}

#[test]
fn confirm_of_a_unit_outside_the_intentions_is_refused() {
    let mut w = World::new(batch());
    w.enter_formal("F1", S1, &["U1"]);
    let r = w.refused("F1", confirm("U2"), S1);
    assert_eq!(r, Rejection::with_unit(ErrorCode::NotInIntentions, u("U2")));
    assert_eq!(w.code("F1", confirm("Z9"), S1), ErrorCode::UnknownUnit);
}

#[test]
fn confirm_of_taken_unit_is_refused() {
    let mut w = World::new(batch());
    w.enter_formal("F1", S1, &["U1"]);
    w.enter_formal("F2", S1, &["U1", "U2"]);
    w.ok("F1", confirm("U1"), S1 + 1);
    let r = w.refused("F2", confirm("U1"), S1 + 2);
    assert_eq!(r, Rejection::with_unit(ErrorCode::UnitTaken, u("U1")));
    // The loser keeps its list and can confirm another unit.
    assert_eq!(ids(&w.state("F2").intentions), ["U1", "U2"]);
    w.ok("F2", confirm("U2"), S1 + 3);
}

#[test]
fn two_families_confirming_the_same_unit_exactly_one_wins() {
    let mut w = World::new(batch());
    w.enter_formal("F1", S1, &["U1"]);
    w.enter_formal("F2", S1, &["U1"]);
    // Both decisions are made against the same state; the engine serialises them, so
    // the second is decided again after the first is applied.
    assert!(w.sel.decide(&f("F2"), &confirm("U1"), t(S1 + 1)).is_ok());
    w.ok("F1", confirm("U1"), S1 + 1);
    assert_eq!(w.code("F2", confirm("U1"), S1 + 1), ErrorCode::UnitTaken);
    assert_eq!(w.sel.taken()[&u("U1")].family, f("F1"));
}

#[test]
fn confirm_is_final_and_every_later_action_names_the_unit() {
    let mut w = World::new(batch());
    w.enter_formal("F1", S1, &["U1", "U2"]);
    let ev = w.ok("F1", confirm("U1"), S1 + 1);
    assert_eq!(
        ev,
        vec![EventKind::Selected {
            family: f("F1"),
            unit: u("U1"),
            how: How::Confirmed
        }]
    );
    assert_eq!(
        w.outcome("F1"),
        Some(Outcome::Selected {
            unit: u("U1"),
            how: How::Confirmed,
            at: t(S1 + 1)
        })
    );
    let held = Rejection::with_unit(ErrorCode::AlreadyHasUnit, u("U1"));
    for a in [
        confirm("U2"),
        add(Intentions, "U3"),
        Action::Sync,
        Action::Waive,
        declare(Stage::Formal),
    ] {
        assert_eq!(w.refused("F1", a, S1 + 2), held);
    }
}

#[test]
fn waive_is_allowed_until_the_window_ends_and_is_final() {
    let mut w = World::new(batch());
    w.ok("F1", Action::Waive, PRE);
    assert!(matches!(w.outcome("F1"), Some(Outcome::Waived { .. })));
    assert_eq!(w.code("F1", declare(Stage::Formal), S1), ErrorCode::Waived);
    w.ok("F2", Action::Waive, D1 - 1);
    assert_eq!(w.code("F3", Action::Waive, D1), ErrorCode::WindowClosed);
}

#[test]
fn a_waived_family_is_skipped_at_the_deadline() {
    let mut w = World::new(batch());
    w.enter_formal("F1", S1, &["U1"]);
    w.ok("F1", Action::Waive, S1 + 1);
    let ev = w.close("S1", D1, 100);
    assert!(ev.iter().all(|e| e.family() != Some(&f("F1"))));
    assert!(!w.sel.taken().contains_key(&u("U1")));
}

// ===========================================================================
// Auto-confirm at the deadline

#[test]
fn closing_before_the_deadline_is_too_early() {
    let w = World::new(batch());
    assert_eq!(
        w.sel.close_session_step(&s("S1"), t(D1 - 1), 10),
        Err(ErrorCode::TooEarly.into())
    );
    assert!(w.sel.close_session_step(&s("S1"), t(D1), 10).is_ok());
    assert_eq!(
        w.sel.close_session_step(&s("S9"), t(D1), 10),
        Err(ErrorCode::UnknownSession.into())
    );
}

#[test]
fn auto_confirm_gives_each_family_its_first_free_intention_in_rank_order() {
    let mut w = World::new(batch());
    // Intentions in reverse rank order of entry: rank, not entry order, decides.
    w.enter_formal("F3", S1, &["U1", "U2"]);
    w.enter_formal("F2", S1, &["U1", "U2", "U3"]);
    w.enter_formal("F1", S1, &["U1", "U2"]);
    w.close("S1", D1, 100);
    let sel = |fam| w.outcome(fam).and_then(|o| o.unit().cloned());
    assert_eq!(sel("F1"), Some(u("U1")));
    assert_eq!(sel("F2"), Some(u("U2")));
    assert_eq!(
        w.outcome("F3"),
        Some(Outcome::NoUnit {
            reason: NoUnitReason::NoFreeIntention,
            at: t(D1)
        })
    );
    assert_eq!(w.sel.taken()[&u("U1")].how, How::Automatic);
}

#[test]
fn auto_confirm_skips_units_confirmed_during_the_window() {
    let mut w = World::new(batch());
    w.enter_formal("F1", S1, &["U1", "U2"]);
    w.enter_formal("F2", S1, &["U1"]);
    w.ok("F2", confirm("U1"), S1 + 1);
    w.close("S1", D1, 100);
    assert_eq!(
        w.outcome("F1").and_then(|o| o.unit().cloned()),
        Some(u("U2"))
    );
}

#[test]
fn absent_families_get_no_unit_and_their_preselection_is_void() {
    let mut w = World::new(batch());
    w.preselect("F1", &["U1", "U2"]);
    w.close("S1", D1, 100);
    assert_eq!(
        w.outcome("F1"),
        Some(Outcome::NoUnit {
            reason: NoUnitReason::Absent,
            at: t(D1)
        })
    );
    assert!(w.sel.taken().is_empty());
}

#[test]
fn entering_formal_selection_syncs_the_preselection_into_the_intentions() {
    let mut w = World::new(batch());
    w.preselect("F1", &["U2", "U1"]);
    let ev = w.ok("F1", declare(Stage::Formal), S1);
    assert_eq!(
        ev,
        vec![
            EventKind::Declared {
                family: f("F1"),
                stage: Stage::Formal
            },
            EventKind::ListChanged {
                family: f("F1"),
                list: ListKind::Intentions,
                units: vec![u("U2"), u("U1")],
            },
        ]
    );
    assert_eq!(w.state("F1").intentions, [u("U2"), u("U1")]);
    // Declaring again neither re-syncs nor undoes edits made since.
    w.ok("F1", edit(Intentions, Edit::Remove, "U2"), S1 + 1);
    assert!(w.ok("F1", declare(Stage::Formal), S1 + 2).is_empty());
    assert_eq!(w.state("F1").intentions, [u("U1")]);
}

#[test]
fn an_idle_family_that_never_tapped_sync_is_assigned_from_its_preselection() {
    let mut w = World::new(batch());
    w.preselect("F1", &["U2", "U1"]);
    w.ok("F1", declare(Stage::Formal), S1);
    w.close("S1", D1, 100);
    assert_eq!(
        w.outcome("F1"),
        Some(Outcome::Selected {
            unit: u("U2"),
            how: How::Automatic,
            at: t(D1)
        })
    );
}

#[test]
fn entering_with_an_empty_preselection_leaves_the_intentions_empty() {
    let mut w = World::new(batch());
    let ev = w.ok("F1", declare(Stage::Formal), S1);
    assert_eq!(ev.len(), 1, "only the declaration: {ev:?}");
    assert!(w.state("F1").intentions.is_empty());
}

#[test]
fn a_present_family_with_an_empty_list_gets_no_unit_for_no_intentions() {
    let mut w = World::new(batch());
    w.preselect("F1", &["U1"]);
    w.ok("F1", declare(Stage::Formal), S1);
    // It deleted its only intention and chose nothing else.
    w.ok("F1", edit(Intentions, Edit::Remove, "U1"), S1 + 1);
    w.close("S1", D1, 100);
    assert_eq!(
        w.outcome("F1"),
        Some(Outcome::NoUnit {
            reason: NoUnitReason::NoIntentions,
            at: t(D1)
        })
    );
    assert!(w.sel.taken().is_empty());
}

#[test]
fn session_closed_is_emitted_exactly_once_and_last() {
    let mut w = World::new(batch());
    w.enter_formal("F1", S1, &["U1"]);
    let ev = w.close("S1", D1, 1);
    let closed: Vec<_> = ev
        .iter()
        .filter(|e| matches!(e, EventKind::SessionClosed { .. }))
        .collect();
    assert_eq!(closed.len(), 1);
    assert!(matches!(ev.last(), Some(EventKind::SessionClosed { session }) if *session == s("S1")));
    assert_eq!(w.sel.closed_sessions(), [s("S1")]);
    // Later steps, even much later, do nothing.
    assert!(w
        .sel
        .close_session_step(&s("S1"), t(D1 + DAY), 1)
        .unwrap()
        .is_empty());
}

#[test]
fn a_session_whose_families_all_confirmed_closes_in_one_step() {
    let mut w = World::new(batch());
    w.enter_formal("F4", S2, &["U1"]);
    w.ok("F4", confirm("U1"), S2);
    let step = w.sel.close_session_step(&s("S2"), t(D2), 1).unwrap();
    assert_eq!(step, vec![EventKind::SessionClosed { session: s("S2") }]);
}

/// A batch of `n` families in one session, each wanting the same few units.
fn crowded(n: u32) -> Batch {
    let mut b = batch();
    b.families = (1..=n)
        .map(|r| family(&format!("G{r:03}"), r, "S1", &[ONE, TWO]))
        .collect();
    b.sessions = vec![session(
        "S1",
        T0,
        &b.families.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
    )];
    b
}

fn crowded_world(n: u32) -> World {
    let mut w = World::new(crowded(n));
    for r in 1..=n {
        let id = format!("G{r:03}");
        match r % 4 {
            0 => {} // absent
            1 => w.enter_formal(&id, S1, &["U1", "U2", "U3"]),
            2 => w.enter_formal(&id, S1, &["U3", "U7", "U1"]),
            _ => w.enter_formal(&id, S1, &["U8", "U4"]),
        }
    }
    w
}

#[test]
fn chunked_auto_confirm_never_repeats_a_family_and_decides_each_once() {
    for chunk in [1, 2, 3, 7, 37, 1000] {
        let mut w = crowded_world(37);
        let ev = w.close("S1", D1, chunk);
        let mut decided: Vec<&FamilyId> = ev.iter().filter_map(EventKind::family).collect();
        let n = decided.len();
        decided.sort();
        decided.dedup();
        assert_eq!(
            decided.len(),
            n,
            "chunk {chunk}: a family was decided twice"
        );
        assert_eq!(n, 37, "chunk {chunk}");
        let closes = ev
            .iter()
            .filter(|e| matches!(e, EventKind::SessionClosed { .. }))
            .count();
        assert_eq!(closes, 1, "chunk {chunk}");
    }
}

#[test]
fn chunked_auto_confirm_steps_are_at_most_the_chunk_size() {
    let mut w = crowded_world(10);
    let step = w.sel.close_session_step(&s("S1"), t(D1), 3).unwrap();
    assert_eq!(step.len(), 3);
    w.append(step, t(D1));
    let rest = w.close("S1", D1, 3);
    assert_eq!(rest.len(), 7 + 1);
}

#[test]
fn chunk_size_does_not_change_the_outcome() {
    let outcome_of = |chunk| {
        let mut w = crowded_world(37);
        w.close("S1", D1, chunk);
        let v: Vec<_> = w
            .sel
            .family_states()
            .map(|(f, st)| (f.id.clone(), st.outcome.clone()))
            .collect();
        v
    };
    let one_shot = outcome_of(1000);
    for chunk in [1, 2, 5] {
        assert_eq!(outcome_of(chunk), one_shot, "chunk {chunk}");
    }
    // And the crowd got what rank order says: every unit at most once.
    let mut units: Vec<_> = one_shot
        .iter()
        .filter_map(|(_, o)| o.as_ref().and_then(|o| o.unit().cloned()))
        .collect();
    let n = units.len();
    units.sort();
    units.dedup();
    assert_eq!(units.len(), n);
    assert_eq!(n, 6); // U1, U2, U3, U7, U8, U4
}

#[test]
fn closing_a_session_leaves_other_sessions_alone() {
    let mut w = World::new(batch());
    w.preselect("F4", &["U1"]);
    w.close("S1", D1, 100);
    assert_eq!(w.outcome("F4"), None);
    assert_eq!(w.phase("F4", D1), Phase::Preselection);
}

// ===========================================================================
// Supplementary application (补选申请)

/// F1 absent in S1 (no unit), F2 confirmed U1, F3 waived; S1 closed.
fn after_s1() -> World {
    let mut w = World::new(batch());
    w.enter_formal("F2", S1, &["U1"]);
    w.ok("F2", confirm("U1"), S1 + 1);
    w.ok("F3", Action::Waive, S1 + 2);
    w.close("S1", D1, 100);
    w
}

#[test]
fn supplementary_window_runs_from_own_deadline_to_the_days_last_formal_deadline() {
    let b = batch();
    assert_eq!(
        rules::supplementary_window(&b, &b.sessions[0]),
        Some((t(D1), t(D2)))
    );
    // S2 is the day's last session; S3 is the next day's only one.
    assert_eq!(rules::supplementary_window(&b, &b.sessions[1]), None);
    assert_eq!(rules::supplementary_window(&b, &b.sessions[2]), None);
}

#[test]
fn supplementary_application_is_accepted_only_inside_its_window() {
    let mut w = after_s1();
    assert_eq!(
        w.code("F1", Action::ApplySupplementary, D2),
        ErrorCode::WindowClosed
    );
    w.ok("F1", Action::ApplySupplementary, D2 - 1);
    assert_eq!(w.state("F1").applied_supplementary_at, Some(t(D2 - 1)));
}

#[test]
fn supplementary_application_opens_at_the_deadline_inclusive() {
    let mut w = after_s1();
    w.ok("F1", Action::ApplySupplementary, D1);
}

#[test]
fn supplementary_application_before_a_result_is_refused() {
    let mut w = World::new(batch());
    assert_eq!(
        w.code("F1", Action::ApplySupplementary, S1),
        ErrorCode::NotEligibleForSupplementary
    );
}

#[test]
fn families_with_a_unit_or_a_waiver_may_not_apply_for_supplementary() {
    let mut w = after_s1();
    assert_eq!(
        w.code("F2", Action::ApplySupplementary, D1 + 1),
        ErrorCode::NotEligibleForSupplementary
    );
    assert_eq!(
        w.code("F3", Action::ApplySupplementary, D1 + 1),
        ErrorCode::NotEligibleForSupplementary
    );
}

#[test]
fn applying_twice_is_refused() {
    let mut w = after_s1();
    w.ok("F1", Action::ApplySupplementary, D1 + 1);
    assert_eq!(
        w.code("F1", Action::ApplySupplementary, D1 + 2),
        ErrorCode::AlreadyApplied
    );
}

#[test]
fn a_family_with_no_unit_can_do_nothing_else_after_its_session() {
    let mut w = after_s1();
    assert_eq!(
        w.code("F1", declare(Stage::Formal), D1 + 1),
        ErrorCode::WindowClosed
    );
    assert_eq!(w.code("F1", Action::Waive, D1 + 1), ErrorCode::WindowClosed);
}

#[test]
fn the_same_day_is_the_local_day_at_utc_plus_8() {
    // Local 20:00 and 23:00 on one day, and 01:00 the next local day. All three fall
    // on the same UTC day (12:00, 15:00, 17:00 UTC): only local days may count.
    let local_20h = T0 + 11 * 60 * MIN;
    let mut b = batch();
    b.sessions = vec![
        session("S1", local_20h, &["F1", "F2", "F3"]),
        session("S2", local_20h + 3 * 60 * MIN, &["F4"]),
        session("S3", local_20h + 5 * 60 * MIN, &["F5"]),
    ];
    b.validate().unwrap();
    assert_eq!(
        rules::supplementary_window(&b, &b.sessions[0]),
        Some((t(local_20h + W), t(local_20h + 3 * 60 * MIN + W)))
    );
    // Under UTC (offset 0) the 01:00 session would share the day and extend the window.
    b.utc_offset_minutes = 0;
    assert_eq!(
        rules::supplementary_window(&b, &b.sessions[0]).map(|w| w.1),
        Some(t(local_20h + 5 * 60 * MIN + W))
    );
}

#[test]
fn local_day_boundary_is_midnight_beijing_time() {
    // 2025-06-07 00:00 +08:00 is 2025-06-06 16:00 UTC.
    let midnight = T0 - 9 * 60 * MIN;
    assert_eq!(
        t(midnight).local_day(480),
        t(midnight - 1).local_day(480) + 1
    );
    assert_eq!(t(midnight).local_day(480), t(T0).local_day(480));
}

// ===========================================================================
// Publishing supplementary sessions (补选场次)

fn supplementary(id: &str, start: i64, families: &[&str]) -> Session {
    Session {
        kind: SessionKind::Supplementary,
        ..session(id, start, families)
    }
}

/// After S1 and S2: F1 (S1, absent) and F4 (S2, absent) applied.
fn applied() -> World {
    let mut w = after_s1();
    w.ok("F1", Action::ApplySupplementary, D1 + 1);
    w.close("S2", D2, 100);
    // F4's window: S2 is the day's last session, so it has none.
    assert_eq!(
        w.code("F4", Action::ApplySupplementary, D2),
        ErrorCode::WindowClosed
    );
    w
}

#[test]
fn publish_supplementary_refuses_what_is_not_a_new_supplementary_session() {
    let w = applied();
    let start = D2 + 60 * MIN;
    let p = |sess: &Session| w.sel.decide_publish(sess, t(D2 + 1)).map_err(|r| r.code);
    assert_eq!(
        p(&session("B1", start, &["F1"])),
        Err(ErrorCode::InvalidSession)
    );
    let mut zero = supplementary("B1", start, &["F1"]);
    zero.window_ms = 0;
    assert_eq!(p(&zero), Err(ErrorCode::InvalidSession));
    assert_eq!(
        p(&supplementary("S1", start, &["F1"])),
        Err(ErrorCode::Conflict)
    );
    assert_eq!(
        p(&supplementary("B1", start, &["F9"])),
        Err(ErrorCode::UnknownFamily)
    );
    // Only families that applied and have no unit.
    for fam in ["F2", "F3", "F4", "F5"] {
        assert_eq!(
            p(&supplementary("B1", start, &[fam])),
            Err(ErrorCode::NotEligibleForSupplementary),
            "{fam}"
        );
    }
    assert!(p(&supplementary("B1", start, &["F1"])).is_ok());
}

#[test]
fn a_supplementary_session_may_not_start_in_the_past() {
    let w = applied();
    let now = D2 + 30 * MIN;
    let p = |start| {
        w.sel
            .decide_publish(&supplementary("B1", start, &["F1"]), t(now))
            .map_err(|r| r.code)
    };
    assert_eq!(p(now - 1), Err(ErrorCode::InvalidSession));
    assert!(p(now).is_ok());
}

#[test]
fn a_supplementary_session_comes_after_the_days_applications_close() {
    // F1 (S1) may apply until S2, the day's last formal session, ends at D2.
    let w = applied();
    let p = |start| {
        w.sel
            .decide_publish(&supplementary("B1", start, &["F1"]), t(D1 + 1))
            .map_err(|r| r.code)
    };
    assert_eq!(p(D2 - 1), Err(ErrorCode::InvalidSession));
    assert!(p(D2).is_ok());
}

#[test]
fn a_supplementary_session_may_not_overlap_a_formal_session() {
    let w = applied();
    // S3 is the next day's formal session (T0 + DAY); a 补选 during it is refused.
    let s3 = w
        .sel
        .batch()
        .sessions
        .iter()
        .find(|s| s.kind == SessionKind::Formal && s.start.0 > D2)
        .map(|s| s.start.0)
        .expect("a formal session on a later day");
    let p = |start| {
        w.sel
            .decide_publish(&supplementary("B1", start, &["F1"]), t(D2 + 1))
            .map_err(|r| r.code)
    };
    assert_eq!(
        p(s3 - W + 1),
        Err(ErrorCode::InvalidSession),
        "ends inside S3"
    );
    assert_eq!(
        p(s3 + 1),
        Err(ErrorCode::InvalidSession),
        "starts inside S3"
    );
    assert!(p(s3 - W).is_ok(), "ends as S3 starts");
}

#[test]
fn the_next_supplementary_session_is_named_after_the_ones_before() {
    let mut w = applied();
    assert_eq!(
        xuanfang_hub::supplementary::next_session_id(w.sel.batch()),
        s("补选1")
    );
    let ev = w
        .sel
        .decide_publish(&supplementary("补选1", D2 + 60 * MIN, &["F1"]), t(D2 + 1))
        .unwrap();
    w.append(ev, t(D2 + 1));
    assert_eq!(
        xuanfang_hub::supplementary::next_session_id(w.sel.batch()),
        s("补选2")
    );
}

#[test]
fn publish_supplementary_requires_rank_order() {
    let mut b = batch();
    // Put F1 and F2 both absent in S1 so both can apply.
    b.sessions[0].start = t(T0);
    let mut w = World::new(b);
    w.close("S1", D1, 100);
    w.ok("F1", Action::ApplySupplementary, D1);
    w.ok("F2", Action::ApplySupplementary, D1);
    let start = D2 + 60 * MIN;
    assert_eq!(
        w.sel
            .decide_publish(&supplementary("B1", start, &["F2", "F1"]), t(D2 + 1))
            .map_err(|r| r.code),
        Err(ErrorCode::InvalidList)
    );
    assert!(w
        .sel
        .decide_publish(&supplementary("B1", start, &["F1", "F2"]), t(D2 + 1))
        .is_ok());
}

#[test]
fn a_published_family_selects_again_in_its_supplementary_session() {
    let mut w = applied();
    let start = D2 + 60 * MIN;
    let b1 = supplementary("B1", start, &["F1"]);
    let ev = w.sel.decide_publish(&b1, t(D2 + 1)).unwrap();
    w.append(ev, t(D2 + 1));
    // The fresh session: no outcome, no formal declaration, empty intentions.
    let st = w.state("F1").clone();
    assert_eq!(st.outcome, None);
    assert_eq!(st.formal_declared_at, None);
    assert!(st.intentions.is_empty());
    assert_eq!(st.supplementary_session, Some(s("B1")));
    assert_eq!(
        w.sel.current_session(&f("F1")).map(|s| s.id.clone()),
        Some(s("B1"))
    );
    // Waiting (no pre-selection in a supplementary session) until its start.
    assert_eq!(w.phase("F1", start - 1), Phase::Waiting);
    assert_eq!(
        w.code("F1", add(Cart, "U2"), start - 1),
        ErrorCode::WindowClosed
    );
    assert_eq!(
        w.code("F1", declare(Stage::Formal), start - 1),
        ErrorCode::WindowClosed
    );
    assert_eq!(w.phase("F1", start), Phase::Formal);
    // U1 is taken by F2: confirm refused; U2 works.
    w.ok("F1", declare(Stage::Formal), start);
    w.ok("F1", add(Intentions, "U2"), start);
    assert_eq!(
        w.code("F1", add(Intentions, "U1"), start),
        ErrorCode::UnitTaken
    );
    w.ok("F1", confirm("U2"), start + 1);
    assert_eq!(w.phase("F1", start + 2), Phase::Done);
    let ev = w.close("B1", start + W, 100);
    assert_eq!(ev, vec![EventKind::SessionClosed { session: s("B1") }]);
    // A family already in a supplementary session cannot be published again.
    assert!(w
        .sel
        .decide_publish(&supplementary("B2", start + DAY, &["F1"]), t(D2 + 1))
        .is_err());
}

#[test]
fn an_absent_family_in_a_supplementary_session_again_gets_no_unit() {
    let mut w = applied();
    let start = D2 + 60 * MIN;
    let ev = w
        .sel
        .decide_publish(&supplementary("B1", start, &["F1"]), t(D2 + 1))
        .unwrap();
    w.append(ev, t(D2 + 1));
    assert_eq!(
        w.sel.close_session_step(&s("B1"), t(start + W - 1), 10),
        Err(ErrorCode::TooEarly.into())
    );
    w.close("B1", start + W, 100);
    assert!(matches!(
        w.outcome("F1"),
        Some(Outcome::NoUnit {
            reason: NoUnitReason::Absent,
            ..
        })
    ));
    // It applied once already.
    assert_ne!(
        w.refused("F1", Action::ApplySupplementary, start + W).code,
        ErrorCode::Internal
    );
}

// ===========================================================================
// The event log

#[test]
fn replay_of_the_event_log_rebuilds_an_equal_state() {
    let mut w = applied();
    let b1 = supplementary("B1", D2 + 60 * MIN, &["F1"]);
    let ev = w.sel.decide_publish(&b1, t(D2 + 1)).unwrap();
    w.append(ev, t(D2 + 1));
    let replayed = Selection::replay(&w.log).unwrap();
    assert_eq!(replayed, w.sel);
    assert_eq!(replayed.seq(), w.log.len() as u64);
    assert_eq!(replayed.batch().sessions.len(), 4);
}

#[test]
fn the_event_log_survives_json_and_replays_equal() {
    let w = crowded_world(9);
    let json = serde_json::to_string(&w.log).unwrap();
    let back: Vec<Event> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, w.log);
    assert_eq!(Selection::replay(&back).unwrap(), w.sel);
}

#[test]
fn replay_refuses_an_empty_log_a_log_without_batch_and_a_gap() {
    assert_eq!(Selection::replay(&[]).unwrap_err(), ReplayError::Empty);
    let w = crowded_world(3);
    assert_eq!(
        Selection::replay(&w.log[1..]).unwrap_err(),
        ReplayError::NoBatch
    );
    let mut gap = w.log.clone();
    gap.remove(2);
    assert_eq!(
        Selection::replay(&gap).unwrap_err(),
        ReplayError::Gap {
            expected: 3,
            found: 4
        }
    );
}

// ===========================================================================
// Any interleaving keeps the invariants

#[derive(Clone, Debug)]
enum Step {
    Act {
        fam: usize,
        action: Action,
        dt: i64,
    },
    Close {
        session: usize,
        chunk: usize,
    },
    /// Declares whatever the phase allows and sets both lists: moves a family forward.
    Enter {
        fam: usize,
        units: Vec<UnitId>,
    },
}

fn action() -> impl Strategy<Value = Action> {
    // Mostly the same few units, so families compete for them.
    let unit = prop_oneof![4 => 1..=3usize, 1 => 1..=9usize].prop_map(|i| u(&format!("U{i}")));
    let list = prop_oneof![1 => Just(Cart), 2 => Just(Intentions)];
    let e = prop_oneof![
        4 => Just(Edit::Add),
        1 => Just(Edit::Remove),
        1 => Just(Edit::Up),
        1 => Just(Edit::Down),
        1 => Just(Edit::Top)
    ];
    prop_oneof![
        3 => prop_oneof![Just(Stage::Preselection), Just(Stage::Formal)]
            .prop_map(|stage| Action::Declare { stage }),
        5 => (list.clone(), e, unit.clone()).prop_map(|(list, edit, unit)| Action::Edit { list, edit, unit }),
        1 => (list, proptest::collection::vec(unit.clone(), 0..7))
            .prop_map(|(list, units)| Action::SetList { list, units }),
        1 => Just(Action::Sync),
        3 => unit.prop_map(|unit| Action::Confirm { unit }),
        1 => Just(Action::Waive),
        1 => Just(Action::ApplySupplementary),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0..5usize, action(), 0..90_000i64).prop_map(|(fam, action, dt)| Step::Act { fam, action, dt }),
        1 => (0..2usize, 1..4usize).prop_map(|(session, chunk)| Step::Close { session, chunk }),
        2 => (0..5usize, proptest::collection::vec((1..=5usize).prop_map(|i| u(&format!("U{i}"))), 0..4))
            .prop_map(|(fam, units)| Step::Enter { fam, units }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever families do, in whatever order and at whatever time: no unit is held
    /// twice, no family holds two, lists stay within five distinct units, holders
    /// and outcomes agree, and the log replays to the same state.
    #[test]
    fn any_interleaving_keeps_the_invariants(steps in proptest::collection::vec(step(), 20..120)) {
        let mut w = World::new(batch());
        // Time walks from pre-selection through S1 and S2.
        let mut now = S1 - 20_000;
        for st in steps {
            match st {
                Step::Act { fam, action, dt } => {
                    now += dt / 6;
                    let _ = w.act(&format!("F{}", fam + 1), action, now);
                }
                Step::Enter { fam, units } => {
                    let mut seen = std::collections::HashSet::new();
                    let units: Vec<UnitId> = units.into_iter().filter(|x| seen.insert(x.clone())).collect();
                    let fam = format!("F{}", fam + 1);
                    for stage in [Stage::Preselection, Stage::Formal] {
                        let _ = w.act(&fam, declare(stage), now);
                    }
                    for list in [Cart, Intentions] {
                        let _ = w.act(&fam, Action::SetList { list, units: units.clone() }, now);
                    }
                }
                Step::Close { session, chunk } => {
                    let (sid, deadline) = [("S1", D1), ("S2", D2)][session];
                    if now >= deadline {
                        w.close(sid, now, chunk);
                    }
                }
            }
        }
        let mut holders = std::collections::HashMap::new();
        for (fam, st) in w.sel.family_states() {
            prop_assert!(st.cart.len() <= LIST_CAP && st.intentions.len() <= LIST_CAP);
            for l in [&st.cart, &st.intentions] {
                let mut d = l.clone();
                d.sort();
                d.dedup();
                prop_assert_eq!(d.len(), l.len());
            }
            if let Some(Outcome::Selected { unit, .. }) = &st.outcome {
                prop_assert!(holders.insert(unit.clone(), fam.id.clone()).is_none(), "unit given twice");
                let layout = &w.sel.batch().unit(unit).unwrap().layout;
                prop_assert!(fam.eligible_layouts.contains(layout));
            }
        }
        prop_assert_eq!(holders.len(), w.sel.taken().len());
        for (unit, h) in w.sel.taken() {
            prop_assert_eq!(holders.get(unit), Some(&h.family));
        }
        let replayed = Selection::replay(&w.log).unwrap();
        prop_assert_eq!(&replayed, &w.sel);
    }
}
