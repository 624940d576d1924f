//! Runs a check on every input of a fuzz target: its corpus (`fuzz/*/corpus/<target>/`)
//! and the inputs of crashes found and fixed (`fuzz/*/regressions/<target>/`). Included by
//! the `fuzz_corpus` tests of the hub and the gateway, so every input stays a test on
//! stable Rust without libFuzzer.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Panics naming every input of `target` (in package `pkg`, `hub` or `gateway`) on which
/// `check` panics; and when the target has no input at all.
pub fn replay(pkg: &str, target: &str, check: impl Fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(pkg);
    let mut inputs = 0;
    let mut failed = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).expect("a corpus file");
            inputs += 1;
            if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
                failed.push(path.display().to_string());
            }
        }
    }
    assert!(
        inputs > 0,
        "no input for fuzz target {target} under {}",
        root.display()
    );
    assert!(
        failed.is_empty(),
        "{target}: {} of {inputs} inputs fail: {failed:#?}",
        failed.len()
    );
}
