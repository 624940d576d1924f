//! An uploaded XLSX sheet, read as units and as families.
#![no_main]

#[path = "../../checks/import.rs"]
mod import;
#[path = "../../checks/panics.rs"]
mod panics;

libfuzzer_sys::fuzz_target!(init: panics::abort_unless_in_calamine(), |data: &[u8]| {
    let _ = import::sheet(xuanfang_hub::import::Format::Xlsx, data);
});
