//! The signing rules as a specification: each test name states one rule of the guide §3
//! (or of MISSION.md's signing flow) and holds `signing.rs` to it.
//!
//! Every refusal is checked to change nothing (see [`World::refused`]), and every
//! scenario's log is replayed, whole and per family, and compared with the live state.

use proptest::prelude::*;
use xuanfang_hub::blob::{BlobRef, Sha256};
use xuanfang_hub::protocol::Encoding;
use xuanfang_hub::selection::NoUnitReason;
use xuanfang_hub::signing::{
    luhn_valid, mask_card, mask_phone, Actor, CardNumber, Deposit, FaceState, Flag, Party, Phone,
    ReplayError, Slot, Status, Step, BANKS, DEPOSIT_ORDER_TTL_MS, MAX_FACE_ATTEMPTS,
    PROVIDER_STOP_MS,
};
use xuanfang_hub::{
    Batch, BatchId, ErrorCode, Event, EventKind, Family, FamilyId, How, Layout, Millis, OperatorId,
    Rejection, Selection, Session, SessionId, SessionKind, SigningAction, SigningBook,
    SigningEntry, SigningEvent, SigningRecord, Unit, UnitId,
};

const MIN: i64 = 60_000;
/// 2025-06-07 10:00 Beijing time, after the fixture's session.
const T0: i64 = 1_749_261_600_000;
/// 3000.00 yuan.
const DEPOSIT: u64 = 300_000;
const PHONE: &str = "13812345678";

fn t(ms: i64) -> Millis {
    Millis(ms)
}
fn f(id: &str) -> FamilyId {
    FamilyId::new(id)
}
fn fam(id: &str) -> Actor {
    Actor::Family(f(id))
}
fn op() -> Actor {
    Actor::Operator(OperatorId::new("op1"))
}
const FACE: Actor = Actor::FaceProvider;
const PAY: Actor = Actor::PaymentProvider;

/// `prefix` with the Luhn check digit appended.
fn luhn_card(prefix: &str) -> String {
    (0..10)
        .map(|d| format!("{prefix}{d}"))
        .find(|c| luhn_valid(c))
        .unwrap()
}
/// `prefix` with a wrong check digit appended.
fn non_luhn_card(prefix: &str) -> String {
    (0..10)
        .map(|d| format!("{prefix}{d}"))
        .find(|c| !luhn_valid(c))
        .unwrap()
}
fn card() -> String {
    luhn_card("621700123456789") // 16 digits
}

fn blob(id: &str, content_type: &str) -> BlobRef {
    let mut sha = [0u8; 32];
    for (i, b) in id.bytes().enumerate() {
        sha[i % 32] ^= b;
    }
    BlobRef {
        id: id.into(),
        sha256: Sha256(sha),
        content_type: content_type.into(),
        bytes: 123_456,
    }
}

fn fill_with(phone: &str, bank: &str, card: &str, luhn_confirmed: bool) -> SigningAction {
    SigningAction::FillDetails {
        phone: Phone::new(phone),
        bank: bank.into(),
        card_number: CardNumber::new(card),
        card_front: blob("card-front", "image/jpeg"),
        card_back: blob("card-back", "image/jpeg"),
        luhn_confirmed,
    }
}
fn fill() -> SigningAction {
    fill_with(PHONE, "ICBC", &card(), false)
}
fn start_face(s: &str) -> SigningAction {
    SigningAction::StartFace {
        provider_session: s.into(),
    }
}
fn face_result(s: &str, passed: bool) -> SigningAction {
    SigningAction::FaceResult {
        provider_session: s.into(),
        passed,
        score: Some(if passed { 92 } else { 31 }),
    }
}
fn sign() -> SigningAction {
    SigningAction::SignContract {
        pdf: blob("contract.pdf", "application/pdf"),
        signature: blob("signature.png", "image/png"),
    }
}
fn order(no: &str) -> SigningAction {
    SigningAction::OrderDeposit {
        out_trade_no: no.into(),
    }
}
fn paid(no: &str, txn: &str, amount_fen: u64) -> SigningAction {
    SigningAction::DepositPaid {
        out_trade_no: no.into(),
        provider_txn_id: txn.into(),
        amount_fen,
    }
}
fn reject(step: Step) -> SigningAction {
    SigningAction::Reject {
        step,
        reason: "银行卡照片不清晰".into(),
    }
}
fn notice(id: &str) -> SigningAction {
    SigningAction::IssueNotice {
        pdf: blob(id, "application/pdf"),
    }
}

fn unit(id: &str, rent: f64) -> Unit {
    Unit {
        id: UnitId::new(id),
        building: "3栋".into(),
        number: "1203".into(),
        floor: 12,
        layout: Layout::new("两房一厅"),
        area: 61.5,
        orientation: "南".into(),
        rent,
    }
}

/// F1 confirmed U1, F2 was given U2 at the deadline, F3 got no unit, F4 has no result.
fn selection() -> Selection {
    let families = ["F1", "F2", "F3", "F4"];
    let batch = Batch {
        id: BatchId::new("b"),
        name: "测试".into(),
        preselect_start: t(T0 - 86_400_000),
        preselect_end: None,
        utc_offset_minutes: 480,
        units: vec![unit("U1", 1234.5), unit("U2", 1500.0), unit("U3", 1500.0)],
        families: families
            .iter()
            .enumerate()
            .map(|(i, id)| Family {
                id: f(id),
                name: format!("张*{i}"),
                rank: i as u32 + 1,
                session: SessionId::new("S1"),
                eligible_layouts: vec![Layout::new("两房一厅")],
            })
            .collect(),
        sessions: vec![Session {
            id: SessionId::new("S1"),
            kind: SessionKind::Formal,
            start: t(T0 - 30 * MIN),
            window_ms: 3 * MIN,
            families: families.iter().map(|x| f(x)).collect(),
        }],
    };
    let mut sel = Selection::new(batch).unwrap();
    let outcomes = [
        EventKind::Selected {
            family: f("F1"),
            unit: UnitId::new("U1"),
            how: How::Confirmed,
        },
        EventKind::Selected {
            family: f("F2"),
            unit: UnitId::new("U2"),
            how: How::Automatic,
        },
        EventKind::NoUnit {
            family: f("F3"),
            reason: NoUnitReason::NoFreeIntention,
        },
    ];
    for (i, event) in outcomes.into_iter().enumerate() {
        sel.apply(&Event {
            seq: i as u64 + 1,
            at: t(T0 - 27 * MIN),
            event,
        });
    }
    sel
}

/// A signing book with its log, driven the way an engine drives it: decide, then
/// append and apply the entries.
struct World {
    sel: Selection,
    book: SigningBook,
    log: Vec<SigningEntry>,
    /// For fresh provider references in random walks.
    fresh: u32,
}

impl World {
    fn new() -> Self {
        World {
            sel: selection(),
            book: SigningBook::new(),
            log: Vec::new(),
            fresh: 0,
        }
    }

    /// F1 and F2 with signing open.
    fn opened() -> Self {
        let mut w = World::new();
        for x in ["F1", "F2"] {
            w.open(x).unwrap();
        }
        w
    }

    fn append(&mut self, family: &FamilyId, events: Vec<SigningEvent>, at: Millis) {
        for e in self.book.entries(family, events, at) {
            self.book.apply(&e);
            self.log.push(e);
        }
    }

    fn open(&mut self, x: &str) -> Result<Vec<SigningEvent>, Rejection> {
        let events = self.book.decide_open(&self.sel, &f(x), "张三丰", DEPOSIT)?;
        self.append(&f(x), events.clone(), t(T0));
        Ok(events)
    }

    fn act(
        &mut self,
        actor: &Actor,
        x: &str,
        a: &SigningAction,
        at: i64,
    ) -> Result<Vec<SigningEvent>, Rejection> {
        let events = self.book.decide(actor, &f(x), a, t(at))?;
        self.append(&f(x), events.clone(), t(at));
        Ok(events)
    }

    /// A provider callback, routed by the book.
    fn callback(
        &mut self,
        actor: &Actor,
        a: &SigningAction,
        at: i64,
    ) -> Result<Vec<SigningEvent>, Rejection> {
        let (family, events) = self.book.decide_callback(actor, a, t(at))?;
        self.append(&family, events.clone(), t(at));
        Ok(events)
    }

    /// The family's own action must succeed.
    fn ok(&mut self, x: &str, a: SigningAction, at: i64) -> Vec<SigningEvent> {
        let dbg = format!("{x} {a:?} at {at}");
        self.act(&fam(x), x, &a, at)
            .unwrap_or_else(|r| panic!("{dbg} refused: {r:?}"))
    }

