//! An uploaded CSV sheet, read as units and as families.
#![no_main]

#[path = "../../checks/import.rs"]
mod import;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = import::sheet(xuanfang_hub::import::Format::Csv, data);
});
