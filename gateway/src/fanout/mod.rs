//! Board fan-out for one batch on this gateway: a [`BatchHub`] per batch, its jobs one
//! module each.
//!
//! - [`board`]: the board model clients follow (taken units, sessions, the chain `seq`),
//!   snapshots and the broadcast ring.
//! - [`follower`]: follows the allocator's event stream and turns each run of events into
//!   one delta (encoded once) for every connection here.
//! - [`resume`]: a client's (epoch, seq) answered from retained deltas, the log, or a
//!   snapshot — never a silent gap.
//! - [`catalog`]: the units and sessions, encoded once per change, with an ETag.
//! - [`family_channel`]: each family's latest view, pushed to its connections.
//! - [`presence`]: who is connected (watchers, families online).
//!
//! Every gateway runs its own follower over the same stream, so a confirm taken on
//! gateway A reaches screens on gateway B.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use xuanfang_allocator::{AllocError, Allocator};
use xuanfang_hub::protocol::{FamilyView, SessionInfo};
use xuanfang_hub::{Batch, BatchId, FamilyId};

use crate::metrics::Metrics;

mod board;
mod catalog;
mod family_channel;
mod follower;
mod presence;
mod resume;

pub use board::{DeltaFrames, SnapshotFrames, BROADCAST_CAPACITY};
pub use catalog::CatalogBytes;
pub use follower::change_of;
pub use resume::Catchup;

use board::Board;

pub struct BatchHub {
    pub batch: BatchId,
    pub epoch: u64,
    /// Cancelled at shutdown: the follower and deadline keeper stop, connections close.
    pub retired: CancellationToken,
    pub(crate) alloc: Arc<dyn Allocator>,
    metrics: Arc<Metrics>,
    statics: Mutex<Batch>,
    /// Masked name and rank by family, for board changes (families never change after load).
    names: HashMap<FamilyId, (String, u32)>,
    board: Mutex<Board>,
    /// The board's chain position, for a resume from a position this hub has not
    /// reached yet (a screen that came from a gateway whose follower read further).
    position: watch::Sender<u64>,
    tx: broadcast::Sender<Arc<DeltaFrames>>,
    families: Mutex<HashMap<FamilyId, watch::Sender<Option<Arc<FamilyView>>>>>,
    watchers: AtomicUsize,
    /// The encoded catalog, until a session changes.
    catalog: Mutex<Option<Arc<CatalogBytes>>>,
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
        let tx = board::ring();
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
            position: watch::Sender::new(board.board_seq),
            board: Mutex::new(board::initial(
                board.board_seq,
                board.seq,
                board.taken,
                board.sessions,
            )),
            tx,
            families: Mutex::new(HashMap::new()),
            watchers: AtomicUsize::new(0),
            catalog: Mutex::new(None),
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
}
