//! One board, one position: `GET /api/board` answers the chain position the WebSocket
//! snapshot carries, also after private events (cart edits) moved the engine's log on;
//! and every gateway on one log is at the same position for the same board, so a
//! screen that moves between gateways resumes on deltas.

use crate::common;

use std::time::Duration;

use common::*;
use std::sync::Arc;
use xuanfang_hub::protocol::{BoardChange, Encoding, ServerMsg};

use xuanfang_allocator::redis_engine::{RedisEngine, RedisOptions};
use xuanfang_allocator::testing::RedisServer;
use xuanfang_allocator::Allocator;
use xuanfang_hub::{Action, BatchId, FamilyId, ManualClock, Stage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_board_and_the_socket_snapshot_share_one_seq_after_private_events() {
    let alloc = redis_engine(&namespace()).await;
    let batch = small_batch(
        "position",
        Duration::from_secs(600),
        Duration::from_secs(60),
    );
    alloc.load_batch(batch.clone()).await.unwrap();
    let gw = start_gateway(alloc.clone(), &batch.id).await;
    // Private events only: the engine's log grows, the public board does not change.
    preselect_direct(alloc.as_ref(), &batch.id, "F1", &["U01", "U02"]).await;
    preselect_direct(alloc.as_ref(), &batch.id, "F2", &["U03"]).await;
    let engine_seq = alloc.board(&batch.id).await.unwrap().seq;
    let board: serde_json::Value = reqwest::get(format!("http://{}/api/board", gw.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut screen = connect(gw.addr, None, Encoding::Json).await;
    let snapshot_seq = screen
        .until(Duration::from_secs(10), |m| match m {
            ServerMsg::Snapshot { seq, .. } => Some(*seq),
            _ => None,
        })
        .await
        .expect("snapshot");
    assert_eq!(board["seq"].as_u64(), Some(snapshot_seq), "{board}");
    assert!(
        engine_seq > snapshot_seq,
        "the private events are in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_is_served_with_an_etag_that_changes_when_a_session_does() {
    let clock = manual_clock();
    let alloc = clocked_redis_engine(&namespace(), &clock).await;
    let batch = small_batch(
        "etag",
        Duration::from_millis(300),
        Duration::from_millis(700),
    );
    alloc.load_batch(batch.clone()).await.unwrap();
    let gw = clocked_gateway(alloc.clone(), &clock, &batch.id).await;
    let url = format!("http://{}/api/catalog", gw.addr);
    let http = reqwest::Client::new();
    let first = http.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["units"].as_array().unwrap().len(), 10);
    // The same catalog again: 304, no body.
    let again = http
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());
    // Once S1 closes the catalog changes, and so does its tag (waited for generously).
    clock.set(batch.sessions[0].deadline());
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = http
            .get(&url)
            .header("If-None-Match", &etag)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["sessions"][0]["closed"], true, "{body}");
            break;
        }
        assert!(tokio::time::Instant::now() < end, "S1 never closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Redis engine in `ns` on the shared test server whose scripts use `clock`.
async fn engine_on_clock(ns: &str, clock: &Arc<ManualClock>) -> Arc<dyn Allocator> {
    Arc::new(
        RedisEngine::connect(
            RedisServer::shared().client(),
            RedisOptions {
                namespace: ns.to_owned(),
                clock: Some(clock.clone()),
                ..RedisOptions::default()
            },
        )
        .await
        .expect("redis engine"),
    )
}

async fn http_seq(gw: &Gateway) -> u64 {
    let board: serde_json::Value = reqwest::get(format!("http://{}/api/board", gw.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    board["seq"].as_u64().unwrap()
}

/// Waits (generously) until a gateway's board is at `seq`.
async fn until_position(gw: &Gateway, seq: u64) {
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    while http_seq(gw).await != seq {
        assert!(tokio::time::Instant::now() < end, "never reached {seq}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A private event: the family declares for the formal window.
async fn declare(alloc: &dyn Allocator, batch: &BatchId, f: &str) {
    let r = alloc
        .act(
            batch,
            &FamilyId::from(f),
            "declare-formal",
            Action::Declare {
                stage: Stage::Formal,
            },
        )
        .await
        .unwrap();
    assert!(r.is_ok(), "{r:?}");
}

/// The first board message of a screen that resumes from (epoch, seq) on `gw`.
async fn resume_on(gw: &Gateway, epoch: u64, seq: u64) -> ServerMsg {
    let mut screen = connect_path(
        &format!("{}/ws?epoch={epoch}&seq={seq}", gw.addr),
        Encoding::Json,
    )
    .await;
    screen
        .until(Duration::from_secs(30), |m| {
            matches!(m, ServerMsg::Snapshot { .. } | ServerMsg::Delta { .. }).then(|| m.clone())
        })
        .await
        .expect("a board message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screen_that_moves_to_another_gateway_resumes_on_deltas_after_private_events() {
    let ns = namespace();
    // One engine clock for both gateways' engines, moved by the test: the carts are
    // filled before S1 starts whatever the machine's speed.
    let batch = small_batch("moves", Duration::from_secs(60), Duration::from_secs(600));
    let clock = Arc::new(ManualClock::new(batch.preselect_start.plus_ms(1_000)));
    let alloc_a = engine_on_clock(&ns, &clock).await;
    alloc_a.load_batch(batch.clone()).await.unwrap();
    let epoch = alloc_a.board(&batch.id).await.unwrap().epoch;
    // Carts first (private events): the two families will confirm these units.
    preselect_direct(alloc_a.as_ref(), &batch.id, "F1", &["U01"]).await;
    preselect_direct(alloc_a.as_ref(), &batch.id, "F4", &["U02"]).await;
    let a = start_gateway(alloc_a.clone(), &batch.id).await;
    assert_eq!(http_seq(&a).await, 1, "the board is batch_loaded's");
    clock.set(batch.sessions[0].start.plus_ms(1_000));

    // A public event, then private ones, while gateway A follows.
    confirm_direct(alloc_a.as_ref(), &batch.id, "F1", "U01").await;
    let p1 = alloc_a.board(&batch.id).await.unwrap().seq;
    declare(alloc_a.as_ref(), &batch.id, "F2").await;
    declare(alloc_a.as_ref(), &batch.id, "F3").await;
    let logged = alloc_a.board(&batch.id).await.unwrap().seq;
    assert!(logged > p1, "private events after the confirm");
    until_position(&a, p1).await;

    // Gateway B, its own engine over the same Redis, starts after the private events:
    // its board is at the confirm too, not where the log ends.
    let alloc_b = engine_on_clock(&ns, &clock).await;
    let b = start_gateway(alloc_b.clone(), &batch.id).await;
    assert_eq!(http_seq(&b).await, p1);
    let mut on_b = connect(b.addr, None, Encoding::Json).await;
    let snap = on_b
        .until(Duration::from_secs(10), |m| match m {
            ServerMsg::Snapshot { seq, .. } => Some(*seq),
            _ => None,
        })
        .await;
    assert_eq!(snap, Some(p1));
    drop(on_b);

    // While the screen is away: a confirm with private events right behind it, so a
    // follower's read may well end past it.
    confirm_direct(alloc_b.as_ref(), &batch.id, "F4", "U02").await;
    let p2 = alloc_b.board(&batch.id).await.unwrap().seq;
    preselect_direct(alloc_b.as_ref(), &batch.id, "F5", &["U05"]).await;
    until_position(&a, p2).await;
    until_position(&b, p2).await;

    // The screen that watched B resumes on A, and one that watched A resumes on B: the
    // missed confirm as one delta from where each was, no snapshot, no gap.
    for gw in [&a, &b] {
        match resume_on(gw, epoch, p1).await {
            ServerMsg::Delta {
                prev, seq, changes, ..
            } => {
                assert_eq!((prev, seq), (p1, p2));
                assert!(
                    matches!(&changes[..], [BoardChange::Taken(t)] if t.unit.0 == "U02"),
                    "{changes:?}"
                );
            }
            other => panic!("expected a delta from {p1}, got {other:?}"),
        }
    }
}