    /// The provider callback must succeed.
    fn ok_callback(&mut self, actor: &Actor, a: SigningAction, at: i64) -> Vec<SigningEvent> {
        let dbg = format!("{actor:?} {a:?} at {at}");
        self.callback(actor, &a, at)
            .unwrap_or_else(|r| panic!("{dbg} refused: {r:?}"))
    }

    /// The operator's action must succeed.
    fn ok_op(&mut self, x: &str, a: SigningAction, at: i64) -> Vec<SigningEvent> {
        let dbg = format!("op on {x} {a:?} at {at}");
        self.act(&op(), x, &a, at)
            .unwrap_or_else(|r| panic!("{dbg} refused: {r:?}"))
    }

    /// Checks that `r` is a refusal that changed nothing, and returns its code.
    fn refusal(
        &mut self,
        before: (SigningBook, usize),
        dbg: String,
        r: Result<Vec<SigningEvent>, Rejection>,
    ) -> ErrorCode {
        let code = match r {
            Err(r) => r.code,
            Ok(ev) => panic!("{dbg} was accepted: {ev:?}"),
        };
        assert_eq!(self.book, before.0, "a refusal changed the state");
        assert_eq!(self.log.len(), before.1, "a refusal logged something");
        code
    }

    /// The action must be refused, and the refusal must change nothing.
    fn refused(&mut self, actor: &Actor, x: &str, a: SigningAction, at: i64) -> ErrorCode {
        let before = (self.book.clone(), self.log.len());
        let r = self.act(actor, x, &a, at);
        self.refusal(before, format!("{actor:?} on {x} {a:?}"), r)
    }

    fn refused_callback(&mut self, actor: &Actor, a: SigningAction, at: i64) -> ErrorCode {
        let before = (self.book.clone(), self.log.len());
        let r = self.callback(actor, &a, at);
        self.refusal(before, format!("{actor:?} {a:?}"), r)
    }

    /// The action must be accepted and change nothing (already done).
    fn no_op(&mut self, actor: &Actor, x: &str, a: SigningAction, at: i64) {
        let before = self.book.clone();
        let events = self.act(actor, x, &a, at).expect("accepted");
        assert_eq!(events, vec![]);
        assert_eq!(self.book, before);
    }

    fn rec(&self, x: &str) -> &SigningRecord {
        self.book.record(&f(x)).expect("signing is open")
    }
    fn status(&self, x: &str) -> Status {
        self.rec(x).status()
    }

    /// Step 2 passed with session `s`.
    fn pass_face(&mut self, x: &str, s: &str, at: i64) {
        self.ok(x, start_face(s), at);
        self.ok_callback(&FACE, face_result(s, true), at + 1_000);
    }

    /// Steps 1–3, then an order `no`.
    fn up_to_order(&mut self, x: &str, no: &str, at: i64) {
        self.ok(x, fill(), at);
        self.pass_face(x, &format!("{x}-face-1"), at + MIN);
        self.ok(x, sign(), at + 2 * MIN);
        self.ok(x, order(no), at + 3 * MIN);
    }

    /// Every step done, so in review; the deposit paid as `txn`.
    fn submit(&mut self, x: &str, at: i64) {
        let no = format!("{x}-order-1");
        self.up_to_order(x, &no, at);
        self.ok_callback(
            &PAY,
            paid(&no, &format!("{x}-txn-1"), DEPOSIT),
            at + 4 * MIN,
        );
    }

    fn events_of(&self, x: &str) -> Vec<&SigningEvent> {
        self.log
            .iter()
            .filter(|e| e.family == f(x))
            .map(|e| &e.event)
            .collect()
    }

    fn count(&self, x: &str, pred: impl Fn(&SigningEvent) -> bool) -> usize {
        self.events_of(x).into_iter().filter(|e| pred(e)).count()
    }

