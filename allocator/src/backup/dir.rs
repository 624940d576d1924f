//! Backup of the embedded engine's data directory (`serve --data-dir`).
//!
//! What is kept: each batch's journal (`*.journal`), its signing journal (`*.signing`),
//! the refund journal (`refunds.jsonl`) and the signing blobs (`blobs/`). Not kept: the
//! lock file, and the data key (`signing.key`, the demo's): a backup that carried the
//! key to its own sealed data would unseal it for whoever holds the file.
//!
//! An export may run while `serve` writes: each journal is copied up to its last whole,
//! intact frame (a frame being appended is not acknowledged yet), signing journals
//! before selection journals and blobs last, so nothing copied refers to something
//! missing. A restore takes the directory's lock (so never under a running engine),
//! writes into a staging directory, syncs, then renames into place.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use xuanfang_hub::Event;

use super::format::{Backup, BatchSummary, EngineKind};
use super::{now_ms, BackupError};
use crate::embedded::engine::lock_dir;
use crate::embedded::journal::{self, Record};
use crate::embedded::signing::{SigningFrame, SIGNING_EXTENSION};

/// The refund journal's name in a data directory (the gateway's default).
pub const REFUNDS: &str = "refunds.jsonl";
/// The signing blobs' directory in a data directory.
pub const BLOBS: &str = "blobs";

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    pub entries: usize,
    /// Where what the directory held before went (`--force`), if it held anything.
    pub replaced: Option<PathBuf>,
}

fn has_ext(name: &str, ext: &str) -> bool {
    Path::new(name).extension().is_some_and(|x| x == ext)
}

/// A top-level name that belongs in a backup.
fn is_data_name(name: &str) -> bool {
    has_ext(name, journal::EXTENSION)
        || has_ext(name, SIGNING_EXTENSION)
        || name == REFUNDS
        || name == BLOBS
}

/// Every file under `dir`, as paths relative to `root`, sorted; `*.tmp` (a blob being
/// written) left out.
fn files_under(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(journal::at(dir))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let kind = e.file_type()?;
        if kind.is_dir() {
            files_under(root, &path, out)?;
        } else if kind.is_file() && !has_ext(&e.file_name().to_string_lossy(), "tmp") {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_owned());
        }
    }
    Ok(())
}

/// Reads a data directory into a backup.
pub fn export(dir: &Path) -> Result<Backup, BackupError> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(journal::at(dir))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_data_name(n))
        .collect();
    names.sort();
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    let mut signing_seq: BTreeMap<String, u64> = BTreeMap::new();
    // Signing first: a signing entry refers to a selection, never the other way round.
    for name in names.iter().filter(|n| has_ext(n, SIGNING_EXTENSION)) {
        let path = dir.join(name);
        let bytes = fs::read(&path).map_err(journal::at(&path))?;
        let (frames, end) = journal::intact::<SigningFrame>(&bytes);
        let mut batch = None;
        let mut last = 0;
        for f in frames {
            match f {
                SigningFrame::Began { batch: b } => batch = Some(b.0),
                SigningFrame::Changed { entries, .. } => {
                    last = entries.last().map(|e| e.seq).unwrap_or(last)
                }
            }
        }
        if let Some(b) = batch {
            signing_seq.insert(b, last);
        }
        entries.push((name.clone(), bytes[..end].to_vec()));
    }
    let mut batches = Vec::new();
    for name in names.iter().filter(|n| has_ext(n, journal::EXTENSION)) {
        let path = dir.join(name);
        let bytes = fs::read(&path).map_err(journal::at(&path))?;
        let (records, end) = journal::intact::<Record>(&bytes);
        let mut summary: Option<BatchSummary> = None;
        for r in records {
            let last: Option<&Event> = match &r {
                Record::Loaded {
                    batch,
                    epoch,
                    event,
                } => {
                    summary = Some(BatchSummary {
                        id: batch.0.clone(),
                        epoch: *epoch,
                        seq: 0,
                        signing_seq: signing_seq.get(&batch.0).copied().unwrap_or(0),
                    });
                    Some(event)
                }
                Record::Changed { events, .. } => events.last(),
            };
            if let (Some(s), Some(e)) = (summary.as_mut(), last) {
                s.seq = e.seq;
            }
        }
        // A journal with no whole first record holds no acknowledged batch.
        if let Some(s) = summary {
            batches.push(s);
            entries.push((name.clone(), bytes[..end].to_vec()));
        }
    }
    if names.iter().any(|n| n == REFUNDS) {
        let path = dir.join(REFUNDS);
        let mut bytes = fs::read(&path).map_err(journal::at(&path))?;
        // A line being appended is not recorded yet: keep whole lines only.
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        bytes.truncate(whole);
        entries.push((REFUNDS.to_owned(), bytes));
    }
    let blobs = dir.join(BLOBS);
    if blobs.is_dir() {
        let mut files = Vec::new();
        files_under(dir, &blobs, &mut files)?;
        for rel in files {
            let path = dir.join(&rel);
            let bytes = fs::read(&path).map_err(journal::at(&path))?;
            entries.push((rel.to_string_lossy().into_owned(), bytes));
        }
    }
    Ok(Backup::new(
        EngineKind::Embedded,
        now_ms(),
        dir.display().to_string(),
        batches,
        entries,
    ))
}

