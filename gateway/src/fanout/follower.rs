//! The follower: reads the batch's event stream and turns each run of events into one
//! board delta, and tells families what was decided for them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use xuanfang_hub::protocol::{BoardChange, TakenUnit};
use xuanfang_hub::{views, Batch, Event, EventKind, FamilyId, How};

use super::BatchHub;

/// Events read from the allocator per delta; under load several changes coalesce into
/// one delta.
const EVENTS_PER_READ: usize = 5000;
/// The shortest time between two reads of the stream. A quiet board publishes each
/// change at once; in a burst (a session start: thousands of confirms a second) changes
/// gather for this long into one delta, so 20,000 sockets get a few frames a second
/// instead of one per confirm — which is what keeps the hub's CPU free to answer.
const MIN_DELTA_INTERVAL: Duration = Duration::from_millis(50);

impl BatchHub {
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
        // The delta ends at the last event that changed the board, not at the last one
        // read: where a read stops differs between gateways.
        let mut board_end = None;
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
                .filter_map(|e| {
                    let change = change_of(&statics, &self.names, e)?;
                    board_end = Some(e.seq);
                    Some(change)
                })
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
        if let Some(end) = board_end {
            self.publish_changes(end, changes);
        }
        self.push_family_views(affected).await;
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
