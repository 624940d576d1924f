//! The signing conformance suite: the rules every engine's [`SigningStore`] must answer
//! alike, on top of its own selection.
//!
//! Each test is an `async fn` taking a [`Ctx`]: the engine (as [`Allocator`] and as
//! [`SigningStore`], one object), its manual clock, and a freshly loaded batch with a
//! unique id. `signing_conformance_suite!` turns them into `#[tokio::test]`s:
//!
//! ```ignore
//! // in tests/main.rs, before the modules that use it:
//! #[macro_use]
//! #[path = "signing_conformance/suite.rs"]
//! mod signing_suite;
//!
//! async fn make(clock: Arc<ManualClock>) -> (Arc<dyn Allocator>, Arc<dyn SigningStore>) { ... }
//! signing_conformance_suite!(make);
//! ```
//!
//! Server time comes only from the engine's clock; the tests move it by hand.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use xuanfang_allocator::{AllocError, Allocator, SigningFilter, SigningStore, SigningView};
use xuanfang_hub::blob::{BlobRef, Sha256};
use xuanfang_hub::signing::{luhn_valid, Actor, CardNumber, Phone, Status, Step};
use xuanfang_hub::{
    Action, Batch, BatchId, Clock, ErrorCode, Family, FamilyId, Layout, ListKind, ManualClock,
    Millis, OperatorId, Rejection, Session, SessionId, SessionKind, SigningAction, SigningBook,
    SigningEntry, SigningEvent, SigningRecord, Stage, Unit, UnitId,
};

#[allow(unused_macros)]
/// One `#[tokio::test]` per rule, each against `$make(clock).await`
/// (`async fn(Arc<ManualClock>) -> (Arc<dyn Allocator>, Arc<dyn SigningStore>)`, both
/// the same engine). Expects this file to be the module `signing_suite` at the crate root.
macro_rules! signing_conformance_suite {
    ($make:path) => {
        signing_conformance_suite!(@tests $make;
            opening_needs_a_selected_unit,
            opening_twice_changes_nothing,
            the_happy_path_ends_completed_with_masked_views,
            out_of_order_actions_are_refused_and_change_nothing,
            a_repeated_req_id_gets_the_same_answer,
            req_ids_are_per_actor,
            concurrent_decisions_on_one_family_have_one_winner_and_a_gapless_log,
            concurrent_decisions_on_many_families_keep_the_log_gapless,
            callbacks_find_the_family_by_face_session_and_order_number,
            a_replayed_payment_is_a_no_op,
            a_payment_at_the_expiry_is_order_expired,
            a_face_session_or_order_number_is_unique_in_the_batch,
            reject_and_resubmit_goes_back_to_review,
            the_queue_lists_records_by_status_longest_first,
            signing_events_are_numbered_from_1_and_paged,
            the_signing_log_alone_rebuilds_every_record,
            an_unknown_batch_is_refused,
            the_selection_log_is_untouched_by_signing,
        );
    };
    (@tests $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let clock = ::std::sync::Arc::new(::xuanfang_hub::ManualClock::new(
                    crate::signing_suite::START,
                ));
                let (sel, sign) = $make(clock.clone()).await;
                let ctx = crate::signing_suite::Ctx::load(sel, sign, clock, stringify!($name)).await;
                crate::signing_suite::$name(ctx).await;
            }
        )*
    };
}

// ---------------------------------------------------------------- the fixture

const HOUR: i64 = 3_600_000;
const MINUTE: i64 = 60_000;
/// The day's only session: families f1–f4.
pub const S1: i64 = 1_750_003_200_000 + 10 * HOUR;
const WINDOW: i64 = 3 * MINUTE;
/// After the session: signing time.
pub const T0: i64 = S1 + HOUR;
pub const START: Millis = Millis(S1 - 2 * HOUR);
/// 3000.00 yuan.
pub const DEPOSIT: u64 = 300_000;
pub const PHONE: &str = "13812345678";
/// A Luhn-valid 19-digit card number: what must never be stored in clear.
pub fn card() -> String {
    (0..10)
        .map(|d| format!("622202123456789012{d}"))
        .find(|c| luhn_valid(c))
        .unwrap()
}

