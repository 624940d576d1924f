//! xuanfang-allocator: every state change of a selection, atomically.
//!
//! - [`contract`]: the [`Allocator`] trait every engine implements.
//! - [`embedded`]: one process, no Redis; events go to a journal file (fsync, group
//!   commit) that is replayed at start.
//! - [`redis_engine`]: production; one Lua script per operation over the batch's keys
//!   (hash tag `{b:<batch>}`), each change appended to a Redis Stream in the same script.
//! - [`signing_contract`]: the [`SigningStore`] trait for 网上签约, its own aggregate and
//!   log next to the selection's; personal data sealed at rest by [`sealing`].
//! - [`backup`]: either engine's whole state as one checked file (`xuanfang export` /
//!   `xuanfang restore`).
//! - `testing` (feature `test-support`): a private `redis-server`, Cluster or Sentinel
//!   deployment for tests.

pub mod backup;
pub mod contract;

pub use contract::{
    AllocError, Allocator, Answer, BoardState, CloseStep, FamilyRecord, CLOSE_CHUNK,
    REPLIES_PER_FAMILY,
};
pub mod sealing;
pub mod signing_contract;

pub use sealing::SigningOptions;
pub use signing_contract::{
    actor_key, CallbackAnswer, SigningAnswer, SigningFilter, SigningStore, SigningView,
};
pub mod embedded;
pub mod redis_engine;
#[cfg(feature = "test-support")]
pub mod testing;
