//! A JSON Web Key Set document.
#![no_main]
// Each target uses a few of the shared checks; the replay tests use them all.
#![allow(dead_code)]

#[path = "../../checks/auth.rs"]
mod auth;
#[path = "../../checks/runtime.rs"]
mod runtime;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = auth::key_set(data);
});
