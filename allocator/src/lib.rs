//! xuanfang-allocator: every state change of a selection, atomically.
//!
//! - [`contract`]: the [`Allocator`] trait every engine implements.
//! - [`embedded`]: one process, no Redis; events go to a journal file (fsync, group
//!   commit) that is replayed at start.
//! - [`redis_engine`]: production; one Lua script per operation over the batch's keys
//!   (hash tag `{b:<batch>}`), each change appended to a Redis Stream in the same script.
//! - `testing` (feature `test-support`): a private `redis-server` for tests.

pub mod contract;

pub use contract::{
    AllocError, Allocator, Answer, BoardState, CloseStep, FamilyRecord, CLOSE_CHUNK,
    REPLIES_PER_FAMILY,
};
pub mod embedded;
pub mod redis_engine;
#[cfg(feature = "test-support")]
pub mod testing;
