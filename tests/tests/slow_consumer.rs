//! A slow consumer — a screen or phone that stops reading its socket — is let go and
//! holds nobody up: its sends block once its buffers are full (the gateway fixes each
//! socket's kernel send buffer, `[ws] send_buffer_bytes`; left to the kernel's
//! autotuning it took megabytes and was never let go), and after the send timeout it is
//! disconnected (`xuanfang_slow_disconnects`), while a watcher that reads follows every
//! change to the end.
//!
//! The board changes are made straight through the engine, thousands of confirms on a
//! manual clock; the only real time is the send timeout (1 s here), and the test waits
//! for the disconnect with a generous bound instead of timing it.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xuanfang_allocator::embedded::EmbeddedEngine;
use xuanfang_allocator::Allocator;
use xuanfang_gateway::app::{App, WsConfig};
use xuanfang_gateway::limits::{LimitConfig, Limits};
use xuanfang_hub::protocol::{BoardChange, Encoding, ServerMsg};
use xuanfang_hub::{Family, FamilyId, Layout, SessionId, Unit, UnitId};

/// Families (and units): enough board changes to fill a stalled socket's buffers.
const N: u32 = 4000;

/// A raw WebSocket upgrade with a small receive buffer, then never read again.
async fn stalled(addr: std::net::SocketAddr, batch: &str) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    let req = format!(
        "GET /ws?batch={batch} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xuanfang.v1.msgpack\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut b = [0u8; 256];
        let n = s.read(&mut b).await.unwrap();
        assert!(n > 0, "closed during the upgrade");
        head.extend_from_slice(&b[..n]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_stops_reading_is_let_go_and_the_others_get_every_change() {
    let clock = manual_clock();
    let mut batch = small_batch("slow", Duration::from_secs(60), Duration::from_secs(600));
    let layout = Layout::from("一房一厅");
    batch.units = (1..=N)
        .map(|i| Unit {
            id: UnitId(format!("U{i:05}")),
            building: format!("{}栋", i / 100 + 1),
            number: format!("{:04}", i % 100 + 101),
            floor: (i % 30 + 1) as i32,
            layout: layout.clone(),
            area: 45.5,
            orientation: "南".into(),
            rent: 1200.0,
        })
        .collect();
    batch.families = (1..=N)
        .map(|i| Family {
            id: FamilyId(format!("F{i}")),
            name: format!("张*{i}"),
            rank: i,
            session: SessionId::from("S1"),
            eligible_layouts: vec![layout.clone()],
        })
        .collect();
    batch.sessions.truncate(1);
    batch.sessions[0].families = batch.families.iter().map(|f| f.id.clone()).collect();
    let engine: Arc<dyn Allocator> = Arc::new(EmbeddedEngine::in_memory(clock.clone()));
    engine.load_batch(batch.clone()).await.unwrap();
    let app = App::with_clock(
        engine.clone(),
        auth(),
        Limits::new(LimitConfig::default()),
        WsConfig {
            send_timeout: Duration::from_secs(1),
            send_buffer: 32 * 1024,
            ..WsConfig::default()
        },
        None,
        clock.clone(),
    );
    let addr = serve_on_free_port(&app, &batch.id).await;

    let mut stuck = stalled(addr, "slow").await;
    let mut reader = connect(addr, None, Encoding::MsgPack).await;
    // The reader reads all along (as a phone does), in its own task; it is told the
    // last seq once the confirms are made.
    let (last_tx, mut last_rx) = tokio::sync::watch::channel(u64::MAX);
    let follow = tokio::spawn(async move {
        let (epoch, mut seq) = match reader.next(Duration::from_secs(30)).await {
            Some(ServerMsg::Welcome { epoch, seq, .. }) => (epoch, seq),
            m => panic!("welcome: {m:?}"),
        };
        let (mut taken, mut deltas) = (0usize, 0usize);
        while seq < *last_rx.borrow_and_update() {
            let next = tokio::select! {
                m = reader.next(Duration::from_secs(60)) => m,
                // Told the last seq while waiting: look again.
                _ = last_rx.changed() => continue,
            };
            match next {
                Some(ServerMsg::Delta {
                    epoch: e,
                    prev,
                    seq: s,
                    changes,
                }) => {
                    assert_eq!((e, prev), (epoch, seq), "a delta follows the last one");
                    deltas += 1;
                    taken += changes
                        .iter()
                        .filter(|c| matches!(c, BoardChange::Taken(_)))
                        .count();
                    seq = s;
                }
                // The board it starts from (an empty one: nothing was taken yet).
                Some(ServerMsg::Snapshot { seq: s, .. }) if deltas == 0 => seq = s,
                Some(ServerMsg::Snapshot { .. }) => panic!("a reading watcher never lags here"),
                Some(_) => {}
                None => panic!("the reader was cut off at seq {seq}"),
            }
        }
        taken
    });

    for i in 1..=N {
        preselect_direct(
            &*engine,
            &batch.id,
            &format!("F{i}"),
            &[&format!("U{i:05}")],
        )
        .await;
    }
    clock.set(batch.sessions[0].start);
    for i in 1..=N {
        confirm_direct(&*engine, &batch.id, &format!("F{i}"), &format!("U{i:05}")).await;
    }
    last_tx.send_replace(engine.board(&batch.id).await.unwrap().board_seq);
    // The reader followed every change to the last confirm, with no gap.
    assert_eq!(follow.await.unwrap(), N as usize);

    // The stalled one was let go: counted, and its socket ends once it is read again.
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while app.metrics.slow_disconnects.get() == 0 {
        assert!(
            std::time::Instant::now() < end,
            "a socket that never reads was still held after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut drained = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(60), stuck.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => drained += n,
            Err(_) => panic!("the stalled socket is still open after {drained} bytes"),
        }
    }
    assert!(
        drained < 4 * 1024 * 1024,
        "what the gateway kept for it is bounded by the socket's buffers: {drained} B"
    );
    app.shutdown.cancel();
}
