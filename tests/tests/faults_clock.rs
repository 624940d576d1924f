//! Fault: a gateway host whose clock is off by ten minutes, over the Redis engine, whose
//! scripts read Redis `TIME`. The engine's clock rules: a gateway that believes a
//! deadline has passed cannot close the session early, one that believes it is far off
//! still keeps it (it measures the engine's clock), and phones are given engine time.
//! (`gateway_clock.rs` holds the same rules over the embedded engine.)

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use xuanfang_allocator::Allocator;
use xuanfang_gateway::app::{App, WsConfig};
use xuanfang_gateway::limits::{LimitConfig, Limits};
use xuanfang_hub::protocol::{ClientMsg, Encoding, ServerMsg};
use xuanfang_hub::{Clock, Edit, How, ListKind, Millis, Outcome, Stage, UnitId};

/// This host's clock, off by a fixed amount.
struct Skewed(i64);

impl Clock for Skewed {
    fn now(&self) -> Millis {
        Millis::now().plus_ms(self.0)
    }
}

const TEN_MINUTES: i64 = 10 * 60_000;
/// Far less than the skew, far more than any scheduling delay.
const NEAR: i64 = 60_000;

async fn skewed_gateway(
    alloc: Arc<dyn Allocator>,
    skew: i64,
    batch: &xuanfang_hub::Batch,
) -> (Arc<App>, std::net::SocketAddr) {
    let app = App::with_clock(
        alloc,
        auth(),
        Limits::new(LimitConfig::default()),
        WsConfig::default(),
        None,
        Arc::new(Skewed(skew)),
    );
    app.serve_batch(batch.id.clone()).await.unwrap();
    // Until it first measures the engine's clock (when it starts serving), the gateway
    // believes its own: give its deadline keeper a moment on the wrong time.
    assert!((app.now().0 - Millis::now().0 - skew).abs() < NEAR);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(xuanfang_gateway::server::serve(app.clone(), listener));
    (app, addr)
}

async fn ok(c: &mut Client, msg: impl FnOnce(String) -> ClientMsg) {
    let r = c.request(msg).await;
    assert!(is_ok(&r), "{r:?}");
}

/// Waits until the gateway has measured the engine's clock.
async fn until_synced(app: &App) {
    let end = Instant::now() + Duration::from_secs(30);
    while (app.now().0 - Millis::now().0).abs() > NEAR {
        assert!(
            Instant::now() < end,
            "the gateway never measured the engine's clock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_ten_minutes_ahead_of_redis_time_changes_no_window() {
    let alloc = redis_engine(&namespace()).await;
    // S1 is open for another 5 minutes by Redis time; by the gateway's, it closed.
    let batch = small_batch("ahead", Duration::ZERO, Duration::from_secs(300));
    alloc.load_batch(batch.clone()).await.unwrap();
    sleep_until(batch.sessions[0].start).await;
    let (app, addr) = skewed_gateway(alloc.clone(), TEN_MINUTES, &batch).await;

    let mut f1 = connect(addr, Some(&family_token("F1")), Encoding::Json).await;
    ok(&mut f1, |req_id| ClientMsg::Declare {
        req_id,
        stage: Stage::Formal,
    })
    .await;
    ok(&mut f1, |req_id| ClientMsg::Edit {
        req_id,
        list: ListKind::Intentions,
        edit: Edit::Add,
        unit: UnitId::from("U05"),
    })
    .await;
    ok(&mut f1, |req_id| ClientMsg::Confirm {
        req_id,
        unit: UnitId::from("U05"),
    })
    .await;
    // F2 entered and stays idle: only the real deadline may decide it.
    let mut f2 = connect(addr, Some(&family_token("F2")), Encoding::Json).await;
    ok(&mut f2, |req_id| ClientMsg::Declare {
        req_id,
        stage: Stage::Formal,
    })
    .await;
    until_synced(&app).await;
    // Phones get engine time.
    f2.send(&ClientMsg::Ping { t0: 1.0 }).await;
    let pong = f2
        .until(Duration::from_secs(10), |m| match m {
            ServerMsg::Pong { server_time, .. } => Some(*server_time),
            _ => None,
        })
        .await
        .expect("pong");
    assert!((pong.0 - Millis::now().0).abs() < NEAR, "pong {pong:?}");

    let view = alloc.family(&batch.id, &"F2".into()).await.unwrap();
    assert!(view.outcome.is_none(), "decided early: {view:?}");
    let board = alloc.board(&batch.id).await.unwrap();
    assert!(!board.sessions[0].closed, "S1 closed early");
    assert_eq!(board.taken.len(), 1);
    app.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_ten_minutes_behind_redis_time_still_keeps_the_deadline() {
    // Redis `TIME` decides here, so the window is real time: F1 must declare and add
    // within it. A machine too slow for a 3 s window gets a fresh batch with a window
    // four times as long; slowness only makes the test longer, never fails it (a
    // refusal before the real deadline still fails at once).
    let mut window = Duration::from_secs(3);
    let (app, mut f1, deadline) = loop {
        let alloc = redis_engine(&namespace()).await;
        let batch = small_batch("behind", Duration::ZERO, window);
        let deadline = batch.sessions[0].deadline();
        alloc.load_batch(batch.clone()).await.unwrap();
        sleep_until(batch.sessions[0].start).await;
        let (app, addr) = skewed_gateway(alloc.clone(), -TEN_MINUTES, &batch).await;

        let mut f1 = connect(addr, Some(&family_token("F1")), Encoding::Json).await;
        let declared = f1
            .request(|req_id| ClientMsg::Declare {
                req_id,
                stage: Stage::Formal,
            })
            .await;
        let added = if is_ok(&declared) {
            f1.request(|req_id| ClientMsg::Edit {
                req_id,
                list: ListKind::Intentions,
                edit: Edit::Add,
                unit: UnitId::from("U03"),
            })
            .await
        } else {
            declared.clone()
        };
        if is_ok(&added) {
            break (app, f1, deadline);
        }
        let late = Millis::now() >= deadline && window < Duration::from_secs(60);
        assert!(late, "refused inside the window: {declared:?} / {added:?}");
        app.shutdown.cancel();
        window *= 4;
    };
    // By its own clock the deadline is ten minutes away; by the engine's it comes in
    // seconds, and the gateway keeps it.
    let outcome = f1
        .until(window + Duration::from_secs(30), |m| match m {
            ServerMsg::Family { family } => family.outcome.clone(),
            _ => None,
        })
        .await
        .expect("the deadline was kept by engine time");
    match outcome {
        Outcome::Selected {
            how: How::Automatic,
            at,
            ..
        } => assert!(at >= deadline, "decided at {at:?}, before {deadline:?}"),
        other => panic!("{other:?}"),
    }
    app.shutdown.cancel();
}
