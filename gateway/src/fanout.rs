//! Board fan-out for one batch: follows the allocator's event stream, keeps the board
//! model, and broadcasts deltas (encoded once) to every connection on this gateway.
//!
//! Every gateway runs its own follower over the same stream, so a confirm taken on
//! gateway A reaches screens on gateway B. Resume is first-class: a client's
//! (epoch, seq) is answered from the retained deltas, else from the allocator's log,
//! else with a fresh snapshot — never a silent gap.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use xuanfang_allocator::{AllocError, Allocator};
use xuanfang_hub::protocol::{BoardChange, FamilyView, ServerMsg, SessionInfo, TakenUnit};
use xuanfang_hub::{views, Batch, BatchId, Event, EventKind, FamilyId, How};

use crate::frames::Frames;
use crate::metrics::Metrics;

/// Deltas kept in memory for resume.
const RETAINED_DELTAS: usize = 4096;
/// Deltas queued per connection before it is treated as lagging (it then gets a
/// snapshot instead of the backlog).
pub const BROADCAST_CAPACITY: usize = 256;
/// Events read from the allocator per delta; under load several changes coalesce into
/// one delta.
const EVENTS_PER_READ: usize = 5000;
/// The shortest time between two reads of the stream. A quiet board publishes each
/// change at once; in a burst (a session start: thousands of confirms a second) changes
/// gather for this long into one delta, so 20,000 sockets get a few frames a second
/// instead of one per confirm — which is what keeps the hub's CPU free to answer.
const MIN_DELTA_INTERVAL: Duration = Duration::from_millis(50);
/// The most events a resume rebuilds from the allocator's log before it prefers a snapshot.
const RESUME_FROM_LOG_MAX: u64 = 20_000;

/// The frames of one snapshot, in order (see `protocol::snapshot_parts`).
pub type SnapshotFrames = Arc<[Frames]>;

/// One broadcast delta, with the range of sequence numbers it covers.
#[derive(Debug)]
pub struct DeltaFrames {
    pub prev: u64,
    pub seq: u64,
    pub frames: Frames,
}

/// How to bring a resuming client up to date.
pub enum Catchup {
    /// Nothing missed.
    UpToDate,
    /// The missed deltas, contiguous from the client's seq to the hub's.
    Deltas(Vec<Arc<DeltaFrames>>),
    /// Too far behind, or another epoch: a full snapshot.
    Snapshot(SnapshotFrames, u64),
}

struct Board {
    /// The seq of the last broadcast delta (or of the initial board): the chain clients
    /// follow. Private events (a cart edit) advance only `events_seq`; the next public
    /// delta then covers them too, so no empty delta is ever sent to every socket.
    seq: u64,
    /// The last event this follower has read.
    events_seq: u64,
    taken: Vec<TakenUnit>,
    sessions: Vec<SessionInfo>,
    snapshot: Option<SnapshotFrames>,
    retained: VecDeque<Arc<DeltaFrames>>,
}

pub struct BatchHub {
    pub batch: BatchId,
    pub epoch: u64,
    /// Cancelled at shutdown: the follower and deadline keeper stop, connections close.
    pub retired: CancellationToken,
    alloc: Arc<dyn Allocator>,
    metrics: Arc<Metrics>,
    statics: Mutex<Batch>,
    /// Masked name and rank by family, for board changes (families never change after load).
    names: HashMap<FamilyId, (String, u32)>,
    board: Mutex<Board>,
    tx: broadcast::Sender<Arc<DeltaFrames>>,
    families: Mutex<HashMap<FamilyId, watch::Sender<Option<Arc<FamilyView>>>>>,
    watchers: AtomicUsize,
}

