//! Backup and restore of everything an engine holds — each batch, every event, the
//! results, the signing log and its blobs — as one self-describing file.
//!
//! - [`format`]: the file (versioned, a manifest, the entries, a SHA-256 over it all).
//! - [`dir`]: the embedded engine's data directory: journals copied up to their last
//!   whole frame, so a directory in use can be backed up.
//! - [`redis`]: the Redis engine: every key of each batch `DUMP`ed in one script (an
//!   atomic snapshot of the batch), `RESTORE`d the same way.
//!
//! A restore reproduces the state exactly (same epoch, seq, results, signing), because
//! it puts back the very bytes the engine wrote. It refuses a damaged file, another
//! engine's file, and a target that already holds data (unless forced) before it
//! writes anything. `xuanfang export` / `xuanfang restore` are the command line.

pub mod dir;
pub mod format;
pub mod redis;

pub use format::{Backup, BatchSummary, EngineKind, FormatError, Manifest};

/// Why an export or a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("this backup holds the {file:?} engine's state; it restores only into that engine, not {target:?}")]
    WrongEngine {
        file: EngineKind,
        target: EngineKind,
    },
    #[error("{target} already holds data ({what}); restore refuses to overwrite it (--force replaces it)")]
    NotEmpty { target: String, what: String },
    #[error("the backup's entry {0:?} is not a name this engine uses")]
    BadEntry(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Alloc(#[from] crate::AllocError),
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("redis answered what a backup cannot use: {0}")]
    Reply(String),
}

/// Milliseconds since the Unix epoch, by this machine's clock (only a label).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
