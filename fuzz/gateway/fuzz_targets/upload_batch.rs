//! The body of `POST /api/ops/batches` (unit and family sheets, form fields).
#![no_main]

#[path = "../../checks/runtime.rs"]
mod runtime;
#[path = "../../checks/upload.rs"]
mod upload;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = upload::batch(data);
});