    fn assert_replays(&self) {
        let replayed = SigningBook::replay(&self.log).expect("log replays");
        assert_eq!(replayed, self.book);
        for rec in self.book.records() {
            let own = self.log.iter().filter(|e| &e.family == rec.family());
            assert_eq!(&SigningRecord::replay(own).expect("record replays"), rec);
        }
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

fn open_step(step: Step) -> Status {
    Status::Open {
        step,
        returned: false,
    }
}
fn returned_step(step: Step) -> Status {
    Status::Open {
        step,
        returned: true,
    }
}

// ===========================================================================
// Opening

#[test]
fn a_family_with_a_selected_unit_opens_signing_on_the_lease_of_that_unit() {
    let mut w = World::new();
    w.open("F1").unwrap();
    let r = w.rec("F1");
    assert_eq!(r.lease().unit, UnitId::new("U1"));
    assert_eq!(r.lease().rent_fen, 123_450);
    assert_eq!(r.lease().area, 61.5);
    assert_eq!(r.applicant(), "张三丰");
    assert_eq!(r.deposit_fen(), DEPOSIT);
    assert_eq!(r.status(), open_step(Step::Details));
    // A unit given at the deadline opens signing the same way.
    w.open("F2").unwrap();
    assert_eq!(w.rec("F2").lease().unit, UnitId::new("U2"));
}

#[test]
fn a_family_without_a_selected_unit_cannot_open_signing() {
    let mut w = World::new();
    let before = w.book.clone();
    for x in ["F3", "F4"] {
        assert_eq!(w.open(x).unwrap_err().code, ErrorCode::NotSelected, "{x}");
    }
    assert_eq!(w.open("F9").unwrap_err().code, ErrorCode::UnknownFamily);
    assert_eq!(w.book, before);
}

#[test]
fn opening_names_the_selected_unit_and_nothing_else() {
    let sel = selection();
    let outcome = sel.state(&f("F1")).unwrap().outcome.clone();
    let other = sel.batch().unit(&UnitId::new("U3")).unwrap();
    let code = SigningRecord::decide_open(outcome.as_ref(), other, "张三丰", DEPOSIT)
        .unwrap_err()
        .code;
    assert_eq!(code, ErrorCode::NotSelected);
    let mine = sel.batch().unit(&UnitId::new("U1")).unwrap();
    assert!(SigningRecord::decide_open(outcome.as_ref(), mine, "张三丰", DEPOSIT).is_ok());
    assert!(SigningRecord::decide_open(None, mine, "张三丰", DEPOSIT).is_err());
}

#[test]
fn opening_twice_changes_nothing() {
    let mut w = World::opened();
    let before = w.book.clone();
    assert_eq!(w.open("F1").unwrap(), vec![]);
    assert_eq!(w.book, before);
}

#[test]
fn a_family_whose_signing_is_not_open_cannot_act() {
    let mut w = World::opened();
    assert_eq!(
        w.refused(&fam("F3"), "F3", fill(), T0),
        ErrorCode::NotSelected
    );
}

// ===========================================================================
// The happy path

#[test]
fn happy_path_details_face_contract_deposit_review_approval_and_notice() {
    let mut w = World::opened();
    let at = T0 + MIN;

    // (二) 完善承租信息.
    let ev = w.ok("F1", fill(), at);
    assert!(matches!(&ev[..], [SigningEvent::DetailsFilled { .. }]));
    assert_eq!(w.status("F1"), open_step(Step::Face));

    // (三) 人脸识别.
    w.ok("F1", start_face("face-1"), at + MIN);
    assert_eq!(w.status("F1"), open_step(Step::Face));
    w.ok_callback(&FACE, face_result("face-1", true), at + 2 * MIN);
    assert!(w.rec("F1").face().passed());
    assert_eq!(w.status("F1"), open_step(Step::Contract));

    // (四) 签订合同.
    w.ok("F1", sign(), at + 3 * MIN);
    let contract = w.rec("F1").contract().done().unwrap().clone();
    assert_eq!(contract.pdf.sha256, blob("contract.pdf", "").sha256);
    assert_eq!(w.status("F1"), open_step(Step::Deposit));

    // (五) 租赁保证金: the hub fixes the amount and the expiry.
    let ev = w.ok("F1", order("ORD-1"), at + 4 * MIN);
    assert_eq!(
        ev,
        vec![SigningEvent::DepositOrdered {
            out_trade_no: "ORD-1".into(),
            amount_fen: DEPOSIT,
            expires_at: t(at + 4 * MIN + DEPOSIT_ORDER_TTL_MS),
        }]
    );
    assert_eq!(w.book.family_of_order("ORD-1"), Some(&f("F1")));
    assert!(w.book.review_queue().is_empty());
    w.ok_callback(&PAY, paid("ORD-1", "TXN-1", DEPOSIT), at + 5 * MIN);

    // 缴纳成功后，签约申请提交成功，等待后台工作人员审核.
    assert_eq!(w.status("F1"), Status::InReview);
    assert_eq!(w.rec("F1").submitted_at(), Some(t(at + 5 * MIN)));
    assert_eq!(w.rec("F1").submissions(), 1);
    let queue: Vec<_> = w.book.review_queue().iter().map(|r| r.family()).collect();
    assert_eq!(queue, vec![&f("F1")]);
    assert!(w.rec("F1").materials().is_none());

    // 审核.
    w.ok_op("F1", SigningAction::Approve, at + 60 * MIN);
    assert_eq!(w.status("F1"), Status::Approved);
    assert_eq!(
        w.rec("F1").approval().unwrap().operator,
        OperatorId::new("op1")
    );
    assert!(w.book.review_queue().is_empty());
    let m = w.rec("F1").materials().unwrap();
    assert_eq!(m.contract, &contract);
    assert!(m.notice.is_none());

    // (六) 材料查看.
    w.ok_op("F1", notice("notice-1.pdf"), at + 61 * MIN);
    assert_eq!(w.status("F1"), Status::Completed);
    let m = w.rec("F1").materials().unwrap();
    assert_eq!(m.notice.unwrap().pdf.id, "notice-1.pdf");

    // The other family is untouched.
    assert_eq!(w.status("F2"), open_step(Step::Details));
}

// ===========================================================================
// Order of the steps

#[test]
fn each_step_before_the_one_it_needs_is_refused_as_step_locked() {
    let mut w = World::opened();
    let at = T0 + MIN;
    assert_eq!(
        w.refused(&fam("F1"), "F1", start_face("s1"), at),
        ErrorCode::StepLocked
    );
    assert_eq!(
        w.refused(&fam("F1"), "F1", sign(), at),
        ErrorCode::StepLocked
    );
    assert_eq!(
        w.refused(&fam("F1"), "F1", order("O1"), at),
        ErrorCode::StepLocked
    );

    w.ok("F1", fill(), at);
    assert_eq!(
        w.refused(&fam("F1"), "F1", sign(), at),
        ErrorCode::StepLocked
    );
    assert_eq!(
        w.refused(&fam("F1"), "F1", order("O1"), at),
        ErrorCode::StepLocked
    );

    // A face check started but without its verdict is not passed.
    w.ok("F1", start_face("s1"), at);
    assert_eq!(
        w.refused(&fam("F1"), "F1", sign(), at),
        ErrorCode::StepLocked
    );
    w.ok_callback(&FACE, face_result("s1", false), at);
    assert_eq!(
        w.refused(&fam("F1"), "F1", sign(), at),
        ErrorCode::StepLocked
    );
    assert_eq!(
        w.refused(&fam("F1"), "F1", order("O1"), at),
        ErrorCode::StepLocked
    );
}

#[test]
fn a_payment_before_any_order_is_refused() {
    let mut w = World::opened();
    w.ok("F1", fill(), T0);
    // No order was ever made: the number is unknown to the batch.
    assert_eq!(
        w.refused_callback(&PAY, paid("O1", "T1", DEPOSIT), T0),
        ErrorCode::PaymentMismatch
    );
    assert_eq!(
        w.refused(&PAY, "F1", paid("O1", "T1", DEPOSIT), T0),
        ErrorCode::PaymentMismatch
    );
}

#[test]
fn details_can_be_changed_until_the_contract_is_signed() {
    let mut w = World::opened();
    w.ok("F1", fill(), T0);
    w.pass_face("F1", "s1", T0);
    let other = fill_with(
        "13900001111",
        "CMB",
        &luhn_card("622588001122334455"),
        false,
    );
    w.ok("F1", other.clone(), T0 + MIN);
    assert_eq!(w.rec("F1").phone_masked().unwrap(), "139****1111");
    assert_eq!(w.rec("F1").bank().unwrap().code, "CMB");
    // New details do not undo the face check.
    assert_eq!(w.status("F1"), open_step(Step::Contract));

    w.ok("F1", sign(), T0 + 2 * MIN);
    assert_eq!(
        w.refused(&fam("F1"), "F1", fill(), T0 + 3 * MIN),
        ErrorCode::StepDone
    );
}

#[test]
fn filling_in_the_same_details_again_changes_nothing() {
    let mut w = World::opened();
    w.ok("F1", fill(), T0);
    w.no_op(&fam("F1"), "F1", fill(), T0 + MIN);
}

#[test]
fn a_done_step_cannot_be_done_again() {
    let mut w = World::opened();
    w.ok("F1", fill(), T0);
    w.pass_face("F1", "s1", T0);
    assert_eq!(
        w.refused(&fam("F1"), "F1", start_face("s2"), T0),
        ErrorCode::StepDone
    );
    w.ok("F1", sign(), T0);
    assert_eq!(w.refused(&fam("F1"), "F1", sign(), T0), ErrorCode::StepDone);
    w.ok("F1", order("O1"), T0);
    w.ok_callback(&PAY, paid("O1", "T1", DEPOSIT), T0);
    assert_eq!(
        w.refused(&fam("F1"), "F1", order("O2"), T0),
        ErrorCode::StepDone
    );
}

#[test]
fn a_submitted_application_refuses_every_family_step() {
    let mut w = World::opened();
    w.submit("F1", T0);
    let at = T0 + 10 * MIN;
    for a in [fill(), start_face("s9"), sign(), order("O9")] {
        assert_eq!(w.refused(&fam("F1"), "F1", a, at), ErrorCode::StepDone);
    }
    w.ok_op("F1", SigningAction::Approve, at);
    for a in [fill(), start_face("s9"), sign(), order("O9")] {
        assert_eq!(w.refused(&fam("F1"), "F1", a, at), ErrorCode::StepDone);
    }
}

// ===========================================================================
// Step 1: tenant details

#[test]
fn a_phone_that_is_not_an_eleven_digit_mainland_mobile_is_refused() {
    let mut w = World::opened();
    for phone in [
        "",
        "1381234567",
        "138123456789",
        "12812345678",
        "23812345678",
        "138 1234 567",
        "+8613812345678",
        "1381234567a",
        "１３８１２３４５６７８",
    ] {
        let code = w.refused(
            &fam("F1"),
            "F1",
            fill_with(phone, "ICBC", &card(), false),
            T0,
        );
        assert_eq!(code, ErrorCode::InvalidPhone, "{phone:?}");
    }
    for phone in ["13012345678", "19987654321", "15500000000"] {
        assert!(Phone::new(phone).is_valid(), "{phone}");
    }
}

#[test]
fn a_bank_off_the_list_or_a_card_that_is_not_16_to_19_digits_is_refused() {
    let mut w = World::opened();
    let cases = [
        ("XYZ", card()),
        ("icbc", card()),
        ("ICBC", luhn_card("62170012345678")),      // 15 digits
        ("ICBC", luhn_card("6217001234567890123")), // 20 digits
        ("ICBC", "6217 0012 3456 7890".to_owned()), // spaces
        ("ICBC", "6217-0012-3456-7890".to_owned()),
        ("ICBC", String::new()),
    ];
    for (bank, number) in cases {
        let code = w.refused(&fam("F1"), "F1", fill_with(PHONE, bank, &number, true), T0);
        assert_eq!(code, ErrorCode::InvalidCard, "{bank} {number:?}");
    }
    for n in [16, 19] {
        let number = luhn_card(&"6".repeat(n - 1));
        assert!(CardNumber::new(number).is_well_formed());
    }
}

#[test]
fn every_listed_bank_is_accepted_and_codes_are_unique() {
    let codes: std::collections::HashSet<_> = BANKS.iter().map(|b| b.code).collect();
    assert_eq!(codes.len(), BANKS.len());
    assert!(BANKS.len() >= 12);
    for b in BANKS {
        let mut w = World::opened();
        w.ok("F1", fill_with(PHONE, b.code, &card(), false), T0);
        assert_eq!(w.rec("F1").bank(), Some(&b));
        assert!(!b.zh.is_empty() && !b.en.is_empty());
    }
}

#[test]
fn a_card_failing_luhn_is_refused_until_the_applicant_confirms_it() {
    let mut w = World::opened();
    let number = non_luhn_card("621700123456789");
    let code = w.refused(
        &fam("F1"),
        "F1",
        fill_with(PHONE, "ICBC", &number, false),
        T0,
    );
    assert_eq!(code, ErrorCode::LuhnUnconfirmed);
}

#[test]
fn a_confirmed_card_failing_luhn_is_accepted_and_flagged_for_review() {
    let mut w = World::opened();
    let number = non_luhn_card("621700123456789");
    w.ok("F1", fill_with(PHONE, "ICBC", &number, true), T0);
    assert_eq!(w.status("F1"), open_step(Step::Face));
    assert_eq!(w.rec("F1").flags(), vec![Flag::CardFailsLuhn]);

    // A card that passes has no flag, confirmed or not.
    w.ok("F2", fill_with(PHONE, "ICBC", &card(), true), T0);
    assert_eq!(w.rec("F2").flags(), vec![]);
}

#[test]
fn card_photos_must_be_stored_images() {
    let mut w = World::opened();
    let with_photos = |front: BlobRef, back: BlobRef| SigningAction::FillDetails {
        phone: Phone::new(PHONE),
        bank: "ICBC".into(),
        card_number: CardNumber::new(card()),
        card_front: front,
        card_back: back,
        luhn_confirmed: false,
    };
    let img = blob("front", "image/jpeg");
    let mut empty = img.clone();
    empty.bytes = 0;
    let mut no_id = img.clone();
    no_id.id = String::new();
    for (front, back) in [
        (blob("front", "application/pdf"), img.clone()),
        (img.clone(), blob("back", "text/html")),
        (empty, img.clone()),
        (img.clone(), no_id),
    ] {
        let code = w.refused(&fam("F1"), "F1", with_photos(front, back), T0);
        assert_eq!(code, ErrorCode::BadFrame);
    }
}

#[test]
fn the_record_shows_card_and_phone_masked_and_debug_never_prints_them_whole() {
    let mut w = World::opened();
    let number = luhn_card("621700123456789012"); // 19 digits
    w.ok("F1", fill_with(PHONE, "ICBC", &number, false), T0);
    let r = w.rec("F1");
    let masked = r.card_masked().unwrap();
    assert_eq!(masked.len(), 19);
    assert_eq!(&masked[..6], &number[..6]);
    assert_eq!(&masked[15..], &number[15..]);
    assert_eq!(&masked[6..15], "*********");
    assert_eq!(r.phone_masked().unwrap(), "138****5678");
    let dbg = format!("{:?} {:?}", w.log, w.book);
    assert!(!dbg.contains(&number), "a full card number in Debug output");
    assert!(!dbg.contains(PHONE), "a full phone number in Debug output");
    // The stored value is the value given.
    let d = w.rec("F1").details().done().unwrap();
    assert_eq!(d.card_number.as_str(), number);
    assert_eq!(d.phone.as_str(), PHONE);
}

#[test]
fn masking_keeps_six_and_four_of_a_card_and_three_and_four_of_a_phone() {
    assert_eq!(mask_card("6217001234567890"), "621700******7890");
    assert_eq!(mask_phone("13812345678"), "138****5678");
    assert_eq!(mask_card("123"), "***");
    assert_eq!(mask_phone("1234567"), "*******");
}

// ===========================================================================
// Step 2: face verification

#[test]
fn a_face_result_for_another_session_than_the_current_one_is_refused() {
    let mut w = World::opened();
    w.ok("F1", fill(), T0);
    w.ok("F2", fill(), T0);
    w.ok("F1", start_face("a1"), T0);
    w.ok("F2", start_face("b1"), T0);
    // F2's session is not F1's.
    let code = w.refused(&FACE, "F1", face_result("b1", true), T0);
    assert_eq!(code, ErrorCode::FaceSessionMismatch);
    // A session the batch never started.
    let code = w.refused_callback(&FACE, face_result("zz", true), T0);
    assert_eq!(code, ErrorCode::FaceSessionMismatch);
    // Routed by session, each verdict reaches its own family.
    w.ok_callback(&FACE, face_result("b1", true), T0);
    assert!(w.rec("F2").face().passed());
    assert!(!w.rec("F1").face().passed());
}

#[test]
fn a_failed_face_check_lets_the_family_start_again_and_the_old_session_is_refused() {
    let mut w = World::opened();
    w.ok("F1", fill(), T0);
    w.ok("F1", start_face("a1"), T0);
    w.ok_callback(&FACE, face_result("a1", false), T0 + 1_000);
    assert_eq!(w.status("F1"), open_step(Step::Face));
    w.ok("F1", start_face("a2"), T0 + 2_000);
    let code = w.refused_callback(&FACE, face_result("a1", true), T0 + 3_000);
    assert_eq!(code, ErrorCode::FaceSessionMismatch);
    w.ok_callback(&FACE, face_result("a2", true), T0 + 4_000);
    assert_eq!(w.rec("F1").face().attempts, 2);
    assert_eq!(w.status("F1"), open_step(Step::Contract));
}

#[test]
fn a_face_session_left_without_a_verdict_can_be_replaced_and_counts_as_an_attempt() {
    let mut w = World::opened();
    w.ok("F1", fill(), T0);
    w.ok("F1", start_face("a1"), T0);
    w.ok("F1", start_face("a2"), T0 + MIN);
    assert_eq!(w.rec("F1").face().attempts, 2);
    let code = w.refused_callback(&FACE, face_result("a1", true), T0 + 2 * MIN);
    assert_eq!(code, ErrorCode::FaceSessionMismatch);
}

#[test]
fn after_five_attempts_the_face_check_waits_for_an_operator() {
    let mut w = World::opened();
    w.ok("F1", fill(), T0);
    for i in 1..=MAX_FACE_ATTEMPTS {
        let s = format!("a{i}");
        w.ok("F1", start_face(&s), T0);
        // The fifth attempt, while pending, can still pass: not locked yet.
        assert_ne!(w.status("F1"), Status::FaceLocked);
        w.ok_callback(&FACE, face_result(&s, false), T0);
    }
    assert_eq!(w.status("F1"), Status::FaceLocked);
    assert_eq!(
        w.refused(&fam("F1"), "F1", start_face("a6"), T0),
        ErrorCode::TooManyAttempts
    );
    let locked: Vec<_> = w
        .book
        .queue(|s| *s == Status::FaceLocked)
        .iter()
        .map(|r| r.family().clone())
        .collect();
    assert_eq!(locked, vec![f("F1")]);

    w.ok_op("F1", SigningAction::UnlockFace, T0 + MIN);
    assert_eq!(w.rec("F1").face().attempts, 0);
    assert_eq!(w.status("F1"), open_step(Step::Face));
    w.pass_face("F1", "a6", T0 + 2 * MIN);
    assert_eq!(w.status("F1"), open_step(Step::Contract));
}

#[test]
fn unlocking_a_face_check_that_is_not_locked_changes_nothing() {
    let mut w = World::opened();
    w.no_op(&op(), "F1", SigningAction::UnlockFace, T0);
    w.ok("F1", fill(), T0);
    w.ok("F1", start_face("a1"), T0);
    w.no_op(&op(), "F1", SigningAction::UnlockFace, T0);
}

#[test]
fn a_repeated_face_verdict_changes_nothing_and_a_contradicting_one_is_refused() {
    let mut w = World::opened();
    w.ok("F1", fill(), T0);
    w.ok("F1", start_face("a1"), T0);
    w.ok_callback(&FACE, face_result("a1", true), T0);
    w.no_op(&FACE, "F1", face_result("a1", true), T0 + 1_000);
    let code = w.refused(&FACE, "F1", face_result("a1", false), T0 + 2_000);
    assert_eq!(code, ErrorCode::FaceSessionMismatch);
}

#[test]
fn a_face_score_above_100_is_refused() {
    let mut w = World::opened();
    w.ok("F1", fill(), T0);
    w.ok("F1", start_face("a1"), T0);
    let a = SigningAction::FaceResult {
        provider_session: "a1".into(),
        passed: true,
        score: Some(101),
    };
    assert_eq!(w.refused(&FACE, "F1", a, T0), ErrorCode::BadFrame);
}

#[test]
fn a_face_session_id_is_used_once_in_a_batch() {
    let mut w = World::opened();
    w.ok("F1", fill(), T0);
    w.ok("F2", fill(), T0);
    w.ok("F1", start_face("a1"), T0);
    assert_eq!(
        w.refused(&fam("F2"), "F2", start_face("a1"), T0),
        ErrorCode::Conflict
    );
    w.ok_callback(&FACE, face_result("a1", false), T0);
    assert_eq!(
        w.refused(&fam("F1"), "F1", start_face("a1"), T0),
        ErrorCode::Conflict
    );
    for bad in ["", "has space", &"x".repeat(65)] {
        assert_eq!(
            w.refused(&fam("F1"), "F1", start_face(bad), T0),
            ErrorCode::BadFrame
        );
    }
}

// ===========================================================================
// Step 3: contract

#[test]
fn the_contract_is_a_pdf_signed_with_an_image_and_its_hash_is_recorded() {
    let mut w = World::opened();
    w.ok("F1", fill(), T0);
    w.pass_face("F1", "a1", T0);
    let bad = [
        (blob("c", "image/png"), blob("s", "image/png")),
        (blob("c", "application/pdf"), blob("s", "application/pdf")),
    ];
    for (pdf, signature) in bad {
        let a = SigningAction::SignContract { pdf, signature };
        assert_eq!(w.refused(&fam("F1"), "F1", a, T0), ErrorCode::BadFrame);
    }
    let ev = w.ok("F1", sign(), T0);
    let SigningEvent::ContractSigned { pdf, .. } = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(pdf.sha256, blob("contract.pdf", "").sha256);
}

// ===========================================================================
// Step 4: deposit

#[test]
fn a_deposit_order_cannot_be_replaced_while_the_provider_can_still_take_it() {
    let mut w = World::opened();
    w.up_to_order("F1", "O1", T0);
    let ordered_at = T0 + 3 * MIN;
    let expiry = ordered_at + DEPOSIT_ORDER_TTL_MS;
    let provider_stop = expiry - PROVIDER_STOP_MS;
    assert_eq!(
        w.refused(&fam("F1"), "F1", order("O2"), provider_stop - 1),
        ErrorCode::OrderPending
    );
    w.ok("F1", order("O2"), provider_stop);
    // Order numbers are never reused, by this family or another.
    assert_eq!(
        w.refused(&fam("F1"), "F1", order("O1"), expiry + DEPOSIT_ORDER_TTL_MS),
        ErrorCode::Conflict
    );
    w.ok("F2", fill(), T0);
    w.pass_face("F2", "b1", T0);
    w.ok("F2", sign(), T0);
    assert_eq!(
        w.refused(&fam("F2"), "F2", order("O2"), T0),
        ErrorCode::Conflict
    );
    assert_eq!(w.rec("F1").orders(), ["O1".to_owned(), "O2".to_owned()]);
}

#[test]
fn an_order_replaced_in_its_last_minute_is_still_taken_until_it_expires_here() {
    let mut w = World::opened();
    w.up_to_order("F1", "O1", T0);
    let expiry = T0 + 3 * MIN + DEPOSIT_ORDER_TTL_MS;
    // The provider stopped O1; the family orders again (its QR code no longer works).
    w.ok("F1", order("O2"), expiry - PROVIDER_STOP_MS + 1);
    // A payment the provider took just before stopping, notified in O1's last seconds.
    w.ok_callback(&PAY, paid("O1", "T1", DEPOSIT), expiry - 1);
    assert_eq!(w.status("F1"), Status::InReview);
    // Paying the new order as well is a second payment: refused (refunded).
    let code = w.refused_callback(&PAY, paid("O2", "T2", DEPOSIT), expiry);
    assert_eq!(code, ErrorCode::PaymentMismatch);
}

#[test]
fn a_replaced_order_paid_after_its_expiry_or_for_another_amount_is_refused() {
    let mut w = World::opened();
    w.up_to_order("F1", "O1", T0);
    let expiry = T0 + 3 * MIN + DEPOSIT_ORDER_TTL_MS;
    w.ok("F1", order("O2"), expiry - PROVIDER_STOP_MS);
    let code = w.refused_callback(&PAY, paid("O1", "T1", DEPOSIT - 1), expiry - 1);
    assert_eq!(code, ErrorCode::PaymentMismatch);
    let code = w.refused_callback(&PAY, paid("O1", "T1", DEPOSIT), expiry);
    assert_eq!(code, ErrorCode::OrderExpired);
    // The new order is the one to pay.
    w.ok_callback(&PAY, paid("O2", "T2", DEPOSIT), expiry + MIN);
    assert_eq!(w.status("F1"), Status::InReview);
}

#[test]
fn a_payment_of_another_amount_is_refused() {
    let mut w = World::opened();
    w.up_to_order("F1", "O1", T0);
    for amount in [DEPOSIT - 1, DEPOSIT + 1, 0] {
        let code = w.refused_callback(&PAY, paid("O1", "T1", amount), T0 + 4 * MIN);
        assert_eq!(code, ErrorCode::PaymentMismatch, "{amount}");
    }
    assert_eq!(w.status("F1"), open_step(Step::Deposit));
}

#[test]
fn a_payment_for_an_unknown_order_is_refused() {
    let mut w = World::opened();
    w.up_to_order("F1", "O1", T0);
    let code = w.refused_callback(&PAY, paid("O-unknown", "T1", DEPOSIT), T0 + 4 * MIN);
    assert_eq!(code, ErrorCode::PaymentMismatch);
    // Even when the gateway names the family, the order must be its current one.
    let code = w.refused(&PAY, "F1", paid("O-unknown", "T1", DEPOSIT), T0 + 4 * MIN);
    assert_eq!(code, ErrorCode::PaymentMismatch);
}

#[test]
fn a_payment_for_an_expired_order_is_refused() {
    let mut w = World::opened();
    w.up_to_order("F1", "O1", T0);
    let expiry = T0 + 3 * MIN + DEPOSIT_ORDER_TTL_MS;
    let code = w.refused_callback(&PAY, paid("O1", "T1", DEPOSIT), expiry);
    assert_eq!(code, ErrorCode::OrderExpired);
    // A newer order replaced it: the old one stays expired, the new one can be paid.
    w.ok("F1", order("O2"), expiry + MIN);
    let code = w.refused_callback(&PAY, paid("O1", "T1", DEPOSIT), expiry + 2 * MIN);
    assert_eq!(code, ErrorCode::OrderExpired);
    w.ok_callback(&PAY, paid("O2", "T2", DEPOSIT), expiry + 2 * MIN);
    assert_eq!(w.status("F1"), Status::InReview);
}

#[test]
fn a_payment_just_before_expiry_is_accepted() {
    let mut w = World::opened();
    w.up_to_order("F1", "O1", T0);
    let expiry = T0 + 3 * MIN + DEPOSIT_ORDER_TTL_MS;
    w.ok_callback(&PAY, paid("O1", "T1", DEPOSIT), expiry - 1);
}

#[test]
fn a_repeated_payment_notification_changes_nothing() {
    let mut w = World::opened();
    w.submit("F1", T0);
    let again = paid("F1-order-1", "F1-txn-1", DEPOSIT);
    // Even after the order's expiry: the payment is known.
    let before = w.book.clone();
    let r = w.callback(&PAY, &again, T0 + 24 * 60 * MIN).unwrap();
    assert_eq!(r, vec![]);
    assert_eq!(w.book, before);
    assert_eq!(
        w.count("F1", |e| matches!(e, SigningEvent::DepositPaid { .. })),
        1
    );
}

#[test]
fn a_second_transaction_for_a_paid_order_or_a_known_transaction_for_another_is_refused() {
    let mut w = World::opened();
    w.submit("F1", T0);
    let at = T0 + 5 * MIN;
    let code = w.refused_callback(&PAY, paid("F1-order-1", "other-txn", DEPOSIT), at);
    assert_eq!(code, ErrorCode::PaymentMismatch);
    let code = w.refused_callback(&PAY, paid("F1-order-1", "F1-txn-1", DEPOSIT - 1), at);
    assert_eq!(code, ErrorCode::PaymentMismatch);
}

// ===========================================================================
// Review

#[test]
fn the_review_queue_lists_submitted_applications_oldest_first() {
    let mut w = World::opened();
    w.submit("F2", T0);
    w.submit("F1", T0 + MIN);
    let q: Vec<_> = w
        .book
        .review_queue()
        .iter()
        .map(|r| r.family().clone())
        .collect();
    assert_eq!(q, vec![f("F2"), f("F1")]);
    w.ok_op("F2", SigningAction::Approve, T0 + 10 * MIN);
    let q: Vec<_> = w
        .book
        .review_queue()
        .iter()
        .map(|r| r.family().clone())
        .collect();
    assert_eq!(q, vec![f("F1")]);
    let approved = w.book.queue(|s| *s == Status::Approved);
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0].family(), &f("F2"));
}

