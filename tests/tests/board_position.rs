//! One board, one position: `GET /api/board` answers the chain position the WebSocket
//! snapshot carries, also after private events (cart edits) moved the engine's log on.

use crate::common;

use std::time::Duration;

use common::*;
use xuanfang_hub::protocol::{Encoding, ServerMsg};

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
    let alloc = redis_engine(&namespace()).await;
    let batch = small_batch(
        "etag",
        Duration::from_millis(300),
        Duration::from_millis(700),
    );
    alloc.load_batch(batch.clone()).await.unwrap();
    let gw = start_gateway(alloc.clone(), &batch.id).await;
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
