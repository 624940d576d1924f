//! An uploaded XLSX sheet, read as units and as families.
#![no_main]

#[path = "../../checks/import.rs"]
mod import;

libfuzzer_sys::fuzz_target!(
    init: {
        // The import catches calamine's own panics (it indexes some tables unchecked) and
        // refuses the file; libFuzzer's hook would abort on them before they are caught.
        // Any other panic still aborts.
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_calamine = info
                .location()
                .is_some_and(|l| l.file().contains("/calamine-"));
            if !in_calamine {
                abort(info);
            }
        }));
    },
    |data: &[u8]| {
        let _ = import::sheet(xuanfang_hub::import::Format::Xlsx, data);
    }
);