#[test]
fn approve_and_reject_need_an_application_in_review() {
    let mut w = World::opened();
    w.ok("F1", fill(), T0);
    assert_eq!(
        w.refused(&op(), "F1", SigningAction::Approve, T0),
        ErrorCode::NotInReview
    );
    assert_eq!(
        w.refused(&op(), "F1", reject(Step::Details), T0),
        ErrorCode::NotInReview
    );
    w.submit("F2", T0);
    w.ok_op("F2", SigningAction::Approve, T0 + 10 * MIN);
    assert_eq!(
        w.refused(&op(), "F2", SigningAction::Approve, T0),
        ErrorCode::NotInReview
    );
    assert_eq!(
        w.refused(&op(), "F2", reject(Step::Face), T0),
        ErrorCode::NotInReview
    );
}

#[test]
fn a_rejection_needs_a_reason() {
    let mut w = World::opened();
    w.submit("F1", T0);
    for reason in ["", "   ", &"长".repeat(501)] {
        let a = SigningAction::Reject {
            step: Step::Details,
            reason: reason.to_owned(),
        };
        assert_eq!(
            w.refused(&op(), "F1", a, T0 + 10 * MIN),
            ErrorCode::BadFrame
        );
    }
}

#[test]
fn rejected_details_reopen_details_and_contract_and_keep_face_and_the_paid_deposit() {
    let mut w = World::opened();
    w.submit("F1", T0);
    let at = T0 + 60 * MIN;
    w.ok_op("F1", reject(Step::Details), at);
    let r = w.rec("F1");
    assert_eq!(r.status(), returned_step(Step::Details));
    assert_eq!(r.rejections().len(), 1);
    assert_eq!(r.rejections()[0].reason, "银行卡照片不清晰");
    assert_eq!(r.rejections()[0].step, Step::Details);
    // The old values stay visible, to show what was rejected and to prefill the form.
    assert!(matches!(r.details(), Slot::Returned(_)));
    assert_eq!(r.card_masked().unwrap(), mask_card(&card()));
    assert!(matches!(r.contract(), Slot::Returned(_)));
    assert!(r.face().passed());
    assert!(matches!(r.deposit(), Deposit::Paid(_)));
    assert!(w.book.review_queue().is_empty());

    // Never pay twice: no new order.
    assert_eq!(
        w.refused(&fam("F1"), "F1", order("O9"), at),
        ErrorCode::StepDone
    );
    // The contract waits for the corrected details.
    assert_eq!(
        w.refused(&fam("F1"), "F1", sign(), at),
        ErrorCode::StepLocked
    );
    assert_eq!(
        w.refused(&fam("F1"), "F1", start_face("x"), at),
        ErrorCode::StepDone
    );

    w.ok("F1", fill_with(PHONE, "CCB", &card(), false), at + MIN);
    assert_eq!(w.status("F1"), returned_step(Step::Contract));
    let ev = w.ok("F1", sign(), at + 2 * MIN);
    assert_eq!(ev.len(), 1, "resubmitting is not an event of its own");
    assert_eq!(w.status("F1"), Status::InReview);
    assert_eq!(w.rec("F1").submissions(), 2);
    assert_eq!(w.rec("F1").submitted_at(), Some(t(at + 2 * MIN)));
    assert_eq!(
        w.count("F1", |e| matches!(e, SigningEvent::DepositPaid { .. })),
        1
    );
    assert_eq!(
        w.count("F1", |e| matches!(e, SigningEvent::DepositOrdered { .. })),
        1
    );
    w.ok_op("F1", SigningAction::Approve, at + 10 * MIN);
    assert_eq!(w.rec("F1").bank().unwrap().code, "CCB");
}

