//! The import catches calamine's own panics (it indexes some tables unchecked) and refuses
//! the file (`hub/src/import.rs`, `read_xlsx`); libFuzzer's panic hook would abort on them
//! before they are caught. Targets that read XLSX call this in their `init`: any other
//! panic still aborts.

pub fn abort_unless_in_calamine() {
    let abort = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_calamine = info
            .location()
            .is_some_and(|l| l.file().contains("/calamine-"));
        if !in_calamine {
            abort(info);
        }
    }));
}
