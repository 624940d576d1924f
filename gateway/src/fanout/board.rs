//! The board clients follow: taken units, sessions and the chain position, its snapshot
//! (encoded once, shared by every connection) and the broadcast ring of deltas.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast;
use xuanfang_hub::protocol::{BoardChange, ServerMsg, SessionInfo, TakenUnit};

use super::BatchHub;
use crate::frames::Frames;

/// Deltas kept in memory for resume.
const RETAINED_DELTAS: usize = 4096;
/// Deltas queued per connection before it is treated as lagging (it then gets a
/// snapshot instead of the backlog).
pub const BROADCAST_CAPACITY: usize = 256;

/// The frames of one snapshot, in order (see `protocol::snapshot_parts`).
pub type SnapshotFrames = Arc<[Frames]>;

/// One broadcast delta, with the range of sequence numbers it covers.
#[derive(Debug)]
pub struct DeltaFrames {
    pub prev: u64,
    pub seq: u64,
    pub frames: Frames,
    /// When the delta was handed to the broadcast, for the delivery latency metric.
    pub published: std::time::Instant,
}

pub(super) struct Board {
    /// The chain position clients follow: the seq of the last public event this hub
    /// has applied (`EventKind::is_public`). Private events (a cart edit) advance only
    /// `events_seq`; the next public delta then covers them too, so no empty delta is
    /// ever sent to every socket. Because a delta always ends at a public event (never
    /// where a read of the log happened to stop), every gateway on one log is at the
    /// same position for the same board, and a screen that moves between gateways
    /// resumes on deltas.
    pub(super) seq: u64,
    /// The last event this follower has read.
    pub(super) events_seq: u64,
    pub(super) taken: Vec<TakenUnit>,
    pub(super) sessions: Vec<SessionInfo>,
    pub(super) snapshot: Option<SnapshotFrames>,
    pub(super) retained: VecDeque<Arc<DeltaFrames>>,
}

impl BatchHub {
    /// Subscribes a connection: the receiver and the snapshot it starts from, taken
    /// together so no delta falls between them.
    pub fn attach(&self) -> (broadcast::Receiver<Arc<DeltaFrames>>, SnapshotFrames, u64) {
        let mut b = self.board.lock();
        let rx = self.tx.subscribe();
        let snap = self.snapshot_locked(&mut b);
        (rx, snap, b.seq)
    }

    pub(super) fn snapshot_locked(&self, b: &mut Board) -> SnapshotFrames {
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
            board_seq: b.seq,
            taken: b.taken.clone(),
            sessions: b.sessions.clone(),
        }
    }

    /// The current snapshot and its seq.
    pub fn snapshot(&self) -> (SnapshotFrames, u64) {
        let mut b = self.board.lock();
        (self.snapshot_locked(&mut b), b.seq)
    }

    /// Applies a run of public changes to the board and broadcasts them as one delta
    /// from the previous chain position to `seq`, the last public event's seq.
    pub(super) fn publish_changes(&self, seq: u64, changes: Vec<BoardChange>) {
        let started = std::time::Instant::now();
        if changes.iter().any(|c| !matches!(c, BoardChange::Taken(_))) {
            self.catalog_changed();
        }
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
        b.seq = seq;
        b.snapshot = None;
        self.position.send_replace(seq);
        let msg = ServerMsg::Delta {
            epoch: self.epoch,
            prev,
            seq,
            changes,
        };
        match Frames::encode(&msg) {
            Ok(frames) => {
                let d = Arc::new(DeltaFrames {
                    prev,
                    seq,
                    frames,
                    published: std::time::Instant::now(),
                });
                b.retained.push_back(d.clone());
                if b.retained.len() > RETAINED_DELTAS {
                    b.retained.pop_front();
                }
                let receivers = self.tx.send(d).unwrap_or(0);
                self.metrics.deltas_published(receivers, started.elapsed());
            }
            Err(e) => tracing::error!("delta encode failed: {e}"),
        }
    }
}

/// The initial board of a hub: its chain position (the last public event) and the log
/// position it was read at, where the follower goes on from.
pub(super) fn initial(
    board_seq: u64,
    events_seq: u64,
    taken: Vec<TakenUnit>,
    sessions: Vec<SessionInfo>,
) -> Board {
    Board {
        seq: board_seq,
        events_seq,
        taken,
        sessions,
        snapshot: None,
        retained: VecDeque::new(),
    }
}

/// A broadcast ring for a new hub.
pub(super) fn ring() -> broadcast::Sender<Arc<DeltaFrames>> {
    broadcast::channel(BROADCAST_CAPACITY).0
}
