//! The allocator conformance suite: the rules every engine must answer alike.
//!
//! Each test is an `async fn` in this module taking a [`Ctx`] (an engine, its manual
//! clock, and a freshly loaded batch with a unique id, so one shared Redis serves every
//! test and every run). The `conformance_suite!` macro turns them into `#[tokio::test]`s
//! for one engine. Use it from a test crate's root like this:
//!
//! ```ignore
//! #[macro_use]
//! #[path = "conformance/suite.rs"]
//! mod suite;
//!
//! async fn make(clock: Arc<ManualClock>) -> Arc<dyn Allocator> { ... }
//! conformance_suite!(make);
//! ```
//!
//! What the suite pins down about the shape of answers:
//! - a refusal by the rules of an action is `Ok(Err(rejection))` from `act`
//!   (including `unknown_family` and `unknown_unit`);
//! - a refusal of a whole request is `Err(AllocError::Rejected(..))`: `unknown_batch`
//!   everywhere, `conflict`/`invalid_batch` from `load_batch`, `too_early`/
//!   `unknown_session` from `close_session_step`, every `publish_supplementary`
//!   refusal, `unknown_family` from `family`;
//! - server time comes only from the engine's clock (the test moves it by hand).

#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xuanfang_allocator::{AllocError, Allocator, Answer, CloseStep};
use xuanfang_hub::protocol::FamilyView;
use xuanfang_hub::selection::NoUnitReason;
use xuanfang_hub::{
    views, Action, Batch, BatchId, Clock, Edit, ErrorCode, Event, EventKind, Family, FamilyId, How,
    Layout, ListKind, ManualClock, Millis, Outcome, Rejection, Selection, Session, SessionId,
    SessionKind, Stage, Unit, UnitId,
};

#[allow(unused_macros)]
/// Expands to one `#[tokio::test]` per rule of the suite, each run against the engine
/// `$make(clock).await` builds (`async fn(Arc<ManualClock>) -> Arc<dyn Allocator>`).
/// Expects this file to be the module `suite` at the test crate's root.
macro_rules! conformance_suite {
    ($make:path) => {
        conformance_suite!(@tests $make;
            load_batch_starts_the_log_with_batch_loaded_at_seq_1,
            the_board_position_is_the_last_public_event,
            loading_a_batch_id_in_use_is_a_conflict,
            loading_an_invalid_batch_is_refused_as_invalid_batch,
            ids_that_are_empty_too_long_or_hold_control_characters_are_invalid_batch,
            batches_lists_every_loaded_batch,
            catalog_and_batch_return_what_was_loaded,
            an_unknown_batch_is_refused_by_every_operation,
            an_unknown_family_is_refused,
            server_time_is_the_engine_clock,
            preselect_declaration_is_refused_one_ms_before_preselect_start,
            preselect_declaration_is_accepted_at_preselect_start,
            declaring_twice_keeps_the_first_acceptance_time,
            cart_edits_need_the_preselect_declaration,
            the_cart_closes_at_session_start,
            preselect_end_closes_the_cart_for_everyone,
            formal_declaration_opens_at_session_start,
            intention_edits_sync_and_confirm_need_the_formal_declaration,
            confirm_is_accepted_one_ms_before_the_deadline,
            confirm_is_refused_at_the_deadline,
            the_intentions_close_at_the_deadline,
            only_eligible_layouts_can_be_added,
            a_list_holds_at_most_five_units,
            adding_a_unit_twice_is_already_in_list,
            editing_a_unit_not_in_the_list_is_not_in_list,
            an_unknown_unit_is_unknown_unit,
            cart_moves_up_down_top_and_remove,
            a_move_that_changes_nothing_is_ok_and_logs_no_event,
            set_list_replaces_the_whole_order,
            set_list_with_duplicates_or_more_than_five_units_is_invalid_list,
            set_list_keeps_a_listed_unit_even_if_taken_since,
            a_unit_taken_by_another_family_cannot_be_added,
            sync_copies_the_cart_into_the_intentions_and_overwrites_them,
            entering_formal_selection_syncs_the_preselection,
            an_idle_family_that_never_tapped_sync_gets_its_first_free_preselected_unit,
            sync_outside_the_formal_window_is_window_closed,
            confirm_gives_the_unit_and_ends_the_familys_session,
            confirm_of_a_unit_not_in_the_intentions_is_not_in_intentions,
            confirm_of_a_taken_unit_is_unit_taken_and_keeps_the_list,
            concurrent_confirms_of_one_unit_have_exactly_one_winner,
            a_family_with_a_unit_gets_already_has_unit_naming_it,
            waiving_ends_the_family_and_later_actions_are_waived,
            waiving_after_the_deadline_is_window_closed,
            a_repeated_req_id_gets_the_same_ok_and_changes_nothing_more,
            a_repeated_req_id_after_a_refusal_gets_the_same_refusal,
            the_repeat_of_an_ok_shows_the_current_view,
            req_ids_are_per_family,
            only_the_most_recent_answers_of_a_family_are_remembered,
            closing_one_ms_before_the_deadline_is_too_early,
            auto_confirm_gives_each_family_its_first_free_intention_in_rank_order,
            a_family_that_never_entered_formal_selection_gets_no_unit,
            a_family_whose_intentions_are_all_taken_gets_no_unit,
            closing_in_chunks_of_one_gives_the_same_result_as_one_step,
            concurrent_close_calls_decide_each_family_exactly_once,
            the_session_closes_once_and_later_closes_do_nothing,
            a_session_where_everyone_confirmed_still_closes,
            closing_an_unknown_session_is_unknown_session,
            supplementary_application_opens_at_the_deadline_and_closes_with_the_days_last_session,
            applying_for_supplementary_needs_a_session_without_a_unit,
            applying_twice_is_already_applied,
            a_family_of_the_days_last_session_cannot_apply,
            publishing_a_supplementary_session_checks_its_families,
            a_supplementary_session_may_not_start_in_the_past_or_before_applications_close,
            a_supplementary_session_runs_like_a_formal_one,
            events_are_numbered_from_1_without_gaps_and_paged,
            a_long_log_is_read_whole_and_paged_across_engine_pages,
            wait_events_returns_at_once_when_events_exist,
            wait_events_wakes_on_a_new_event,
            wait_events_times_out_with_nothing,
            the_event_log_alone_rebuilds_the_state,
            the_epoch_stays_the_same_while_the_log_grows,
            the_family_view_shows_phase_lists_deadlines_and_server_time,
            the_board_lists_taken_units_with_masked_names_in_order,
            results_list_every_family_with_its_state,
        );
    };
    (@tests $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let clock = ::std::sync::Arc::new(::xuanfang_hub::ManualClock::new(
                    crate::suite::START,
                ));
                let engine = $make(clock.clone()).await;
                let ctx = crate::suite::Ctx::load(engine, clock, stringify!($name)).await;
                crate::suite::$name(ctx).await;
            }
        )*
    };
}

// ---------------------------------------------------------------- the fixture

/// Local midnight (UTC+8) of the fixture's selection day.
pub const DAY: i64 = 1_750_003_200_000;
const HOUR: i64 = 3_600_000;
const MINUTE: i64 = 60_000;
/// Pre-selection opens.
pub const PRE: i64 = DAY + 8 * HOUR;
/// Formal sessions: S1 (ranks 1–5), S2 (6–7), S3 (8, the day's last).
pub const S1: i64 = DAY + 10 * HOUR;
pub const S2: i64 = S1 + 10 * MINUTE;
pub const S3: i64 = DAY + 11 * HOUR;
/// The formal window.
pub const WINDOW: i64 = 3 * MINUTE;
pub const DL1: i64 = S1 + WINDOW;
pub const DL3: i64 = S3 + WINDOW;
/// Where a supplementary session is published to start.
pub const SUP: i64 = DAY + 14 * HOUR;
/// The clock when each test starts (the batch is loaded then).
pub const START: Millis = Millis(DAY + 7 * HOUR);

const ONE_ROOM: &str = "一房一厅";
const TWO_ROOMS: &str = "两房一厅";

/// Eight one-room units A101–A108, two two-room units B201–B202; families f1–f8 by
/// rank; only f1 may take two rooms.
pub fn fixture(id: &BatchId) -> Batch {
    let unit = |id: &str, layout: &str, floor: i32| Unit {
        id: UnitId::new(id),
        building: if id.starts_with('A') { "1栋" } else { "2栋" }.to_owned(),
        number: id[1..].to_owned(),
        floor,
        layout: Layout::new(layout),
        area: 45.5,
        orientation: "南".to_owned(),
        rent: 1200.0,
    };
    let mut units: Vec<Unit> = (1..=8)
        .map(|i| unit(&format!("A10{i}"), ONE_ROOM, 1))
        .collect();
    units.push(unit("B201", TWO_ROOMS, 2));
    units.push(unit("B202", TWO_ROOMS, 2));
    let names = [
        "张*明", "李*华", "王*芳", "赵*强", "陈*静", "刘*伟", "杨*丽", "黄*军",
    ];
    let session_of = |rank: u32| match rank {
        1..=5 => "S1",
        6..=7 => "S2",
        _ => "S3",
    };
    let families: Vec<Family> = (1..=8u32)
        .map(|rank| Family {
            id: FamilyId::new(format!("f{rank}")),
            name: names[rank as usize - 1].to_owned(),
            rank,
            session: SessionId::new(session_of(rank)),
            eligible_layouts: if rank == 1 {
                vec![Layout::new(ONE_ROOM), Layout::new(TWO_ROOMS)]
            } else {
                vec![Layout::new(ONE_ROOM)]
            },
        })
        .collect();
    let session = |id: &str, start: i64| Session {
        id: SessionId::new(id),
        kind: SessionKind::Formal,
        start: Millis(start),
        window_ms: WINDOW,
        families: families
            .iter()
            .filter(|f| f.session.as_str() == id)
            .map(|f| f.id.clone())
            .collect(),
    };
    Batch {
        id: id.clone(),
        name: "2025年第一批公租房网上选房".to_owned(),
        preselect_start: Millis(PRE),
        preselect_end: None,
        utc_offset_minutes: 480,
        sessions: vec![session("S1", S1), session("S2", S2), session("S3", S3)],
        units,
        families,
    }
}

