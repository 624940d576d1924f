//! 网上签约: the online signing of one family's lease, as its own state machine.
//!
//! Like [`crate::selection`], deciding never changes state and applying an event is the
//! only way state changes, so a family's events alone rebuild its record
//! ([`SigningRecord::replay`]) and a batch's signing log rebuilds the whole book
//! ([`SigningBook::replay`]). It is a separate aggregate with its own events and log; the
//! selection only supplies the precondition (an [`Outcome::Selected`]).
//!
//! ```text
//!  selection   Outcome::Selected ──▶ Opened
//!                                      │
//!  family      1 details ──▶ 2 face ──────▶ 3 contract ──▶ 4 deposit
//!              DetailsFilled  FaceStarted    ContractSigned  DepositOrdered
//!                             FaceResult*                    DepositPaid**
//!                                      │ all four done (no submit action)
//!                                      ▼
//!  operator                        in review ──Approved──▶ approved ──NoticeIssued──▶ completed
//!                                      │                                            (材料管理)
//!                                      └─Rejected{step}─▶ that step, and what builds on it,
//!                                        reopens; redoing them puts it back in review
//!
//!  *  from the face provider; 5 starts, then FaceLocked until an operator's FaceUnlocked
//!  ** from the payment provider; a paid deposit survives every rejection but its own
//! ```
//!
//! A step can be done once the steps before it are done, and changed until a later step
//! builds on it: the details until the contract is signed, the face check until it
//! passes, the contract and deposit once. Submission is not an action: the event that
//! completes the last open step puts the record in review. Who may ask for what is part
//! of every decision ([`Actor`], [`Party`]): a family for its own record, the face
//! provider and the payment provider for their callbacks, an operator for review.
//!
//! Every event is free of time; [`SigningEntry`] carries the server time of the change.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use crate::blob::BlobRef;
use crate::domain::{FamilyId, Layout, OperatorId, Unit, UnitId};
use crate::error_code::{ErrorCode, Rejection};
use crate::selection::{Outcome, Selection};
use crate::time::Millis;

mod identity;
mod tenant;
pub use identity::{IdNumber, IdNumberError, Identity};
pub use tenant::{
    bank, luhn_valid, mask_card, mask_phone, Bank, CardNumber, Phone, BANKS, CARD_DIGITS,
};

/// Face checks a family may start before an operator must allow more.
pub const MAX_FACE_ATTEMPTS: u8 = 5;
/// How long a deposit order (its QR code) can be paid. The gateway gives the payment
/// provider an earlier expiry, so every payment it accepts is notified before the order
/// expires here.
pub const DEPOSIT_ORDER_TTL_MS: i64 = 15 * 60 * 1000;
/// The payment provider stops taking payment of an order this long before it expires
/// here (the gateway gives the provider that expiry), so every payment it takes is
/// notified while the order is live. From then on the family may order again: the QR
/// code it holds no longer works.
pub const PROVIDER_STOP_MS: i64 = 60 * 1000;
/// The longest rejection reason an operator may write.
pub const MAX_REASON_CHARS: usize = 500;
/// The longest provider reference (face session, order number, transaction id).
pub const MAX_REF_LEN: usize = 64;

/// The four steps a family does, in order (guide §3 (二)–(五)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// 完善承租信息: phone and rent direct-debit card.
    Details,
    /// 人脸识别 of the main applicant.
    Face,
    /// 签订合同: the lease signed by hand.
    Contract,
    /// 租赁保证金: the deposit paid.
    Deposit,
}

impl Step {
    pub const ALL: [Step; 4] = [Step::Details, Step::Face, Step::Contract, Step::Deposit];

    /// The steps a reviewer's rejection of `self` sends back to the family. The lease
    /// names the tenant's phone and direct-debit account and is signed by the verified
    /// applicant, so new details or a new face check void the signed contract too. A
    /// paid deposit is never voided by another step's rejection.
    pub fn reopens(self) -> &'static [Step] {
        match self {
            Step::Details => &[Step::Details, Step::Contract],
            Step::Face => &[Step::Face, Step::Contract],
            Step::Contract => &[Step::Contract],
            Step::Deposit => &[Step::Deposit],
        }
    }

    /// The steps that must be done before this one can be.
    pub fn needs(self) -> &'static [Step] {
        match self {
            Step::Details => &[],
            Step::Face => &[Step::Details],
            Step::Contract => &[Step::Details, Step::Face],
            Step::Deposit => &[Step::Details, Step::Face, Step::Contract],
        }
    }
}

/// Who asks. The gateway builds it from a verified token or a verified provider
/// callback; the hub never trusts a client to say who it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "actor", content = "id", rename_all = "snake_case")]
pub enum Actor {
    Family(FamilyId),
    Operator(OperatorId),
    /// A signed callback of the face verification provider.
    FaceProvider,
    /// A signed notification of the payment provider.
    PaymentProvider,
}

/// The kind of actor an action is for (see [`SigningAction::party`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    Family,
    Operator,
    FaceProvider,
    PaymentProvider,
}

impl Actor {
    pub fn party(&self) -> Party {
        match self {
            Actor::Family(_) => Party::Family,
            Actor::Operator(_) => Party::Operator,
            Actor::FaceProvider => Party::FaceProvider,
            Actor::PaymentProvider => Party::PaymentProvider,
        }
    }
}