/// Units A101–A104; families f1–f4, all in S1.
pub fn fixture(id: &BatchId) -> Batch {
    let units = (1..=4)
        .map(|i| Unit {
            id: UnitId::new(format!("A10{i}")),
            building: "1栋".to_owned(),
            number: format!("10{i}"),
            floor: 1,
            layout: Layout::new("一房一厅"),
            area: 45.5,
            orientation: "南".to_owned(),
            rent: 1200.0,
        })
        .collect();
    let families: Vec<Family> = (1..=4u32)
        .map(|rank| Family {
            id: FamilyId::new(format!("f{rank}")),
            name: format!("张*{rank}"),
            rank,
            session: SessionId::new("S1"),
            eligible_layouts: vec![Layout::new("一房一厅")],
        })
        .collect();
    Batch {
        id: id.clone(),
        name: "签约测试批次".to_owned(),
        preselect_start: Millis(S1 - HOUR),
        preselect_end: None,
        utc_offset_minutes: 480,
        sessions: vec![Session {
            id: SessionId::new("S1"),
            kind: SessionKind::Formal,
            start: Millis(S1),
            window_ms: WINDOW,
            families: families.iter().map(|f| f.id.clone()).collect(),
        }],
        units,
        families,
    }
}

pub fn unique_id(name: &str) -> BatchId {
    let name: String = name.chars().take(40).collect();
    BatchId::new(format!("{name}-{:016x}", rand::random::<u64>()))
}

// ---------------------------------------------------------------- actions

pub fn f(id: &str) -> FamilyId {
    FamilyId::new(id)
}
pub fn fam(id: &str) -> Actor {
    Actor::Family(f(id))
}
pub fn op() -> Actor {
    Actor::Operator(OperatorId::new("op1"))
}
pub const FACE: Actor = Actor::FaceProvider;
pub const PAY: Actor = Actor::PaymentProvider;

pub fn blob(id: &str, content_type: &str) -> BlobRef {
    let mut sha = [0u8; 32];
    for (i, b) in id.bytes().enumerate() {
        sha[i % 32] ^= b;
    }
    BlobRef {
        id: id.into(),
        sha256: Sha256(sha),
        content_type: content_type.into(),
        bytes: 4096,
    }
}
pub fn fill() -> SigningAction {
    SigningAction::FillDetails {
        phone: Phone::new(PHONE),
        bank: "ICBC".into(),
        card_number: CardNumber::new(card()),
        card_front: blob("card-front", "image/jpeg"),
        card_back: blob("card-back", "image/jpeg"),
        luhn_confirmed: false,
    }
}
pub fn start_face(s: &str) -> SigningAction {
    SigningAction::StartFace {
        provider_session: s.into(),
    }
}
pub fn face_result(s: &str, passed: bool) -> SigningAction {
    SigningAction::FaceResult {
        provider_session: s.into(),
        passed,
        score: Some(if passed { 92 } else { 31 }),
    }
}
pub fn sign_contract() -> SigningAction {
    SigningAction::SignContract {
        pdf: blob("contract.pdf", "application/pdf"),
        signature: blob("signature.png", "image/png"),
    }
}
pub fn order(no: &str) -> SigningAction {
    SigningAction::OrderDeposit {
        out_trade_no: no.into(),
    }
}
pub fn paid(no: &str, txn: &str) -> SigningAction {
    SigningAction::DepositPaid {
        out_trade_no: no.into(),
        provider_txn_id: txn.into(),
        amount_fen: DEPOSIT,
    }
}

// ---------------------------------------------------------------- the context

pub struct Ctx {
    pub engine: Arc<dyn Allocator>,
    pub store: Arc<dyn SigningStore>,
    pub clock: Arc<ManualClock>,
    pub batch: BatchId,
    next_req: AtomicU64,
}

impl Ctx {
    pub async fn load(
        engine: Arc<dyn Allocator>,
        store: Arc<dyn SigningStore>,
        clock: Arc<ManualClock>,
        name: &str,
    ) -> Ctx {
        let batch = unique_id(name);
        engine
            .load_batch(fixture(&batch))
            .await
            .expect("load_batch");
        Ctx {
            engine,
            store,
            clock,
            batch,
            next_req: AtomicU64::new(1),
        }
    }