/// A batch id no other test or run uses.
pub fn unique_id(name: &str) -> BatchId {
    // Short enough for any engine's id limit (file names, key lengths).
    let name: String = name.chars().take(40).collect();
    BatchId::new(format!("{name}-{:016x}", rand::random::<u64>()))
}

// ---------------------------------------------------------------- helpers

/// One test's world: the engine, its clock, and a loaded fixture batch.
pub struct Ctx {
    pub engine: Arc<dyn Allocator>,
    pub clock: Arc<ManualClock>,
    pub batch: BatchId,
    pub spec: Batch,
    next_req: AtomicU64,
}

impl Ctx {
    /// Loads a fresh fixture batch named after the test.
    pub async fn load(engine: Arc<dyn Allocator>, clock: Arc<ManualClock>, name: &str) -> Ctx {
        let batch = unique_id(name);
        let spec = fixture(&batch);
        engine.load_batch(spec.clone()).await.expect("load_batch");
        Ctx {
            engine,
            clock,
            batch,
            spec,
            next_req: AtomicU64::new(1),
        }
    }

    /// A context for a batch the engine already holds.
    pub async fn attach(
        engine: Arc<dyn Allocator>,
        clock: Arc<ManualClock>,
        batch: &BatchId,
    ) -> Ctx {
        let spec = engine.batch(batch).await.expect("batch");
        Ctx {
            engine,
            clock,
            batch: batch.clone(),
            spec,
            next_req: AtomicU64::new(1),
        }
    }

    /// The same engine and clock, on another freshly loaded batch.
    pub async fn another(&self, spec: impl FnOnce(&BatchId) -> Batch) -> Ctx {
        let batch = unique_id("another");
        let spec = spec(&batch);
        self.engine
            .load_batch(spec.clone())
            .await
            .expect("load_batch");
        Ctx {
            engine: self.engine.clone(),
            clock: self.clock.clone(),
            batch,
            spec,
            next_req: AtomicU64::new(1),
        }
    }

    /// Moves server time.
    pub fn at(&self, t: i64) {
        self.clock.set(Millis(t));
    }

    pub fn now(&self) -> Millis {
        Clock::now(&*self.clock)
    }

    /// An action with a fresh request id.
    pub async fn act(&self, family: &str, action: Action) -> Answer {
        let req = format!("r{}", self.next_req.fetch_add(1, Ordering::SeqCst));
        self.act_req(family, &req, action).await
    }

    pub async fn act_req(&self, family: &str, req: &str, action: Action) -> Answer {
        self.engine
            .act(&self.batch, &FamilyId::new(family), req, action)
            .await
            .expect("the engine answers")
    }

    /// An action that must succeed.
    pub async fn ok(&self, family: &str, action: Action) -> FamilyView {
        let what = format!("{family} {action:?}");
        match self.act(family, action).await {
            Ok(view) => view,
            Err(r) => panic!("{what} refused: {r:?} at {}", self.now()),
        }
    }

    /// An action that must be refused.
    pub async fn refused(&self, family: &str, action: Action) -> Rejection {
        let what = format!("{family} {action:?}");
        match self.act(family, action).await {
            Ok(_) => panic!("{what} was accepted at {}", self.now()),
            Err(r) => r,
        }
    }

    /// Pre-declares at the current time and fills the cart.
    pub async fn cart(&self, family: &str, units: &[&str]) {
        self.ok(family, declare(Stage::Preselection)).await;
        for u in units {
            self.ok(family, add(ListKind::Cart, u)).await;
        }
    }

    /// Formal-declares at the current time (which syncs the cart) and sets the
    /// intentions to exactly `units`.
    pub async fn intentions(&self, family: &str, units: &[&str]) {
        self.ok(family, declare(Stage::Formal)).await;
        self.ok(family, set_list(ListKind::Intentions, units)).await;
    }

    pub async fn view(&self, family: &str) -> FamilyView {
        self.engine
            .family(&self.batch, &FamilyId::new(family))
            .await
            .expect("family")
    }

    pub async fn outcome(&self, family: &str) -> Option<Outcome> {
        self.view(family).await.outcome
    }

    pub async fn events(&self) -> Vec<Event> {
        self.engine
            .events(&self.batch, 0, usize::MAX)
            .await
            .expect("events")
    }

    pub async fn close(&self, session: &str) -> usize {
        self.engine
            .close_session(&self.batch, &SessionId::new(session))
            .await
            .expect("close_session")
    }

    pub async fn step(&self, session: &str, max: usize) -> Result<CloseStep, AllocError> {
        self.engine
            .close_session_step(&self.batch, &SessionId::new(session), max)
            .await
    }
}

pub fn declare(stage: Stage) -> Action {
    Action::Declare { stage }
}

pub fn add(list: ListKind, unit: &str) -> Action {
    edit(list, Edit::Add, unit)
}

pub fn edit(list: ListKind, edit: Edit, unit: &str) -> Action {
    Action::Edit {
        list,
        edit,
        unit: UnitId::new(unit),
    }
}

pub fn set_list(list: ListKind, units: &[&str]) -> Action {
    Action::SetList {
        list,
        units: ids(units),
    }
}

pub fn confirm(unit: &str) -> Action {
    Action::Confirm {
        unit: UnitId::new(unit),
    }
}

pub fn ids(units: &[&str]) -> Vec<UnitId> {
    units.iter().map(|u| UnitId::new(*u)).collect()
}

/// The code of a request refused as a whole.
pub fn code(e: AllocError) -> ErrorCode {
    match e {
        AllocError::Rejected(r) => r.code,
        other => panic!("expected a refusal, got the engine error {other}"),
    }
}

pub fn code_of<T: std::fmt::Debug>(r: Result<T, AllocError>) -> ErrorCode {
    code(r.expect_err("expected a refusal"))
}

fn selected(unit: &str, how: How, at: i64) -> Option<Outcome> {
    Some(Outcome::Selected {
        unit: UnitId::new(unit),
        how,
        at: Millis(at),
    })
}

fn no_unit(reason: NoUnitReason, at: i64) -> Option<Outcome> {
    Some(Outcome::NoUnit {
        reason,
        at: Millis(at),
    })
}

fn supplementary(id: &str, families: &[&str]) -> Session {
    Session {
        id: SessionId::new(id),
        kind: SessionKind::Supplementary,
        start: Millis(SUP),
        window_ms: WINDOW,
        families: families.iter().map(|f| FamilyId::new(*f)).collect(),
    }
}

/// The S1 scenario used by the auto-confirm tests, set up in formal selection:
/// f1 [A101, A102], f2 [A101, A103], f3 [A102, A101], f4 [A101], f5 absent.
/// Expected at the deadline: f1 A101, f2 A103, f3 A102, f4 none, f5 absent.
async fn s1_scenario(c: &Ctx) {
    c.at(S1);
    c.intentions("f1", &["A101", "A102"]).await;
    c.intentions("f2", &["A101", "A103"]).await;
    c.intentions("f3", &["A102", "A101"]).await;
    c.intentions("f4", &["A101"]).await;
    c.at(DL1);
}

async fn assert_s1_scenario_outcome(c: &Ctx) {
    assert_eq!(c.outcome("f1").await, selected("A101", How::Automatic, DL1));
    assert_eq!(c.outcome("f2").await, selected("A103", How::Automatic, DL1));
    assert_eq!(c.outcome("f3").await, selected("A102", How::Automatic, DL1));
    assert_eq!(
        c.outcome("f4").await,
        no_unit(NoUnitReason::NoFreeIntention, DL1)
    );
    assert_eq!(c.outcome("f5").await, no_unit(NoUnitReason::Absent, DL1));
}

fn count<'a>(events: &'a [Event], pred: impl Fn(&'a EventKind) -> bool) -> usize {
    events.iter().filter(|e| pred(&e.event)).count()
}

/// Runs `n` copies of a future-making closure at once.
async fn all_at_once<F, Fut, T>(n: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(f(i))).collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

// ---------------------------------------------------------------- batches