/// What an actor asks of a signing record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum SigningAction {
    /// Family: 完善承租信息. The card holder is the main applicant, so it is not asked.
    FillDetails {
        phone: Phone,
        /// A code from [`BANKS`].
        bank: String,
        card_number: CardNumber,
        card_front: BlobRef,
        card_back: BlobRef,
        /// The applicant saw the Luhn warning and confirms the number is right.
        #[serde(default)]
        luhn_confirmed: bool,
    },
    /// Family: 开始人脸识别, with the session the gateway opened at the provider.
    StartFace { provider_session: String },
    /// Family: 开始签订. The gateway renders the lease with the signature into a PDF and
    /// stores both before asking.
    SignContract { pdf: BlobRef, signature: BlobRef },
    /// Family: pay the deposit. The gateway picks the order number; the hub fixes the
    /// amount and the expiry, and the gateway asks the provider for the QR code after.
    OrderDeposit { out_trade_no: String },
    /// Face provider: the verdict of one session.
    FaceResult {
        provider_session: String,
        passed: bool,
        /// The provider's similarity score, 0–100, when it gives one.
        #[serde(default)]
        score: Option<u8>,
    },
    /// Payment provider: an order was paid.
    DepositPaid {
        out_trade_no: String,
        provider_txn_id: String,
        amount_fen: u64,
    },
    /// Operator: 审核通过.
    Approve,
    /// Operator: 审核不通过, naming the step the family must correct.
    Reject { step: Step, reason: String },
    /// Operator: allow a family that failed the face check too often to try again.
    UnlockFace,
    /// Operator: issue (or reissue) the move-in notice (入住通知书) of an approved record.
    IssueNotice { pdf: BlobRef },
}

impl SigningAction {
    /// The only kind of actor that may ask for this.
    pub fn party(&self) -> Party {
        use SigningAction::*;
        match self {
            FillDetails { .. } | StartFace { .. } | SignContract { .. } | OrderDeposit { .. } => {
                Party::Family
            }
            FaceResult { .. } => Party::FaceProvider,
            DepositPaid { .. } => Party::PaymentProvider,
            Approve | Reject { .. } | UnlockFace | IssueNotice { .. } => Party::Operator,
        }
    }
}

/// The lease being signed, fixed when signing opens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lease {
    pub unit: UnitId,
    pub building: String,
    pub number: String,
    pub layout: Layout,
    /// Floor area in m².
    pub area: f64,
    /// Monthly rent in fen (分).
    pub rent_fen: u64,
}

impl Lease {
    pub fn of_unit(u: &Unit) -> Self {
        Self {
            unit: u.id.clone(),
            building: u.building.clone(),
            number: u.number.clone(),
            layout: u.layout.clone(),
            area: u.area,
            rent_fen: yuan_to_fen(u.rent),
        }
    }
}

/// Yuan (as imported) to whole fen, rounded; negative or not-a-number rents are 0.
pub fn yuan_to_fen(yuan: f64) -> u64 {
    let fen = (yuan * 100.0).round();
    if fen.is_finite() && fen > 0.0 {
        fen as u64
    } else {
        0
    }
}

/// Step 1 as filled in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDetails {
    pub phone: Phone,
    /// A code from [`BANKS`].
    pub bank: String,
    pub card_number: CardNumber,
    pub card_front: BlobRef,
    pub card_back: BlobRef,
}

/// Step 3 as signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedContract {
    /// The lease with the signature; its SHA-256 is the proof of what was signed.
    pub pdf: BlobRef,
    /// The handwritten signature alone.
    pub signature: BlobRef,
}

/// Everything that ever changes a signing record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SigningEvent {
    /// The family has a selected unit: signing starts. Always a record's first event.
    Opened {
        lease: Lease,
        /// The main applicant (主申请人): the card holder and the tenant on the lease.
        applicant: String,
        /// The deposit to pay, in fen, as the bureau's terms set it.
        deposit_fen: u64,
    },
    DetailsFilled {
        details: TenantDetails,
    },
    FaceStarted {
        provider_session: String,
    },
    FaceResult {
        provider_session: String,
        passed: bool,
        score: Option<u8>,
    },
    /// The failed attempts no longer count.
    FaceUnlocked {
        operator: OperatorId,
    },
    ContractSigned {
        pdf: BlobRef,
        signature: BlobRef,
    },
    DepositOrdered {
        out_trade_no: String,
        amount_fen: u64,
        expires_at: Millis,
    },
    DepositPaid {
        out_trade_no: String,
        provider_txn_id: String,
        amount_fen: u64,
    },
    Approved {
        operator: OperatorId,
    },
    /// The reviewer sends `step` back (and what depends on it, [`Step::reopens`]).
    Rejected {
        operator: OperatorId,
        step: Step,
        reason: String,
    },
    NoticeIssued {
        operator: OperatorId,
        pdf: BlobRef,
    },
}

/// One entry of a batch's signing log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SigningEntry {
    /// 1, 2, 3, ... per batch, without gaps.
    pub seq: u64,
    /// Server time of the change.
    pub at: Millis,
    pub family: FamilyId,
    pub event: SigningEvent,
}

/// A step's work: not done yet, done, or sent back by a reviewer (the old value kept, to
/// show what was rejected and to prefill the form).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "slot", content = "value", rename_all = "snake_case")]
pub enum Slot<T> {
    #[default]
    Empty,
    Done(T),
    Returned(T),
}