#[test]
fn a_rejected_face_check_is_redone_with_fresh_attempts_and_a_new_contract() {
    let mut w = World::opened();
    w.submit("F1", T0);
    let at = T0 + 60 * MIN;
    w.ok_op("F1", reject(Step::Face), at);
    let r = w.rec("F1");
    assert_eq!(r.status(), returned_step(Step::Face));
    assert_eq!(r.face().attempts, 0);
    assert_eq!(r.face().state, FaceState::NotStarted);
    assert!(matches!(r.contract(), Slot::Returned(_)));
    assert!(r.details().is_done());
    assert!(matches!(r.deposit(), Deposit::Paid(_)));

    w.pass_face("F1", "again-1", at + MIN);
    assert_eq!(w.status("F1"), returned_step(Step::Contract));
    w.ok("F1", sign(), at + 2 * MIN);
    assert_eq!(w.status("F1"), Status::InReview);
    assert_eq!(
        w.count("F1", |e| matches!(e, SigningEvent::DepositPaid { .. })),
        1
    );
}

#[test]
fn a_rejected_contract_is_signed_again_and_nothing_else_is_redone() {
    let mut w = World::opened();
    w.submit("F1", T0);
    let at = T0 + 60 * MIN;
    w.ok_op("F1", reject(Step::Contract), at);
    assert_eq!(w.status("F1"), returned_step(Step::Contract));
    // The details may still be corrected while the contract is unsigned.
    w.ok("F1", sign(), at + MIN);
    assert_eq!(w.status("F1"), Status::InReview);
    assert_eq!(
        w.count("F1", |e| matches!(e, SigningEvent::DetailsFilled { .. })),
        1
    );
    assert_eq!(
        w.count("F1", |e| matches!(e, SigningEvent::FaceStarted { .. })),
        1
    );
}

