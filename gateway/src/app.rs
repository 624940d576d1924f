//! Shared state of one gateway process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;
use xuanfang_allocator::{AllocError, Allocator};
use xuanfang_hub::{BatchId, Clock, Millis, SystemClock};

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
    /// The kernel send buffer of each accepted connection, bytes; 0 leaves the kernel's
    /// autotuning (up to `tcp_wmem`'s max, 4 MiB by default, per socket). Fixed, it bounds
    /// what a client that stopped reading pins in kernel memory, and makes its sends block
    /// (so `send_timeout` lets it go) after that much instead of after megabytes.
    pub send_buffer: usize,
    /// How long before a family socket's token expires it is sent `token_expiring`
    /// (its cue to `refresh`); a token with less left is warned at once.
    pub token_refresh_lead: Duration,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            read_buffer: 512,
            write_buffer: 0,
            max_message: 64 * 1024,
            send_timeout: Duration::from_secs(10),
            send_buffer: 256 * 1024,
            token_refresh_lead: Duration::from_secs(120),
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
    /// Every upgraded WebSocket, from its handler on: shutdown waits for them to send
    /// their 1001 close frames (hyper's graceful shutdown no longer sees upgraded sockets).
    pub sockets: tokio_util::task::TaskTracker,
    /// Demo mode: exposes `/api/demo/logins`.
    pub demo: Option<crate::demo::DemoInfo>,
    /// Where the pages get a new token and send a family to log in again
    /// (`GET /api/auth/config`).
    token_refresh: std::sync::OnceLock<(crate::token_refresh::RefreshConfig, HeaderValue)>,
    /// Alarms at token times for every open socket (on the token clock, `auth`'s).
    pub expiry: Arc<crate::auth::expiry::ExpiryTimers>,
    /// Every loaded batch, each with its board hub (see [`App::hub`]).
    batches: RwLock<Served>,
    /// This app, for the tasks it spawns.
    this: std::sync::Weak<App>,
    /// One opening at a time, so two requests for a new batch build one hub.
    opening: tokio::sync::Mutex<()>,
    /// Offset of the engine's clock from this process's clock, in ms (engine − local),
    /// so pongs and countdowns use the same time that decides windows.
    clock_offset: std::sync::atomic::AtomicI64,
    /// This process's clock: the system's, or a test's (time is driven, not slept).
    clock: Arc<dyn Clock>,
    /// 网上签约: the engine's signing store, blobs and providers; unset when the engine
    /// has no data key (signing routes answer 503).
    signing: std::sync::OnceLock<crate::signing_api::Signing>,
}

/// The batches this gateway serves. Every loaded batch has a hub (its statics and board,
/// cheap); only an active hub follows the event stream and keeps deadlines: a batch whose
/// selection is still running, or one somebody connected to or asked about.
#[derive(Default)]
struct Served {
    hubs: HashMap<BatchId, Served1>,
    /// Load order, oldest first: the last one is the live batch.
    order: Vec<BatchId>,
}

struct Served1 {
    hub: Arc<BatchHub>,
    active: AtomicBool,
}

impl App {
    pub fn new(
        alloc: Arc<dyn Allocator>,
        auth: Auth,
        limits: Arc<Limits>,
        ws: WsConfig,
        demo: Option<crate::demo::DemoInfo>,
    ) -> Arc<Self> {
        Self::with_clock(alloc, auth, limits, ws, demo, Arc::new(SystemClock))
    }

    /// Like [`App::new`] on another clock (tests share a `ManualClock` with the engine).
    pub fn with_clock(
        alloc: Arc<dyn Allocator>,
        auth: Auth,
        limits: Arc<Limits>,
        ws: WsConfig,
        demo: Option<crate::demo::DemoInfo>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        let metrics = Arc::new(Metrics::default());
        // Every engine call is timed by operation (`xuanfang_engine_seconds`).
        let alloc: Arc<dyn Allocator> =
            Arc::new(crate::metrics::TimedEngine::new(alloc, metrics.clone()));
        let shutdown = CancellationToken::new();
        let expiry = crate::auth::expiry::ExpiryTimers::new(auth.clock(), shutdown.child_token());
        Arc::new_cyclic(|this| Self {
            clock,
            this: this.clone(),
            alloc,
            auth,
            limits,
            metrics,
            ws,
            shutdown,
            sockets: tokio_util::task::TaskTracker::new(),
            demo,
            token_refresh: std::sync::OnceLock::new(),
            expiry,
            batches: RwLock::new(Served::default()),
            opening: tokio::sync::Mutex::new(()),
            clock_offset: std::sync::atomic::AtomicI64::new(0),
            signing: std::sync::OnceLock::new(),
        })
    }

    /// Turns signing on (once, before serving); `false` when it was already on.
    pub fn enable_signing(&self, signing: crate::signing_api::Signing) -> bool {
        self.signing.set(signing).is_ok()
    }

    /// Sets the refresh and login addresses (once, before serving); `false` when they
    /// were already set.
    pub fn set_token_refresh(&self, cfg: crate::token_refresh::RefreshConfig) -> bool {
        let csp = cfg.csp();
        self.token_refresh.set((cfg, csp)).is_ok()
    }

    /// The refresh and login addresses (none set: the defaults).
    pub fn token_refresh(&self) -> &crate::token_refresh::RefreshConfig {
        &self.token_refresh_set().0
    }

    /// The pages' Content-Security-Policy (with a cross-origin refresh endpoint in it).
    pub fn csp(&self) -> &HeaderValue {
        &self.token_refresh_set().1
    }