impl<T> Slot<T> {
    /// The value, when the step is done.
    pub fn done(&self) -> Option<&T> {
        match self {
            Slot::Done(v) => Some(v),
            _ => None,
        }
    }
    pub fn is_done(&self) -> bool {
        matches!(self, Slot::Done(_))
    }
    /// The newest value, done or returned.
    pub fn latest(&self) -> Option<&T> {
        match self {
            Slot::Empty => None,
            Slot::Done(v) | Slot::Returned(v) => Some(v),
        }
    }
    fn reopen(&mut self) {
        if let Slot::Done(v) = std::mem::take(self) {
            *self = Slot::Returned(v);
        }
    }
}

/// Where the face check stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "face", rename_all = "snake_case")]
pub enum FaceState {
    #[default]
    NotStarted,
    /// Started at the provider; its verdict has not come.
    Pending { provider_session: String },
    Failed {
        provider_session: String,
        score: Option<u8>,
    },
    Passed {
        provider_session: String,
        score: Option<u8>,
    },
}

impl FaceState {
    fn session(&self) -> Option<&str> {
        match self {
            FaceState::NotStarted => None,
            FaceState::Pending { provider_session }
            | FaceState::Failed {
                provider_session, ..
            }
            | FaceState::Passed {
                provider_session, ..
            } => Some(provider_session),
        }
    }
}

/// The face check and the attempts it took.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Face {
    /// Sessions started since signing opened, the last unlock or the last rejection of
    /// the face step. A start counts, verdict or not (each is a billed provider session).
    pub attempts: u8,
    pub state: FaceState,
}

impl Face {
    pub fn passed(&self) -> bool {
        matches!(self.state, FaceState::Passed { .. })
    }
    /// Out of attempts with no verdict to wait for: an operator must unlock.
    pub fn locked(&self) -> bool {
        self.attempts >= MAX_FACE_ATTEMPTS
            && !self.passed()
            && !matches!(self.state, FaceState::Pending { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DepositOrder {
    pub out_trade_no: String,
    pub amount_fen: u64,
    pub expires_at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DepositPayment {
    pub out_trade_no: String,
    pub provider_txn_id: String,
    pub amount_fen: u64,
}

/// Where the deposit stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "deposit", rename_all = "snake_case")]
pub enum Deposit {
    #[default]
    Unordered,
    /// An order was made; it may have expired since (see [`DepositOrder::expires_at`]).
    Ordered(DepositOrder),
    Paid(DepositPayment),
}

/// A reviewer's rejection, kept for the family and the audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewNote {
    pub operator: OperatorId,
    pub step: Step,
    pub reason: String,
    pub at: Millis,
}

/// Who approved, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Approval {
    pub operator: OperatorId,
    pub at: Millis,
}

/// The move-in notice (入住通知书).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Notice {
    pub pdf: BlobRef,
    pub operator: OperatorId,
    pub at: Millis,
}

/// Where a record stands, derived from its events (never stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// The family works on `step`, the first step not done; `returned` when a reviewer
    /// sent the record back and it has not been resubmitted yet.
    Open { step: Step, returned: bool },
    /// The face check failed [`MAX_FACE_ATTEMPTS`] times: waiting for an operator.
    FaceLocked,
    /// Every step done: submitted, waiting for review (等待后台工作人员审核).
    InReview,
    /// Approved; the notice is not issued yet.
    Approved,
    /// Approved with the notice issued: the materials are available.
    Completed,
}

/// Something a reviewer should look at twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// The card number fails the Luhn check and the applicant confirmed it.
    CardFailsLuhn,
}

/// What an approved family can view and download (材料管理).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Materials<'a> {
    pub contract: &'a SignedContract,
    /// `None` until an operator issues it.
    pub notice: Option<&'a Notice>,
}

/// The signing of one family in one batch.
#[derive(Clone, Debug, PartialEq)]
pub struct SigningRecord {
    family: FamilyId,
    lease: Lease,
    applicant: String,
    deposit_fen: u64,
    opened_at: Millis,
    details: Slot<TenantDetails>,
    face: Face,
    contract: Slot<SignedContract>,
    deposit: Deposit,
    /// Every order number this record was given, oldest first.
    orders: Vec<String>,
    /// The order the current one replaced: replaced in its last minute (the provider had
    /// stopped), a payment the provider took just before is still notified before it
    /// expires here, and taken.
    replaced: Option<DepositOrder>,
    /// Payments a reviewer rejected (the bureau refunds them).
    voided: Vec<DepositPayment>,
    returns: Vec<ReviewNote>,
    approval: Option<Approval>,
    notice: Option<Notice>,
    submitted_at: Option<Millis>,
    submissions: u32,
    status_since: Millis,
}

impl SigningRecord {
    /// Decides opening signing for a family whose selection `outcome` is known: refused
    /// unless it selected `unit`. The engine calls this when a family is given a unit or
    /// presses 去签约; `applicant` and `deposit_fen` come from the bureau's records and
    /// terms.
    pub fn decide_open(
        outcome: Option<&Outcome>,
        unit: &Unit,
        applicant: &str,
        deposit_fen: u64,
    ) -> Result<SigningEvent, Rejection> {
        if outcome.and_then(Outcome::unit) != Some(&unit.id) {
            return Err(ErrorCode::NotSelected.into());
        }
        let applicant = applicant.trim();
        if applicant.is_empty() || deposit_fen == 0 {
            return Err(ErrorCode::BadFrame.into());
        }
        Ok(SigningEvent::Opened {
            lease: Lease::of_unit(unit),
            applicant: applicant.to_owned(),
            deposit_fen,
        })
    }

