//! Resume: what a client that last saw (epoch, seq) needs — the retained deltas, one
//! delta rebuilt from the allocator's log, or a snapshot. Never a silent gap.

use std::sync::Arc;
use std::time::Duration;

use xuanfang_hub::protocol::ServerMsg;

use super::{follower::change_of, BatchHub, DeltaFrames, SnapshotFrames};
use crate::frames::Frames;

/// The most events a resume rebuilds from the allocator's log before it prefers a snapshot.
const RESUME_FROM_LOG_MAX: u64 = 20_000;
/// How long a resume from a position the log holds but this hub's follower has not
/// reached yet waits for it (followers read every 50 ms or so), before a snapshot.
const AHEAD_WAIT: Duration = Duration::from_secs(3);

/// How to bring a resuming client up to date.
pub enum Catchup {
    /// Nothing missed.
    UpToDate,
    /// The missed deltas, contiguous from the client's seq to the hub's.
    Deltas(Vec<Arc<DeltaFrames>>),
    /// Too far behind, or another epoch: a full snapshot.
    Snapshot(SnapshotFrames, u64),
}

impl BatchHub {
    /// What a client that last saw (epoch, seq) needs. Deltas come from memory when
    /// retained, else are rebuilt from the allocator's log up to this hub's seq, so the
    /// next broadcast delta follows on exactly.
    pub async fn catch_up(&self, epoch: u64, seq: u64) -> Catchup {
        if epoch == self.epoch && seq > self.seq() {
            self.wait_for_position(seq).await;
        }
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
                published: std::time::Instant::now(),
            })]),
            Err(_) => {
                let (s, n) = self.snapshot();
                Catchup::Snapshot(s, n)
            }
        }
    }

    /// Waits (at most [`AHEAD_WAIT`]) until this hub's board reaches `seq`, if the log
    /// holds `seq`: another gateway's follower read it first. A position the log does
    /// not hold is not waited for (the caller answers with a snapshot).
    async fn wait_for_position(&self, seq: u64) {
        let in_log = matches!(
            self.alloc.events(&self.batch, seq - 1, 1).await.as_deref(),
            Ok([e]) if e.seq == seq
        );
        if in_log {
            let mut rx = self.position.subscribe();
            let _ = tokio::time::timeout(AHEAD_WAIT, rx.wait_for(|&p| p >= seq)).await;
        }
    }
}
