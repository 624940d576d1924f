//! A consolidated test binary (`autotests = false`, one `[[test]]` whose `main.rs`
//! declares every test file as a module) would silently skip a new file that nobody
//! declared. [`undeclared`] lists such files so a test of the binary can fail on them.

use std::fs;
use std::path::{Path, PathBuf};

/// Every `*.rs` file below `root` that no module declaration reaches, as paths relative
/// to `root`. The root file is `main.rs`; `other_roots` (relative to `root`) are the
/// root files of the test binaries kept apart (a `[[test]]` of their own); a file `d/x.rs` must be declared by `d/mod.rs`
/// (or `d.rs` beside `d/`), and `d/mod.rs` itself by its parent; a declaration is a line
/// `mod x;` (with `pub`, `pub(crate)` or an attribute before it allowed). A file that a
/// `#[path = ...]` attribute names is declared too.
pub fn undeclared(root: &Path, other_roots: &[&str]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    collect(root, &mut files);
    let by_path = path_attributes(&files);
    let mut missing: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| f != &root.join("main.rs"))
        .filter(|f| !other_roots.iter().any(|r| f == &root.join(r)))
        .filter(|f| !by_path.contains(f) && !declared(root, f))
        .map(|f| f.strip_prefix(root).unwrap_or(&f).to_path_buf())
        .collect();
    missing.sort();
    missing
}

/// Panics, naming them, when files below `root` are not declared: the body of each
/// consolidated binary's `every_test_file_is_declared`. `main` names the root file for
/// the message.
pub fn assert_all_declared(root: &Path, other_roots: &[&str], main: &str) {
    let missing = undeclared(root, other_roots);
    assert!(
        missing.is_empty(),
        "test files not declared as modules (add `mod NAME;` to {main}, or to the mod.rs of \
         their folder, or give them a [[test]] of their own), so they would never run: \
         {missing:?}"
    );
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Whether the module file that owns `file` declares it.
fn declared(root: &Path, file: &Path) -> bool {
    let Some(dir) = file.parent() else {
        return false;
    };
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    // `d/mod.rs` is module `d`, declared where `d/` sits; `d/x.rs` is module `x` of `d`.
    let (name, owners) = if stem == "mod" {
        let Some(name) = dir.file_name().and_then(|s| s.to_str()) else {
            return false;
        };
        let Some(up) = dir.parent() else {
            return false;
        };
        (name.to_owned(), owner_files(root, up))
    } else {
        (stem.to_owned(), owner_files(root, dir))
    };
    owners.iter().any(|owner| {
        fs::read_to_string(owner).is_ok_and(|text| text.lines().any(|l| declares(l, &name)))
    })
}

/// The files that `#[path = "..."]` attributes name (relative to the file holding the
/// attribute, as for a module declared at a file's top level).
fn path_attributes(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut named = Vec::new();
    for f in files {
        let (Ok(text), Some(dir)) = (fs::read_to_string(f), f.parent()) else {
            continue;
        };
        for l in text.lines() {
            let l = l.trim();
            let Some(rest) = l.strip_prefix("#[path") else {
                continue;
            };
            if let Some(target) = rest.split('"').nth(1) {
                named.push(normalize(&dir.join(target)));
            }
        }
    }
    named
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// The files that may declare modules living in `dir`.
fn owner_files(root: &Path, dir: &Path) -> Vec<PathBuf> {
    if dir == root {
        return vec![root.join("main.rs")];
    }
    let mut owners = vec![dir.join("mod.rs")];
    if let (Some(up), Some(name)) = (dir.parent(), dir.file_name()) {
        let mut beside = name.to_os_string();
        beside.push(".rs");
        owners.push(up.join(beside));
    }
    owners
}

fn declares(line: &str, name: &str) -> bool {
    let mut l = line.trim();
    // Attributes on the same line (`#[cfg(test)] mod x;`).
    while l.starts_with("#[") {
        match l.find(']') {
            Some(end) => l = l[end + 1..].trim_start(),
            None => return false,
        }
    }
    for vis in ["pub(crate) ", "pub(super) ", "pub "] {
        if let Some(rest) = l.strip_prefix(vis) {
            l = rest.trim_start();
            break;
        }
    }
    l.strip_prefix("mod ")
        .and_then(|rest| rest.trim().strip_suffix(';'))
        .is_some_and(|n| n.trim() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        dir
    }

    #[test]
    fn a_tree_whose_files_are_all_declared_has_nothing_missing() {
        let t = tree(&[
            (
                "main.rs",
                "mod common;\n#[cfg(unix)] mod a;\npub(crate) mod b;\n",
            ),
            ("a.rs", "use crate::common;"),
            ("b.rs", ""),
            ("common/mod.rs", "pub mod signing;\n"),
            ("common/signing.rs", ""),
        ]);
        assert_eq!(undeclared(t.path(), &[]), Vec::<PathBuf>::new());
    }

    #[test]
    fn an_undeclared_file_is_listed_at_any_depth() {
        let t = tree(&[
            ("main.rs", "mod common;\nmod a;\n// mod b;\n"),
            ("a.rs", ""),
            ("b.rs", ""),
            ("c.rs", "mod c;"),
            ("apart.rs", "#[path = \"suite/x.rs\"]\nmod x;\n"),
            ("suite/x.rs", ""),
            ("common/mod.rs", ""),
            ("common/vendor.rs", ""),
            ("other/mod.rs", "mod x;"),
            ("other/x.rs", ""),
        ]);
        assert_eq!(
            undeclared(t.path(), &["apart.rs"]),
            ["b.rs", "c.rs", "common/vendor.rs", "other/mod.rs"]
                .map(PathBuf::from)
                .to_vec()
        );
    }

    #[test]
    fn a_path_attribute_declares_the_file_it_names() {
        let t = tree(&[
            ("main.rs", "#[path = \"suite/cases.rs\"]\nmod cases;\n"),
            ("suite/cases.rs", ""),
        ]);
        assert_eq!(undeclared(t.path(), &[]), Vec::<PathBuf>::new());
    }
}
