//! What the import fuzz targets check on any bytes, in both the fuzzer and the corpus
//! replay (`hub/tests/fuzz_corpus.rs` includes this file).
//!
//! The bytes are read as the units sheet and as the families sheet, by the functions the
//! upload handler calls. Nothing may panic; a refusal lists at least one and at most
//! [`MAX_PROBLEMS`] problems (plus the count of the rest), each message short.

use xuanfang_hub::import::{self, Format, ImportErrors, MAX_PROBLEMS};

/// One file in `format`. Returns whether it imported as units, and as families.
pub fn sheet(format: Format, data: &[u8]) -> (bool, bool) {
    let units = import::units(format, data);
    if let Err(e) = &units {
        bounded(e);
    }
    let families = import::families_with_rows(format, data);
    match &families {
        Ok(families) => {
            // The families' layouts checked against no units: every family is refused
            // (the handler runs this check with the uploaded units).
            if let Err(e) = import::check_layouts(&[], families) {
                bounded(&e);
            }
        }
        Err(e) => bounded(e),
    }
    (units.is_ok(), families.is_ok())
}

fn bounded(e: &ImportErrors) {
    assert!(!e.0.is_empty(), "a refusal names a problem");
    assert!(
        e.0.len() <= MAX_PROBLEMS + 1,
        "{} problems listed",
        e.0.len()
    );
    for row in &e.0 {
        // Messages quote at most 64 characters of a value and 256 of a reader's error.
        let (en, zh) = (row.to_string(), row.zh());
        assert!(en.chars().count() <= 1024, "message of {} chars", en.len());
        assert!(zh.chars().count() <= 1024, "message of {} chars", zh.len());
    }
}
