//! Fault: `kill -9` of one of two `xuanfang serve --redis` gateways during a busy session.
//! Its phones reconnect to the other gateway and carry on (same req_ids); its hall
//! screens resume there from the (epoch, seq) they last saw with no gap in the board's
//! chain; every acknowledged answer is in the final log; the deadline, kept by the
//! survivor, is processed exactly once.

use crate::common;

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use xuanfang_hub::protocol::{BoardChange, ServerMsg};
use xuanfang_hub::{EventKind, UnitId};
use xuanfang_tests::history::History;

const BATCH: &str = "gateway-kill";
const FAMILIES: usize = 20;

/// A hall screen's view of the board: the chain position and the taken units.
#[derive(Debug, Default)]
struct Screen {
    epoch: u64,
    seq: u64,
    taken: HashMap<UnitId, String>,
    /// Chain breaks seen (a delta whose `prev` is not the last seq, another epoch).
    breaks: Vec<String>,
    resumed: bool,
    snapshots_on_resume: usize,
}

impl Screen {
    fn take(&mut self, m: ServerMsg) {
        match m {
            ServerMsg::Welcome { epoch, seq, .. } if !self.resumed => {
                self.epoch = epoch;
                self.seq = seq;
            }
            ServerMsg::Snapshot {
                epoch,
                seq,
                part,
                taken,
                ..
            } => {
                // A snapshot is whole, so it is never a gap; on resume it comes only
                // when the other gateway has not reached the client's position within
                // its wait (positions are the same on every gateway: the last public
                // event). It must be of the same epoch.
                if self.resumed && epoch != self.epoch {
                    self.breaks.push(format!(
                        "snapshot of epoch {epoch} after resuming from {}/{}",
                        self.epoch, self.seq
                    ));
                }
                if self.resumed && part == 0 {
                    self.snapshots_on_resume += 1;
                }
                if part == 0 {
                    self.taken.clear();
                }
                self.taken
                    .extend(taken.into_iter().map(|t| (t.unit, t.family_name)));
                self.epoch = epoch;
                self.seq = seq;
            }
            ServerMsg::Delta {
                epoch,
                prev,
                seq,
                changes,
            } => {
                if epoch != self.epoch || prev != self.seq {
                    self.breaks.push(format!(
                        "delta {epoch}/{prev}->{seq} after {}/{}",
                        self.epoch, self.seq
                    ));
                }
                for c in changes {
                    if let BoardChange::Taken(t) = c {
                        self.taken.insert(t.unit, t.family_name);
                    }
                }
                self.seq = seq;
            }
            _ => {}
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A hall screen on `port` that has its whole first snapshot (so it has a position
/// before the test goes on, however slowly the machine runs).
async fn screen_on(port: u16, batch: &str) -> (Screen, Ws) {
    let mut s = Screen::default();
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws?batch={batch}"))
            .await
            .unwrap();
    let end = Instant::now() + T;
    loop {
        let m = tokio::time::timeout_at(end.into(), ws.next())
            .await
            .expect("a snapshot");
        let t = match m {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            other => panic!("the screen's socket ended: {other:?}"),
        };
        let m: ServerMsg = serde_json::from_str(&t).unwrap();
        let whole = matches!(m, ServerMsg::Snapshot { part, parts, .. } if part + 1 == parts);
        s.take(m);
        if whole {
            return (s, ws);
        }
    }
}

/// Watches the board on the screen's first socket; when that socket dies, resumes on
/// `then` from the last (epoch, seq) and watches until the log's end `until` is reached.
async fn watch(
    (mut s, mut ws): (Screen, Ws),
    batch: String,
    then: u16,
    until: tokio::sync::watch::Receiver<u64>,
) -> Screen {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => s.take(serde_json::from_str(&t).unwrap()),
            Some(Ok(_)) => {}
            _ => break,
        }
    }
    s.resumed = true;
    let url = format!(
        "ws://127.0.0.1:{then}/ws?batch={batch}&epoch={}&seq={}",
        s.epoch, s.seq
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let target = *until.borrow();
        if target > 0 && s.seq >= target {
            return s;
        }
        assert!(Instant::now() < end, "the screen never caught up: {s:?}");
        match tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => s.take(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(other) => panic!("the resumed socket ended: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_one_gateway_moves_its_clients_to_the_other_with_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let redis_dir = dir.path().join("redis");
    std::fs::create_dir(&redis_dir).unwrap();
    let redis = Redis::start(&redis_dir);
    let engine: Vec<OsString> = vec!["--redis".into(), redis.url().into()];
    let mut g1 = Serve::start(&engine, dir.path()).await;
    let g2 = Serve::start(&engine, dir.path()).await;
    for (n, window) in WINDOWS.into_iter().enumerate() {
        if g1.child.is_none() {
            g1.restart().await;
        }
        match burst(&mut g1, &g2, &format!("{BATCH}-{n}"), window).await {
            Ok(()) => return,
            Err(Late) => too_short(window),
        }
    }
}

/// One burst on a fresh batch with a `window`-second session, `g1` killed in its middle;
/// [`Late`] if the machine was too slow for the window.
async fn burst(g1: &mut Serve, g2: &Serve, batch: &str, window: u32) -> Result<(), Late> {
    let start = server_time(&g1.base).await + 1_500;
    let deadline = start + i64::from(window) * 1_000;
    upload(&g1.base, batch, 2 * FAMILIES, FAMILIES, start, window).await;
    until_served(&g2.base, batch).await;

    let (log_end_tx, log_end) = tokio::sync::watch::channel(0u64);
    let mut screens = Vec::new();
    for _ in 0..3 {
        let on_g1 = screen_on(g1.port, batch).await;
        screens.push(tokio::spawn(watch(
            on_g1,
            batch.to_owned(),
            g2.port,
            log_end.clone(),
        )));
    }
    until_server_time(&g1.base, start).await;

    let history = Arc::new(History::new());
    let mut tasks = Vec::new();
    for i in 1..=FAMILIES {
        let (history, batch) = (history.clone(), batch.to_owned());
        // Odd families start on the gateway that dies and move to the other.
        let ports = if i % 2 == 0 {
            [g2.port, g1.port]
        } else {
            [g1.port, g2.port]
        };
        tasks.push(tokio::spawn(async move {
            let (f, units) = plan(i, FAMILIES);
            let units: Vec<&str> = units.iter().map(String::as_str).collect();
            let mut p = Player::new(&f, &ports).in_batch(&batch);
            let units = p.try_enter(&units, &history, deadline).await?;
            if i % 4 != 0 {
                p.try_confirm_first(&units, &history, deadline).await?;
            }
            Ok::<_, Late>(p.trouble)
        }));
    }
    let end = Instant::now() + T;
    while history.acks().len() < FAMILIES {
        assert!(Instant::now() < end, "the burst never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    g1.kill9();
    let mut moved = 0;
    let mut late = false;
    for t in tasks {
        match t.await.unwrap() {
            Ok(trouble) => moved += usize::from(!trouble.is_empty()),
            Err(Late) => late = true,
        }
    }
    let log = until_closed(&g2.base, batch, window).await;
    // Whatever the timing, nothing acknowledged is lost.
    let summary = history.check(&log).unwrap_or_else(|v| panic!("{v}"));
    if late {
        screens.iter().for_each(|s| s.abort());
        return Err(Late);
    }
    assert!(
        moved > 0,
        "some phone was on the killed gateway mid-request"
    );
    assert_eq!(summary.taken, FAMILIES, "{summary:?}");
    assert_eq!(summary.automatic, FAMILIES / 4, "{summary:?}");
    assert_eq!(summary.sessions_closed, 1);

    // The screens followed the whole chain across the kill and show what the log says.
    let last_public = log
        .iter()
        .filter(|e| e.event.is_public())
        .map(|e| e.seq)
        .max()
        .unwrap();
    log_end_tx.send(last_public).unwrap();
    let taken: HashMap<UnitId, ()> = log
        .iter()
        .filter_map(|e| match &e.event {
            EventKind::Selected { unit, .. } => Some((unit.clone(), ())),
            _ => None,
        })
        .collect();
    for s in screens {
        let s = s.await.unwrap();
        assert!(s.breaks.is_empty(), "{:?}", s.breaks);
        let mut shown: Vec<_> = s.taken.keys().cloned().collect();
        let mut want: Vec<_> = taken.keys().cloned().collect();
        shown.sort();
        want.sort();
        assert_eq!(shown, want);
    }
    Ok(())
}