pub async fn load_batch_starts_the_log_with_batch_loaded_at_seq_1(c: Ctx) {
    let events = c.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].seq, 1);
    assert_eq!(events[0].at, START);
    assert_eq!(
        events[0].event,
        EventKind::BatchLoaded {
            batch: c.spec.clone()
        }
    );
    let board = c.engine.board(&c.batch).await.unwrap();
    assert_eq!(board.seq, 1);
    assert!(board.taken.is_empty());
}

/// `board_seq` names the board by its last public event, whatever private events came
/// after: every gateway then names one board by one position.
pub async fn the_board_position_is_the_last_public_event(c: Ctx) {
    let board = c.engine.board(&c.batch).await.unwrap();
    assert_eq!((board.seq, board.board_seq), (1, 1));
    c.at(PRE);
    c.cart("f1", &["A101"]).await;
    let board = c.engine.board(&c.batch).await.unwrap();
    assert!(board.seq > 1);
    assert_eq!(board.board_seq, 1, "private events do not move the board");
    c.at(S1);
    c.intentions("f1", &["A101"]).await;
    c.ok("f1", confirm("A101")).await;
    let taken = c.events().await.last().unwrap().seq;
    c.intentions("f2", &["A102"]).await;
    // More private events than one backwards read of the Redis stream takes.
    for _ in 0..150 {
        c.ok("f2", add(ListKind::Intentions, "A103")).await;
        c.ok("f2", edit(ListKind::Intentions, Edit::Remove, "A103"))
            .await;
    }
    let board = c.engine.board(&c.batch).await.unwrap();
    assert!(board.seq > taken + 300);
    assert_eq!(board.board_seq, taken);
}

pub async fn loading_a_batch_id_in_use_is_a_conflict(c: Ctx) {
    let mut again = c.spec.clone();
    again.name = "another name".to_owned();
    assert_eq!(
        code_of(c.engine.load_batch(again).await),
        ErrorCode::Conflict
    );
    assert_eq!(c.engine.batch(&c.batch).await.unwrap(), c.spec);
    assert_eq!(c.events().await.len(), 1);
}

pub async fn loading_an_invalid_batch_is_refused_as_invalid_batch(c: Ctx) {
    let id = unique_id("invalid");
    let mut dup_rank = fixture(&id);
    dup_rank.families[1].rank = 1;
    let mut no_units = fixture(&id);
    no_units.units.clear();
    let mut bad_window = fixture(&id);
    bad_window.sessions[0].window_ms = 0;
    let mut dup_unit = fixture(&id);
    dup_unit.units[1].id = UnitId::new("A101");
    for bad in [dup_rank, no_units, bad_window, dup_unit] {
        assert_eq!(
            code_of(c.engine.load_batch(bad).await),
            ErrorCode::InvalidBatch
        );
    }
    assert!(!c.engine.batches().await.unwrap().contains(&id));
    // The id is still free for a valid batch.
    c.engine.load_batch(fixture(&id)).await.unwrap();
}

pub async fn ids_that_are_empty_too_long_or_hold_control_characters_are_invalid_batch(c: Ctx) {
    let base = unique_id("ids");
    let mut bad = Vec::new();
    for id in ["", "b\r\nx", "b\"x", "b x", &"b".repeat(65)] {
        bad.push(fixture(&BatchId::new(id)));
    }
    let mut unit = fixture(&base);
    unit.units[0].id = UnitId::new("A\n101");
    bad.push(unit);
    let mut family = fixture(&base);
    family.families[7].id = FamilyId::new("f8\n");
    family.sessions[2].families[0] = FamilyId::new("f8\n");
    bad.push(family);
    let mut session = fixture(&base);
    session.sessions[2].id = SessionId::new("S\u{0}3");
    session.families[7].session = SessionId::new("S\u{0}3");
    bad.push(session);
    let mut long_family = fixture(&base);
    long_family.families[7].id = FamilyId::new("f".repeat(65));
    long_family.sessions[2].families[0] = FamilyId::new("f".repeat(65));
    bad.push(long_family);
    // Free text is bounded too: a name that would go to every watcher, a CR in a building.
    let mut huge_name = fixture(&unique_id("name"));
    huge_name.families[0].name = "张".repeat(100_000);
    bad.push(huge_name);
    let mut cr = fixture(&unique_id("building"));
    cr.units[0].building = "1栋
"
    .to_owned();
    bad.push(cr);
    let ids: Vec<BatchId> = bad.iter().map(|b| b.id.clone()).collect();
    for b in bad {
        let id = b.id.clone();
        assert_eq!(
            code_of(c.engine.load_batch(b).await),
            ErrorCode::InvalidBatch,
            "{id:?}"
        );
    }
    let listed = c.engine.batches().await.unwrap();
    assert!(ids.iter().all(|id| !listed.contains(id)), "{listed:?}");
    // Letters of any script, digits, '-', '_' and '.' are fine, up to 64 bytes.
    let chinese = BatchId::new(format!(
        "{}年第一批.v1",
        &base.as_str()[base.as_str().len() - 16..]
    ));
    c.engine.load_batch(fixture(&chinese)).await.unwrap();
    assert_eq!(c.engine.batch(&chinese).await.unwrap().id, chinese);
}

pub async fn batches_lists_every_loaded_batch(c: Ctx) {
    let other = c.another(fixture).await;
    let all = c.engine.batches().await.unwrap();
    assert!(all.contains(&c.batch));
    assert!(all.contains(&other.batch));
}

pub async fn catalog_and_batch_return_what_was_loaded(c: Ctx) {
    assert_eq!(c.engine.batch(&c.batch).await.unwrap(), c.spec);
    let cat = c.engine.catalog(&c.batch).await.unwrap();
    assert_eq!(cat.batch, c.batch);
    assert_eq!(cat.name, c.spec.name);
    assert_eq!(cat.preselect_start, Millis(PRE));
    assert_eq!(cat.units, c.spec.units);
    let sessions: Vec<_> = cat
        .sessions
        .iter()
        .map(|s| {
            (
                s.id.as_str(),
                s.start.0,
                s.deadline.0,
                s.first_rank,
                s.last_rank,
                s.families,
                s.closed,
            )
        })
        .collect();
    assert_eq!(
        sessions,
        vec![
            ("S1", S1, DL1, 1, 5, 5, false),
            ("S2", S2, S2 + WINDOW, 6, 7, 2, false),
            ("S3", S3, DL3, 8, 8, 1, false),
        ]
    );
}

pub async fn an_unknown_batch_is_refused_by_every_operation(c: Ctx) {
    let b = &unique_id("missing");
    let f = &FamilyId::new("f1");
    let s = &SessionId::new("S1");
    let e = &c.engine;
    let unknown = ErrorCode::UnknownBatch;
    assert_eq!(
        code_of(e.act(b, f, "r1", declare(Stage::Preselection)).await),
        unknown
    );
    assert_eq!(code_of(e.board(b).await), unknown);
    assert_eq!(code_of(e.family(b, f).await), unknown);
    assert_eq!(code_of(e.results(b).await), unknown);
    assert_eq!(code_of(e.catalog(b).await), unknown);
    assert_eq!(code_of(e.batch(b).await), unknown);
    assert_eq!(code_of(e.events(b, 0, 10).await), unknown);
    let waited = e.wait_events(b, 0, 10, Duration::from_millis(10)).await;
    assert_eq!(code_of(waited), unknown);
    assert_eq!(code_of(e.epoch(b).await), unknown);
    assert_eq!(code_of(e.close_session_step(b, s, 10).await), unknown);
    let published = e.publish_supplementary(b, supplementary("X", &[])).await;
    assert_eq!(code_of(published), unknown);
}

pub async fn an_unknown_family_is_refused(c: Ctx) {
    c.at(PRE);
    let r = c.refused("nobody", declare(Stage::Preselection)).await;
    assert_eq!(r.code, ErrorCode::UnknownFamily);
    let view = c.engine.family(&c.batch, &FamilyId::new("nobody")).await;
    assert_eq!(code_of(view), ErrorCode::UnknownFamily);
    assert_eq!(c.events().await.len(), 1);
}

pub async fn server_time_is_the_engine_clock(c: Ctx) {
    c.at(PRE + 1234);
    assert_eq!(c.engine.now().await.unwrap(), Millis(PRE + 1234));
    assert_eq!(c.view("f1").await.server_time, Millis(PRE + 1234));
    c.engine.ping().await.unwrap();
}

// ---------------------------------------------------------------- time windows

pub async fn preselect_declaration_is_refused_one_ms_before_preselect_start(c: Ctx) {
    c.at(PRE - 1);
    assert_eq!(
        c.view("f1").await.phase,
        xuanfang_hub::Phase::BeforePreselection
    );
    let r = c.refused("f1", declare(Stage::Preselection)).await;
    assert_eq!(r.code, ErrorCode::WindowClosed);
    assert_eq!(c.view("f1").await.preselect_declared_at, None);
}

pub async fn preselect_declaration_is_accepted_at_preselect_start(c: Ctx) {
    c.at(PRE);
    let view = c.ok("f1", declare(Stage::Preselection)).await;
    assert_eq!(view.phase, xuanfang_hub::Phase::Preselection);
    assert_eq!(view.preselect_declared_at, Some(Millis(PRE)));
    let events = c.events().await;
    assert_eq!(
        events.last().map(|e| (&e.event, e.at)),
        Some((
            &EventKind::Declared {
                family: FamilyId::new("f1"),
                stage: Stage::Preselection
            },
            Millis(PRE)
        ))
    );
}

