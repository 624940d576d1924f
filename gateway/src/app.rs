//! Shared state of one gateway process.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;
use xuanfang_allocator::{AllocError, Allocator};
use xuanfang_hub::{BatchId, Millis};

use crate::auth::Auth;
use crate::fanout::BatchHub;
use crate::limits::Limits;
use crate::metrics::Metrics;

/// WebSocket tuning; small buffers keep idle connections cheap.
#[derive(Clone, Debug)]
pub struct WsConfig {
    /// Read buffer of each connection (tungstenite's default is 128 KiB).
    pub read_buffer: usize,
    /// Write buffer target before flushing; 0 writes each message at once.
    pub write_buffer: usize,
    /// Largest message tungstenite accepts; larger closes with 1009. Frames between
    /// the protocol's limit and this get a `frame_too_large` error and the connection stays.
    pub max_message: usize,
    /// A send that blocks this long means the client is stuck: it is disconnected.
    pub send_timeout: Duration,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            read_buffer: 512,
            write_buffer: 0,
            max_message: 64 * 1024,
            send_timeout: Duration::from_secs(10),
        }
    }
}

/// Everything a handler needs.
pub struct App {
    pub alloc: Arc<dyn Allocator>,
    pub auth: Auth,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
    pub ws: WsConfig,
    pub shutdown: CancellationToken,
    /// Demo mode: exposes `/api/demo/logins`.
    pub demo: Option<crate::demo::DemoInfo>,
    hub: RwLock<Option<Arc<BatchHub>>>,
    /// Offset of the engine's clock from this process's clock, in ms (engine − local),
    /// so pongs and countdowns use the same time that decides windows.
    clock_offset: std::sync::atomic::AtomicI64,
    hub_cancel: RwLock<CancellationToken>,
}

impl App {
    pub fn new(
        alloc: Arc<dyn Allocator>,
        auth: Auth,
        limits: Arc<Limits>,
        ws: WsConfig,
        demo: Option<crate::demo::DemoInfo>,
    ) -> Arc<Self> {
        Arc::new(Self {
            alloc,
            auth,
            limits,
            metrics: Arc::new(Metrics::default()),
            ws,
            shutdown: CancellationToken::new(),
            demo,
            hub: RwLock::new(None),
            clock_offset: std::sync::atomic::AtomicI64::new(0),
            hub_cancel: RwLock::new(CancellationToken::new()),
        })
    }

    /// The batch this gateway serves now, if any.
    pub fn hub(&self) -> Option<Arc<BatchHub>> {
        self.hub.read().clone()
    }

    /// Serves `batch` from now on: starts its follower and deadline keeper. Connections
    /// to the previous batch are closed so clients reconnect to the new one.
    pub async fn serve_batch(self: &Arc<Self>, batch: BatchId) -> Result<(), AllocError> {
        if self.hub().is_some_and(|h| h.batch == batch) {
            return Ok(());
        }
        let cancel = self.shutdown.child_token();
        let hub = BatchHub::open(
            self.alloc.clone(),
            batch,
            self.metrics.clone(),
            cancel.clone(),
        )
        .await?;
        tokio::spawn(hub.clone().follow(cancel.clone()));
        tokio::spawn(crate::deadline::keep(
            self.clone(),
            hub.clone(),
            cancel.clone(),
        ));
        let old = std::mem::replace(&mut *self.hub_cancel.write(), cancel);
        old.cancel();
        *self.hub.write() = Some(hub);
        Ok(())
    }

    /// Server time: this process's clock corrected to the engine's.
    pub fn now(&self) -> Millis {
        Millis::now().plus_ms(self.clock_offset.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Measures the engine's clock (half the round trip as the one-way delay).
    pub async fn sync_clock(&self) -> Result<(), AllocError> {
        let t0 = Millis::now();
        let engine = self.alloc.now().await?;
        let t1 = Millis::now();
        let mid = (t0.0 + t1.0) / 2;
        self.clock_offset
            .store(engine.0 - mid, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Background upkeep: clock sync, limiter housekeeping, following the newest batch
    /// when another gateway or an operator loads one.
    pub async fn upkeep(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.sync_clock().await {
                tracing::warn!("engine clock sync failed: {e}");
            }
            self.limits.housekeeping();
            match self.alloc.batches().await {
                Ok(list) => {
                    if let Some(newest) = list.last() {
                        if let Err(e) = self.serve_batch(newest.clone()).await {
                            tracing::warn!("cannot serve batch {newest}: {e}");
                        }
                    }
                }
                Err(e) => tracing::warn!("listing batches failed: {e}"),
            }
        }
    }
}
