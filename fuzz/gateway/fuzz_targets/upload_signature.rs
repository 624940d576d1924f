//! The body of `POST /api/me/signing/contract` (the signature PNG).
#![no_main]

#[path = "../../checks/runtime.rs"]
mod runtime;
#[path = "../../checks/upload.rs"]
mod upload;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = upload::signature(data);
});