pub async fn declaring_twice_keeps_the_first_acceptance_time(c: Ctx) {
    c.at(PRE);
    c.ok("f1", declare(Stage::Preselection)).await;
    let before = c.events().await.len();
    c.at(PRE + 5000);
    let view = c.ok("f1", declare(Stage::Preselection)).await;
    assert_eq!(view.preselect_declared_at, Some(Millis(PRE)));
    assert_eq!(c.events().await.len(), before);
}

pub async fn cart_edits_need_the_preselect_declaration(c: Ctx) {
    c.at(PRE);
    let r = c.refused("f1", add(ListKind::Cart, "A101")).await;
    assert_eq!(r.code, ErrorCode::DeclarationRequired);
    let r = c.refused("f1", set_list(ListKind::Cart, &["A101"])).await;
    assert_eq!(r.code, ErrorCode::DeclarationRequired);
}

pub async fn the_cart_closes_at_session_start(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &["A101"]).await;
    c.at(S1 - 1);
    assert_eq!(
        c.ok("f1", add(ListKind::Cart, "A102")).await.cart,
        ids(&["A101", "A102"])
    );
    c.at(S1);
    let r = c.refused("f1", add(ListKind::Cart, "A103")).await;
    assert_eq!(r.code, ErrorCode::WindowClosed);
    // A later session's family still pre-selects.
    c.cart("f6", &["A103"]).await;
}

pub async fn preselect_end_closes_the_cart_for_everyone(c: Ctx) {
    let end = PRE + HOUR;
    let b = c
        .another(|id| Batch {
            preselect_end: Some(Millis(end)),
            ..fixture(id)
        })
        .await;
    b.at(PRE);
    b.cart("f6", &["A101"]).await;
    b.at(end - 1);
    b.ok("f6", add(ListKind::Cart, "A102")).await;
    b.at(end);
    assert_eq!(b.view("f6").await.phase, xuanfang_hub::Phase::Waiting);
    let r = b.refused("f6", add(ListKind::Cart, "A103")).await;
    assert_eq!(r.code, ErrorCode::WindowClosed);
    assert_eq!(b.view("f6").await.preselect_end, Some(Millis(end)));
}

pub async fn formal_declaration_opens_at_session_start(c: Ctx) {
    c.at(S1 - 1);
    let r = c.refused("f1", declare(Stage::Formal)).await;
    assert_eq!(r.code, ErrorCode::WindowClosed);
    c.at(S1);
    let view = c.ok("f1", declare(Stage::Formal)).await;
    assert_eq!(view.phase, xuanfang_hub::Phase::Formal);
    assert_eq!(view.formal_declared_at, Some(Millis(S1)));
    // Pre-selection is over for this family.
    let r = c.refused("f1", declare(Stage::Preselection)).await;
    assert_eq!(r.code, ErrorCode::WindowClosed);
}

pub async fn intention_edits_sync_and_confirm_need_the_formal_declaration(c: Ctx) {
    c.at(S1);
    for action in [
        add(ListKind::Intentions, "A101"),
        Action::Sync,
        confirm("A101"),
    ] {
        let r = c.refused("f1", action).await;
        assert_eq!(r.code, ErrorCode::DeclarationRequired);
    }
}

pub async fn confirm_is_accepted_one_ms_before_the_deadline(c: Ctx) {
    c.at(S1);
    c.intentions("f1", &["A101"]).await;
    c.at(DL1 - 1);
    let view = c.ok("f1", confirm("A101")).await;
    assert_eq!(view.outcome, selected("A101", How::Confirmed, DL1 - 1));
}

pub async fn confirm_is_refused_at_the_deadline(c: Ctx) {
    c.at(S1);
    c.intentions("f1", &["A101"]).await;
    c.at(DL1);
    let r = c.refused("f1", confirm("A101")).await;
    assert_eq!(r.code, ErrorCode::WindowClosed);
    let view = c.view("f1").await;
    assert_eq!(view.phase, xuanfang_hub::Phase::Done);
    assert_eq!(view.outcome, None);
}

pub async fn the_intentions_close_at_the_deadline(c: Ctx) {
    c.at(S1);
    c.intentions("f1", &["A101"]).await;
    c.at(DL1 - 1);
    c.ok("f1", add(ListKind::Intentions, "A102")).await;
    c.at(DL1);
    let r = c.refused("f1", add(ListKind::Intentions, "A103")).await;
    assert_eq!(r.code, ErrorCode::WindowClosed);
}

// ---------------------------------------------------------------- lists

pub async fn only_eligible_layouts_can_be_added(c: Ctx) {
    c.at(PRE);
    c.cart("f2", &[]).await;
    let r = c.refused("f2", add(ListKind::Cart, "B201")).await;
    assert_eq!(
        r,
        Rejection::with_unit(ErrorCode::NotEligible, UnitId::new("B201"))
    );
    c.cart("f1", &["B201"]).await;
}

pub async fn a_list_holds_at_most_five_units(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &["A101", "A102", "A103", "A104", "A105"])
        .await;
    let r = c.refused("f1", add(ListKind::Cart, "A106")).await;
    assert_eq!(r.code, ErrorCode::ListFull);
    assert_eq!(c.view("f1").await.cart.len(), 5);
}

pub async fn adding_a_unit_twice_is_already_in_list(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &["A101"]).await;
    let r = c.refused("f1", add(ListKind::Cart, "A101")).await;
    assert_eq!(
        r,
        Rejection::with_unit(ErrorCode::AlreadyInList, UnitId::new("A101"))
    );
}

pub async fn editing_a_unit_not_in_the_list_is_not_in_list(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &["A101"]).await;
    for e in [Edit::Remove, Edit::Up, Edit::Down, Edit::Top] {
        let r = c.refused("f1", edit(ListKind::Cart, e, "A102")).await;
        assert_eq!(
            r,
            Rejection::with_unit(ErrorCode::NotInList, UnitId::new("A102"))
        );
    }
}

pub async fn an_unknown_unit_is_unknown_unit(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &[]).await;
    assert_eq!(
        c.refused("f1", add(ListKind::Cart, "Z999")).await.code,
        ErrorCode::UnknownUnit
    );
    let r = c.refused("f1", set_list(ListKind::Cart, &["Z999"])).await;
    assert_eq!(r.code, ErrorCode::UnknownUnit);
    c.at(S1);
    c.intentions("f1", &[]).await;
    assert_eq!(
        c.refused("f1", confirm("Z999")).await.code,
        ErrorCode::UnknownUnit
    );
}

pub async fn cart_moves_up_down_top_and_remove(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &["A101", "A102", "A103"]).await;
    let cart = |v: FamilyView| v.cart;
    let moved = c.ok("f1", edit(ListKind::Cart, Edit::Up, "A103")).await;
    assert_eq!(cart(moved), ids(&["A101", "A103", "A102"]));
    let moved = c.ok("f1", edit(ListKind::Cart, Edit::Down, "A101")).await;
    assert_eq!(cart(moved), ids(&["A103", "A101", "A102"]));
    let moved = c.ok("f1", edit(ListKind::Cart, Edit::Top, "A102")).await;
    assert_eq!(cart(moved), ids(&["A102", "A103", "A101"]));
    let moved = c.ok("f1", edit(ListKind::Cart, Edit::Remove, "A103")).await;
    assert_eq!(cart(moved), ids(&["A102", "A101"]));
    assert_eq!(c.view("f1").await.cart, ids(&["A102", "A101"]));
}

pub async fn a_move_that_changes_nothing_is_ok_and_logs_no_event(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &["A101", "A102"]).await;
    let before = c.events().await.len();
    c.ok("f1", edit(ListKind::Cart, Edit::Up, "A101")).await;
    c.ok("f1", edit(ListKind::Cart, Edit::Top, "A101")).await;
    c.ok("f1", edit(ListKind::Cart, Edit::Down, "A102")).await;
    assert_eq!(c.events().await.len(), before);
    assert_eq!(c.view("f1").await.cart, ids(&["A101", "A102"]));
}

pub async fn set_list_replaces_the_whole_order(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &["A101", "A102"]).await;
    let view = c
        .ok("f1", set_list(ListKind::Cart, &["A103", "A101"]))
        .await;
    assert_eq!(view.cart, ids(&["A103", "A101"]));
    let last = c.events().await.pop().map(|e| e.event);
    assert_eq!(
        last,
        Some(EventKind::ListChanged {
            family: FamilyId::new("f1"),
            list: ListKind::Cart,
            units: ids(&["A103", "A101"]),
        })
    );
    assert!(c
        .ok("f1", set_list(ListKind::Cart, &[]))
        .await
        .cart
        .is_empty());
}

