//! Engine call latency: an [`Allocator`] that forwards every call to the real engine and
//! records how long it took, by operation (`xuanfang_engine_seconds{operation}`).
//!
//! A decorator rather than timers at the call sites: every caller of `app.alloc` (the
//! socket, the HTTP handlers, deadlines, the follower) is covered, and a new call site
//! cannot forget it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use xuanfang_allocator::{AllocError, Allocator, Answer, BoardState, CloseStep, FamilyRecord};
use xuanfang_hub::protocol::{Catalog, FamilyView};
use xuanfang_hub::{Action, Batch, BatchId, Event, FamilyId, Session, SessionId};

use super::Metrics;

/// The engine, timed.
pub struct TimedEngine {
    inner: Arc<dyn Allocator>,
    metrics: Arc<Metrics>,
}

impl TimedEngine {
    pub fn new(inner: Arc<dyn Allocator>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(&self, operation: &'static str, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = call.await;
        self.metrics.engine_took(operation, started.elapsed());
        out
    }
}

#[async_trait]
impl Allocator for TimedEngine {
    async fn load_batch(&self, batch: Batch) -> Result<(), AllocError> {
        self.timed("load_batch", self.inner.load_batch(batch)).await
    }

    async fn publish_supplementary(
        &self,
        batch: &BatchId,
        session: Session,
    ) -> Result<(), AllocError> {
        self.timed(
            "publish_supplementary",
            self.inner.publish_supplementary(batch, session),
        )
        .await
    }

    async fn act(
        &self,
        batch: &BatchId,
        family: &FamilyId,
        req_id: &str,
        action: Action,
    ) -> Result<Answer, AllocError> {
        self.timed("act", self.inner.act(batch, family, req_id, action))
            .await
    }

    // `close_session` keeps the trait's default, so each chunk is timed as one step.
    async fn close_session_step(
        &self,
        batch: &BatchId,
        session: &SessionId,
        max: usize,
    ) -> Result<CloseStep, AllocError> {
        self.timed(
            "close_session_step",
            self.inner.close_session_step(batch, session, max),
        )
        .await
    }

    async fn batches(&self) -> Result<Vec<BatchId>, AllocError> {
        self.timed("batches", self.inner.batches()).await
    }

    async fn catalog(&self, batch: &BatchId) -> Result<Catalog, AllocError> {
        self.timed("catalog", self.inner.catalog(batch)).await
    }

    async fn batch(&self, batch: &BatchId) -> Result<Batch, AllocError> {
        self.timed("batch", self.inner.batch(batch)).await
    }

    async fn board(&self, batch: &BatchId) -> Result<BoardState, AllocError> {
        self.timed("board", self.inner.board(batch)).await
    }

    async fn family(&self, batch: &BatchId, family: &FamilyId) -> Result<FamilyView, AllocError> {
        self.timed("family", self.inner.family(batch, family)).await
    }

    async fn results(&self, batch: &BatchId) -> Result<Vec<FamilyRecord>, AllocError> {
        self.timed("results", self.inner.results(batch)).await
    }

    async fn events(
        &self,
        batch: &BatchId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, AllocError> {
        self.timed("events", self.inner.events(batch, after, limit))
            .await
    }

    // Not timed: a long poll that waits up to `wait` by design, so its duration says
    // how quiet the log was, not how fast the engine is.
    async fn wait_events(
        &self,
        batch: &BatchId,
        after: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<Event>, AllocError> {
        self.inner.wait_events(batch, after, limit, wait).await
    }

    async fn epoch(&self, batch: &BatchId) -> Result<u64, AllocError> {
        self.timed("epoch", self.inner.epoch(batch)).await
    }

    async fn now(&self) -> Result<xuanfang_hub::Millis, AllocError> {
        self.timed("now", self.inner.now()).await
    }

    async fn ping(&self) -> Result<(), AllocError> {
        self.timed("ping", self.inner.ping()).await
    }
}
