//! An uploaded image, as a card photo and as a signature.
#![no_main]

#[path = "../../checks/runtime.rs"]
mod runtime;
#[path = "../../checks/upload.rs"]
mod upload;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = upload::image(data);
});