pub async fn set_list_with_duplicates_or_more_than_five_units_is_invalid_list(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &["A101"]).await;
    let r = c
        .refused("f1", set_list(ListKind::Cart, &["A101", "A102", "A101"]))
        .await;
    assert_eq!(r.code, ErrorCode::InvalidList);
    let six = ["A101", "A102", "A103", "A104", "A105", "A106"];
    let r = c.refused("f1", set_list(ListKind::Cart, &six)).await;
    assert_eq!(r.code, ErrorCode::InvalidList);
    c.cart("f2", &[]).await;
    let r = c
        .refused("f2", set_list(ListKind::Cart, &["A102", "B201"]))
        .await;
    assert_eq!(
        r,
        Rejection::with_unit(ErrorCode::NotEligible, UnitId::new("B201"))
    );
    assert_eq!(c.view("f2").await.cart, Vec::<UnitId>::new());
    assert_eq!(c.view("f1").await.cart, ids(&["A101"]));
}

pub async fn set_list_keeps_a_listed_unit_even_if_taken_since(c: Ctx) {
    // f6 (session S2) pre-selects A101; f1 (S1) confirms it during S1.
    c.at(PRE);
    c.cart("f6", &["A101", "A102"]).await;
    c.at(S1);
    c.intentions("f1", &["A101"]).await;
    c.ok("f1", confirm("A101")).await;
    // Reordering keeps the taken unit; adding it anew is refused.
    let view = c
        .ok("f6", set_list(ListKind::Cart, &["A102", "A101"]))
        .await;
    assert_eq!(view.cart, ids(&["A102", "A101"]));
    c.ok("f6", edit(ListKind::Cart, Edit::Remove, "A101")).await;
    let r = c
        .refused("f6", set_list(ListKind::Cart, &["A102", "A101"]))
        .await;
    assert_eq!(
        r,
        Rejection::with_unit(ErrorCode::UnitTaken, UnitId::new("A101"))
    );
}

pub async fn a_unit_taken_by_another_family_cannot_be_added(c: Ctx) {
    c.at(S1);
    c.intentions("f1", &["A101"]).await;
    c.ok("f1", confirm("A101")).await;
    c.cart("f6", &[]).await;
    let r = c.refused("f6", add(ListKind::Cart, "A101")).await;
    assert_eq!(
        r,
        Rejection::with_unit(ErrorCode::UnitTaken, UnitId::new("A101"))
    );
    let r = c.refused("f2", add(ListKind::Intentions, "A101")).await;
    assert_eq!(r.code, ErrorCode::DeclarationRequired);
    c.intentions("f2", &[]).await;
    let r = c.refused("f2", add(ListKind::Intentions, "A101")).await;
    assert_eq!(
        r,
        Rejection::with_unit(ErrorCode::UnitTaken, UnitId::new("A101"))
    );
}

pub async fn sync_copies_the_cart_into_the_intentions_and_overwrites_them(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &["A101", "A102"]).await;
    c.at(S1);
    // Entering synced once; the family then chose its own list.
    c.intentions("f1", &["A103"]).await;
    let view = c.ok("f1", Action::Sync).await;
    assert_eq!(view.intentions, ids(&["A101", "A102"]));
    assert_eq!(view.cart, ids(&["A101", "A102"]));
    c.ok("f1", confirm("A102")).await;
}

pub async fn entering_formal_selection_syncs_the_preselection(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &["A102", "A101"]).await;
    c.at(S1);
    let view = c.ok("f1", declare(Stage::Formal)).await;
    assert_eq!(view.intentions, ids(&["A102", "A101"]));
    // A second acceptance changes nothing, edits made since stay.
    c.ok("f1", edit(ListKind::Intentions, Edit::Remove, "A102"))
        .await;
    let view = c.ok("f1", declare(Stage::Formal)).await;
    assert_eq!(view.intentions, ids(&["A101"]));
    let synced = count(&c.events().await, |e| {
        matches!(
            e,
            EventKind::ListChanged {
                list: ListKind::Intentions,
                ..
            }
        )
    });
    assert_eq!(synced, 2, "the entry sync and the removal");
}

pub async fn an_idle_family_that_never_tapped_sync_gets_its_first_free_preselected_unit(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &["A101", "A102"]).await;
    c.cart("f2", &["A101", "A103"]).await;
    c.at(S1);
    c.ok("f1", declare(Stage::Formal)).await;
    c.ok("f2", declare(Stage::Formal)).await;
    c.at(DL1);
    c.close("S1").await;
    assert_eq!(c.outcome("f1").await, selected("A101", How::Automatic, DL1));
    assert_eq!(c.outcome("f2").await, selected("A103", How::Automatic, DL1));
}

pub async fn sync_outside_the_formal_window_is_window_closed(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &["A101"]).await;
    assert_eq!(
        c.refused("f1", Action::Sync).await.code,
        ErrorCode::WindowClosed
    );
    c.at(DL1);
    assert_eq!(
        c.refused("f1", Action::Sync).await.code,
        ErrorCode::WindowClosed
    );
}

// ---------------------------------------------------------------- confirm and waive

pub async fn confirm_gives_the_unit_and_ends_the_familys_session(c: Ctx) {
    c.at(S1);
    c.intentions("f1", &["A101", "A102"]).await;
    c.at(S1 + 1000);
    let view = c.ok("f1", confirm("A102")).await;
    assert_eq!(view.outcome, selected("A102", How::Confirmed, S1 + 1000));
    assert_eq!(view.phase, xuanfang_hub::Phase::Done);
    let board = c.engine.board(&c.batch).await.unwrap();
    assert_eq!(board.taken.len(), 1);
    let t = &board.taken[0];
    assert_eq!(
        (t.unit.as_str(), t.family_name.as_str(), t.rank, t.how, t.at),
        ("A102", "张*明", 1, How::Confirmed, Millis(S1 + 1000))
    );
    let last = c.events().await.pop().map(|e| e.event);
    assert_eq!(
        last,
        Some(EventKind::Selected {
            family: FamilyId::new("f1"),
            unit: UnitId::new("A102"),
            how: How::Confirmed
        })
    );
}

pub async fn confirm_of_a_unit_not_in_the_intentions_is_not_in_intentions(c: Ctx) {
    c.at(S1);
    c.intentions("f1", &["A101"]).await;
    let r = c.refused("f1", confirm("A102")).await;
    assert_eq!(
        r,
        Rejection::with_unit(ErrorCode::NotInIntentions, UnitId::new("A102"))
    );
    assert_eq!(c.outcome("f1").await, None);
}

pub async fn confirm_of_a_taken_unit_is_unit_taken_and_keeps_the_list(c: Ctx) {
    c.at(S1);
    c.intentions("f1", &["A101", "A102"]).await;
    c.intentions("f2", &["A101", "A102"]).await;
    c.ok("f1", confirm("A101")).await;
    let r = c.refused("f2", confirm("A101")).await;
    assert_eq!(
        r,
        Rejection::with_unit(ErrorCode::UnitTaken, UnitId::new("A101"))
    );
    let view = c.view("f2").await;
    assert_eq!(view.intentions, ids(&["A101", "A102"]));
    assert_eq!(view.outcome, None);
    c.ok("f2", confirm("A102")).await;
}

pub async fn concurrent_confirms_of_one_unit_have_exactly_one_winner(c: Ctx) {
    c.at(S1);
    let families = ["f1", "f2", "f3", "f4", "f5"];
    for f in families {
        c.intentions(f, &["A101"]).await;
    }
    let (engine, batch) = (c.engine.clone(), c.batch.clone());
    let answers = all_at_once(families.len(), |i| {
        let (engine, batch) = (engine.clone(), batch.clone());
        async move {
            let family = FamilyId::new(format!("f{}", i + 1));
            let answer = engine.act(&batch, &family, "race", confirm("A101")).await;
            (family, answer.expect("the engine answers"))
        }
    })
    .await;
    let winners: Vec<_> = answers
        .iter()
        .filter(|(_, a)| a.is_ok())
        .map(|(f, _)| f.clone())
        .collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    for (_, a) in answers.iter().filter(|(_, a)| a.is_err()) {
        let r = a.clone().unwrap_err();
        assert_eq!(
            r,
            Rejection::with_unit(ErrorCode::UnitTaken, UnitId::new("A101"))
        );
    }
    let board = c.engine.board(&c.batch).await.unwrap();
    assert_eq!(board.taken.len(), 1);
    let winner = c.spec.family(&winners[0]).unwrap();
    assert_eq!(board.taken[0].rank, winner.rank);
    let events = c.events().await;
    assert_eq!(
        count(&events, |k| matches!(k, EventKind::Selected { .. })),
        1
    );
}

pub async fn a_family_with_a_unit_gets_already_has_unit_naming_it(c: Ctx) {
    c.at(S1);
    c.intentions("f1", &["A101", "A102"]).await;
    c.ok("f1", confirm("A101")).await;
    let held = Rejection::with_unit(ErrorCode::AlreadyHasUnit, UnitId::new("A101"));
    for action in [
        declare(Stage::Formal),
        add(ListKind::Intentions, "A103"),
        Action::Sync,
        confirm("A102"),
        Action::Waive,
    ] {
        assert_eq!(c.refused("f1", action).await, held);
    }
    let r = c.refused("f1", Action::ApplySupplementary).await;
    assert_eq!(r.code, ErrorCode::NotEligibleForSupplementary);
}