    fn token_refresh_set(&self) -> &(crate::token_refresh::RefreshConfig, HeaderValue) {
        self.token_refresh.get_or_init(|| {
            let cfg = crate::token_refresh::RefreshConfig::default();
            let csp = cfg.csp();
            (cfg, csp)
        })
    }

    /// Signing, when enabled.
    pub fn signing(&self) -> Option<&crate::signing_api::Signing> {
        self.signing.get()
    }

    /// The live batch: the newest loaded. Hall screens, the console and anonymous
    /// requests that name no batch get this one.
    pub fn live(&self) -> Option<Arc<BatchHub>> {
        let served = self.batches.read();
        let id = served.order.last()?;
        let s = served.hubs.get(id)?;
        self.activate(s);
        Some(s.hub.clone())
    }

    /// The hub of `batch`, opened (and activated) on first use. `unknown_batch` when the
    /// allocator has no such batch.
    pub async fn hub(self: &Arc<Self>, batch: &BatchId) -> Result<Arc<BatchHub>, AllocError> {
        if let Some(h) = self.served(batch) {
            return Ok(h);
        }
        self.open(batch, true).await
    }

    /// Serves `batch` actively from now on (a batch just loaded, or named at start-up).
    /// Other batches keep being served: their sockets stay open.
    pub async fn serve_batch(self: &Arc<Self>, batch: BatchId) -> Result<(), AllocError> {
        self.hub(&batch).await.map(|_| ())
    }

    /// Every served batch, oldest first.
    pub fn hubs(&self) -> Vec<Arc<BatchHub>> {
        let served = self.batches.read();
        (served.order.iter())
            .filter_map(|id| served.hubs.get(id).map(|s| s.hub.clone()))
            .collect()
    }

    /// The batches `family` belongs to, newest first (a person may be a family in several
    /// batches; the token's `sub` is the family id in each).
    pub fn batches_of(&self, family: &xuanfang_hub::FamilyId) -> Vec<Arc<BatchHub>> {
        let mut v: Vec<_> = self
            .hubs()
            .into_iter()
            .filter(|h| h.has_family(family))
            .collect();
        v.reverse();
        v
    }

    /// The hub of a served batch, activated.
    fn served(&self, batch: &BatchId) -> Option<Arc<BatchHub>> {
        let served = self.batches.read();
        let s = served.hubs.get(batch)?;
        self.activate(s);
        Some(s.hub.clone())
    }

    async fn open(
        self: &Arc<Self>,
        batch: &BatchId,
        active: bool,
    ) -> Result<Arc<BatchHub>, AllocError> {
        let _one = self.opening.lock().await;
        if let Some(h) = self.served(batch) {
            return Ok(h);
        }
        let hub = BatchHub::open(
            self.alloc.clone(),
            batch.clone(),
            self.metrics.clone(),
            self.shutdown.child_token(),
        )
        .await?;
        let s = Served1 {
            hub: hub.clone(),
            active: AtomicBool::new(false),
        };
        if active || !hub.selection_finished() {
            self.activate(&s);
        }
        let mut served = self.batches.write();
        served.hubs.insert(batch.clone(), s);
        if !served.order.contains(batch) {
            served.order.push(batch.clone());
        }
        Ok(hub)
    }

    /// Starts a hub's follower and deadline keeper, once.
    fn activate(&self, s: &Served1) {
        if s.active.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(me) = self.me() else { return };
        let hub = s.hub.clone();
        tracing::info!(batch = %hub.batch, "following batch");
        tokio::spawn(hub.clone().follow(hub.retired.clone()));
        tokio::spawn(crate::deadline::keep(me, hub.clone(), hub.retired.clone()));
    }

    /// Opens hubs for batches loaded since the last look (by any gateway), in the
    /// allocator's load order, and wakes idle hubs whose log moved on (a supplementary
    /// session published elsewhere) so their deadlines are kept here too.
    pub async fn refresh_batches(self: &Arc<Self>) -> Result<(), AllocError> {
        let list = self.alloc.batches().await?;
        for id in &list {
            let idle = {
                let served = self.batches.read();
                match served.hubs.get(id) {
                    None => None,
                    Some(s) if s.active.load(Ordering::Acquire) => continue,
                    Some(s) => Some(s.hub.clone()),
                }
            };
            match idle {
                None => {
                    if let Err(e) = self.open(id, false).await {
                        tracing::warn!(batch = %id, "cannot serve batch: {e}");
                    }
                }
                Some(hub) => {
                    if self.alloc.board(id).await.is_ok_and(|b| b.seq != hub.seq()) {
                        self.served(id);
                    }
                }
            }
        }
        // The allocator's order is the load order; keep ours the same.
        let mut served = self.batches.write();
        let mut order: Vec<BatchId> = list
            .into_iter()
            .filter(|b| served.hubs.contains_key(b))
            .collect();
        for b in &served.order {
            if !order.contains(b) {
                order.push(b.clone());
            }
        }
        served.order = order;
        Ok(())
    }

    fn me(&self) -> Option<Arc<Self>> {
        self.this.upgrade()
    }

    /// Server time: this process's clock corrected to the engine's.
    pub fn now(&self) -> Millis {
        (self.clock.now()).plus_ms(self.clock_offset.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Measures the engine's clock (half the round trip as the one-way delay).
    pub async fn sync_clock(&self) -> Result<(), AllocError> {
        let t0 = self.clock.now();
        let engine = self.alloc.now().await?;
        let t1 = self.clock.now();
        let mid = (t0.0 + t1.0) / 2;
        self.clock_offset
            .store(engine.0 - mid, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Background upkeep: clock sync, limiter housekeeping, serving the batches another
    /// gateway loaded.
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
            if let Err(e) = self.refresh_batches().await {
                tracing::warn!("listing batches failed: {e}");
            }
        }
    }
}
