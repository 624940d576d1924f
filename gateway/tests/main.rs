//! The gateway's integration tests in one binary: one link instead of one a file, and the
//! files' tests run side by side (each drives its own `xuanfang` processes on free ports,
//! with its own data directories and redis-servers). Run one file's tests with
//! `cargo test -p xuanfang-gateway --test integration faults_disk::`.
//!
//! A new test file must be declared below (`every_test_file_is_declared` fails otherwise);
//! it reaches the harness with `use crate::common;`, not `mod common;`. A test that
//! changes process-wide state (environment, signal handlers, rlimits) or counts the
//! process's file descriptors needs a binary of its own: a `[[test]]` in `Cargo.toml`.

mod common;

mod backup_restore;
mod cli;
mod data_key_rotation;
mod demo_mode;
mod faults_disk;
mod faults_gateway_kill;
mod faults_power_loss;
mod faults_redis_restart;
mod faults_sentinel_failover;
mod faults_serve_kill;
mod fuzz_corpus;
mod serve_data_dir;
mod serve_refund_ledger;
mod serve_s3_blobs;
mod shutdown;

#[test]
fn every_test_file_is_declared() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    xuanfang_tests::test_modules::assert_all_declared(&dir, &[], "gateway/tests/main.rs");
}