pub async fn waiving_ends_the_family_and_later_actions_are_waived(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &["A101"]).await;
    let view = c.ok("f1", Action::Waive).await;
    assert_eq!(view.outcome, Some(Outcome::Waived { at: Millis(PRE) }));
    assert_eq!(
        c.refused("f1", add(ListKind::Cart, "A102")).await.code,
        ErrorCode::Waived
    );
    c.at(S1);
    assert_eq!(
        c.refused("f1", declare(Stage::Formal)).await.code,
        ErrorCode::Waived
    );
    c.at(DL1);
    c.close("S1").await;
    assert_eq!(
        c.outcome("f1").await,
        Some(Outcome::Waived { at: Millis(PRE) })
    );
    let r = c.refused("f1", Action::ApplySupplementary).await;
    assert_eq!(r.code, ErrorCode::NotEligibleForSupplementary);
}

pub async fn waiving_after_the_deadline_is_window_closed(c: Ctx) {
    c.at(DL1);
    assert_eq!(
        c.refused("f1", Action::Waive).await.code,
        ErrorCode::WindowClosed
    );
    c.at(DL1 - 1);
    c.ok("f2", Action::Waive).await;
}

// ---------------------------------------------------------------- idempotency

pub async fn a_repeated_req_id_gets_the_same_ok_and_changes_nothing_more(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &[]).await;
    let first = c.act_req("f1", "add-1", add(ListKind::Cart, "A101")).await;
    let events = c.events().await.len();
    let again = c.act_req("f1", "add-1", add(ListKind::Cart, "A101")).await;
    assert_eq!(first, again);
    assert_eq!(again.map(|v| v.cart), Ok(ids(&["A101"])));
    assert_eq!(c.events().await.len(), events);
}

pub async fn a_repeated_req_id_after_a_refusal_gets_the_same_refusal(c: Ctx) {
    c.at(PRE - 1);
    let first = c.act_req("f1", "decl", declare(Stage::Preselection)).await;
    assert_eq!(first, Err(Rejection::new(ErrorCode::WindowClosed)));
    c.at(PRE);
    let again = c.act_req("f1", "decl", declare(Stage::Preselection)).await;
    assert_eq!(again, first);
    assert_eq!(c.view("f1").await.preselect_declared_at, None);
    // A new request id is decided afresh.
    c.ok("f1", declare(Stage::Preselection)).await;
}

pub async fn the_repeat_of_an_ok_shows_the_current_view(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &[]).await;
    c.act_req("f1", "one", add(ListKind::Cart, "A101"))
        .await
        .unwrap();
    c.act_req("f1", "two", add(ListKind::Cart, "A102"))
        .await
        .unwrap();
    let again = c.act_req("f1", "one", add(ListKind::Cart, "A101")).await;
    assert_eq!(again.map(|v| v.cart), Ok(ids(&["A101", "A102"])));
}

pub async fn req_ids_are_per_family(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &[]).await;
    c.cart("f2", &[]).await;
    c.act_req("f1", "same", add(ListKind::Cart, "A101"))
        .await
        .unwrap();
    let f2 = c.act_req("f2", "same", add(ListKind::Cart, "A102")).await;
    assert_eq!(f2.map(|v| v.cart), Ok(ids(&["A102"])));
}

pub async fn only_the_most_recent_answers_of_a_family_are_remembered(c: Ctx) {
    use xuanfang_allocator::REPLIES_PER_FAMILY as K;
    let too_early = Err(Rejection::new(ErrorCode::WindowClosed));
    // K + 1 refusals: "old" first, then "k1".."kK".
    c.at(PRE - 1);
    assert_eq!(
        c.act_req("f1", "old", declare(Stage::Preselection)).await,
        too_early
    );
    for i in 1..=K {
        let r = c
            .act_req("f1", &format!("k{i}"), declare(Stage::Preselection))
            .await;
        assert_eq!(r, too_early);
    }
    // Another family's answers do not push f1's out.
    c.act_req("f2", "other", declare(Stage::Preselection))
        .await
        .unwrap_err();
    c.at(PRE);
    // The K most recent still replay their first answer (decided now, they would pass).
    for i in 1..=K {
        let r = c
            .act_req("f1", &format!("k{i}"), declare(Stage::Preselection))
            .await;
        assert_eq!(r, too_early, "k{i} replays");
    }
    assert_eq!(c.view("f1").await.preselect_declared_at, None);
    // The oldest is forgotten: sent again, it is decided afresh, then remembered.
    let fresh = c.act_req("f1", "old", declare(Stage::Preselection)).await;
    assert_eq!(
        fresh.map(|v| v.preselect_declared_at),
        Ok(Some(Millis(PRE)))
    );
    let events = c.events().await.len();
    c.act_req("f1", "old", declare(Stage::Preselection))
        .await
        .unwrap();
    assert_eq!(c.events().await.len(), events);
    // f2's answer was its own.
    let other = c.act_req("f2", "other", declare(Stage::Preselection)).await;
    assert_eq!(other, too_early);
}

// ---------------------------------------------------------------- auto-confirm

pub async fn closing_one_ms_before_the_deadline_is_too_early(c: Ctx) {
    c.at(DL1 - 1);
    assert_eq!(code_of(c.step("S1", 10).await), ErrorCode::TooEarly);
    assert_eq!(c.outcome("f1").await, None);
    c.at(DL1);
    assert_eq!(
        c.step("S1", 10).await.unwrap(),
        CloseStep {
            decided: 5,
            closed: true
        }
    );
}

pub async fn auto_confirm_gives_each_family_its_first_free_intention_in_rank_order(c: Ctx) {
    s1_scenario(&c).await;
    assert_eq!(c.close("S1").await, 5);
    assert_s1_scenario_outcome(&c).await;
    let taken: Vec<_> = c
        .engine
        .board(&c.batch)
        .await
        .unwrap()
        .taken
        .into_iter()
        .map(|t| (t.unit.0, t.rank, t.how))
        .collect();
    assert_eq!(
        taken,
        vec![
            ("A101".to_owned(), 1, How::Automatic),
            ("A103".to_owned(), 2, How::Automatic),
            ("A102".to_owned(), 3, How::Automatic),
        ]
    );
    // The outcomes are logged in rank order.
    let order: Vec<_> = c
        .events()
        .await
        .into_iter()
        .filter_map(|e| match e.event {
            EventKind::Selected { family, .. } | EventKind::NoUnit { family, .. } => Some(family.0),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["f1", "f2", "f3", "f4", "f5"]);
}

pub async fn a_family_that_never_entered_formal_selection_gets_no_unit(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &["A101"]).await;
    c.at(DL1);
    c.close("S1").await;
    assert_eq!(c.outcome("f1").await, no_unit(NoUnitReason::Absent, DL1));
    assert!(c.engine.board(&c.batch).await.unwrap().taken.is_empty());
}

pub async fn a_family_whose_intentions_are_all_taken_gets_no_unit(c: Ctx) {
    c.at(S1);
    c.intentions("f1", &["A101"]).await;
    c.intentions("f2", &["A101"]).await;
    c.intentions("f3", &[]).await;
    c.ok("f1", confirm("A101")).await;
    c.at(DL1);
    assert_eq!(c.close("S1").await, 4);
    assert_eq!(
        c.outcome("f2").await,
        no_unit(NoUnitReason::NoFreeIntention, DL1)
    );
    assert_eq!(
        c.outcome("f3").await,
        no_unit(NoUnitReason::NoIntentions, DL1)
    );
    assert_eq!(c.outcome("f1").await, selected("A101", How::Confirmed, S1));
}

pub async fn closing_in_chunks_of_one_gives_the_same_result_as_one_step(c: Ctx) {
    let big = c.another(fixture).await;
    s1_scenario(&c).await;
    s1_scenario(&big).await;
    let mut steps = 0;
    loop {
        let step = c.step("S1", 1).await.unwrap();
        assert!(step.decided <= 1);
        steps += 1;
        if step.closed {
            break;
        }
        assert!(steps < 20, "closing never ends");
    }
    assert!(steps >= 5);
    assert_eq!(
        big.step("S1", 1000).await.unwrap(),
        CloseStep {
            decided: 5,
            closed: true
        }
    );
    assert_s1_scenario_outcome(&c).await;
    assert_s1_scenario_outcome(&big).await;
    let states = |r: Vec<xuanfang_allocator::FamilyRecord>| {
        r.into_iter().map(|r| r.state).collect::<Vec<_>>()
    };
    assert_eq!(
        states(c.engine.results(&c.batch).await.unwrap()),
        states(big.engine.results(&big.batch).await.unwrap())
    );
    let chunked = c.engine.board(&c.batch).await.unwrap();
    let whole = big.engine.board(&big.batch).await.unwrap();
    assert_eq!(chunked.taken, whole.taken);
    assert_eq!(chunked.sessions, whole.sessions);
}

