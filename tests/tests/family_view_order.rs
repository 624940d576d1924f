//! A family view pushed by the server never undoes a newer one: the session-start push
//! read before the family's own request, delivered after that request's `ok`, must not
//! reach the phone (issue #13).
//!
//! The race is made certain with a latch in front of the real engine: the push's read
//! of the family view completes in Redis, then waits, while the family acts; only then
//! is the older view let go.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use tokio::sync::{oneshot, Notify};
use xuanfang_allocator::{AllocError, Allocator, Answer, BoardState, CloseStep, FamilyRecord};
use xuanfang_hub::protocol::{Catalog, ClientMsg, Encoding, FamilyView, ServerMsg};
use xuanfang_hub::{Action, Batch, BatchId, Event, FamilyId, Session, SessionId, Stage};

/// Bounds a failure only.
const T: Duration = Duration::from_secs(30);

/// A one-shot latch on one family's next view read.
#[derive(Default)]
struct Latch {
    /// Armed: the next read of the family's view waits for this.
    hold: std::sync::Mutex<Option<oneshot::Receiver<()>>>,
    /// Rung when the held read has its view from the engine.
    read: Notify,
}

/// The real engine, with the family view reads of one family held by a [`Latch`].
struct Held {
    inner: Arc<dyn Allocator>,
    family: FamilyId,
    latch: Arc<Latch>,
}

#[async_trait]
impl Allocator for Held {
    async fn load_batch(&self, batch: Batch) -> Result<(), AllocError> {
        self.inner.load_batch(batch).await
    }
    async fn publish_supplementary(&self, b: &BatchId, s: Session) -> Result<(), AllocError> {
        self.inner.publish_supplementary(b, s).await
    }
    async fn act(
        &self,
        b: &BatchId,
        f: &FamilyId,
        req_id: &str,
        a: Action,
    ) -> Result<Answer, AllocError> {
        self.inner.act(b, f, req_id, a).await
    }
    async fn close_session_step(
        &self,
        b: &BatchId,
        s: &SessionId,
        max: usize,
    ) -> Result<CloseStep, AllocError> {
        self.inner.close_session_step(b, s, max).await
    }
    async fn batches(&self) -> Result<Vec<BatchId>, AllocError> {
        self.inner.batches().await
    }
    async fn catalog(&self, b: &BatchId) -> Result<Catalog, AllocError> {
        self.inner.catalog(b).await
    }
    async fn batch(&self, b: &BatchId) -> Result<Batch, AllocError> {
        self.inner.batch(b).await
    }
    async fn board(&self, b: &BatchId) -> Result<BoardState, AllocError> {
        self.inner.board(b).await
    }
    async fn family(&self, b: &BatchId, f: &FamilyId) -> Result<FamilyView, AllocError> {
        let view = self.inner.family(b, f).await;
        let hold = match *f == self.family {
            true => self.latch.hold.lock().unwrap().take(),
            false => None,
        };
        if let Some(release) = hold {
            self.latch.read.notify_one();
            let _ = release.await;
        }
        view
    }
    async fn results(&self, b: &BatchId) -> Result<Vec<FamilyRecord>, AllocError> {
        self.inner.results(b).await
    }
    async fn events(
        &self,
        b: &BatchId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, AllocError> {
        self.inner.events(b, after, limit).await
    }
    async fn wait_events(
        &self,
        b: &BatchId,
        after: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<Event>, AllocError> {
        self.inner.wait_events(b, after, limit, wait).await
    }
    async fn epoch(&self, b: &BatchId) -> Result<u64, AllocError> {
        self.inner.epoch(b).await
    }
    async fn now(&self) -> Result<xuanfang_hub::Millis, AllocError> {
        self.inner.now().await
    }
    async fn ping(&self) -> Result<(), AllocError> {
        self.inner.ping().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_start_push_read_before_an_ok_never_follows_it() {
    let clock = manual_clock();
    let engine = clocked_redis_engine(&namespace(), &clock).await;
    let batch = small_batch(
        "vieworder",
        Duration::from_secs(60),
        Duration::from_secs(60),
    );
    engine.load_batch(batch.clone()).await.unwrap();
    let latch = Arc::new(Latch::default());
    let alloc: Arc<dyn Allocator> = Arc::new(Held {
        inner: engine,
        family: FamilyId::from("F1"),
        latch: latch.clone(),
    });
    let gw = clocked_gateway(alloc, &clock, &batch.id).await;
    let mut c = connect(gw.addr, Some(&family_token("F1")), Encoding::Json).await;
    let greeted = c
        .until(T, |m| match m {
            ServerMsg::Family { family } => Some(family.clone()),
            _ => None,
        })
        .await
        .expect("the greeting's view");

    // Hold F1's next view read: the session-start push's.
    let (release, held) = oneshot::channel();
    *latch.hold.lock().unwrap() = Some(held);
    clock.set(batch.sessions[0].start);
    tokio::time::timeout(T, latch.read.notified())
        .await
        .expect("the deadline keeper reads F1's view at the session start");

    // The family acts after that read: its `ok` carries a newer view.
    let r = c
        .request(|req_id| ClientMsg::Declare {
            req_id,
            stage: Stage::Formal,
        })
        .await;
    let ServerMsg::Ok {
        family: Some(newer),
        ..
    } = r
    else {
        panic!("declare formal: {r:?}");
    };
    assert!(newer.formal_declared_at.is_some());
    assert!(greeted.older_than(&newer));

    // Let the older view go, then move to the deadline: the keeper auto-decides F1 only
    // after the session-start push is done, and that decision is pushed to F1 — the
    // marker that everything the push could send has been sent.
    release.send(()).unwrap();
    clock.set(batch.sessions[0].deadline());
    let mut views = Vec::new();
    let last = c
        .until(T, |m| match m {
            ServerMsg::Family { family } if family.outcome.is_some() => Some(family.clone()),
            ServerMsg::Family { family } => {
                views.push(family.clone());
                None
            }
            _ => None,
        })
        .await
        .expect("F1 is told its outcome at the deadline");
    for v in &views {
        assert!(
            !v.older_than(&newer) && v.formal_declared_at.is_some(),
            "a view older than the ok followed it: {v:?}"
        );
    }
    assert!(newer.older_than(&last), "the outcome is the newest view");
}