    /// A context for a batch the engine already holds (after a restart).
    pub fn attach(
        engine: Arc<dyn Allocator>,
        store: Arc<dyn SigningStore>,
        clock: Arc<ManualClock>,
        batch: &BatchId,
    ) -> Ctx {
        Ctx {
            engine,
            store,
            clock,
            batch: batch.clone(),
            // Past any request id the first engine used.
            next_req: AtomicU64::new(1_000_000),
        }
    }

    pub fn at(&self, t: i64) {
        self.clock.set(Millis(t));
    }
    pub fn now(&self) -> Millis {
        Clock::now(&*self.clock)
    }
    fn req(&self) -> String {
        format!("r{}", self.next_req.fetch_add(1, Ordering::SeqCst))
    }

    /// `family` confirms `unit` in S1 (selection), then the clock is at [`T0`].
    pub async fn select(&self, family: &str, unit: &str) {
        self.at(S1 + 1000);
        let fid = f(family);
        let acts = [
            Action::Declare {
                stage: Stage::Formal,
            },
            Action::SetList {
                list: ListKind::Intentions,
                units: vec![UnitId::new(unit)],
            },
            Action::Confirm {
                unit: UnitId::new(unit),
            },
        ];
        for a in acts {
            let req = self.req();
            self.engine
                .act(&self.batch, &fid, &req, a)
                .await
                .expect("engine")
                .expect("selection step");
        }
        self.at(T0);
    }

    pub async fn open(&self, family: &str) -> Result<SigningView, Rejection> {
        self.store
            .open_signing(&self.batch, &f(family), "张三", DEPOSIT)
            .await
            .expect("the engine answers")
    }

    /// Selects `unit` for `family` and opens its signing.
    pub async fn opened(&self, family: &str, unit: &str) -> SigningView {
        self.select(family, unit).await;
        self.open(family).await.expect("open")
    }

    pub async fn act_req(
        &self,
        family: &str,
        actor: &Actor,
        req: &str,
        action: SigningAction,
    ) -> Result<SigningView, Rejection> {
        self.store
            .sign(&self.batch, &f(family), actor, req, action)
            .await
            .expect("the engine answers")
    }

    pub async fn act(
        &self,
        family: &str,
        actor: &Actor,
        action: SigningAction,
    ) -> Result<SigningView, Rejection> {
        let req = self.req();
        self.act_req(family, actor, &req, action).await
    }

    /// A family's own action that must succeed.
    pub async fn ok(&self, family: &str, action: SigningAction) -> SigningView {
        let what = format!("{family} {action:?}");
        self.act(family, &fam(family), action)
            .await
            .unwrap_or_else(|r| panic!("{what} refused: {r:?}"))
    }

    pub async fn callback(
        &self,
        actor: &Actor,
        action: SigningAction,
    ) -> Result<(FamilyId, SigningView), Rejection> {
        let req = self.req();
        self.callback_req(actor, &req, action).await
    }

    pub async fn callback_req(
        &self,
        actor: &Actor,
        req: &str,
        action: SigningAction,
    ) -> Result<(FamilyId, SigningView), Rejection> {
        self.store
            .signing_callback(&self.batch, actor, req, action)
            .await
            .expect("the engine answers")
    }

    /// Through the face check (session `face-<family>`).
    pub async fn face_passed(&self, family: &str) {
        let session = format!("face-{family}");
        self.ok(family, start_face(&session)).await;
        self.callback(&FACE, face_result(&session, true))
            .await
            .expect("face verdict");
    }

    /// Opened and every step done: in review. Order `D-<family>`, txn `T-<family>`.
    pub async fn in_review(&self, family: &str, unit: &str) -> SigningView {
        self.opened(family, unit).await;
        self.complete(family).await
    }

    /// Every step of an opened record done, at the current time: in review.
    pub async fn complete(&self, family: &str) -> SigningView {
        self.ok(family, fill()).await;
        self.face_passed(family).await;
        self.ok(family, sign_contract()).await;
        self.ok(family, order(&format!("D-{family}"))).await;
        let (_, view) = self
            .callback(&PAY, paid(&format!("D-{family}"), &format!("T-{family}")))
            .await
            .expect("payment");
        view
    }

    pub async fn log(&self) -> Vec<SigningEntry> {
        self.store
            .signing_events(&self.batch, 0, usize::MAX)
            .await
            .expect("signing_events")
    }

    pub async fn record(&self, family: &str) -> Option<SigningRecord> {
        self.store
            .signing(&self.batch, &f(family))
            .await
            .expect("signing")
    }

