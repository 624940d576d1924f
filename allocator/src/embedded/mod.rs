//! The embedded engine: one process, no Redis.
//!
//! - [`engine`]: [`EmbeddedEngine`], the hub's [`Selection`](xuanfang_hub::Selection)
//!   state machine per batch behind a lock, with idempotent replies and followers.
//! - [`journal`]: one append-only file per batch (CRC-framed MessagePack records, group
//!   commit with one `sync_data` per group), replayed at start.
//! - [`signing`]: the batch's signing (网上签约) with its own journal `<batch>.signing`,
//!   same framing and discipline, personal data sealed.
//!
//! A change is visible (to `events`, `wait_events`, the board and every other query)
//! and acknowledged only once it is durable, so no broadcast shows a change that a
//! crash could lose.

pub mod engine;
pub mod journal;
pub mod signing;

pub use engine::{EmbeddedEngine, JournalStats};
pub use journal::JournalOptions;
