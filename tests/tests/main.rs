//! Every cross-crate integration test in one binary: one link of the gateway instead of
//! one a file, and the files' tests run side by side in one process (they share nothing
//! process-wide: each test starts its own gateway on a free port, in its own namespace
//! of the shared redis-server). Run one file's tests with
//! `cargo test -p xuanfang-tests --test integration gateway_ws::`.
//!
//! A new test file must be declared below (`every_test_file_is_declared` fails otherwise);
//! it reaches the harness with `use crate::common;`, not `mod common;`. A test that
//! changes process-wide state (environment, signal handlers, rlimits) or counts the
//! process's file descriptors needs a binary of its own: a `[[test]]` in `Cargo.toml`.

mod common;

mod board_position;
mod family_view_order;
mod faults_client_kill;
mod faults_clock;
mod gateway_batches;
mod gateway_clock;
mod gateway_http;
mod gateway_limits;
mod gateway_ws;
mod hostile_uploads;
mod jwks;
mod metrics_scrape;
mod openapi;
mod route_auth;
mod signing_blob_cleanup;
mod signing_contract_http;
mod signing_http;
mod signing_identity_http;
mod signing_s3_blobs;
mod slow_consumer;
mod vendor_alipay;
mod vendor_tencent_face;
mod vendor_wechat;
mod vendor_wechat_certificate;
mod ws_action_auth;
mod ws_auth;
mod ws_token_refresh;

#[test]
fn every_test_file_is_declared() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    xuanfang_tests::test_modules::assert_all_declared(&dir, &[], "tests/tests/main.rs");
}
