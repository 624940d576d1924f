//! The signing contract: one async trait, [`SigningStore`], that every engine
//! implements for 网上签约, held to one conformance suite
//! (`allocator/tests/signing_conformance/`).
//!
//! Signing is its own aggregate with its own log, next to the selection's: the rules
//! are hub's ([`SigningBook::decide`](xuanfang_hub::SigningBook::decide)), the engine
//! makes each decision atomic, numbers the entries of a batch's signing log 1, 2, 3…
//! without gaps, stores them durably (personal data encrypted, see
//! [`crate::sealing`]) and remembers each request's answer. Server time is the engine's
//! clock, as for the selection: no caller passes a time.
//!
//! The answers follow the selection's shape: a refusal by the rules is `Ok(Err(..))`;
//! a refusal of the whole request (`unknown_batch`, signing not configured) is
//! `Err(AllocError::..)`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use xuanfang_hub::signing::Step;
use xuanfang_hub::signing::{
    Actor, Approval, Deposit, DepositOrder, Flag, Lease, Notice, ReviewNote, SignedContract, Status,
};
use xuanfang_hub::SigningRecord;
use xuanfang_hub::{BatchId, FamilyId, Millis, Rejection, SigningAction, SigningEntry};

use crate::contract::AllocError;

/// The answer to a signing action: the family's signing view after it, or why nothing
/// changed. The same (actor, `req_id`) always gets the same answer (a repeated ok shows
/// the view of now).
pub type SigningAnswer = Result<SigningView, Rejection>;

/// The answer to a provider callback: the family it was for and its view, or why not.
pub type CallbackAnswer = Result<(FamilyId, SigningView), Rejection>;

/// What a family's phone or the console shows of one record: personal data only
/// masked, blobs by reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SigningView {
    pub family: FamilyId,
    pub status: Status,
    pub lease: Lease,
    pub applicant: String,
    pub deposit_fen: u64,
    pub opened_at: Millis,
    /// `138****5678`, once details are filled.
    pub phone_masked: Option<String>,
    /// First six and last four digits.
    pub card_masked: Option<String>,
    /// A code of `BANKS`.
    pub bank: Option<String>,
    /// Steps done (for the details: filled).
    pub done: Vec<Step>,
    pub face_attempts: u8,
    pub contract: Option<SignedContract>,
    pub deposit: Deposit,
    /// The order that can still be paid now.
    pub live_order: Option<DepositOrder>,
    pub rejections: Vec<ReviewNote>,
    pub approval: Option<Approval>,
    pub notice: Option<Notice>,
    pub flags: Vec<Flag>,
    pub submissions: u32,
    /// The server time the view was made at.
    pub now: Millis,
}

impl SigningView {
    /// The view of `record` at server time `now`.
    pub fn of(record: &SigningRecord, now: Millis) -> Self {
        Self {
            family: record.family().clone(),
            status: record.status(),
            lease: record.lease().clone(),
            applicant: record.applicant().to_owned(),
            deposit_fen: record.deposit_fen(),
            opened_at: record.opened_at(),
            phone_masked: record.phone_masked(),
            card_masked: record.card_masked(),
            bank: record.bank().map(|b| b.code.to_owned()),
            done: Step::ALL
                .into_iter()
                .filter(|s| record.is_done(*s))
                .collect(),
            face_attempts: record.face().attempts,
            contract: record.contract().latest().cloned(),
            deposit: record.deposit().clone(),
            live_order: record.live_order(now).cloned(),
            rejections: record.rejections().to_vec(),
            approval: record.approval().cloned(),
            notice: record.notice().cloned(),
            flags: record.flags(),
            submissions: record.submissions(),
            now,
        }
    }
}

/// Which records a console list shows ([`SigningStore::signing_queue`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SigningFilter {
    All,
    /// The family is working on a step (returned or not).
    Open,
    /// Sent back by a reviewer and not resubmitted yet.
    Returned,
    FaceLocked,
    /// The review queue.
    InReview,
    Approved,
    Completed,
}

impl SigningFilter {
    pub fn matches(self, status: &Status) -> bool {
        match self {
            SigningFilter::All => true,
            SigningFilter::Open => matches!(status, Status::Open { .. }),
            SigningFilter::Returned => matches!(status, Status::Open { returned: true, .. }),
            SigningFilter::FaceLocked => *status == Status::FaceLocked,
            SigningFilter::InReview => *status == Status::InReview,
            SigningFilter::Approved => *status == Status::Approved,
            SigningFilter::Completed => *status == Status::Completed,
        }
    }
}

/// The key a request id is unique under: a family, an operator, or a provider. Two
/// actors may use the same `req_id` without meeting.
pub fn actor_key(actor: &Actor) -> String {
    match actor {
        Actor::Family(f) => format!("family:{f}"),
        Actor::Operator(o) => format!("operator:{o}"),
        Actor::FaceProvider => "face_provider".to_owned(),
        Actor::PaymentProvider => "payment_provider".to_owned(),
    }
}

/// Whether a refusal is remembered for its `req_id`. A family (or reference) the batch
/// does not know has no requests to repeat; remembering them would let anyone grow the
/// table (as the selection does for `unknown_family`).
pub fn remember_refusal(r: &Rejection) -> bool {
    use xuanfang_hub::ErrorCode as E;
    !matches!(
        r.code,
        E::UnknownFamily | E::NotSelected | E::FaceSessionMismatch | E::PaymentMismatch
    )
}

#[async_trait]
pub trait SigningStore: Send + Sync + 'static {
    /// Opens `family`'s signing (去签约) when its selection outcome in this engine is
    /// `Selected`, checked in the same atomic step as the write. Opening twice changes
    /// nothing and answers the view. `applicant` and `deposit_fen` come from the
    /// bureau's records and terms.
    async fn open_signing(
        &self,
        batch: &BatchId,
        family: &FamilyId,
        applicant: &str,
        deposit_fen: u64,
    ) -> Result<SigningAnswer, AllocError>;

    /// `actor`'s `action` on `family`'s record at server time, idempotent per
    /// (actor, `req_id`) ([`actor_key`]).
    async fn sign(
        &self,
        batch: &BatchId,
        family: &FamilyId,
        actor: &Actor,
        req_id: &str,
        action: SigningAction,
    ) -> Result<SigningAnswer, AllocError>;

    /// A provider callback (face verdict, payment notification), its family found by
    /// face session or order number; idempotent per (provider, `req_id`).
    async fn signing_callback(
        &self,
        batch: &BatchId,
        actor: &Actor,
        req_id: &str,
        action: SigningAction,
    ) -> Result<CallbackAnswer, AllocError>;

    /// One family's record, decrypted (for the gateway's contract and bank file; screens
    /// use [`SigningView`]); `None` while its signing is not open.
    async fn signing(
        &self,
        batch: &BatchId,
        family: &FamilyId,
    ) -> Result<Option<SigningRecord>, AllocError>;

    /// The view of one record at server time; `None` while its signing is not open.
    async fn signing_view(
        &self,
        batch: &BatchId,
        family: &FamilyId,
    ) -> Result<Option<SigningView>, AllocError>;

    /// The records `filter` keeps, longest in their status first (then by family id),
    /// as `SigningBook::queue` orders them.
    async fn signing_queue(
        &self,
        batch: &BatchId,
        filter: SigningFilter,
    ) -> Result<Vec<SigningRecord>, AllocError>;

    /// Entries of the batch's signing log with `seq > after`, at most `limit`, oldest
    /// first, decrypted.
    async fn signing_events(
        &self,
        batch: &BatchId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SigningEntry>, AllocError>;
}
