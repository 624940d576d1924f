//! The body of `POST /api/ops/batches` (unit and family sheets, form fields).
#![no_main]
// Each target uses a few of the shared checks; the replay tests use them all.
#![allow(dead_code)]

#[path = "../../checks/panics.rs"]
mod panics;
#[path = "../../checks/runtime.rs"]
mod runtime;
#[path = "../../checks/upload.rs"]
mod upload;

libfuzzer_sys::fuzz_target!(init: panics::abort_unless_in_calamine(), |data: &[u8]| {
    let _ = upload::batch(data);
});