#[test]
fn a_rejected_deposit_voids_the_payment_for_refund_and_the_family_pays_a_new_order() {
    let mut w = World::opened();
    w.submit("F1", T0);
    let at = T0 + 60 * MIN;
    w.ok_op("F1", reject(Step::Deposit), at);
    let r = w.rec("F1");
    assert_eq!(r.status(), returned_step(Step::Deposit));
    assert_eq!(r.deposit(), &Deposit::Unordered);
    assert_eq!(r.voided_payments().len(), 1);
    assert_eq!(r.voided_payments()[0].provider_txn_id, "F1-txn-1");
    assert!(r.contract().is_done());

    // The voided payment repeated is still known: no event, not a second payment.
    w.no_op(&PAY, "F1", paid("F1-order-1", "F1-txn-1", DEPOSIT), at);
    w.ok("F1", order("F1-order-2"), at + MIN);
    w.ok_callback(&PAY, paid("F1-order-2", "F1-txn-2", DEPOSIT), at + 2 * MIN);
    assert_eq!(w.status("F1"), Status::InReview);
}

#[test]
fn rejections_accumulate_and_each_resubmission_is_counted() {
    let mut w = World::opened();
    w.submit("F1", T0);
    w.ok_op("F1", reject(Step::Contract), T0 + 60 * MIN);
    w.ok("F1", sign(), T0 + 61 * MIN);
    w.ok_op("F1", reject(Step::Contract), T0 + 62 * MIN);
    w.ok("F1", sign(), T0 + 63 * MIN);
    w.ok_op("F1", SigningAction::Approve, T0 + 64 * MIN);
    let r = w.rec("F1");
    assert_eq!(r.rejections().len(), 2);
    assert_eq!(r.submissions(), 3);
    assert_eq!(r.status(), Status::Approved);
}

// ===========================================================================
// Materials

#[test]
fn the_notice_is_issued_only_after_approval_and_can_be_reissued() {
    let mut w = World::opened();
    w.submit("F1", T0);
    assert_eq!(
        w.refused(&op(), "F1", notice("n1.pdf"), T0),
        ErrorCode::StepLocked
    );
    w.ok_op("F1", SigningAction::Approve, T0 + 10 * MIN);
    assert_eq!(
        w.refused(
            &op(),
            "F1",
            SigningAction::IssueNotice {
                pdf: blob("n", "image/png")
            },
            T0
        ),
        ErrorCode::BadFrame
    );
    w.ok_op("F1", notice("n1.pdf"), T0 + 11 * MIN);
    w.no_op(&op(), "F1", notice("n1.pdf"), T0 + 12 * MIN);
    w.ok_op("F1", notice("n2.pdf"), T0 + 13 * MIN);
    let n = w.rec("F1").materials().unwrap().notice.unwrap();
    assert_eq!(n.pdf.id, "n2.pdf");
    assert_eq!(n.at, t(T0 + 13 * MIN));
}

// ===========================================================================
// Who may ask

