//! Cross-crate integration tests live in `tests/tests/`. The library holds what tests of
//! several crates share: [`history`], the checker the fault tests hold their clients'
//! answers against (the gateway's process-level fault tests use it too).

pub mod history;
pub mod test_modules;
