//! The body of `POST /api/me/signing/contract` (the signature PNG).
#![no_main]
// Each target uses a few of the shared checks; the replay tests use them all.
#![allow(dead_code)]

#[path = "../../checks/runtime.rs"]
mod runtime;
#[path = "../../checks/upload.rs"]
mod upload;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = upload::signature(data);
});