impl BatchHub {
    /// Builds the hub from the allocator's board at its current seq.
    pub async fn open(
        alloc: Arc<dyn Allocator>,
        batch: BatchId,
        metrics: Arc<Metrics>,
        retired: CancellationToken,
    ) -> Result<Arc<Self>, AllocError> {
        let statics = alloc.batch(&batch).await?;
        let board = alloc.board(&batch).await?;
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        let names = statics
            .families
            .iter()
            .map(|f| (f.id.clone(), (f.name.clone(), f.rank)))
            .collect();
        Ok(Arc::new(Self {
            retired,
            names,
            batch,
            epoch: board.epoch,
            alloc,
            metrics,
            statics: Mutex::new(statics),
            board: Mutex::new(Board {
                seq: board.seq,
                events_seq: board.seq,
                taken: board.taken,
                sessions: board.sessions,
                snapshot: None,
                retained: VecDeque::new(),
            }),
            tx,
            families: Mutex::new(HashMap::new()),
            watchers: AtomicUsize::new(0),
        }))
    }

    pub fn seq(&self) -> u64 {
        self.board.lock().seq
    }

    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.board.lock().sessions.clone()
    }

    pub fn has_family(&self, f: &FamilyId) -> bool {
        self.names.contains_key(f)
    }

    /// Every session of the batch is closed (as far as this hub has followed).
    pub fn selection_finished(&self) -> bool {
        self.board.lock().sessions.iter().all(|s| s.closed)
    }

    pub fn family_count(&self) -> usize {
        self.names.len()
    }

    /// The batch's display name.
    pub fn name(&self) -> String {
        self.statics.lock().name.clone()
    }

    pub fn statics(&self) -> Batch {
        self.statics.lock().clone()
    }

    /// Subscribes a connection: the receiver and the snapshot it starts from, taken
    /// together so no delta falls between them.
    pub fn attach(&self) -> (broadcast::Receiver<Arc<DeltaFrames>>, SnapshotFrames, u64) {
        let mut b = self.board.lock();
        let rx = self.tx.subscribe();
        let snap = self.snapshot_locked(&mut b);
        (rx, snap, b.seq)
    }

    fn snapshot_locked(&self, b: &mut Board) -> SnapshotFrames {
        if let Some(s) = &b.snapshot {
            return s.clone();
        }
        let frames: SnapshotFrames =
            xuanfang_hub::protocol::snapshot_parts(self.epoch, b.seq, &b.taken, &b.sessions)
                .iter()
                // Our own types always encode; a failure would be a bug worth logging.
                .filter_map(|m| {
                    Frames::encode(m)
                        .map_err(|e| tracing::error!("snapshot encode failed: {e}"))
                        .ok()
                })
                .collect();
        b.snapshot = Some(frames.clone());
        frames
    }

    /// The board as the WebSocket snapshot carries it: the same taken units, sessions and
    /// chain position (`seq`), so HTTP and the socket never disagree.
    pub fn board_state(&self) -> xuanfang_allocator::BoardState {
        let b = self.board.lock();
        xuanfang_allocator::BoardState {
            epoch: self.epoch,
            seq: b.seq,
            taken: b.taken.clone(),
            sessions: b.sessions.clone(),
        }
    }

    /// The current snapshot and its seq.
    pub fn snapshot(&self) -> (SnapshotFrames, u64) {
        let mut b = self.board.lock();
        (self.snapshot_locked(&mut b), b.seq)
    }

    /// What a client that last saw (epoch, seq) needs. Deltas come from memory when
    /// retained, else are rebuilt from the allocator's log up to this hub's seq, so the
    /// next broadcast delta follows on exactly.
    pub async fn catch_up(&self, epoch: u64, seq: u64) -> Catchup {
        let hub_seq = {
            let mut b = self.board.lock();
            if epoch != self.epoch || seq > b.seq {
                let s = self.snapshot_locked(&mut b);
                return Catchup::Snapshot(s, b.seq);
            }
            if seq == b.seq {
                return Catchup::UpToDate;
            }
            if let Some(i) = b.retained.iter().position(|d| d.prev == seq) {
                return Catchup::Deltas(b.retained.iter().skip(i).cloned().collect());
            }
            if b.seq - seq > RESUME_FROM_LOG_MAX {
                let s = self.snapshot_locked(&mut b);
                return Catchup::Snapshot(s, b.seq);
            }
            b.seq
        };
        let events = match self
            .alloc
            .events(&self.batch, seq, (hub_seq - seq) as usize)
            .await
        {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!("resume from log failed: {e}");
                let (s, n) = self.snapshot();
                return Catchup::Snapshot(s, n);
            }
        };
        let events: Vec<_> = events.into_iter().filter(|e| e.seq <= hub_seq).collect();
        if events.last().map(|e| e.seq) != Some(hub_seq) {
            let (s, n) = self.snapshot();
            return Catchup::Snapshot(s, n);
        }
        let statics = self.statics.lock().clone();
        let changes = events
            .iter()
            .filter_map(|e| change_of(&statics, &self.names, e))
            .collect();
        let msg = ServerMsg::Delta {
            epoch: self.epoch,
            prev: seq,
            seq: hub_seq,
            changes,
        };
        match Frames::encode(&msg) {
            Ok(frames) => Catchup::Deltas(vec![Arc::new(DeltaFrames {
                prev: seq,
                seq: hub_seq,
                frames,
            })]),
            Err(_) => {
                let (s, n) = self.snapshot();
                Catchup::Snapshot(s, n)
            }
        }
    }

    /// The latest view of a family on this gateway, pushed after each of its changes.
    pub fn watch_family(&self, f: &FamilyId) -> watch::Receiver<Option<Arc<FamilyView>>> {
        let mut fams = self.families.lock();
        fams.entry(f.clone())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }

    /// Families with at least one connection on this gateway.
    pub fn families_online(&self) -> usize {
        self.families
            .lock()
            .values()
            .filter(|s| s.receiver_count() > 0)
            .count()
    }

    pub fn watcher_joined(&self) {
        self.watchers.fetch_add(1, Ordering::Relaxed);
    }
    pub fn watcher_left(&self) {
        self.watchers.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }

    /// Follows the event stream until cancelled.
    pub async fn follow(self: Arc<Self>, cancel: CancellationToken) {
        let mut last = self.board.lock().events_seq;
        let mut last_read = tokio::time::Instant::now() - MIN_DELTA_INTERVAL;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(last_read + MIN_DELTA_INTERVAL) => {}
            }
            let read = tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.alloc.wait_events(&self.batch, last, EVENTS_PER_READ, Duration::from_secs(2)) => r,
            };
            match read {
                Ok(events) if events.is_empty() => {}
                Ok(events) => {
                    last_read = tokio::time::Instant::now();
                    last = events.last().map(|e| e.seq).unwrap_or(last);
                    self.publish(events).await;
                }
                Err(e) => {
                    tracing::warn!(batch = %self.batch, "event stream read failed: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Turns a run of events into one delta, updates the board and broadcasts.
    async fn publish(&self, events: Vec<Event>) {
        let mut affected = HashSet::new();
        let changes: Vec<BoardChange> = {
            let mut statics = self.statics.lock();
            for e in &events {
                match &e.event {
                    EventKind::SupplementaryPublished { session } => {
                        statics.sessions.push(session.clone());
                        affected.extend(session.families.iter().cloned());
                    }
                    // Decided for the family, not by it: it must be told.
                    EventKind::Selected {
                        family,
                        how: How::Automatic,
                        ..
                    }
                    | EventKind::NoUnit { family, .. } => {
                        affected.insert(family.clone());
                    }
                    // The family's own requests: the `ok` reply carries the new view and
                    // the gateway that answered shares it with the family's other
                    // connections there (`share_view`), so no extra engine read here.
                    _ => {}
                }
            }
            events
                .iter()
                .filter_map(|e| change_of(&statics, &self.names, e))
                .collect()
        };
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return;
        };
        {
            let mut b = self.board.lock();
            if first.seq != b.events_seq + 1 {
                // Cannot happen with a gapless log; a snapshot-only hub would be wrong, so say so.
                tracing::error!(
                    expected = b.events_seq + 1,
                    found = first.seq,
                    "event gap in follower"
                );
            }
            b.events_seq = last.seq;
        }
        if !changes.is_empty() {
            let mut b = self.board.lock();
            let prev = b.seq;
            for c in &changes {
                match c {
                    BoardChange::Taken(t) => b.taken.push(t.clone()),
                    BoardChange::SessionClosed { session } => {
                        if let Some(s) = b.sessions.iter_mut().find(|s| &s.id == session) {
                            s.closed = true;
                        }
                    }
                    BoardChange::SessionAdded { session } => b.sessions.push(session.clone()),
                }
            }
            b.seq = last.seq;
            b.snapshot = None;
            let msg = ServerMsg::Delta {
                epoch: self.epoch,
                prev,
                seq: last.seq,
                changes,
            };
            match Frames::encode(&msg) {
                Ok(frames) => {
                    let d = Arc::new(DeltaFrames {
                        prev,
                        seq: last.seq,
                        frames,
                    });
                    b.retained.push_back(d.clone());
                    if b.retained.len() > RETAINED_DELTAS {
                        b.retained.pop_front();
                    }
                    let receivers = self.tx.send(d).unwrap_or(0);
                    self.metrics.deltas_published(receivers);
                }
                Err(e) => tracing::error!("delta encode failed: {e}"),
            }
        }
        self.push_family_views(affected).await;
    }

    /// Shares a view that a request's `ok` carried with the family's other connections
    /// on this gateway.
    /// Returns the shared copy, so the answering connection can skip it.
    pub fn share_view(&self, view: &FamilyView) -> Option<Arc<FamilyView>> {
        let sender = self.families.lock().get(&view.family)?.clone();
        if sender.receiver_count() < 2 {
            return None;
        }
        let shared = Arc::new(view.clone());
        sender.send_replace(Some(shared.clone()));
        Some(shared)
    }

    /// Pushes fresh views to the connected families of a session whose formal window has
    /// just opened, so phones switch to formal selection on the server's word.
    pub async fn session_started(&self, session: &xuanfang_hub::SessionId) {
        let families: HashSet<FamilyId> = {
            let statics = self.statics.lock();
            statics
                .session(session)
                .map(|s| s.families.iter().cloned().collect())
                .unwrap_or_default()
        };
        self.push_family_views(families).await;
    }

    async fn push_family_views(&self, affected: HashSet<FamilyId>) {
        let targets: Vec<_> = {
            let mut fams = self.families.lock();
            fams.retain(|_, s| s.receiver_count() > 0);
            affected
                .into_iter()
                .filter_map(|f| fams.get(&f).map(|s| (f, s.clone())))
                .collect()
        };
        for (f, sender) in targets {
            match self.alloc.family(&self.batch, &f).await {
                Ok(view) => {
                    sender.send_replace(Some(Arc::new(view)));
                }
                Err(e) => tracing::warn!(family = %f, "family view failed: {e}"),
            }
        }
    }
}

/// The public board change an event makes, if any.
pub fn change_of(
    batch: &Batch,
    names: &HashMap<FamilyId, (String, u32)>,
    e: &Event,
) -> Option<BoardChange> {
    match &e.event {
        EventKind::Selected { family, unit, how } => {
            let f = names.get(family);
            Some(BoardChange::Taken(TakenUnit {
                unit: unit.clone(),
                family_name: f.map(|f| f.0.clone()).unwrap_or_default(),
                rank: f.map(|f| f.1).unwrap_or(0),
                how: *how,
                at: e.at,
            }))
        }
        EventKind::SessionClosed { session } => Some(BoardChange::SessionClosed {
            session: session.clone(),
        }),
        EventKind::SupplementaryPublished { session } => Some(BoardChange::SessionAdded {
            session: views::session_info(batch, session, false),
        }),
        _ => None,
    }
}
