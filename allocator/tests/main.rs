//! The allocator's integration tests in one binary: one link instead of one a file, and
//! the files' tests run side by side (each loads its own batch, in its own namespace of
//! the shared redis-server or cluster). Run one file's tests with
//! `cargo test -p xuanfang-allocator --test integration model::`.
//!
//! `journal.rs` stays a binary of its own: it runs itself again, by test name, as the
//! child that a crash kills, and that child sets a file-size rlimit.
//!
//! A new test file must be declared below (`every_test_file_is_declared` fails otherwise).
//! A test that changes process-wide state (environment, signal handlers, rlimits) or
//! counts the process's file descriptors needs a binary of its own: a `[[test]]` in
//! `Cargo.toml`.

// The two suites first: their macros are used by the modules below.
#[macro_use]
#[path = "conformance/suite.rs"]
mod suite;
#[macro_use]
#[path = "signing_conformance/suite.rs"]
mod signing_suite;

mod conformance_cluster;
mod conformance_embedded;
mod conformance_redis;
mod conformance_sentinel;
mod contention;
mod lock;
mod model;
mod refund_ledger;
mod sentinel_failover;
mod signing_conformance_cluster;
mod signing_conformance_embedded;
mod signing_conformance_redis;

#[test]
fn every_test_file_is_declared() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    xuanfang_tests::test_modules::assert_all_declared(
        &dir,
        &["journal.rs"],
        "allocator/tests/main.rs",
    );
}
