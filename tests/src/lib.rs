//! Cross-crate integration tests live in `tests/tests/`. The library holds what tests of
//! several crates share: [`history`], the checker the fault tests hold their clients'
//! answers against (the gateway's process-level fault tests use it too), and [`s3`], a
//! real S3 server for the blob-store tests of both crates.

pub mod history;
pub mod s3;
pub mod test_modules;