    pub async fn status(&self, family: &str) -> Status {
        self.record(family).await.expect("opened").status()
    }
}

fn assert_gapless(log: &[SigningEntry]) {
    let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
    let want: Vec<u64> = (1..=log.len() as u64).collect();
    assert_eq!(
        seqs, want,
        "the signing log is numbered 1, 2, 3… without gaps"
    );
}

fn code(r: Result<SigningView, Rejection>) -> ErrorCode {
    match r {
        Ok(v) => panic!("accepted: {:?}", v.status),
        Err(r) => r.code,
    }
}

// ---------------------------------------------------------------- opening

pub async fn opening_needs_a_selected_unit(c: Ctx) {
    c.at(T0);
    assert_eq!(code(c.open("f1").await), ErrorCode::NotSelected);
    assert_eq!(code(c.open("nobody").await), ErrorCode::UnknownFamily);
    // A family that declared but has no unit yet.
    c.at(S1 + 1);
    c.engine
        .act(
            &c.batch,
            &f("f2"),
            "d",
            Action::Declare {
                stage: Stage::Formal,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code(c.open("f2").await), ErrorCode::NotSelected);
    assert!(c.log().await.is_empty(), "a refused opening logs nothing");

    let view = c.opened("f1", "A102").await;
    assert_eq!(
        view.status,
        Status::Open {
            step: Step::Details,
            returned: false
        }
    );
    assert_eq!(view.lease.unit, UnitId::new("A102"));
    assert_eq!(view.lease.rent_fen, 120_000);
    assert_eq!(view.deposit_fen, DEPOSIT);
    assert_eq!(view.opened_at, Millis(T0));
    let log = c.log().await;
    assert_eq!(log.len(), 1);
    assert!(matches!(log[0].event, SigningEvent::Opened { .. }));
    assert_eq!(
        (log[0].seq, log[0].at, &log[0].family),
        (1, Millis(T0), &f("f1"))
    );
    // An action on a family whose signing is not open.
    assert_eq!(
        code(c.act("f3", &fam("f3"), fill()).await),
        ErrorCode::NotSelected
    );
}

pub async fn opening_twice_changes_nothing(c: Ctx) {
    let first = c.opened("f1", "A101").await;
    c.at(T0 + 5000);
    let again = c.open("f1").await.expect("opening again is ok");
    assert_eq!(again.opened_at, first.opened_at);
    assert_eq!(c.log().await.len(), 1);
}

// ---------------------------------------------------------------- the steps

pub async fn the_happy_path_ends_completed_with_masked_views(c: Ctx) {
    c.opened("f1", "A101").await;
    let v = c.ok("f1", fill()).await;
    assert_eq!(v.phone_masked.as_deref(), Some("138****5678"));
    let masked = v.card_masked.clone().unwrap();
    assert!(masked.starts_with("622202") && masked.contains('*'));
    assert_ne!(masked, card());
    assert_eq!(v.bank.as_deref(), Some("ICBC"));
    let text = serde_json::to_string(&v).unwrap();
    assert!(
        !text.contains(&card()) && !text.contains(PHONE),
        "a view holds no clear card or phone"
    );

    let v = c.ok("f1", start_face("sess-1")).await;
    assert_eq!(v.face_attempts, 1);
    let (fam1, v) = c
        .callback(&FACE, face_result("sess-1", true))
        .await
        .unwrap();
    assert_eq!(fam1, f("f1"));
    assert_eq!(
        v.status,
        Status::Open {
            step: Step::Contract,
            returned: false
        }
    );
    c.ok("f1", sign_contract()).await;
    c.at(T0 + 60_000);
    let v = c.ok("f1", order("D1")).await;
    let live = v.live_order.clone().expect("a live order");
    assert_eq!(live.amount_fen, DEPOSIT, "the engine fixes the amount");
    assert_eq!(
        live.expires_at,
        Millis(T0 + 60_000 + xuanfang_hub::signing::DEPOSIT_ORDER_TTL_MS),
        "the expiry is server time + the TTL"
    );
    c.at(T0 + 120_000);
    let (_, v) = c.callback(&PAY, paid("D1", "T1")).await.unwrap();
    assert_eq!(v.status, Status::InReview);
    assert_eq!(v.submissions, 1);

    let v = c.act("f1", &op(), SigningAction::Approve).await.unwrap();
    assert_eq!(v.status, Status::Approved);
    let v = c
        .act(
            "f1",
            &op(),
            SigningAction::IssueNotice {
                pdf: blob("notice.pdf", "application/pdf"),
            },
        )
        .await
        .unwrap();
    assert_eq!(v.status, Status::Completed);

    let kinds: Vec<&'static str> = c
        .log()
        .await
        .iter()
        .map(|e| match e.event {
            SigningEvent::Opened { .. } => "opened",
            SigningEvent::DetailsFilled { .. } => "details_filled",
            SigningEvent::FaceStarted { .. } => "face_started",
            SigningEvent::FaceResult { .. } => "face_result",
            SigningEvent::ContractSigned { .. } => "contract_signed",
            SigningEvent::DepositOrdered { .. } => "deposit_ordered",
            SigningEvent::DepositPaid { .. } => "deposit_paid",
            SigningEvent::Approved { .. } => "approved",
            SigningEvent::NoticeIssued { .. } => "notice_issued",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "opened",
            "details_filled",
            "face_started",
            "face_result",
            "contract_signed",
            "deposit_ordered",
            "deposit_paid",
            "approved",
            "notice_issued"
        ]
    );
    // The record the engine gives back holds the details in clear (for the contract
    // and the bank file); the store holds them sealed (checked per engine).
    let rec = c.record("f1").await.unwrap();
    let d = rec.details().latest().unwrap();
    assert_eq!(
        (d.phone.as_str(), d.card_number.as_str()),
        (PHONE, card().as_str())
    );
}

pub async fn out_of_order_actions_are_refused_and_change_nothing(c: Ctx) {
    c.opened("f1", "A101").await;
    let before = (c.log().await, c.record("f1").await);
    assert_eq!(
        code(c.act("f1", &fam("f1"), sign_contract()).await),
        ErrorCode::StepLocked
    );
    assert_eq!(
        code(c.act("f1", &fam("f1"), order("D1")).await),
        ErrorCode::StepLocked
    );
    assert_eq!(
        code(c.act("f1", &fam("f1"), start_face("s1")).await),
        ErrorCode::StepLocked
    );
    assert_eq!(
        code(c.act("f1", &op(), SigningAction::Approve).await),
        ErrorCode::NotInReview
    );
    // Another family's record, and a provider's action asked by a family.
    assert_eq!(
        code(c.act("f1", &fam("f2"), fill()).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(c.act("f1", &fam("f1"), paid("D1", "T1")).await),
        ErrorCode::Forbidden
    );
    assert_eq!((c.log().await, c.record("f1").await), before);
}

// ---------------------------------------------------------------- idempotency

pub async fn a_repeated_req_id_gets_the_same_answer(c: Ctx) {
    c.opened("f1", "A101").await;
    let first = c.act_req("f1", &fam("f1"), "a", fill()).await.unwrap();
    let n = c.log().await.len();
    // The same req_id again, even with another action: the same ok, nothing more.
    let again = c
        .act_req("f1", &fam("f1"), "a", start_face("s1"))
        .await
        .unwrap();
    assert_eq!(again.status, first.status);
    assert_eq!(c.log().await.len(), n);

    // A refusal is remembered too, even after the state moved on.
    assert_eq!(
        code(c.act_req("f1", &fam("f1"), "b", sign_contract()).await),
        ErrorCode::StepLocked
    );
    c.face_passed("f1").await;
    assert_eq!(
        code(c.act_req("f1", &fam("f1"), "b", sign_contract()).await),
        ErrorCode::StepLocked
    );
    c.act_req("f1", &fam("f1"), "c", sign_contract())
        .await
        .unwrap();

    // The repeat of an ok shows the view of now.
    let now = c.act_req("f1", &fam("f1"), "a", fill()).await.unwrap();
    assert!(now.done.contains(&Step::Contract));

    // A provider retrying its callback with the same id.
    c.ok("f1", order("D1")).await;
    let n = c.log().await.len();
    let (f1, v1) = c.callback_req(&PAY, "n1", paid("D1", "T1")).await.unwrap();
    let (f2, v2) = c.callback_req(&PAY, "n1", paid("D1", "T1")).await.unwrap();
    assert_eq!((f1, v1.status), (f2, v2.status));
    assert_eq!(c.log().await.len(), n + 1);
}

pub async fn req_ids_are_per_actor(c: Ctx) {
    c.in_review("f1", "A101").await;
    c.opened("f2", "A102").await;
    c.act_req("f2", &fam("f2"), "x", fill()).await.unwrap();
    // The operator's "x" is its own request, not the family's.
    let v = c
        .act_req("f1", &op(), "x", SigningAction::Approve)
        .await
        .unwrap();
    assert_eq!(v.status, Status::Approved);
    assert_eq!(
        c.status("f2").await,
        Status::Open {
            step: Step::Face,
            returned: false
        }
    );
}

// ---------------------------------------------------------------- concurrency

pub async fn concurrent_decisions_on_one_family_have_one_winner_and_a_gapless_log(c: Ctx) {
    c.opened("f1", "A101").await;
    c.ok("f1", fill()).await;
    c.face_passed("f1").await;
    c.ok("f1", sign_contract()).await;
    let n = c.log().await.len();
    // Two phones order the deposit at once: one order, the other sees it pending.
    let me = fam("f1");
    let (a, b) = tokio::join!(
        c.act_req("f1", &me, "pa", order("DA")),
        c.act_req("f1", &me, "pb", order("DB")),
    );
    let oks = [a.is_ok(), b.is_ok()].iter().filter(|x| **x).count();
    assert_eq!(oks, 1, "exactly one order wins: {a:?} {b:?}");
    let loser = if a.is_ok() { b } else { a };
    assert_eq!(code(loser), ErrorCode::OrderPending);
    let log = c.log().await;
    assert_gapless(&log);
    assert_eq!(log.len(), n + 1);
    // Two operators review at once: one approves, the other is refused.
    let won = log
        .iter()
        .find_map(|e| match &e.event {
            SigningEvent::DepositOrdered { out_trade_no, .. } => Some(out_trade_no.clone()),
            _ => None,
        })
        .unwrap();
    c.callback(&PAY, paid(&won, "T1")).await.unwrap();
    let (op1, op2) = (op(), Actor::Operator(OperatorId::new("op2")));
    let (a, b) = tokio::join!(
        c.act("f1", &op1, SigningAction::Approve),
        c.act(
            "f1",
            &op2,
            SigningAction::Reject {
                step: Step::Contract,
                reason: "签名不清晰".into()
            }
        ),
    );
    assert_eq!([a.is_ok(), b.is_ok()].iter().filter(|x| **x).count(), 1);
    let refused = if a.is_ok() { b } else { a };
    assert_eq!(code(refused), ErrorCode::NotInReview);
    assert_gapless(&c.log().await);
}

pub async fn concurrent_decisions_on_many_families_keep_the_log_gapless(c: Ctx) {
    for (fam_id, unit) in [
        ("f1", "A101"),
        ("f2", "A102"),
        ("f3", "A103"),
        ("f4", "A104"),
    ] {
        c.select(fam_id, unit).await;
    }
    let opens = ["f1", "f2", "f3", "f4"].map(|x| c.open(x));
    for r in futures_util::future::join_all(opens).await {
        r.unwrap();
    }
    let actors = ["f1", "f2", "f3", "f4"].map(|x| (x, fam(x)));
    let fills = actors.iter().map(|(x, a)| c.act(x, a, fill()));
    for r in futures_util::future::join_all(fills).await {
        r.unwrap();
    }
    let log = c.log().await;
    assert_eq!(log.len(), 8);
    assert_gapless(&log);
}

// ---------------------------------------------------------------- providers

pub async fn callbacks_find_the_family_by_face_session_and_order_number(c: Ctx) {
    c.opened("f1", "A101").await;
    c.opened("f2", "A102").await;
    for x in ["f1", "f2"] {
        c.ok(x, fill()).await;
    }
    c.ok("f2", start_face("face-two")).await;
    c.ok("f1", start_face("face-one")).await;
    let (who, v) = c
        .callback(&FACE, face_result("face-two", false))
        .await
        .unwrap();
    assert_eq!(who, f("f2"));
    assert_eq!(v.family, f("f2"));
    let (who, _) = c
        .callback(&FACE, face_result("face-one", true))
        .await
        .unwrap();
    assert_eq!(who, f("f1"));
    let n = c.log().await.len();
    assert_eq!(
        c.callback(&FACE, face_result("never-started", true))
            .await
            .unwrap_err()
            .code,
        ErrorCode::FaceSessionMismatch
    );
    assert_eq!(
        c.callback(&PAY, paid("never-ordered", "T9"))
            .await
            .unwrap_err()
            .code,
        ErrorCode::PaymentMismatch
    );
    // A verdict sent as the payment provider, or a family's action as a callback.
    assert_eq!(
        c.callback(&PAY, face_result("face-one", true))
            .await
            .unwrap_err()
            .code,
        ErrorCode::Forbidden
    );
    assert_eq!(
        c.callback(&fam("f1"), start_face("x"))
            .await
            .unwrap_err()
            .code,
        ErrorCode::Forbidden
    );
    assert_eq!(c.log().await.len(), n);

    c.ok("f1", sign_contract()).await;
    c.ok("f1", order("D-1")).await;
    let (who, v) = c.callback(&PAY, paid("D-1", "T-1")).await.unwrap();
    assert_eq!((who, v.status), (f("f1"), Status::InReview));
}

pub async fn a_replayed_payment_is_a_no_op(c: Ctx) {
    c.in_review("f1", "A101").await;
    let before = (c.log().await, c.record("f1").await);
    // The provider notifies again (a new notification id), even long after expiry.
    c.at(T0 + 10 * HOUR);
    let (who, v) = c.callback(&PAY, paid("D-f1", "T-f1")).await.unwrap();
    assert_eq!((who, v.status), (f("f1"), Status::InReview));
    assert_eq!((c.log().await, c.record("f1").await), before);
    // The same transaction id with other details is not the payment we know.
    assert_eq!(
        c.callback(&PAY, paid("D-f1", "T-other"))
            .await
            .unwrap_err()
            .code,
        ErrorCode::PaymentMismatch
    );
    assert_eq!(c.log().await, before.0);
}

pub async fn a_payment_at_the_expiry_is_order_expired(c: Ctx) {
    c.opened("f1", "A101").await;
    c.ok("f1", fill()).await;
    c.face_passed("f1").await;
    c.ok("f1", sign_contract()).await;
    c.ok("f1", order("D1")).await;
    let ttl = xuanfang_hub::signing::DEPOSIT_ORDER_TTL_MS;
    c.at(T0 + ttl);
    assert_eq!(
        c.callback(&PAY, paid("D1", "T1")).await.unwrap_err().code,
        ErrorCode::OrderExpired
    );
    // A new order replaces it; one ms before its expiry the payment is taken.
    c.ok("f1", order("D2")).await;
    c.at(T0 + 2 * ttl - 1);
    let (_, v) = c.callback(&PAY, paid("D2", "T2")).await.unwrap();
    assert_eq!(v.status, Status::InReview);
}

pub async fn a_face_session_or_order_number_is_unique_in_the_batch(c: Ctx) {
    c.opened("f1", "A101").await;
    c.opened("f2", "A102").await;
    for x in ["f1", "f2"] {
        c.ok(x, fill()).await;
    }
    c.ok("f1", start_face("shared")).await;
    let n = c.log().await.len();
    assert_eq!(
        code(c.act("f2", &fam("f2"), start_face("shared")).await),
        ErrorCode::Conflict
    );
    assert_eq!(c.log().await.len(), n);
}

// ---------------------------------------------------------------- review

pub async fn reject_and_resubmit_goes_back_to_review(c: Ctx) {
    c.in_review("f1", "A101").await;
    let v = c
        .act(
            "f1",
            &op(),
            SigningAction::Reject {
                step: Step::Contract,
                reason: "签名不清晰".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        v.status,
        Status::Open {
            step: Step::Contract,
            returned: true
        }
    );
    assert_eq!(v.rejections.len(), 1);
    c.at(T0 + HOUR);
    let v = c.ok("f1", sign_contract()).await;
    assert_eq!(v.status, Status::InReview, "the paid deposit survives");
    assert_eq!(v.submissions, 2);
}

pub async fn the_queue_lists_records_by_status_longest_first(c: Ctx) {
    c.opened("f1", "A101").await;
    c.opened("f2", "A102").await;
    c.opened("f3", "A103").await;
    c.complete("f2").await;
    c.at(T0 + MINUTE);
    c.complete("f1").await;
    let ids = |v: Vec<SigningRecord>| v.iter().map(|r| r.family().clone()).collect::<Vec<_>>();
    let review = c
        .store
        .signing_queue(&c.batch, SigningFilter::InReview)
        .await
        .unwrap();
    assert_eq!(ids(review), [f("f2"), f("f1")]);
    let open = c
        .store
        .signing_queue(&c.batch, SigningFilter::Open)
        .await
        .unwrap();
    assert_eq!(ids(open), [f("f3")]);
    let all = c
        .store
        .signing_queue(&c.batch, SigningFilter::All)
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
}

// ---------------------------------------------------------------- the log

pub async fn signing_events_are_numbered_from_1_and_paged(c: Ctx) {
    c.in_review("f1", "A101").await;
    let all = c.log().await;
    assert_eq!(all.len(), 7);
    assert_gapless(&all);
    let page = c.store.signing_events(&c.batch, 2, 3).await.unwrap();
    assert_eq!(page, all[2..5].to_vec());
    assert!(c
        .store
        .signing_events(&c.batch, 7, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(c
        .store
        .signing_events(&c.batch, 0, 0)
        .await
        .unwrap()
        .is_empty());
}

pub async fn the_signing_log_alone_rebuilds_every_record(c: Ctx) {
    c.in_review("f1", "A101").await;
    c.act("f1", &op(), SigningAction::Approve).await.unwrap();
    c.in_review("f2", "A102").await;
    c.act(
        "f2",
        &op(),
        SigningAction::Reject {
            step: Step::Deposit,
            reason: "未收到款项".into(),
        },
    )
    .await
    .unwrap();
    c.opened("f3", "A103").await;
    c.ok("f3", fill()).await;
    c.ok("f3", start_face("f3-a")).await;
    c.callback(&FACE, face_result("f3-a", false)).await.unwrap();

    let log = c.log().await;
    assert_gapless(&log);
    let book = SigningBook::replay(&log).expect("the log replays");
    for x in ["f1", "f2", "f3", "f4"] {
        assert_eq!(book.record(&f(x)), c.record(x).await.as_ref(), "{x}");
        let own: Vec<SigningEntry> = log.iter().filter(|e| e.family == f(x)).cloned().collect();
        if !own.is_empty() {
            assert_eq!(
                Some(SigningRecord::replay(&own).unwrap()),
                c.record(x).await,
                "{x}'s entries alone"
            );
        }
    }
    let queue = c
        .store
        .signing_queue(&c.batch, SigningFilter::All)
        .await
        .unwrap();
    let want: Vec<SigningRecord> = book.queue(|_| true).into_iter().cloned().collect();
    assert_eq!(queue, want);
}

pub async fn an_unknown_batch_is_refused(c: Ctx) {
    let nowhere = BatchId::new("no-such-batch");
    let unknown =
        |e: AllocError| matches!(e, AllocError::Rejected(r) if r.code == ErrorCode::UnknownBatch);
    assert!(unknown(
        c.store
            .open_signing(&nowhere, &f("f1"), "张三", DEPOSIT)
            .await
            .unwrap_err()
    ));
    assert!(unknown(
        c.store
            .sign(&nowhere, &f("f1"), &fam("f1"), "r", fill())
            .await
            .unwrap_err()
    ));
    assert!(unknown(
        c.store
            .signing_callback(&nowhere, &PAY, "r", paid("D", "T"))
            .await
            .unwrap_err()
    ));
    assert!(unknown(
        c.store.signing(&nowhere, &f("f1")).await.unwrap_err()
    ));
    assert!(unknown(
        c.store.signing_events(&nowhere, 0, 10).await.unwrap_err()
    ));
    assert!(unknown(
        c.store
            .signing_queue(&nowhere, SigningFilter::All)
            .await
            .unwrap_err()
    ));
}

pub async fn the_selection_log_is_untouched_by_signing(c: Ctx) {
    c.select("f1", "A101").await;
    let before = c.engine.events(&c.batch, 0, usize::MAX).await.unwrap();
    c.open("f1").await.unwrap();
    c.ok("f1", fill()).await;
    let after = c.engine.events(&c.batch, 0, usize::MAX).await.unwrap();
    assert_eq!(before, after);
}
