//! The allocator contract: one async trait that every engine implements.
//!
//! The server's clock lives inside the engine (Redis: `TIME` inside each script;
//! embedded: an injectable [`Clock`](xuanfang_hub::Clock)), so no caller can decide
//! whether a window is open.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use xuanfang_hub::protocol::{Catalog, FamilyView, SessionInfo, TakenUnit};
use xuanfang_hub::selection::FamilyState;
use xuanfang_hub::{
    Action, Batch, BatchId, Event, Family, FamilyId, Rejection, Session, SessionId,
};

/// The answer to a family's action: its new view, or why nothing changed. The same
/// `req_id` always gets the same answer (a repeated ok returns the view of now).
pub type Answer = Result<FamilyView, Rejection>;

/// The public board at one sequence number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BoardState {
    pub epoch: u64,
    /// The log position the board was read at (private events included).
    pub seq: u64,
    /// The board's chain position: the seq of the last public event
    /// ([`xuanfang_hub::EventKind::is_public`]) at or before `seq`. Gateways end their
    /// deltas only at public events, so every gateway on one log names the same board
    /// by the same position, and a screen can move between them on deltas. Not sent:
    /// what clients see as `seq` is this.
    #[serde(skip)]
    pub board_seq: u64,
    pub taken: Vec<TakenUnit>,
    pub sessions: Vec<SessionInfo>,
}

/// One family and everything that changed for it; the rows of the results export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyRecord {
    pub family: Family,
    pub state: FamilyState,
}

/// What one auto-confirm step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseStep {
    /// Families given an outcome by this step.
    pub decided: usize,
    /// Whether the session is now closed (every family has its outcome).
    pub closed: bool,
}

/// Families decided per auto-confirm step: small enough that one Redis script stays
/// well under a few milliseconds.
pub const CLOSE_CHUNK: usize = 200;

/// Answers remembered per family for retries with the same `req_id`: the most recent
/// this many (accepted or refused); an older `req_id` sent again is decided afresh. Far
/// more than any client has in flight (family requests are limited to 10 a second), and
/// it bounds what a batch keeps: at most this many answers per family, forever.
pub const REPLIES_PER_FAMILY: usize = 50;

/// Failures of the engine itself (not refusals of the rules).
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    #[error("refused: {0:?}")]
    Rejected(Rejection),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("journal: {0}")]
    Journal(#[from] std::io::Error),
    #[error("corrupt state: {0}")]
    Corrupt(String),
    /// Another process holds the data directory: two writers would corrupt the journals.
    /// Signing asked of an engine built without [`SigningOptions`](crate::SigningOptions):
    /// without the data key it cannot store personal data, so it stores none.
    #[error("signing is not configured in this engine (no data key)")]
    SigningDisabled,
    /// An optimistic write lost its race too many times in a row (the Redis engine's
    /// signing): nothing was written; the caller may retry with the same request id.
    #[error("contended: {0}")]
    Contended(String),
    /// Sentinel mode: the write is done on the primary, but no replica acknowledged it
    /// within the wait, so a failover now could lose it and it is not answered. Retry
    /// with the same request id: the stored answer comes back once a replica has it.
    #[error(
        "no replica acknowledged the write within {waited_ms} ms; retry with the same request id"
    )]
    NotReplicated { waited_ms: u64 },
    #[error("data directory {dir} is in use by another process (lock file {lock} is held); stop it first")]
    Locked { dir: String, lock: String },
}

impl From<Rejection> for AllocError {
    fn from(r: Rejection) -> Self {
        AllocError::Rejected(r)
    }
}

impl From<xuanfang_hub::ErrorCode> for AllocError {
    fn from(c: xuanfang_hub::ErrorCode) -> Self {
        AllocError::Rejected(c.into())
    }
}

#[async_trait]
pub trait Allocator: Send + Sync + 'static {
    /// Loads a new batch (event `batch_loaded`, seq 1). `Conflict` if the id is in use,
    /// `InvalidList` if the batch fails validation.
    async fn load_batch(&self, batch: Batch) -> Result<(), AllocError>;

    /// Publishes a supplementary session of families that applied and have no unit.
    async fn publish_supplementary(
        &self,
        batch: &BatchId,
        session: Session,
    ) -> Result<(), AllocError>;

    /// A family's action at server time, idempotent per (family, `req_id`).
    async fn act(
        &self,
        batch: &BatchId,
        family: &FamilyId,
        req_id: &str,
        action: Action,
    ) -> Result<Answer, AllocError>;

    /// Auto-confirms the next chunk of at most `max` families of a session whose
    /// deadline has passed (`TooEarly` before). Safe to call from several gateways at
    /// once: each family is decided exactly once, in rank order.
    async fn close_session_step(
        &self,
        batch: &BatchId,
        session: &SessionId,
        max: usize,
    ) -> Result<CloseStep, AllocError>;

    /// Runs [`Allocator::close_session_step`] until the session is closed; returns
    /// how many families this caller decided.
    async fn close_session(
        &self,
        batch: &BatchId,
        session: &SessionId,
    ) -> Result<usize, AllocError> {
        let mut decided = 0;
        loop {
            let step = self.close_session_step(batch, session, CLOSE_CHUNK).await?;
            decided += step.decided;
            if step.closed || step.decided == 0 {
                return Ok(decided);
            }
        }
    }

    /// Every batch the engine holds, oldest load first (gateways serve the newest).
    async fn batches(&self) -> Result<Vec<BatchId>, AllocError>;

    /// Static data: units and sessions.
    async fn catalog(&self, batch: &BatchId) -> Result<Catalog, AllocError>;

    /// The whole batch as loaded, with published supplementary sessions.
    async fn batch(&self, batch: &BatchId) -> Result<Batch, AllocError>;

    /// Every unit's status and the sequence number it is current at.
    async fn board(&self, batch: &BatchId) -> Result<BoardState, AllocError>;

    /// One family's view at server time.
    async fn family(&self, batch: &BatchId, family: &FamilyId) -> Result<FamilyView, AllocError>;

    /// Every family with its state.
    async fn results(&self, batch: &BatchId) -> Result<Vec<FamilyRecord>, AllocError>;

    /// Events with `seq > after`, at most `limit`, oldest first.
    async fn events(
        &self,
        batch: &BatchId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, AllocError>;

    /// Like [`Allocator::events`], but waits up to `wait` for the first one.
    async fn wait_events(
        &self,
        batch: &BatchId,
        after: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<Event>, AllocError>;

    /// The epoch of a batch's event log: it changes only if the log is lost and
    /// rebuilt, so a client's (epoch, seq) is meaningful across reconnects.
    async fn epoch(&self, batch: &BatchId) -> Result<u64, AllocError>;

    /// The engine's server time.
    async fn now(&self) -> Result<xuanfang_hub::Millis, AllocError>;

    /// Readiness: the engine answers.
    async fn ping(&self) -> Result<(), AllocError>;
}