    /// A record from its first event, which must be `Opened`.
    pub fn from_opened(family: FamilyId, event: &SigningEvent, at: Millis) -> Option<Self> {
        let SigningEvent::Opened {
            lease,
            applicant,
            deposit_fen,
        } = event
        else {
            return None;
        };
        Some(Self {
            family,
            lease: lease.clone(),
            applicant: applicant.clone(),
            deposit_fen: *deposit_fen,
            opened_at: at,
            details: Slot::Empty,
            face: Face::default(),
            contract: Slot::Empty,
            deposit: Deposit::Unordered,
            orders: Vec::new(),
            replaced: None,
            voided: Vec::new(),
            returns: Vec::new(),
            approval: None,
            notice: None,
            submitted_at: None,
            submissions: 0,
            status_since: at,
        })
    }

    /// Rebuilds one family's record from its entries (a subsequence of the batch log).
    pub fn replay<'a>(
        entries: impl IntoIterator<Item = &'a SigningEntry>,
    ) -> Result<Self, ReplayError> {
        let mut it = entries.into_iter();
        let first = it.next().ok_or(ReplayError::Empty)?;
        let mut rec = SigningRecord::from_opened(first.family.clone(), &first.event, first.at)
            .ok_or(ReplayError::NotOpened { seq: first.seq })?;
        let mut last = first.seq;
        for e in it {
            if e.family != rec.family {
                return Err(ReplayError::OtherFamily { seq: e.seq });
            }
            if e.seq <= last {
                return Err(ReplayError::OutOfOrder { seq: e.seq });
            }
            if matches!(e.event, SigningEvent::Opened { .. }) {
                return Err(ReplayError::OpenedTwice { seq: e.seq });
            }
            last = e.seq;
            rec.apply(&e.event, e.at);
        }
        Ok(rec)
    }

    pub fn family(&self) -> &FamilyId {
        &self.family
    }
    pub fn lease(&self) -> &Lease {
        &self.lease
    }
    pub fn applicant(&self) -> &str {
        &self.applicant
    }
    pub fn deposit_fen(&self) -> u64 {
        self.deposit_fen
    }
    pub fn opened_at(&self) -> Millis {
        self.opened_at
    }
    pub fn details(&self) -> &Slot<TenantDetails> {
        &self.details
    }
    pub fn face(&self) -> &Face {
        &self.face
    }
    pub fn contract(&self) -> &Slot<SignedContract> {
        &self.contract
    }
    pub fn deposit(&self) -> &Deposit {
        &self.deposit
    }
    /// Every order number given to this record, oldest first.
    pub fn orders(&self) -> &[String] {
        &self.orders
    }
    /// Payments voided by a rejection of the deposit step: to refund.
    pub fn voided_payments(&self) -> &[DepositPayment] {
        &self.voided
    }
    /// Every rejection, oldest first.
    pub fn rejections(&self) -> &[ReviewNote] {
        &self.returns
    }
    pub fn approval(&self) -> Option<&Approval> {
        self.approval.as_ref()
    }
    pub fn notice(&self) -> Option<&Notice> {
        self.notice.as_ref()
    }
    /// When the record last went into review.
    pub fn submitted_at(&self) -> Option<Millis> {
        self.submitted_at
    }
    /// How many times it went into review.
    pub fn submissions(&self) -> u32 {
        self.submissions
    }
    /// When [`SigningRecord::status`] last changed.
    pub fn status_since(&self) -> Millis {
        self.status_since
    }

    /// The card number for screens: first six and last four digits.
    pub fn card_masked(&self) -> Option<String> {
        self.details.latest().map(|d| d.card_number.masked())
    }
    /// The phone number for screens: `138****5678`.
    pub fn phone_masked(&self) -> Option<String> {
        self.details.latest().map(|d| d.phone.masked())
    }
    /// The bank of the latest details.
    pub fn bank(&self) -> Option<&'static Bank> {
        self.details.latest().and_then(|d| bank(&d.bank))
    }

    /// Whether a step is done (for the details: filled, whether or not still editable).
    pub fn is_done(&self, step: Step) -> bool {
        match step {
            Step::Details => self.details.is_done(),
            Step::Face => self.face.passed(),
            Step::Contract => self.contract.is_done(),
            Step::Deposit => matches!(self.deposit, Deposit::Paid(_)),
        }
    }

    /// The first step not done; `None` once everything is done.
    pub fn open_step(&self) -> Option<Step> {
        Step::ALL.into_iter().find(|s| !self.is_done(*s))
    }

    pub fn status(&self) -> Status {
        if self.approval.is_some() {
            return if self.notice.is_some() {
                Status::Completed
            } else {
                Status::Approved
            };
        }
        match self.open_step() {
            None => Status::InReview,
            Some(Step::Face) if self.face.locked() => Status::FaceLocked,
            Some(step) => Status::Open {
                step,
                returned: !self.returns.is_empty(),
            },
        }
    }

    /// What a reviewer should look at twice.
    pub fn flags(&self) -> Vec<Flag> {
        let mut flags = Vec::new();
        if let Some(d) = self.details.latest() {
            if !d.card_number.passes_luhn() {
                flags.push(Flag::CardFailsLuhn);
            }
        }
        flags
    }

    /// The contract and notice, once approved.
    pub fn materials(&self) -> Option<Materials<'_>> {
        self.approval.as_ref()?;
        Some(Materials {
            contract: self.contract.done()?,
            notice: self.notice.as_ref(),
        })
    }

    /// The order that can still be paid at `now`.
    pub fn live_order(&self, now: Millis) -> Option<&DepositOrder> {
        match &self.deposit {
            Deposit::Ordered(o) if now < o.expires_at => Some(o),
            _ => None,
        }
    }

    /// Decides `action` of `actor` at server time `now`: the events it causes, or why it
    /// is refused. Changes nothing. An empty list means the action was already done
    /// (e.g. a provider repeating a callback).
    pub fn decide(
        &self,
        actor: &Actor,
        action: &SigningAction,
        now: Millis,
    ) -> Result<Vec<SigningEvent>, Rejection> {
        if action.party() != actor.party() {
            return Err(ErrorCode::Forbidden.into());
        }
        match actor {
            Actor::Family(f) if f == &self.family => self.decide_family(action, now),
            Actor::Family(_) => Err(ErrorCode::Forbidden.into()),
            Actor::FaceProvider => self.decide_face_provider(action),
            Actor::PaymentProvider => self.decide_payment_provider(action, now),
            Actor::Operator(operator) => self.decide_operator(operator, action),
        }
    }

    /// The family's own steps: 完善承租信息, 开始人脸识别, 签订合同, 缴纳保证金.
    fn decide_family(
        &self,
        action: &SigningAction,
        now: Millis,
    ) -> Result<Vec<SigningEvent>, Rejection> {
        use SigningAction as A;
        match action {
            A::FillDetails {
                phone,
                bank: code,
                card_number,
                card_front,
                card_back,
                luhn_confirmed,
            } => {
                self.check_step(Step::Details)?;
                if !phone.is_valid() {
                    return Err(ErrorCode::InvalidPhone.into());
                }
                if bank(code).is_none() || !card_number.is_well_formed() {
                    return Err(ErrorCode::InvalidCard.into());
                }
                if !card_number.passes_luhn() && !luhn_confirmed {
                    return Err(ErrorCode::LuhnUnconfirmed.into());
                }
                if !card_front.is_image() || !card_back.is_image() {
                    return Err(ErrorCode::BadFrame.into());
                }
                let details = TenantDetails {
                    phone: phone.clone(),
                    bank: code.clone(),
                    card_number: card_number.clone(),
                    card_front: card_front.clone(),
                    card_back: card_back.clone(),
                };
                if self.details.done() == Some(&details) {
                    return Ok(vec![]);
                }
                Ok(vec![SigningEvent::DetailsFilled { details }])
            }
            A::StartFace { provider_session } => {
                self.check_step(Step::Face)?;
                check_ref(provider_session)?;
                if self.face.attempts >= MAX_FACE_ATTEMPTS {
                    return Err(ErrorCode::TooManyAttempts.into());
                }
                if self.face.state.session() == Some(provider_session.as_str()) {
                    return Err(ErrorCode::Conflict.into());
                }
                Ok(vec![SigningEvent::FaceStarted {
                    provider_session: provider_session.clone(),
                }])
            }
            A::SignContract { pdf, signature } => {
                self.check_step(Step::Contract)?;
                if !pdf.is_pdf() || !signature.is_image() {
                    return Err(ErrorCode::BadFrame.into());
                }
                Ok(vec![SigningEvent::ContractSigned {
                    pdf: pdf.clone(),
                    signature: signature.clone(),
                }])
            }
            A::OrderDeposit { out_trade_no } => {
                self.check_step(Step::Deposit)?;
                check_ref(out_trade_no)?;
                // Refused while the provider can still take payment of the live order
                // (two QR codes for one deposit would let the family pay twice).
                if (self.live_order(now))
                    .is_some_and(|o| now < o.expires_at.plus_ms(-PROVIDER_STOP_MS))
                {
                    return Err(ErrorCode::OrderPending.into());
                }
                if self.orders.contains(out_trade_no) {
                    return Err(ErrorCode::Conflict.into());
                }
                Ok(vec![SigningEvent::DepositOrdered {
                    out_trade_no: out_trade_no.clone(),
                    amount_fen: self.deposit_fen,
                    expires_at: now.plus_ms(DEPOSIT_ORDER_TTL_MS),
                }])
            }
            _ => Err(ErrorCode::Forbidden.into()),
        }
    }

    /// The face provider's verdict: only for the session in progress.
    fn decide_face_provider(&self, action: &SigningAction) -> Result<Vec<SigningEvent>, Rejection> {
        use SigningAction as A;
        match action {
            A::FaceResult {
                provider_session,
                passed,
                score,
            } => {
                if score.is_some_and(|s| s > 100) {
                    return Err(ErrorCode::BadFrame.into());
                }
                match &self.face.state {
                    FaceState::Pending {
                        provider_session: current,
                    } if current == provider_session => Ok(vec![SigningEvent::FaceResult {
                        provider_session: provider_session.clone(),
                        passed: *passed,
                        score: *score,
                    }]),
                    // The provider repeating the verdict it gave.
                    FaceState::Passed {
                        provider_session: current,
                        score: s,
                    } if current == provider_session && *passed && s == score => Ok(vec![]),
                    FaceState::Failed {
                        provider_session: current,
                        score: s,
                    } if current == provider_session && !*passed && s == score => Ok(vec![]),
                    _ => Err(ErrorCode::FaceSessionMismatch.into()),
                }
            }
            _ => Err(ErrorCode::Forbidden.into()),
        }
    }

    /// The payment provider's notification: only for the current order, once.
    fn decide_payment_provider(
        &self,
        action: &SigningAction,
        now: Millis,
    ) -> Result<Vec<SigningEvent>, Rejection> {
        use SigningAction as A;
        match action {
            A::DepositPaid {
                out_trade_no,
                provider_txn_id,
                amount_fen,
            } => {
                let paid = match &self.deposit {
                    Deposit::Paid(p) => Some(p),
                    _ => None,
                };
                let seen = paid
                    .into_iter()
                    .chain(&self.voided)
                    .find(|p| &p.provider_txn_id == provider_txn_id);
                if let Some(p) = seen {
                    // A repeated notification changes nothing; the same transaction id
                    // for anything else is not the payment we know.
                    return if &p.out_trade_no == out_trade_no && p.amount_fen == *amount_fen {
                        Ok(vec![])
                    } else {
                        Err(ErrorCode::PaymentMismatch.into())
                    };
                }
                let order = match &self.deposit {
                    Deposit::Ordered(o) if &o.out_trade_no == out_trade_no => o,
                    // The order just replaced, paid before the provider stopped: taken
                    // while it has not expired here (checked below).
                    Deposit::Ordered(_)
                        if (self.replaced.as_ref())
                            .is_some_and(|r| &r.out_trade_no == out_trade_no) =>
                    {
                        self.replaced.as_ref().expect("checked")
                    }
                    // An older order of ours that a newer one replaced: it has expired.
                    _ if self.orders.contains(out_trade_no) && paid.is_none() => {
                        return Err(ErrorCode::OrderExpired.into())
                    }
                    _ => return Err(ErrorCode::PaymentMismatch.into()),
                };
                if now >= order.expires_at {
                    return Err(ErrorCode::OrderExpired.into());
                }
                if *amount_fen != order.amount_fen {
                    return Err(ErrorCode::PaymentMismatch.into());
                }
                Ok(vec![SigningEvent::DepositPaid {
                    out_trade_no: out_trade_no.clone(),
                    provider_txn_id: provider_txn_id.clone(),
                    amount_fen: *amount_fen,
                }])
            }
            _ => Err(ErrorCode::Forbidden.into()),
        }
    }

    /// Review and the operator's other interventions.
    fn decide_operator(
        &self,
        operator: &OperatorId,
        action: &SigningAction,
    ) -> Result<Vec<SigningEvent>, Rejection> {
        use SigningAction as A;
        match action {
            A::Approve => {
                if self.status() != Status::InReview {
                    return Err(ErrorCode::NotInReview.into());
                }
                Ok(vec![SigningEvent::Approved {
                    operator: operator.clone(),
                }])
            }
            A::Reject { step, reason } => {
                if self.status() != Status::InReview {
                    return Err(ErrorCode::NotInReview.into());
                }
                let reason = reason.trim();
                if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
                    return Err(ErrorCode::BadFrame.into());
                }
                Ok(vec![SigningEvent::Rejected {
                    operator: operator.clone(),
                    step: *step,
                    reason: reason.to_owned(),
                }])
            }
            A::UnlockFace => {
                if self.status() != Status::FaceLocked {
                    return Ok(vec![]);
                }
                Ok(vec![SigningEvent::FaceUnlocked {
                    operator: operator.clone(),
                }])
            }
            A::IssueNotice { pdf } => {
                if self.approval.is_none() {
                    return Err(ErrorCode::StepLocked.into());
                }
                if !pdf.is_pdf() {
                    return Err(ErrorCode::BadFrame.into());
                }
                if self.notice.as_ref().is_some_and(|n| &n.pdf == pdf) {
                    return Ok(vec![]);
                }
                Ok(vec![SigningEvent::NoticeIssued {
                    operator: operator.clone(),
                    pdf: pdf.clone(),
                }])
            }
            _ => Err(ErrorCode::Forbidden.into()),
        }
    }

    /// Whether the family may work on `step` now: `step_done` when it is done and no
    /// longer changeable (a later step builds on it, or the record is submitted), else
    /// `step_locked` when a step it needs is not done.
    fn check_step(&self, step: Step) -> Result<(), Rejection> {
        let closed = match step {
            Step::Details => self.contract.is_done(),
            _ => self.is_done(step),
        };
        if closed || self.approval.is_some() || self.open_step().is_none() {
            return Err(ErrorCode::StepDone.into());
        }
        if step.needs().iter().any(|s| !self.is_done(*s)) {
            return Err(ErrorCode::StepLocked.into());
        }
        Ok(())
    }

    /// Applies one event at server time `at`: the only way a record changes. Events come
    /// from [`SigningRecord::decide`], so they are trusted; one that does not fit (a
    /// verdict for a session no longer pending) is ignored rather than a panic.
    pub fn apply(&mut self, event: &SigningEvent, at: Millis) {
        let before = self.status();
        match event {
            SigningEvent::Opened { .. } => {}
            SigningEvent::DetailsFilled { details } => self.details = Slot::Done(details.clone()),
            SigningEvent::FaceStarted { provider_session } => {
                self.face.attempts = self.face.attempts.saturating_add(1);
                self.face.state = FaceState::Pending {
                    provider_session: provider_session.clone(),
                };
            }
            SigningEvent::FaceResult {
                provider_session,
                passed,
                score,
            } => {
                if self.face.state.session() == Some(provider_session.as_str()) {
                    let provider_session = provider_session.clone();
                    let score = *score;
                    self.face.state = if *passed {
                        FaceState::Passed {
                            provider_session,
                            score,
                        }
                    } else {
                        FaceState::Failed {
                            provider_session,
                            score,
                        }
                    };
                }
            }
            SigningEvent::FaceUnlocked { .. } => self.face.attempts = 0,
            SigningEvent::ContractSigned { pdf, signature } => {
                self.contract = Slot::Done(SignedContract {
                    pdf: pdf.clone(),
                    signature: signature.clone(),
                })
            }
            SigningEvent::DepositOrdered {
                out_trade_no,
                amount_fen,
                expires_at,
            } => {
                self.orders.push(out_trade_no.clone());
                self.replaced = match &self.deposit {
                    Deposit::Ordered(prev) => Some(prev.clone()),
                    _ => None,
                };
                self.deposit = Deposit::Ordered(DepositOrder {
                    out_trade_no: out_trade_no.clone(),
                    amount_fen: *amount_fen,
                    expires_at: *expires_at,
                });
            }
            SigningEvent::DepositPaid {
                out_trade_no,
                provider_txn_id,
                amount_fen,
            } => {
                self.deposit = Deposit::Paid(DepositPayment {
                    out_trade_no: out_trade_no.clone(),
                    provider_txn_id: provider_txn_id.clone(),
                    amount_fen: *amount_fen,
                });
            }
            SigningEvent::Approved { operator } => {
                self.approval = Some(Approval {
                    operator: operator.clone(),
                    at,
                })
            }
            SigningEvent::Rejected {
                operator,
                step,
                reason,
            } => {
                self.returns.push(ReviewNote {
                    operator: operator.clone(),
                    step: *step,
                    reason: reason.clone(),
                    at,
                });
                for s in step.reopens() {
                    match s {
                        Step::Details => self.details.reopen(),
                        Step::Face => self.face = Face::default(),
                        Step::Contract => self.contract.reopen(),
                        Step::Deposit => {
                            if let Deposit::Paid(p) = std::mem::take(&mut self.deposit) {
                                self.voided.push(p);
                            }
                        }
                    }
                }
            }
            SigningEvent::NoticeIssued { operator, pdf } => {
                self.notice = Some(Notice {
                    pdf: pdf.clone(),
                    operator: operator.clone(),
                    at,
                })
            }
        }
        let after = self.status();
        if after != before {
            self.status_since = at;
            if after == Status::InReview {
                self.submitted_at = Some(at);
                self.submissions += 1;
            }
        }
    }
}

