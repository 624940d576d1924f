//! The journal: one append-only file per batch, replayed at start.
//!
//! A file is a sequence of frames `[len: u32 LE][crc32: u32 LE][payload]`, the payload
//! one [`Record`] in MessagePack (named fields, so a record stays readable by later
//! versions that add optional fields). A crash can leave a torn last frame (short, or
//! with a CRC that does not match); [`read`] keeps every frame before it and truncates
//! the rest, which never loses an acknowledged change because a change is acknowledged
//! only after its frame was written and `sync_data`ed.
//!
//! Writes go through one writer thread per file ([`Journal`]): it takes every pending
//! record at once, writes them, syncs once (group commit), then tells each waiter. So
//! many concurrent confirms on one batch cost a few syncs, not one each. How a group is
//! made durable is [`JournalOptions::sync`] (`sync_data` unless a test replaces it).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use xuanfang_hub::{BatchId, Event, FamilyId};

/// File name suffix of a journal.
pub const EXTENSION: &str = "journal";

/// The largest frame [`read`] accepts; a longer length prefix is corruption.
const MAX_FRAME: u32 = 1 << 30;

/// A request id a family used for an action that succeeded.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReqKey {
    /// The family that sent it.
    pub family: FamilyId,
    /// The client's request id, unique per family.
    pub req_id: String,
}

/// One frame's payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// First record of every file: the batch, its epoch, and the `batch_loaded` event.
    Loaded {
        batch: BatchId,
        epoch: u64,
        event: Event,
    },
    /// Events of one decision, and the request that caused them when it was a family's
    /// action (so the request id answers the same after a restart).
    Changed {
        events: Vec<Event>,
        #[serde(default)]
        req: Option<ReqKey>,
    },
}

/// Encodes a record as one frame. Generic so the signing journal (its own records,
/// same framing) shares the format and the torn-tail rule.
pub fn frame<R: Serialize>(record: &R) -> io::Result<Vec<u8>> {
    let payload = rmp_serde::to_vec_named(record).map_err(io::Error::other)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l <= MAX_FRAME)
        .ok_or_else(|| io::Error::other("journal record too large"))?;
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// What [`read`] found in a file.
#[derive(Debug)]
pub struct Contents<R = Record> {
    /// Every whole, intact record, in file order.
    pub records: Vec<R>,
    /// Bytes after the last good frame that were cut off (a torn tail).
    pub truncated: u64,
}

/// Names the file or directory an I/O error is about: the OS's message alone ("Read-only
/// file system", "No space left on device") does not say which of an operator's paths.
pub fn at(path: &Path) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Reads every good frame of `path` and truncates the file after the last one.
pub fn read(path: &Path) -> io::Result<Contents> {
    read_records(path)
}

/// [`read`] for a journal of any record type (the signing journal's).
pub fn read_records<R: DeserializeOwned>(path: &Path) -> io::Result<Contents<R>> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(at(path))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(at(path))?;
    let (records, at) = intact(&bytes);
    let truncated = (bytes.len() - at) as u64;
    if truncated > 0 {
        tracing::warn!(
            path = %path.display(),
            kept_bytes = at,
            truncated_bytes = truncated,
            "journal has a torn or corrupt tail; truncating it"
        );
        file.set_len(at as u64).map_err(self::at(path))?;
        file.sync_all().map_err(self::at(path))?;
    }
    Ok(Contents { records, truncated })
}

/// The whole, intact records at the start of a journal's bytes and where they end,
/// without touching the file: what a backup of a journal being written copies (a frame
/// the writer is still appending is not yet acknowledged, so leaving it out loses
/// nothing).
pub fn intact<R: DeserializeOwned>(bytes: &[u8]) -> (Vec<R>, usize) {
    let mut records = Vec::new();
    let mut at = 0usize;
    while let Some((record, next)) = next_frame(bytes, at) {
        records.push(record);
        at = next;
    }
    (records, at)
}

/// The frame starting at `at` and the offset after it, if it is whole and intact.
fn next_frame<R: DeserializeOwned>(bytes: &[u8], at: usize) -> Option<(R, usize)> {
    let header = bytes.get(at..at + 8)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if len > MAX_FRAME {
        return None;
    }
    let end = at + 8 + len as usize;
    let payload = bytes.get(at + 8..end)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let record = rmp_serde::from_slice(payload).ok()?;
    Some((record, end))
}

/// The file name of a batch's journal: the id with every byte outside `[A-Za-z0-9_-]`
/// written as `%XX`, so any id maps to one safe name and no two ids share one.
pub fn file_name(batch: &BatchId) -> String {
    let mut name = String::with_capacity(batch.as_str().len() + 8);
    for b in batch.as_str().bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    name.push('.');
    name.push_str(EXTENSION);
    name
}

/// Creates a new journal holding its first record, durably (the file and its directory
/// entry are synced). Fails with `AlreadyExists` if the file exists.
pub fn create(dir: &Path, batch: &BatchId, first: &Record) -> io::Result<(PathBuf, File)> {
    create_named(dir, &file_name(batch), first)
}