/// The relative path an entry is written to, if it is one a data directory holds.
fn safe_path(name: &str) -> Result<PathBuf, BackupError> {
    let path = PathBuf::from(name);
    let mut parts = path.components();
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
    let top = parts
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or("");
    let nested = path.components().count() > 1;
    let ok = plain
        && !name.is_empty()
        && match nested {
            false => top != BLOBS && is_data_name(top),
            true => top == BLOBS,
        };
    ok.then_some(path)
        .ok_or_else(|| BackupError::BadEntry(name.to_owned()))
}

/// The data a directory holds: top-level data names with something in them (an empty
/// `blobs/` or `refunds.jsonl`, as a fresh `serve` makes them, is no data).
fn data_in(dir: &Path) -> Result<Vec<String>, BackupError> {
    let mut found = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(journal::at(dir)(e).into()),
    };
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !is_data_name(&name) {
            continue;
        }
        let path = e.path();
        let holds = if path.is_dir() {
            let mut files = Vec::new();
            files_under(dir, &path, &mut files)?;
            !files.is_empty()
        } else {
            has_ext(&name, journal::EXTENSION)
                || has_ext(&name, SIGNING_EXTENSION)
                || e.metadata()?.len() > 0
        };
        if holds {
            found.push(name);
        }
    }
    found.sort();
    Ok(found)
}

fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(journal::at(path))?;
    f.write_all(bytes).map_err(journal::at(path))?;
    f.sync_all().map_err(journal::at(path))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(journal::at(dir))
}

/// Restores a backup into `dir` (created if missing). Refuses another engine's backup,
/// an entry name outside the data directory's layout, a directory in use, and — unless
/// `force` — a directory that holds data; all before anything is written. With `force`
/// the data it held is moved to `replaced-<ms>/` inside it, not deleted.
pub fn restore(backup: &Backup, dir: &Path, force: bool) -> Result<Restored, BackupError> {
    if backup.manifest.engine != EngineKind::Embedded {
        return Err(BackupError::WrongEngine {
            file: backup.manifest.engine,
            target: EngineKind::Embedded,
        });
    }
    let paths = backup
        .manifest
        .entries
        .iter()
        .map(|e| safe_path(&e.name))
        .collect::<Result<Vec<_>, _>>()?;
    let existing = data_in(dir)?;
    if !existing.is_empty() && !force {
        return Err(BackupError::NotEmpty {
            target: dir.display().to_string(),
            what: existing.join(", "),
        });
    }
    fs::create_dir_all(dir).map_err(journal::at(dir))?;
    let _lock = lock_dir(dir)?;
    // Looked at again under the lock: a `serve` may have written in between.
    let existing = data_in(dir)?;
    if !existing.is_empty() && !force {
        return Err(BackupError::NotEmpty {
            target: dir.display().to_string(),
            what: existing.join(", "),
        });
    }
    let stamp = now_ms();
    let staging = dir.join(format!(".restore-{stamp}"));
    fs::create_dir(&staging).map_err(journal::at(&staging))?;
    let staged = (|| -> io::Result<()> {
        for ((_, bytes), rel) in backup.entries().zip(&paths) {
            let path = staging.join(rel);
            if let Some(parent) = path.parent() {
                use std::os::unix::fs::DirBuilderExt;
                // 0700 as the blob store makes its directories: they hold card photos.
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(journal::at(parent))?;
            }
            write_file(&path, bytes)?;
        }
        sync_dir(&staging)
    })();
    if let Err(e) = staged {
        let _ = fs::remove_dir_all(&staging);
        return Err(e.into());
    }
    // Move what was there aside (forced), or empty leftovers (a fresh `blobs/`).
    let mut replaced = None;
    if !existing.is_empty() {
        let aside = dir.join(format!("replaced-{stamp}"));
        fs::create_dir(&aside).map_err(journal::at(&aside))?;
        for name in &existing {
            fs::rename(dir.join(name), aside.join(name)).map_err(journal::at(&dir.join(name)))?;
        }
        replaced = Some(aside);
    }
    let mut tops: Vec<String> = fs::read_dir(&staging)
        .map_err(journal::at(&staging))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    tops.sort();
    for name in tops {
        let to = dir.join(&name);
        if to.is_dir() {
            fs::remove_dir_all(&to).map_err(journal::at(&to))?;
        } else if to.exists() {
            fs::remove_file(&to).map_err(journal::at(&to))?;
        }
        fs::rename(staging.join(&name), &to).map_err(journal::at(&to))?;
    }
    fs::remove_dir(&staging).map_err(journal::at(&staging))?;
    sync_dir(dir)?;
    Ok(Restored {
        entries: backup.manifest.entries.len(),
        replaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_outside_the_layout_are_refused() {
        for bad in [
            "../x.journal",
            "/etc/passwd",
            "blobs",
            "a/b.journal",
            "x.txt",
            "blobs/../x",
        ] {
            assert!(safe_path(bad).is_err(), "{bad}");
        }
        for good in ["b.journal", "b.signing", "refunds.jsonl", "blobs/ab/cd"] {
            assert!(safe_path(good).is_ok(), "{good}");
        }
    }
}