#[test]
fn family_actions_from_anyone_but_the_family_itself_are_refused() {
    let mut w = World::opened();
    for actor in [fam("F2"), op(), FACE, PAY] {
        assert_eq!(
            w.refused(&actor, "F1", fill(), T0),
            ErrorCode::Forbidden,
            "{actor:?}"
        );
    }
    w.ok("F1", fill(), T0);
    for actor in [fam("F2"), op(), FACE, PAY] {
        let code = w.refused(&actor, "F1", start_face("a1"), T0);
        assert_eq!(code, ErrorCode::Forbidden, "{actor:?}");
    }
}

#[test]
fn operator_actions_from_a_family_or_a_provider_are_refused() {
    let mut w = World::opened();
    w.submit("F1", T0);
    let actions = [
        SigningAction::Approve,
        reject(Step::Details),
        SigningAction::UnlockFace,
        notice("n1.pdf"),
    ];
    for actor in [fam("F1"), FACE, PAY] {
        for a in actions.clone() {
            let code = w.refused(&actor, "F1", a.clone(), T0);
            assert_eq!(code, ErrorCode::Forbidden, "{actor:?} {a:?}");
        }
    }
}

#[test]
fn provider_callbacks_from_anyone_but_that_provider_are_refused() {
    let mut w = World::opened();
    w.ok("F1", fill(), T0);
    w.ok("F1", start_face("a1"), T0);
    for actor in [fam("F1"), op(), PAY] {
        let code = w.refused(&actor, "F1", face_result("a1", true), T0);
        assert_eq!(code, ErrorCode::Forbidden);
        let code = w.refused_callback(&actor, face_result("a1", true), T0);
        assert_eq!(code, ErrorCode::Forbidden);
    }
    w.ok_callback(&FACE, face_result("a1", true), T0);
    w.ok("F1", sign(), T0);
    w.ok("F1", order("O1"), T0);
    for actor in [fam("F1"), op(), FACE] {
        let code = w.refused_callback(&actor, paid("O1", "T1", DEPOSIT), T0);
        assert_eq!(code, ErrorCode::Forbidden);
    }
    // Callbacks are routed by reference, never by a family the caller names.
    let code = w.refused_callback(&PAY, fill(), T0);
    assert_eq!(code, ErrorCode::Forbidden);
}

#[test]
fn every_action_names_the_one_party_that_may_ask_for_it() {
    let cases = [
        (fill(), Party::Family),
        (start_face("s"), Party::Family),
        (sign(), Party::Family),
        (order("o"), Party::Family),
        (face_result("s", true), Party::FaceProvider),
        (paid("o", "t", 1), Party::PaymentProvider),
        (SigningAction::Approve, Party::Operator),
        (reject(Step::Face), Party::Operator),
        (SigningAction::UnlockFace, Party::Operator),
        (notice("n"), Party::Operator),
    ];
    for (a, party) in cases {
        assert_eq!(a.party(), party, "{a:?}");
    }
}

// ===========================================================================
// Serialization and replay

#[test]
fn events_and_entries_round_trip_as_json_and_messagepack_with_snake_case_tags() {
    let mut w = World::opened();
    w.submit("F1", T0);
    w.ok_op("F1", reject(Step::Deposit), T0 + 60 * MIN);
    let json = serde_json::to_value(&w.log).unwrap();
    let kinds: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"details_filled"));
    assert!(kinds.contains(&"deposit_paid"));
    let last = &json.as_array().unwrap().last().unwrap()["event"];
    assert_eq!(last["kind"], "rejected");
    assert_eq!(last["step"], "deposit");
    assert_eq!(last["operator"], "op1");
    // Digests are hex, the card number is the value given.
    let details = &json[2]["event"]["details"];
    assert_eq!(details["card_front"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(details["card_number"], card());
    for enc in [Encoding::Json, Encoding::MsgPack] {
        let back: Vec<SigningEntry> = enc.decode(&enc.encode(&w.log).unwrap()).unwrap();
        assert_eq!(back, w.log);
    }
}

#[test]
fn actions_and_actors_round_trip_as_json() {
    let actions = [
        fill(),
        face_result("s", false),
        reject(Step::Contract),
        SigningAction::Approve,
    ];
    for a in actions {
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<SigningAction>(&json).unwrap(), a);
    }
    assert_eq!(
        serde_json::to_value(op()).unwrap(),
        serde_json::json!({"actor": "operator", "id": "op1"})
    );
    assert_eq!(
        serde_json::to_value(FACE).unwrap(),
        serde_json::json!({"actor": "face_provider"})
    );
}

#[test]
fn a_sha256_is_64_hex_digits() {
    let s = Sha256([0xab; 32]);
    let text = s.to_string();
    assert_eq!(text, "ab".repeat(32));
    assert_eq!(text.parse::<Sha256>().unwrap(), s);
    assert!("ab".parse::<Sha256>().is_err());
    assert!("zz".repeat(32).parse::<Sha256>().is_err());
    assert!(serde_json::from_str::<Sha256>("\"abc\"").is_err());
}

#[test]
fn replay_refuses_a_log_with_a_gap_or_an_event_before_opening() {
    let mut w = World::opened();
    w.ok("F1", fill(), T0);
    let mut gap = w.log.clone();
    gap.remove(1);
    assert_eq!(
        SigningBook::replay(&gap),
        Err(ReplayError::Gap {
            expected: 2,
            found: 3
        })
    );
    let unopened: Vec<_> = w.log.iter().skip(2).cloned().collect();
    assert_eq!(
        SigningBook::replay(&unopened),
        Err(ReplayError::NotOpened { seq: 3 })
    );
    let mut twice = w.log.clone();
    let mut again = twice[0].clone();
    again.seq = 4;
    twice.push(again);
    assert_eq!(
        SigningBook::replay(&twice),
        Err(ReplayError::OpenedTwice { seq: 4 })
    );
    let mixed = [w.log[0].clone(), w.log[1].clone()];
    assert_eq!(
        SigningRecord::replay(&mixed),
        Err(ReplayError::OtherFamily { seq: 2 })
    );
}

// ===========================================================================
// Any sequence