/// [`create`] for any file name and record type (the signing journal's).
pub fn create_named<R: Serialize>(
    dir: &Path,
    name: &str,
    first: &R,
) -> io::Result<(PathBuf, File)> {
    let path = dir.join(name);
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| match e.kind() {
            // The engine answers `conflict` for this one: keep it recognisable.
            io::ErrorKind::AlreadyExists => e,
            _ => at(&path)(e),
        })?;
    let written = frame(first).and_then(|f| {
        file.write_all(&f)?;
        file.sync_data()
    });
    if let Err(e) = written {
        // Nothing was acknowledged: leave no half-made batch behind.
        let _ = std::fs::remove_file(&path);
        return Err(at(&path)(e));
    }
    // The new name must survive a crash too.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(at(dir))?;
    Ok((path, file))
}

/// Opens an existing journal for appending.
pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).open(path).map_err(at(path))
}

/// Makes the frames just written to a journal file durable; called on the writer
/// thread, once per group.
pub type SyncFn = Arc<dyn Fn(&File) -> io::Result<()> + Send + Sync>;

/// How an engine's journal writers work.
#[derive(Clone)]
pub struct JournalOptions {
    /// Makes each group durable. The default is [`File::sync_data`]; a replacement must
    /// be at least as strong, or acknowledged changes can be lost in a crash. Tests use
    /// it to hold the writer in a sync (so they can queue records behind it whatever
    /// the machine's speed) or to inject a failing disk.
    pub sync: SyncFn,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            sync: Arc::new(File::sync_data),
        }
    }
}

impl fmt::Debug for JournalOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalOptions").finish_non_exhaustive()
    }
}

/// Counters shared by every writer of an engine, for metrics and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Records handed to a writer (written or still waiting).
    pub queued: AtomicU64,
    /// Records written.
    pub records: AtomicU64,
    /// Sync calls made (one per group).
    pub syncs: AtomicU64,
}

/// Told by the writer, in log order, what became durable; called on the writer thread.
/// `E` is what a record carries for the readers: selection [`Event`]s, or signing
/// entries for the signing journal.
pub trait Sink<E = Event>: Send + 'static {
    /// These events are on disk.
    fn durable(&self, events: Vec<E>);
    /// The journal failed; nothing more will be written.
    fn broken(&self);
}

/// A record waiting for the writer.
struct Pending<E> {
    frame: Vec<u8>,
    events: Vec<E>,
    done: oneshot::Sender<Result<(), io::Error>>,
}

/// The sending side of one file's writer thread. Dropping it ends the thread once
/// every pending record is written.
pub struct Journal<E = Event> {
    tx: mpsc::Sender<Pending<E>>,
    stats: Arc<Stats>,
}

impl<E: Send + 'static> Journal<E> {
    /// Starts the writer thread of `file`; each group is made durable by `sync`.
    pub fn start(
        file: File,
        name: String,
        stats: Arc<Stats>,
        sink: Box<dyn Sink<E>>,
        sync: SyncFn,
    ) -> io::Result<Journal<E>> {
        let (tx, rx) = mpsc::channel();
        let writer_stats = stats.clone();
        std::thread::Builder::new()
            .name(format!("journal {name}"))
            .spawn(move || writer(&name, file, rx, writer_stats, sink, sync))?;
        Ok(Journal { tx, stats })
    }

    /// Queues a record; the receiver answers once it is durable (or failed). Must be
    /// called in log order (the engine holds the batch lock while calling it).
    pub fn append<R: Serialize>(
        &self,
        record: &R,
        events: Vec<E>,
    ) -> io::Result<oneshot::Receiver<Result<(), io::Error>>> {
        let frame = frame(record)?;
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Pending {
                frame,
                events,
                done,
            })
            .map_err(|_| io::Error::other("the journal writer has stopped"))?;
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        Ok(rx)
    }
}

/// The writer loop: group commit until the engine drops its [`Journal`].
fn writer<E: Send + 'static>(
    name: &str,
    mut file: File,
    rx: mpsc::Receiver<Pending<E>>,
    stats: Arc<Stats>,
    sink: Box<dyn Sink<E>>,
    sync: SyncFn,
) {
    // Where the file ends after the last good sync, to cut a partial write on failure.
    let mut good_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        group.extend(rx.try_iter());
        let mut buf = Vec::with_capacity(group.iter().map(|p| p.frame.len()).sum());
        for p in &group {
            buf.extend_from_slice(&p.frame);
        }
        let result = file.write_all(&buf).and_then(|()| sync(&file));
        stats.syncs.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => {
                good_len += buf.len() as u64;
                stats
                    .records
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                for p in group {
                    if !p.events.is_empty() {
                        sink.durable(p.events);
                    }
                    let _ = p.done.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(file = name, error = %e, "journal write failed; the batch refuses changes until restart");
                // Best effort: the reader would cut a partial frame anyway.
                let _ = file.set_len(good_len);
                sink.broken();
                let fail = |p: Pending<E>| {
                    let _ = p.done.send(Err(io::Error::new(e.kind(), e.to_string())));
                };
                group.into_iter().for_each(fail);
                // After a failed fsync the page cache cannot be trusted: refuse the rest.
                rx.iter().for_each(fail);
                return;
            }
        }
    }
}