/// A provider reference as the hub records it: 1 to [`MAX_REF_LEN`] visible ASCII
/// characters.
fn check_ref(s: &str) -> Result<(), Rejection> {
    let ok = !s.is_empty() && s.len() <= MAX_REF_LEN && s.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(ErrorCode::BadFrame.into())
    }
}

/// Every signing record of one batch, with the indexes the provider callbacks need.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SigningBook {
    records: HashMap<FamilyId, SigningRecord>,
    /// Every order number ever given, to its family.
    orders: HashMap<String, FamilyId>,
    /// Every face session ever started, to its family.
    face_sessions: HashMap<String, FamilyId>,
    seq: u64,
}

impl SigningBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the book from a batch's signing log (contiguous seqs).
    pub fn replay<'a>(
        entries: impl IntoIterator<Item = &'a SigningEntry>,
    ) -> Result<Self, ReplayError> {
        let mut book = SigningBook::new();
        for e in entries {
            if book.seq != 0 && e.seq != book.seq + 1 {
                return Err(ReplayError::Gap {
                    expected: book.seq + 1,
                    found: e.seq,
                });
            }
            let opened = book.records.contains_key(&e.family);
            match (&e.event, opened) {
                (SigningEvent::Opened { .. }, true) => {
                    return Err(ReplayError::OpenedTwice { seq: e.seq })
                }
                (SigningEvent::Opened { .. }, false) | (_, true) => {}
                (_, false) => return Err(ReplayError::NotOpened { seq: e.seq }),
            }
            book.apply(e);
        }
        Ok(book)
    }

    /// Seq of the last applied entry; 0 for an empty book.
    pub fn seq(&self) -> u64 {
        self.seq
    }
    pub fn record(&self, family: &FamilyId) -> Option<&SigningRecord> {
        self.records.get(family)
    }
    pub fn records(&self) -> impl Iterator<Item = &SigningRecord> {
        self.records.values()
    }
    /// The family a payment provider's order number belongs to.
    pub fn family_of_order(&self, out_trade_no: &str) -> Option<&FamilyId> {
        self.orders.get(out_trade_no)
    }
    /// The family a face provider's session belongs to.
    pub fn family_of_face_session(&self, provider_session: &str) -> Option<&FamilyId> {
        self.face_sessions.get(provider_session)
    }

    /// Decides opening signing for `family` from the batch's selection: nothing when it
    /// is open already (去签约 pressed twice), refused when the family has no unit.
    pub fn decide_open(
        &self,
        selection: &Selection,
        family: &FamilyId,
        applicant: &str,
        deposit_fen: u64,
    ) -> Result<Vec<SigningEvent>, Rejection> {
        let state = selection
            .state(family)
            .ok_or(Rejection::new(ErrorCode::UnknownFamily))?;
        if self.records.contains_key(family) {
            return Ok(vec![]);
        }
        let outcome = state.outcome.as_ref();
        let unit = outcome
            .and_then(Outcome::unit)
            .and_then(|u| selection.batch().unit(u))
            .ok_or(Rejection::new(ErrorCode::NotSelected))?;
        Ok(vec![SigningRecord::decide_open(
            outcome,
            unit,
            applicant,
            deposit_fen,
        )?])
    }

    /// Decides `action` of `actor` on `family`'s record; provider references must also
    /// be new across the whole batch.
    pub fn decide(
        &self,
        actor: &Actor,
        family: &FamilyId,
        action: &SigningAction,
        now: Millis,
    ) -> Result<Vec<SigningEvent>, Rejection> {
        if matches!(actor, Actor::Family(f) if f != family) {
            return Err(ErrorCode::Forbidden.into());
        }
        let rec = self
            .records
            .get(family)
            .ok_or(Rejection::new(ErrorCode::NotSelected))?;
        let events = rec.decide(actor, action, now)?;
        for e in &events {
            let taken = match e {
                SigningEvent::FaceStarted { provider_session } => {
                    self.face_sessions.contains_key(provider_session)
                }
                SigningEvent::DepositOrdered { out_trade_no, .. } => {
                    self.orders.contains_key(out_trade_no)
                }
                _ => false,
            };
            if taken {
                return Err(ErrorCode::Conflict.into());
            }
        }
        Ok(events)
    }

    /// Decides a provider callback, finding its family by face session or order number:
    /// a reference the batch never issued is `face_session_mismatch` or
    /// `payment_mismatch`.
    pub fn decide_callback(
        &self,
        actor: &Actor,
        action: &SigningAction,
        now: Millis,
    ) -> Result<(FamilyId, Vec<SigningEvent>), Rejection> {
        if action.party() != actor.party() {
            return Err(ErrorCode::Forbidden.into());
        }
        let family = match action {
            SigningAction::FaceResult {
                provider_session, ..
            } => self
                .face_sessions
                .get(provider_session)
                .ok_or(Rejection::new(ErrorCode::FaceSessionMismatch))?,
            SigningAction::DepositPaid { out_trade_no, .. } => self
                .orders
                .get(out_trade_no)
                .ok_or(Rejection::new(ErrorCode::PaymentMismatch))?,
            _ => return Err(ErrorCode::Forbidden.into()),
        };
        let events = self.decide(actor, family, action, now)?;
        Ok((family.clone(), events))
    }

    /// Numbers `events` of `family` as the next entries of the log, at server time `at`.
    pub fn entries(
        &self,
        family: &FamilyId,
        events: Vec<SigningEvent>,
        at: Millis,
    ) -> Vec<SigningEntry> {
        events
            .into_iter()
            .zip(self.seq + 1..)
            .map(|(event, seq)| SigningEntry {
                seq,
                at,
                family: family.clone(),
                event,
            })
            .collect()
    }

    /// Applies one entry. `Opened` creates the record; other events of a family with no
    /// record are ignored (see [`SigningBook::replay`] for the strict check).
    pub fn apply(&mut self, e: &SigningEntry) {
        self.seq = e.seq;
        if let SigningEvent::Opened { .. } = &e.event {
            if !self.records.contains_key(&e.family) {
                if let Some(rec) = SigningRecord::from_opened(e.family.clone(), &e.event, e.at) {
                    self.records.insert(e.family.clone(), rec);
                }
            }
            return;
        }
        let Some(rec) = self.records.get_mut(&e.family) else {
            return;
        };
        let index = match &e.event {
            SigningEvent::FaceStarted { provider_session } => {
                Some((&mut self.face_sessions, provider_session))
            }
            SigningEvent::DepositOrdered { out_trade_no, .. } => {
                Some((&mut self.orders, out_trade_no))
            }
            _ => None,
        };
        if let Some((index, reference)) = index {
            index
                .entry(reference.clone())
                .or_insert_with(|| e.family.clone());
        }
        rec.apply(&e.event, e.at);
    }

    /// Records whose status passes `filter`, longest in that status first (then by
    /// family id): the console's lists.
    pub fn queue(&self, filter: impl Fn(&Status) -> bool) -> Vec<&SigningRecord> {
        let mut out: Vec<&SigningRecord> = self
            .records
            .values()
            .filter(|r| filter(&r.status()))
            .collect();
        out.sort_by(|a, b| (a.status_since, &a.family).cmp(&(b.status_since, &b.family)));
        out
    }

    /// Records waiting for review, oldest submission first.
    pub fn review_queue(&self) -> Vec<&SigningRecord> {
        self.queue(|s| *s == Status::InReview)
    }
}

/// Why a signing log does not rebuild a state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplayError {
    #[error("the signing log is empty")]
    Empty,
    #[error("entry {seq} is for a family whose signing is not opened")]
    NotOpened { seq: u64 },
    #[error("entry {seq} opens a signing that is already open")]
    OpenedTwice { seq: u64 },
    #[error("entry {seq} is for another family")]
    OtherFamily { seq: u64 },
    #[error("entry {seq} is out of order")]
    OutOfOrder { seq: u64 },
    #[error("the signing log has a gap: expected seq {expected}, found {found}")]
    Gap { expected: u64, found: u64 },
}