#[derive(Clone, Debug)]
enum Op {
    /// The next step of a family that follows the flow (`choice` picks a verdict, or
    /// a review decision).
    Advance {
        fam: usize,
        choice: u8,
    },
    Open(usize),
    Fill {
        fam: usize,
        valid: u8,
        luhn_ok: bool,
        confirmed: bool,
    },
    StartFace {
        fam: usize,
        session: u8,
    },
    /// The verdict of the family's current session (or of a random one).
    FaceVerdict {
        fam: usize,
        current: bool,
        session: u8,
        passed: bool,
    },
    Sign(usize),
    Order {
        fam: usize,
        no: u8,
    },
    /// A payment of the family's current order (or of a random one), right or wrong.
    Pay {
        fam: usize,
        current: bool,
        no: u8,
        txn: u8,
        right_amount: bool,
    },
    Approve(usize),
    Reject {
        fam: usize,
        step: usize,
    },
    Unlock(usize),
    Notice {
        fam: usize,
        n: u8,
    },
    /// Someone asks for what is not theirs.
    Wrong {
        fam: usize,
        actor: usize,
        action: usize,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let fam = 0..3usize;
    prop_oneof![
        12 => (fam.clone(), any::<u8>()).prop_map(|(fam, choice)| Op::Advance { fam, choice }),
        1 => fam.clone().prop_map(Op::Open),
        1 => (fam.clone(), 0..4u8, any::<bool>(), any::<bool>()).prop_map(
            |(fam, valid, luhn_ok, confirmed)| Op::Fill { fam, valid, luhn_ok, confirmed }
        ),
        1 => (fam.clone(), 0..40u8).prop_map(|(fam, session)| Op::StartFace { fam, session }),
        1 => (fam.clone(), prop::bool::weighted(0.8), 0..40u8, prop::bool::weighted(0.6)).prop_map(
            |(fam, current, session, passed)| Op::FaceVerdict { fam, current, session, passed }
        ),
        1 => fam.clone().prop_map(Op::Sign),
        1 => (fam.clone(), 0..30u8).prop_map(|(fam, no)| Op::Order { fam, no }),
        1 => (
            fam.clone(),
            prop::bool::weighted(0.8),
            0..30u8,
            0..6u8,
            prop::bool::weighted(0.8)
        )
            .prop_map(|(fam, current, no, txn, right_amount)| Op::Pay {
                fam,
                current,
                no,
                txn,
                right_amount
            }),
        1 => fam.clone().prop_map(Op::Approve),
        1 => (fam.clone(), 0..4usize).prop_map(|(fam, step)| Op::Reject { fam, step }),
        1 => fam.clone().prop_map(Op::Unlock),
        1 => (fam.clone(), 0..3u8).prop_map(|(fam, n)| Op::Notice { fam, n }),
        1 => (fam, 0..4usize, 0..6usize).prop_map(|(fam, actor, action)| Op::Wrong {
            fam,
            actor,
            action
        }),
    ]
}

const FAMS: [&str; 3] = ["F1", "F2", "F3"];

impl World {
    /// Plays one op, accepted or refused.
    fn play(&mut self, o: &Op, now: i64) {
        let name = |i: usize| FAMS[i];
        let _ = match o {
            Op::Advance { fam: i, choice } => self.advance(name(*i), *choice, now),
            Op::Open(i) => self.open(name(*i)),
            Op::Fill {
                fam: i,
                valid,
                luhn_ok,
                confirmed,
            } => {
                let number = if *luhn_ok {
                    card()
                } else {
                    non_luhn_card("621700123456789")
                };
                let a = match valid {
                    0 => fill_with("1234", "ICBC", &number, *confirmed),
                    1 => fill_with(PHONE, "CMB", &number, *confirmed),
                    _ => fill_with(PHONE, "ICBC", &number, *confirmed),
                };
                self.act(&fam(name(*i)), name(*i), &a, now)
            }
            Op::StartFace { fam: i, session } => self.act(
                &fam(name(*i)),
                name(*i),
                &start_face(&format!("s{session}")),
                now,
            ),
            Op::FaceVerdict {
                fam: i,
                current,
                session,
                passed,
            } => {
                let pending = self
                    .book
                    .record(&f(name(*i)))
                    .and_then(|r| match &r.face().state {
                        FaceState::Pending { provider_session } => Some(provider_session.clone()),
                        _ => None,
                    });
                let s = match pending {
                    Some(s) if *current => s,
                    _ => format!("s{session}"),
                };
                self.callback(&FACE, &face_result(&s, *passed), now)
            }
            Op::Sign(i) => self.act(&fam(name(*i)), name(*i), &sign(), now),
            Op::Order { fam: i, no } => {
                self.act(&fam(name(*i)), name(*i), &order(&format!("o{no}")), now)
            }
            Op::Pay {
                fam: i,
                current,
                no,
                txn,
                right_amount,
            } => {
                let live = self
                    .book
                    .record(&f(name(*i)))
                    .and_then(|r| match r.deposit() {
                        Deposit::Ordered(o) => Some(o.out_trade_no.clone()),
                        _ => None,
                    });
                let no = match live {
                    Some(n) if *current => n,
                    _ => format!("o{no}"),
                };
                let amount = if *right_amount {
                    DEPOSIT
                } else {
                    DEPOSIT - 100
                };
                self.callback(&PAY, &paid(&no, &format!("t{txn}"), amount), now)
            }
            Op::Approve(i) => self.act(&op(), name(*i), &SigningAction::Approve, now),
            Op::Reject { fam: i, step } => {
                self.act(&op(), name(*i), &reject(Step::ALL[*step]), now)
            }
            Op::Unlock(i) => self.act(&op(), name(*i), &SigningAction::UnlockFace, now),
            Op::Notice { fam: i, n } => {
                self.act(&op(), name(*i), &notice(&format!("n{n}.pdf")), now)
            }
            Op::Wrong {
                fam: i,
                actor,
                action,
            } => {
                let actor = [fam(name((*i + 1) % 3)), op(), FACE, PAY][*actor].clone();
                let a = [
                    fill(),
                    start_face("w"),
                    sign(),
                    SigningAction::Approve,
                    face_result("w", true),
                    paid("w", "w", DEPOSIT),
                ][*action]
                    .clone();
                if a.party() == actor.party() && !matches!(actor, Actor::Family(_)) {
                    return;
                }
                let before = self.book.clone();
                let r = self.act(&actor, name(*i), &a, now);
                assert!(
                    r.is_err() || matches!(r, Ok(ref e) if e.is_empty()),
                    "{actor:?} {a:?} accepted"
                );
                assert_eq!(self.book, before);
                r
            }
        };
    }

    /// Does what a family, provider or operator following the flow would do next.
    fn advance(&mut self, x: &str, choice: u8, now: i64) -> Result<Vec<SigningEvent>, Rejection> {
        self.fresh += 1;
        let fresh = self.fresh;
        let Some(r) = self.book.record(&f(x)) else {
            return self.open(x);
        };
        let pending = match &r.face().state {
            FaceState::Pending { provider_session } => Some(provider_session.clone()),
            _ => None,
        };
        let live = r.live_order(t(now)).map(|o| o.out_trade_no.clone());
        match r.status() {
            Status::Open {
                step: Step::Details,
                ..
            } => self.act(&fam(x), x, &fill(), now),
            Status::Open {
                step: Step::Face, ..
            } => match pending {
                Some(s) => self.callback(&FACE, &face_result(&s, !choice.is_multiple_of(3)), now),
                None => self.act(&fam(x), x, &start_face(&format!("fresh-{fresh}")), now),
            },
            Status::Open {
                step: Step::Contract,
                ..
            } => self.act(&fam(x), x, &sign(), now),
            Status::Open {
                step: Step::Deposit,
                ..
            } => match live {
                Some(no) => self.callback(&PAY, &paid(&no, &format!("txn-{fresh}"), DEPOSIT), now),
                None => self.act(&fam(x), x, &order(&format!("ord-{fresh}")), now),
            },
            Status::FaceLocked => self.act(&op(), x, &SigningAction::UnlockFace, now),
            Status::InReview => match choice % 6 {
                0..=1 => self.act(&op(), x, &SigningAction::Approve, now),
                c => self.act(&op(), x, &reject(Step::ALL[usize::from(c) - 2]), now),
            },
            Status::Approved | Status::Completed => {
                self.act(&op(), x, &notice(&format!("n{}.pdf", choice % 2)), now)
            }
        }
    }

    fn check_invariants(&self) {
        for r in self.book.records() {
            let x = r.family().as_str();
            // A later step never stands on an earlier one that is not done.
            if r.contract().is_done() {
                assert!(r.details().is_done() && r.face().passed(), "{x}: {r:?}");
            }
            if matches!(r.deposit(), Deposit::Ordered(_)) {
                assert!(r.contract().is_done(), "{x}: order without a contract");
            }
            if r.status() == Status::InReview {
                assert!(Step::ALL.iter().all(|s| r.is_done(*s)));
            }
            if r.notice().is_some() {
                assert!(r.approval().is_some());
            }
            if r.approval().is_some() {
                assert!(r.submissions() >= 1);
                assert!(r.materials().is_some());
            }
            assert!(r.face().attempts <= MAX_FACE_ATTEMPTS);
            // Never pay twice: a second payment only after a reviewer voided the first.
            let payments = self.count(x, |e| matches!(e, SigningEvent::DepositPaid { .. }));
            let voids = self.count(x, |e| {
                matches!(
                    e,
                    SigningEvent::Rejected {
                        step: Step::Deposit,
                        ..
                    }
                )
            });
            assert!(
                payments <= 1 + voids,
                "{x}: {payments} payments, {voids} voids"
            );
            assert_eq!(r.voided_payments().len(), voids);
        }
        // F3 never had a unit.
        assert!(self.book.record(&f("F3")).is_none());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever anyone asks, in whatever order and at whatever time: steps stand only on
    /// done steps, nobody pays twice, refusals change nothing, and the log replays to
    /// the same book and the same records.
    #[test]
    fn any_sequence_keeps_the_invariants_and_replays(
        ops in proptest::collection::vec((op_strategy(), 0..(20 * MIN)), 1..150)
    ) {
        let mut w = World::new();
        let mut now = T0;
        for (o, dt) in &ops {
            now += dt / 4;
            w.play(o, now);
            w.check_invariants();
        }
        w.assert_replays();
    }
}

#[test]
fn the_console_lists_completed_records() {
    let mut w = World::opened();
    w.submit("F1", T0);
    w.ok_op("F1", SigningAction::Approve, T0 + 10 * MIN);
    w.ok_op("F1", notice("n.pdf"), T0 + 11 * MIN);
    assert_eq!(w.status("F1"), Status::Completed);
    let completed = w.book.queue(|s| *s == Status::Completed);
    assert_eq!(completed.len(), 1);
}
