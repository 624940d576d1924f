//! [`EmbeddedEngine`]: the selection state machine per batch, a journal, and followers.
//!
//! Each batch keeps two copies of its [`Selection`]:
//! - the *head*, where actions are decided and applied at once, under the batch lock,
//!   so concurrent actions (and concurrent auto-confirm steps) see each other;
//! - the *durable* state, which only receives events once the journal has synced them.
//!   Every query, every follower and every reply reads the durable state.
//!
//! So a reply (an ok or a refusal) is sent only when everything it was decided against
//! is on disk, and a hall screen never shows a change that a crash could lose. Without
//! a directory ([`EmbeddedEngine::in_memory`]) both copies move together.
//!
//! Idempotency: the answer to each (family, `req_id`) is kept per batch, the most recent
//! [`REPLIES_PER_FAMILY`] of each family (an older one sent again is decided afresh). An
//! ok is written into the journal record of its change, so it answers ok again after a
//! restart. A refusal is kept in memory only: after a restart a refused request is
//! decided again at the new server time (it changed nothing, so nothing is lost).
//!
//! `load_batch` refuses an invalid batch with `invalid_list`, as every engine does: that
//! includes ids that [`xuanfang_hub::domain::check_id`] refuses, so a batch id (which
//! names the journal file) is at most 64 bytes, under 200 once escaped.
//!
//! Signing (网上签约) lives next to each batch in [`super::signing`], with its own book,
//! lock and journal file, when the engine has a data key ([`EmbeddedEngine::open_full`],
//! [`EmbeddedEngine::with_signing`]).
//!
//! A failed journal write or fsync is answered with [`AllocError::Journal`]; the batch
//! then refuses every further change until the process restarts and replays the
//! journal (after a failed fsync the page cache cannot be trusted), while queries keep
//! serving the durable state. One directory must be opened by one process at a time.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{oneshot, watch};
use xuanfang_hub::protocol::{Catalog, FamilyView};
use xuanfang_hub::{
    views, Action, Batch, BatchId, Clock, ErrorCode, Event, EventKind, FamilyId, Millis, Rejection,
    Selection, Session, SessionId,
};

use super::journal::{self, Journal, JournalOptions, Record, ReqKey, Sink, Stats};
use super::signing::SigningSlot;
use crate::contract::{
    AllocError, Allocator, Answer, BoardState, CloseStep, FamilyRecord, REPLIES_PER_FAMILY,
};
use crate::sealing::{Sealer, SigningOptions};

/// Journal activity since the engine started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Records handed to the journal writers; `queued - records` are waiting for (or
    /// in) a write and sync.
    pub queued: u64,
    /// Records written.
    pub records: u64,
    /// Syncs (`sync_data` unless [`JournalOptions::sync`] says otherwise): fewer than
    /// `records` when group commit merged writes.
    pub syncs: u64,
}

/// The single-machine engine. Cheap to share behind an `Arc`.
pub struct EmbeddedEngine {
    pub(super) clock: Arc<dyn Clock>,
    /// Seals signing's personal data; `None`: this engine stores no signing.
    sealer: Option<Sealer>,
    /// Where journals live; `None` keeps everything in memory.
    dir: Option<PathBuf>,
    batches: RwLock<HashMap<BatchId, Arc<Slot>>>,
    /// Serialises `load_batch` so two loads of one id cannot both create it.
    loading: tokio::sync::Mutex<()>,
    stats: Arc<Stats>,
    options: JournalOptions,
    /// Held (locked) for the engine's life; the OS releases it even on `kill -9`.
    _lock: Option<std::fs::File>,
}

/// The file in a data directory that one engine at a time holds locked.
pub const LOCK_FILE: &str = "xuanfang.lock";