pub async fn concurrent_close_calls_decide_each_family_exactly_once(c: Ctx) {
    s1_scenario(&c).await;
    let (engine, batch) = (c.engine.clone(), c.batch.clone());
    let decided: Vec<usize> = all_at_once(16, |_| {
        let (engine, batch) = (engine.clone(), batch.clone());
        async move {
            let mut mine = 0;
            loop {
                let step = engine
                    .close_session_step(&batch, &SessionId::new("S1"), 1)
                    .await
                    .expect("close step");
                mine += step.decided;
                if step.closed {
                    return mine;
                }
            }
        }
    })
    .await;
    assert_eq!(decided.iter().sum::<usize>(), 5, "{decided:?}");
    let events = c.events().await;
    for f in ["f1", "f2", "f3", "f4", "f5"] {
        let outcomes = count(&events, |k| match k {
            EventKind::Selected { family, .. } | EventKind::NoUnit { family, .. } => {
                family.as_str() == f
            }
            _ => false,
        });
        assert_eq!(outcomes, 1, "{f} decided {outcomes} times");
    }
    assert_eq!(
        count(&events, |k| matches!(k, EventKind::SessionClosed { .. })),
        1
    );
    assert_s1_scenario_outcome(&c).await;
}

pub async fn the_session_closes_once_and_later_closes_do_nothing(c: Ctx) {
    s1_scenario(&c).await;
    assert_eq!(c.close("S1").await, 5);
    let seq = c.engine.board(&c.batch).await.unwrap().seq;
    assert_eq!(c.close("S1").await, 0);
    assert_eq!(
        c.step("S1", 10).await.unwrap(),
        CloseStep {
            decided: 0,
            closed: true
        }
    );
    let events = c.events().await;
    assert_eq!(events.last().map(|e| e.seq), Some(seq));
    let closed = EventKind::SessionClosed {
        session: SessionId::new("S1"),
    };
    assert_eq!(count(&events, |k| *k == closed), 1);
    assert_eq!(events.last().map(|e| &e.event), Some(&closed));
    let board = c.engine.board(&c.batch).await.unwrap();
    let closed: Vec<_> = board
        .sessions
        .iter()
        .map(|s| (s.id.as_str(), s.closed))
        .collect();
    assert_eq!(closed, [("S1", true), ("S2", false), ("S3", false)]);
    assert!(c.view("f1").await.session.closed);
}

pub async fn a_session_where_everyone_confirmed_still_closes(c: Ctx) {
    c.at(S2);
    c.intentions("f6", &["A101"]).await;
    c.intentions("f7", &["A102"]).await;
    c.ok("f6", confirm("A101")).await;
    c.ok("f7", confirm("A102")).await;
    c.at(S2 + WINDOW);
    assert_eq!(
        c.step("S2", 10).await.unwrap(),
        CloseStep {
            decided: 0,
            closed: true
        }
    );
    assert_eq!(c.outcome("f6").await, selected("A101", How::Confirmed, S2));
}

pub async fn closing_an_unknown_session_is_unknown_session(c: Ctx) {
    c.at(DL3);
    assert_eq!(code_of(c.step("S9", 10).await), ErrorCode::UnknownSession);
}

// ---------------------------------------------------------------- supplementary

pub async fn supplementary_application_opens_at_the_deadline_and_closes_with_the_days_last_session(
    c: Ctx,
) {
    c.at(DL1 - 1);
    let r = c.refused("f1", Action::ApplySupplementary).await;
    assert_eq!(r.code, ErrorCode::NotEligibleForSupplementary);
    c.at(DL1);
    c.close("S1").await;
    assert_eq!(
        c.view("f1").await.supplementary_window,
        Some((Millis(DL1), Millis(DL3)))
    );
    let view = c.ok("f1", Action::ApplySupplementary).await;
    assert_eq!(view.applied_supplementary_at, Some(Millis(DL1)));
    c.at(DL3 - 1);
    c.ok("f2", Action::ApplySupplementary).await;
    c.at(DL3);
    assert_eq!(
        c.refused("f3", Action::ApplySupplementary).await.code,
        ErrorCode::WindowClosed
    );
}

pub async fn applying_for_supplementary_needs_a_session_without_a_unit(c: Ctx) {
    c.at(S1);
    c.intentions("f1", &["A101"]).await;
    c.intentions("f3", &["A101"]).await;
    c.ok("f1", confirm("A101")).await;
    c.ok("f2", Action::Waive).await;
    c.at(DL1);
    c.close("S1").await;
    for f in ["f1", "f2"] {
        let r = c.refused(f, Action::ApplySupplementary).await;
        assert_eq!(r.code, ErrorCode::NotEligibleForSupplementary, "{f}");
    }
    // f3's only intention was taken: it may apply.
    c.ok("f3", Action::ApplySupplementary).await;
    // f6's session has not ended.
    let r = c.refused("f6", Action::ApplySupplementary).await;
    assert_eq!(r.code, ErrorCode::NotEligibleForSupplementary);
}

pub async fn applying_twice_is_already_applied(c: Ctx) {
    c.at(DL1);
    c.close("S1").await;
    c.ok("f1", Action::ApplySupplementary).await;
    assert_eq!(
        c.refused("f1", Action::ApplySupplementary).await.code,
        ErrorCode::AlreadyApplied
    );
}

pub async fn a_family_of_the_days_last_session_cannot_apply(c: Ctx) {
    c.at(DL3);
    c.close("S3").await;
    assert_eq!(c.view("f8").await.supplementary_window, None);
    assert_eq!(
        c.refused("f8", Action::ApplySupplementary).await.code,
        ErrorCode::WindowClosed
    );
}

pub async fn publishing_a_supplementary_session_checks_its_families(c: Ctx) {
    c.at(DL1);
    c.close("S1").await;
    c.ok("f1", Action::ApplySupplementary).await;
    c.ok("f2", Action::ApplySupplementary).await;
    let publish = |s: Session| c.engine.publish_supplementary(&c.batch, s);
    assert_eq!(
        code_of(publish(supplementary("SUP1", &["f1", "f3"])).await),
        ErrorCode::NotEligibleForSupplementary
    );
    assert_eq!(
        code_of(publish(supplementary("SUP1", &["f2", "f1"])).await),
        ErrorCode::InvalidList
    );
    assert_eq!(
        code_of(publish(supplementary("SUP1", &["f1", "nobody"])).await),
        ErrorCode::UnknownFamily
    );
    assert_eq!(
        code_of(publish(supplementary("S2", &["f1"])).await),
        ErrorCode::Conflict
    );
    let formal = Session {
        kind: SessionKind::Formal,
        ..supplementary("SUP1", &["f1"])
    };
    assert_eq!(code_of(publish(formal).await), ErrorCode::InvalidSession);
    let no_window = Session {
        window_ms: 0,
        ..supplementary("SUP1", &["f1"])
    };
    assert_eq!(code_of(publish(no_window).await), ErrorCode::InvalidSession);
    let events = c.events().await.len();
    publish(supplementary("SUP1", &["f1"])).await.unwrap();
    assert_eq!(c.events().await.len(), events + 1);
    assert_eq!(
        code_of(publish(supplementary("SUP1", &["f2"])).await),
        ErrorCode::Conflict
    );
    // f1 is in a supplementary session already.
    assert_eq!(
        code_of(publish(supplementary("SUP2", &["f1"])).await),
        ErrorCode::NotEligibleForSupplementary
    );
}

pub async fn a_supplementary_session_may_not_start_in_the_past_or_before_applications_close(
    c: Ctx,
) {
    c.at(DL1);
    c.close("S1").await;
    c.ok("f1", Action::ApplySupplementary).await;
    let at = |start: i64| Session {
        start: Millis(start),
        ..supplementary("SUP1", &["f1"])
    };
    let publish = |s: Session| c.engine.publish_supplementary(&c.batch, s);
    // Applications of f1's day close when S3 ends: a 补选 comes after that.
    assert_eq!(
        code_of(publish(at(DL3 - 1)).await),
        ErrorCode::InvalidSession
    );
    // Server time has passed the start.
    c.at(SUP + 1);
    assert_eq!(code_of(publish(at(SUP)).await), ErrorCode::InvalidSession);
    let events = c.events().await.len();
    publish(at(SUP + 1)).await.unwrap();
    assert_eq!(c.events().await.len(), events + 1);
}