/// Takes the directory's exclusive lock, or says who cannot have it (also taken by a
/// restore, so none runs under a live engine).
pub fn lock_dir(dir: &Path) -> Result<std::fs::File, AllocError> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(journal::at(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(AllocError::Locked {
            dir: dir.display().to_string(),
            lock: path.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(journal::at(&path)(e).into()),
    }
}

/// One batch.
pub(super) struct Slot {
    epoch: u64,
    head: Mutex<Head>,
    pub(super) durable: Arc<Durable>,
    journal: Option<Journal>,
    /// The batch's signing, when the engine has a data key.
    pub(super) signing: Option<SigningSlot>,
}

/// Where decisions are made.
struct Head {
    sel: Selection,
    replies: Replies,
}

/// The answers remembered for retries: the most recent [`REPLIES_PER_FAMILY`] of each
/// family, as the Redis engine keeps them.
#[derive(Default)]
struct Replies(HashMap<FamilyId, Recent>);

#[derive(Default)]
struct Recent {
    by_req: HashMap<String, Reply>,
    /// Request ids, oldest first.
    order: VecDeque<String>,
}

impl Replies {
    fn get(&self, family: &FamilyId, req_id: &str) -> Option<&Reply> {
        self.0.get(family)?.by_req.get(req_id)
    }

    fn insert(&mut self, family: FamilyId, req_id: String, reply: Reply) {
        let recent = self.0.entry(family).or_default();
        if recent.by_req.insert(req_id.clone(), reply).is_none() {
            recent.order.push_back(req_id);
            if recent.order.len() > REPLIES_PER_FAMILY {
                if let Some(oldest) = recent.order.pop_front() {
                    recent.by_req.remove(&oldest);
                }
            }
        }
    }
}

/// A remembered answer: what it was, and the log position it was decided at.
#[derive(Clone)]
struct Reply {
    seq: u64,
    refused: Option<Rejection>,
}

/// What readers see: only durable events.
pub(super) struct Durable {
    pub(super) state: Mutex<DurableState>,
    mark: watch::Sender<Mark>,
}

pub(super) struct DurableState {
    pub(super) sel: Selection,
    /// Every event, `events[i].seq == i + 1`.
    events: Vec<Event>,
}

/// The durable end of the log, and whether the journal has failed.
#[derive(Clone, Copy, Debug)]
struct Mark {
    seq: u64,
    broken: bool,
}

impl Sink for Arc<Durable> {
    fn durable(&self, events: Vec<Event>) {
        let mut st = self.state.lock();
        for e in &events {
            st.sel.apply(e);
        }
        let seq = st.sel.seq();
        st.events.extend(events);
        drop(st);
        self.mark.send_modify(|m| m.seq = seq);
    }

    fn broken(&self) {
        self.mark.send_modify(|m| m.broken = true);
    }
}

/// What a caller waits for before replying.
enum Wait {
    /// Its own journal record.
    Record(oneshot::Receiver<Result<(), io::Error>>),
    /// The log to be durable up to this seq (a refusal, a repeat, a no-op).
    Seq(u64),
}

impl EmbeddedEngine {
    /// An engine that keeps everything in memory (tests, throwaway demos).
    pub fn in_memory(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            sealer: None,
            dir: None,
            batches: RwLock::new(HashMap::new()),
            loading: tokio::sync::Mutex::new(()),
            stats: Arc::default(),
            _lock: None,
            options: JournalOptions::default(),
        }
    }

    /// This engine, storing signing too, its personal data sealed with `signing`'s key.
    /// Only for an engine with no batch yet (in memory): a journaled engine must know
    /// the key when it opens, to replay signing journals ([`EmbeddedEngine::open_full`]).
    pub fn with_signing(mut self, signing: &SigningOptions) -> Self {
        let sealer = Sealer::new(signing);
        for slot in self.batches.get_mut().values_mut() {
            if let Some(slot) = Arc::get_mut(slot) {
                slot.signing
                    .get_or_insert_with(|| SigningSlot::in_memory(sealer.clone()));
            }
        }
        self.sealer = Some(sealer);
        self
    }

    /// An engine that journals into `dir` (created if missing), after replaying every
    /// journal found there. A torn tail is truncated (and logged); a file that does not
    /// rebuild a valid selection is an error rather than a silently smaller state.
    /// A second engine (in this or another process) on the same directory is refused
    /// with [`AllocError::Locked`].
    pub fn open(dir: &Path, clock: Arc<dyn Clock>) -> Result<Self, AllocError> {
        Self::open_with(dir, clock, JournalOptions::default())
    }

    /// Like [`EmbeddedEngine::open`], with the journal writers working as `options` say.
    pub fn open_with(
        dir: &Path,
        clock: Arc<dyn Clock>,
        options: JournalOptions,
    ) -> Result<Self, AllocError> {
        Self::open_full(dir, clock, options, None)
    }

    /// Like [`EmbeddedEngine::open_with`], storing signing too when `signing` is given:
    /// each batch's signing journal (`<batch>.signing`) is replayed, or created when
    /// missing. Without it, signing journals are left untouched and every
    /// [`SigningStore`](crate::SigningStore) call is [`AllocError::SigningDisabled`].
    pub fn open_full(
        dir: &Path,
        clock: Arc<dyn Clock>,
        options: JournalOptions,
        signing: Option<&SigningOptions>,
    ) -> Result<Self, AllocError> {
        let sealer = signing.map(Sealer::new);
        std::fs::create_dir_all(dir).map_err(journal::at(dir))?;
        let lock = lock_dir(dir)?;
        let stats = Arc::new(Stats::default());
        let mut batches = HashMap::new();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .and_then(|d| d.map(|e| e.map(|e| e.path())).collect())
            .map_err(journal::at(dir))?;
        paths.retain(|p| p.extension().is_some_and(|x| x == journal::EXTENSION));
        paths.sort();
        for path in paths {
            let Some(mut slot) = recover(&path, &stats, &options)? else {
                continue;
            };
            let id = slot.durable.state.lock().sel.batch().id.clone();
            if let Some(sealer) = &sealer {
                slot.signing = Some(SigningSlot::open(dir, &id, sealer.clone(), &options)?);
            }
            if batches.insert(id.clone(), Arc::new(slot)).is_some() {
                return Err(AllocError::Corrupt(format!(
                    "two journals hold batch {id} (second: {})",
                    path.display()
                )));
            }
        }
        Ok(Self {
            clock,
            sealer,
            dir: Some(dir.to_owned()),
            batches: RwLock::new(batches),
            loading: tokio::sync::Mutex::new(()),
            stats,
            _lock: Some(lock),
            options,
        })
    }

    /// Journal activity since start (all zero in memory).
    pub fn journal_stats(&self) -> JournalStats {
        JournalStats {
            queued: self.stats.queued.load(Ordering::Relaxed),
            records: self.stats.records.load(Ordering::Relaxed),
            syncs: self.stats.syncs.load(Ordering::Relaxed),
        }
    }

    pub(super) fn slot(&self, batch: &BatchId) -> Result<Arc<Slot>, AllocError> {
        self.batches
            .read()
            .get(batch)
            .cloned()
            .ok_or_else(|| ErrorCode::UnknownBatch.into())
    }

    /// Reads the durable state of a batch.
    fn read<R>(
        &self,
        batch: &BatchId,
        f: impl FnOnce(&Slot, &DurableState) -> R,
    ) -> Result<R, AllocError> {
        let slot = self.slot(batch)?;
        let st = slot.durable.state.lock();
        Ok(f(&slot, &st))
    }
}

/// Rebuilds one batch from its journal; `None` for a file whose first record never
/// became whole (the load was never acknowledged), which is removed.
fn recover(
    path: &Path,
    stats: &Arc<Stats>,
    options: &JournalOptions,
) -> Result<Option<Slot>, AllocError> {
    let contents = journal::read(path)?;
    let mut records = contents.records.into_iter();
    let Some(first) = records.next() else {
        tracing::warn!(path = %path.display(), "journal holds no whole record; removing it");
        std::fs::remove_file(path)?;
        return Ok(None);
    };
    let Record::Loaded { epoch, event, .. } = first else {
        return Err(AllocError::Corrupt(format!(
            "{} does not start with a loaded record",
            path.display()
        )));
    };
    let mut events = vec![event];
    let mut replies = Replies::default();
    for record in records {
        let Record::Changed { events: es, req } = record else {
            return Err(AllocError::Corrupt(format!(
                "{} has a second loaded record",
                path.display()
            )));
        };
        events.extend(es);
        if let Some(ReqKey { family, req_id }) = req {
            let seq = events.last().map_or(0, |e| e.seq);
            replies.insert(family, req_id, Reply { seq, refused: None });
        }
    }
    let sel = Selection::replay(&events)
        .map_err(|e| AllocError::Corrupt(format!("{}: {e}", path.display())))?;
    let durable = new_durable(sel.clone(), events);
    let file = journal::open_append(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let journal = Journal::start(
        file,
        name,
        stats.clone(),
        Box::new(durable.clone()),
        options.sync.clone(),
    )?;
    Ok(Some(Slot {
        epoch,
        head: Mutex::new(Head { sel, replies }),
        durable,
        journal: Some(journal),
        signing: None,
    }))
}

fn new_durable(sel: Selection, events: Vec<Event>) -> Arc<Durable> {
    let (mark, _) = watch::channel(Mark {
        seq: sel.seq(),
        broken: false,
    });
    Arc::new(Durable {
        state: Mutex::new(DurableState { sel, events }),
        mark,
    })
}

impl Slot {
    fn check_writable(&self) -> Result<(), AllocError> {
        if self.durable.mark.borrow().broken {
            return Err(AllocError::Journal(io::Error::other(
                "the journal of this batch failed; restart to recover",
            )));
        }
        Ok(())
    }

    /// Turns decided events into log entries at `now`: queues them for the journal
    /// (with the request they answer), then applies them to the head. Call with the
    /// head lock held, so the log order is the decision order.
    fn commit(
        &self,
        head: &mut Head,
        kinds: Vec<EventKind>,
        req: Option<ReqKey>,
        now: Millis,
    ) -> Result<Wait, AllocError> {
        if kinds.is_empty() && req.is_none() {
            return Ok(Wait::Seq(head.sel.seq()));
        }
        let base = head.sel.seq();
        let events: Vec<Event> = kinds
            .into_iter()
            .zip(base + 1..)
            .map(|(event, seq)| Event {
                seq,
                at: now,
                event,
            })
            .collect();
        let wait = match &self.journal {
            Some(journal) => {
                let record = Record::Changed {
                    events: events.clone(),
                    req,
                };
                Wait::Record(journal.append(&record, events.clone())?)
            }
            None => Wait::Seq(base + events.len() as u64),
        };
        for e in &events {
            head.sel.apply(e);
        }
        if self.journal.is_none() && !events.is_empty() {
            self.durable.durable(events);
        }
        Ok(wait)
    }

    /// Waits until what a reply was decided against is durable.
    async fn settle(&self, wait: Wait) -> Result<(), AllocError> {
        match wait {
            Wait::Record(rx) => match rx.await {
                Ok(result) => Ok(result?),
                Err(_) => Err(io::Error::other("the journal writer stopped").into()),
            },
            Wait::Seq(seq) => {
                let mut rx = self.durable.mark.subscribe();
                let mark = *rx
                    .wait_for(|m| m.seq >= seq || m.broken)
                    .await
                    .map_err(|_| io::Error::other("the journal writer stopped"))?;
                if mark.seq < seq {
                    return Err(io::Error::other("the journal of this batch failed").into());
                }
                Ok(())
            }
        }
    }

    fn events_after(&self, after: u64, limit: usize) -> Vec<Event> {
        let st = self.durable.state.lock();
        let from = usize::try_from(after).unwrap_or(usize::MAX);
        st.events.iter().skip(from).take(limit).cloned().collect()
    }
}

#[async_trait]
impl Allocator for EmbeddedEngine {
    async fn load_batch(&self, batch: Batch) -> Result<(), AllocError> {
        let _one_at_a_time = self.loading.lock().await;
        if self.batches.read().contains_key(&batch.id) {
            return Err(ErrorCode::Conflict.into());
        }
        let id = batch.id.clone();
        let mut sel = Selection::new(batch.clone()).map_err(|e| {
            tracing::info!(batch = ?id.as_str(), error = %e, "batch refused");
            AllocError::from(ErrorCode::InvalidBatch)
        })?;
        // Below 2^53 so JavaScript clients (JSON numbers are doubles) echo it exactly.
        let epoch = rand::random::<u64>() >> 11;
        let event = Event {
            seq: 1,
            at: self.clock.now(),
            event: EventKind::BatchLoaded { batch },
        };
        sel.apply(&event);
        let journal = match &self.dir {
            None => None,
            Some(dir) => {
                let first = Record::Loaded {
                    batch: id.clone(),
                    epoch,
                    event: event.clone(),
                };
                let (dir, bid) = (dir.clone(), id.clone());
                let created =
                    tokio::task::spawn_blocking(move || journal::create(&dir, &bid, &first))
                        .await
                        .map_err(|e| io::Error::other(e.to_string()))?;
                let (path, file) = match created {
                    Ok(made) => made,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return Err(ErrorCode::Conflict.into())
                    }
                    Err(e) => return Err(e.into()),
                };
                Some((path, file))
            }
        };
        // After the selection journal: a batch is loaded once its journal exists, and a
        // signing file is only ever opened for a loaded batch. If this fails the batch is
        // on disk without signing in this process; the next open creates the file.
        let signing = match (&self.sealer, &self.dir) {
            (None, _) => None,
            (Some(sealer), None) => Some(SigningSlot::in_memory(sealer.clone())),
            (Some(sealer), Some(dir)) => {
                let (dir, bid, sealer, options) = (
                    dir.clone(),
                    id.clone(),
                    sealer.clone(),
                    self.options.clone(),
                );
                let opened = tokio::task::spawn_blocking(move || {
                    SigningSlot::open(&dir, &bid, sealer, &options)
                })
                .await
                .map_err(|e| io::Error::other(e.to_string()))?;
                Some(opened?)
            }
        };
        let durable = new_durable(sel.clone(), vec![event]);
        let journal = match journal {
            None => None,
            Some((_, file)) => Some(Journal::start(
                file,
                journal::file_name(&id),
                self.stats.clone(),
                Box::new(durable.clone()),
                self.options.sync.clone(),
            )?),
        };
        let slot = Slot {
            epoch,
            head: Mutex::new(Head {
                sel,
                replies: Replies::default(),
            }),
            durable,
            journal,
            signing,
        };
        self.batches.write().insert(id, Arc::new(slot));
        Ok(())
    }

    async fn publish_supplementary(
        &self,
        batch: &BatchId,
        session: Session,
    ) -> Result<(), AllocError> {
        let slot = self.slot(batch)?;
        let wait = {
            let mut head = slot.head.lock();
            slot.check_writable()?;
            let now = self.clock.now();
            let kinds = head.sel.decide_publish(&session, now)?;
            slot.commit(&mut head, kinds, None, now)?
        };
        slot.settle(wait).await
    }

    async fn act(
        &self,
        batch: &BatchId,
        family: &FamilyId,
        req_id: &str,
        action: Action,
    ) -> Result<Answer, AllocError> {
        let slot = self.slot(batch)?;
        let (wait, refused) = {
            let mut head = slot.head.lock();
            slot.check_writable()?;
            if let Some(r) = head.replies.get(family, req_id) {
                (Wait::Seq(r.seq), r.refused.clone())
            } else {
                let now = self.clock.now();
                match head.sel.decide(family, &action, now) {
                    Err(rejection) => {
                        let seq = head.sel.seq();
                        // An unknown family has no requests to repeat; remembering
                        // them would let anyone grow the table.
                        if rejection.code != ErrorCode::UnknownFamily {
                            let reply = Reply {
                                seq,
                                refused: Some(rejection.clone()),
                            };
                            head.replies
                                .insert(family.clone(), req_id.to_owned(), reply);
                        }
                        (Wait::Seq(seq), Some(rejection))
                    }
                    Ok(kinds) => {
                        let req = ReqKey {
                            family: family.clone(),
                            req_id: req_id.to_owned(),
                        };
                        let wait = slot.commit(&mut head, kinds, Some(req), now)?;
                        let reply = Reply {
                            seq: head.sel.seq(),
                            refused: None,
                        };
                        head.replies
                            .insert(family.clone(), req_id.to_owned(), reply);
                        (wait, None)
                    }
                }
            }
        };
        slot.settle(wait).await?;
        if let Some(rejection) = refused {
            return Ok(Err(rejection));
        }
        let now = self.clock.now();
        let view = slot.durable.state.lock().sel.family_view(family, now);
        Ok(view.ok_or_else(|| Rejection::new(ErrorCode::UnknownFamily)))
    }

    async fn close_session_step(
        &self,
        batch: &BatchId,
        session: &SessionId,
        max: usize,
    ) -> Result<CloseStep, AllocError> {
        let slot = self.slot(batch)?;
        // Decide and apply under one lock hold: concurrent callers then each see the
        // families the others decided, so each family is decided exactly once.
        let (wait, step) = {
            let mut head = slot.head.lock();
            slot.check_writable()?;
            let now = self.clock.now();
            let kinds = head.sel.close_session_step(session, now, max)?;
            let decided = kinds
                .iter()
                .filter(|k| matches!(k, EventKind::Selected { .. } | EventKind::NoUnit { .. }))
                .count();
            let wait = slot.commit(&mut head, kinds, None, now)?;
            let closed = head.sel.closed_sessions().contains(session);
            (wait, CloseStep { decided, closed })
        };
        slot.settle(wait).await?;
        Ok(step)
    }

    async fn batches(&self) -> Result<Vec<BatchId>, AllocError> {
        // Oldest load first (by the time of `batch_loaded`), as the contract says.
        let mut ids: Vec<(Millis, BatchId)> = self
            .batches
            .read()
            .iter()
            .map(|(id, slot)| {
                let st = slot.durable.state.lock();
                let at = st.events.first().map(|e| e.at).unwrap_or_default();
                (at, id.clone())
            })
            .collect();
        ids.sort();
        Ok(ids.into_iter().map(|(_, id)| id).collect())
    }

    async fn catalog(&self, batch: &BatchId) -> Result<Catalog, AllocError> {
        self.read(batch, |_, st| {
            views::catalog(st.sel.batch(), st.sel.closed_sessions())
        })
    }

    async fn batch(&self, batch: &BatchId) -> Result<Batch, AllocError> {
        self.read(batch, |_, st| st.sel.batch().clone())
    }

    async fn board(&self, batch: &BatchId) -> Result<BoardState, AllocError> {
        self.read(batch, |slot, st| BoardState {
            epoch: slot.epoch,
            seq: st.sel.seq(),
            board_seq: st
                .events
                .iter()
                .rev()
                .find(|e| e.event.is_public())
                .map_or(0, |e| e.seq),
            taken: views::taken(st.sel.batch(), st.sel.taken()),
            sessions: views::sessions(st.sel.batch(), st.sel.closed_sessions()),
        })
    }

    async fn family(&self, batch: &BatchId, family: &FamilyId) -> Result<FamilyView, AllocError> {
        let now = self.clock.now();
        self.read(batch, |_, st| st.sel.family_view(family, now))?
            .ok_or_else(|| ErrorCode::UnknownFamily.into())
    }

    async fn results(&self, batch: &BatchId) -> Result<Vec<FamilyRecord>, AllocError> {
        self.read(batch, |_, st| {
            st.sel
                .family_states()
                .map(|(family, state)| FamilyRecord {
                    family: family.clone(),
                    state: state.clone(),
                })
                .collect()
        })
    }

    async fn events(
        &self,
        batch: &BatchId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, AllocError> {
        Ok(self.slot(batch)?.events_after(after, limit))
    }

    async fn wait_events(
        &self,
        batch: &BatchId,
        after: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<Event>, AllocError> {
        let slot = self.slot(batch)?;
        // Subscribe before looking, so an event landing in between still wakes us.
        let mut rx = slot.durable.mark.subscribe();
        let found = slot.events_after(after, limit);
        if !found.is_empty() || limit == 0 {
            return Ok(found);
        }
        let _ = tokio::time::timeout(wait, rx.wait_for(|m| m.seq > after || m.broken)).await;
        Ok(slot.events_after(after, limit))
    }

    async fn epoch(&self, batch: &BatchId) -> Result<u64, AllocError> {
        Ok(self.slot(batch)?.epoch)
    }

    async fn now(&self) -> Result<Millis, AllocError> {
        Ok(self.clock.now())
    }

    async fn ping(&self) -> Result<(), AllocError> {
        Ok(())
    }
}