pub async fn a_supplementary_session_runs_like_a_formal_one(c: Ctx) {
    c.at(S1);
    c.intentions("f3", &["A101"]).await;
    c.ok("f3", confirm("A101")).await;
    c.at(DL1);
    c.close("S1").await;
    c.ok("f1", Action::ApplySupplementary).await;
    c.ok("f2", Action::ApplySupplementary).await;
    let sup = supplementary("SUP1", &["f1", "f2"]);
    c.engine
        .publish_supplementary(&c.batch, sup.clone())
        .await
        .unwrap();
    let last = c.events().await.pop().map(|e| e.event);
    assert_eq!(
        last,
        Some(EventKind::SupplementaryPublished {
            session: sup.clone()
        })
    );
    assert!(c
        .engine
        .batch(&c.batch)
        .await
        .unwrap()
        .sessions
        .contains(&sup));
    let cat = c.engine.catalog(&c.batch).await.unwrap();
    assert!(cat
        .sessions
        .iter()
        .any(|s| s.id.as_str() == "SUP1" && s.kind == SessionKind::Supplementary));
    let board = c.engine.board(&c.batch).await.unwrap();
    assert!(board
        .sessions
        .iter()
        .any(|s| s.id.as_str() == "SUP1" && !s.closed));

    let view = c.view("f1").await;
    assert_eq!(view.session.id.as_str(), "SUP1");
    assert_eq!(view.session.deadline, Millis(SUP + WINDOW));
    assert_eq!(view.phase, xuanfang_hub::Phase::Waiting);
    assert_eq!(view.outcome, None);

    c.at(SUP - 1);
    assert_eq!(
        c.refused("f1", declare(Stage::Formal)).await.code,
        ErrorCode::WindowClosed
    );
    assert_eq!(code_of(c.step("SUP1", 10).await), ErrorCode::TooEarly);
    c.at(SUP);
    c.intentions("f1", &["A102"]).await;
    let r = c.refused("f1", add(ListKind::Intentions, "A101")).await;
    assert_eq!(r.code, ErrorCode::UnitTaken);
    c.ok("f1", confirm("A102")).await;
    c.intentions("f2", &["A103", "A104"]).await;
    c.at(SUP + WINDOW - 1);
    assert_eq!(code_of(c.step("SUP1", 10).await), ErrorCode::TooEarly);
    c.at(SUP + WINDOW);
    assert_eq!(c.close("SUP1").await, 1);
    assert_eq!(c.outcome("f1").await, selected("A102", How::Confirmed, SUP));
    assert_eq!(
        c.outcome("f2").await,
        selected("A103", How::Automatic, SUP + WINDOW)
    );
    let board = c.engine.board(&c.batch).await.unwrap();
    assert!(board
        .sessions
        .iter()
        .any(|s| s.id.as_str() == "SUP1" && s.closed));
}

// ---------------------------------------------------------------- events

pub async fn events_are_numbered_from_1_without_gaps_and_paged(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &["A101", "A102"]).await;
    c.cart("f2", &["A103"]).await;
    let all = c.events().await;
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
    let page = c.engine.events(&c.batch, 2, 2).await.unwrap();
    assert_eq!(page, all[2..4].to_vec());
    assert!(c.engine.events(&c.batch, 6, 10).await.unwrap().is_empty());
    assert!(c.engine.events(&c.batch, 0, 0).await.unwrap().is_empty());
    assert_eq!(c.engine.board(&c.batch).await.unwrap().seq, 6);
}

/// Over 2,500 events: more than an engine reads in one call (Redis: 1,000 per XRANGE),
/// so whole and paged reads cross its pages; every seq comes once, in order.
pub async fn a_long_log_is_read_whole_and_paged_across_engine_pages(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &["A101"]).await;
    for _ in 0..1_250 {
        c.ok("f1", add(ListKind::Cart, "A102")).await;
        c.ok("f1", edit(ListKind::Cart, Edit::Remove, "A102")).await;
    }
    let all = c.events().await;
    let last = all.len() as u64;
    assert!(last > 2_500, "{last} events");
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    for (after, limit) in [(0, 1_000), (999, 1_001), (1_500, 2_000), (last - 3, 1_000)] {
        let page = c.engine.events(&c.batch, after, limit).await.unwrap();
        let end = (after as usize + limit).min(all.len());
        assert_eq!(
            page,
            all[after as usize..end].to_vec(),
            "after {after}, limit {limit}"
        );
    }
}

pub async fn wait_events_returns_at_once_when_events_exist(c: Ctx) {
    let started = Instant::now();
    let got = c
        .engine
        .wait_events(&c.batch, 0, 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
}

pub async fn wait_events_wakes_on_a_new_event(c: Ctx) {
    let (engine, batch) = (c.engine.clone(), c.batch.clone());
    let started = Instant::now();
    let waiter = tokio::spawn(async move {
        engine
            .wait_events(&batch, 1, 10, Duration::from_secs(30))
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiter.is_finished(),
        "wait_events returned with nothing new"
    );
    c.at(PRE);
    c.ok("f1", declare(Stage::Preselection)).await;
    let got = waiter.await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].seq, 2);
    assert!(matches!(got[0].event, EventKind::Declared { .. }));
}

pub async fn wait_events_times_out_with_nothing(c: Ctx) {
    let started = Instant::now();
    let got = c
        .engine
        .wait_events(&c.batch, 1, 10, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(got.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(started.elapsed() < Duration::from_secs(10));
}

pub async fn the_event_log_alone_rebuilds_the_state(c: Ctx) {
    c.at(PRE);
    c.cart("f1", &["A101", "A102"]).await;
    c.cart("f6", &["A104"]).await;
    c.ok("f7", Action::Waive).await;
    s1_scenario(&c).await;
    c.close("S1").await;
    c.ok("f4", Action::ApplySupplementary).await;
    c.ok("f5", Action::ApplySupplementary).await;
    c.engine
        .publish_supplementary(&c.batch, supplementary("SUP1", &["f4"]))
        .await
        .unwrap();
    c.at(SUP);
    c.intentions("f4", &["A105"]).await;

    let events = c.events().await;
    let rebuilt = Selection::replay(&events).expect("the log replays");
    let board = c.engine.board(&c.batch).await.unwrap();
    assert_eq!(rebuilt.seq(), board.seq);
    assert_eq!(views::taken(rebuilt.batch(), rebuilt.taken()), board.taken);
    assert_eq!(
        views::sessions(rebuilt.batch(), rebuilt.closed_sessions()),
        board.sessions
    );
    assert_eq!(rebuilt.batch(), &c.engine.batch(&c.batch).await.unwrap());
    let results = c.engine.results(&c.batch).await.unwrap();
    assert_eq!(results.len(), c.spec.families.len());
    for r in &results {
        assert_eq!(
            rebuilt.state(&r.family.id),
            Some(&r.state),
            "{}",
            r.family.id
        );
        let view = c.engine.family(&c.batch, &r.family.id).await.unwrap();
        assert_eq!(rebuilt.family_view(&r.family.id, c.now()), Some(view));
    }
}

pub async fn the_epoch_stays_the_same_while_the_log_grows(c: Ctx) {
    let epoch = c.engine.epoch(&c.batch).await.unwrap();
    assert_eq!(c.engine.board(&c.batch).await.unwrap().epoch, epoch);
    c.at(PRE);
    c.cart("f1", &["A101"]).await;
    assert_eq!(c.engine.epoch(&c.batch).await.unwrap(), epoch);
    assert_eq!(c.engine.board(&c.batch).await.unwrap().epoch, epoch);
}

// ---------------------------------------------------------------- queries

pub async fn the_family_view_shows_phase_lists_deadlines_and_server_time(c: Ctx) {
    c.at(PRE);
    c.cart("f2", &["A103", "A101"]).await;
    c.at(PRE + 5);
    let v = c.view("f2").await;
    assert_eq!(v.family.as_str(), "f2");
    assert_eq!(v.name, "李*华");
    assert_eq!(v.rank, 2);
    assert_eq!(v.eligible_layouts, vec![Layout::new(ONE_ROOM)]);
    assert_eq!(v.session.id.as_str(), "S1");
    assert_eq!(
        (v.session.start, v.session.deadline),
        (Millis(S1), Millis(DL1))
    );
    assert_eq!(v.phase, xuanfang_hub::Phase::Preselection);
    assert_eq!(v.preselect_start, Millis(PRE));
    assert_eq!(v.preselect_declared_at, Some(Millis(PRE)));
    assert_eq!(v.formal_declared_at, None);
    assert_eq!(v.cart, ids(&["A103", "A101"]));
    assert!(v.intentions.is_empty());
    assert_eq!(v.outcome, None);
    assert_eq!(v.supplementary_window, Some((Millis(DL1), Millis(DL3))));
    assert_eq!(v.server_time, Millis(PRE + 5));
}

pub async fn the_board_lists_taken_units_with_masked_names_in_order(c: Ctx) {
    c.at(S1);
    c.intentions("f2", &["A105"]).await;
    c.intentions("f1", &["A104"]).await;
    c.at(S1 + 10);
    c.ok("f2", confirm("A105")).await;
    c.at(S1 + 20);
    c.ok("f1", confirm("A104")).await;
    let board = c.engine.board(&c.batch).await.unwrap();
    let taken: Vec<_> = board
        .taken
        .iter()
        .map(|t| (t.unit.as_str(), t.family_name.as_str(), t.rank, t.at.0))
        .collect();
    assert_eq!(
        taken,
        [("A105", "李*华", 2, S1 + 10), ("A104", "张*明", 1, S1 + 20)]
    );
    assert_eq!(Some(board.seq), c.events().await.last().map(|e| e.seq));
}

pub async fn results_list_every_family_with_its_state(c: Ctx) {
    c.at(PRE);
    c.cart("f3", &["A106"]).await;
    let results = c.engine.results(&c.batch).await.unwrap();
    let families: Vec<_> = results.iter().map(|r| r.family.clone()).collect();
    assert_eq!(families, c.spec.families);
    let f3 = &results[2].state;
    assert_eq!(f3.cart, ids(&["A106"]));
    assert_eq!(f3.preselect_declared_at, Some(Millis(PRE)));
    assert_eq!(results[0].state, Default::default());
}
