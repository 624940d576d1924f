//! Fault: Redis (AOF, `appendfsync always`) is killed with SIGKILL and restarted in the
//! middle of a session served by two `xuanfang serve --redis` gateways. No acknowledged
//! answer is lost; both gateways reconnect by themselves; a request during the outage
//! gets a retryable error (`internal` with its req_id over the socket, 503 over HTTP);
//! the retry of that request with the same req_id, and of every answered confirm,
//! returns the original answer.

use crate::common;

use std::ffi::OsString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use xuanfang_hub::protocol::{ClientMsg, ServerMsg};
use xuanfang_hub::{ErrorCode, UnitId};
use xuanfang_tests::history::{is_retryable, History};

const BATCH: &str = "redis-restart";
const FAMILIES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_session_loses_no_acknowledged_answer() {
    let dir = tempfile::tempdir().unwrap();
    let redis_dir = dir.path().join("redis");
    std::fs::create_dir(&redis_dir).unwrap();
    let mut redis = Redis::start(&redis_dir);
    let engine: Vec<OsString> = vec!["--redis".into(), redis.url().into()];
    let g1 = Serve::start(&engine, dir.path()).await;
    let g2 = Serve::start(&engine, dir.path()).await;
    for (n, window) in WINDOWS.into_iter().enumerate() {
        // The burst needs a little more than the others' windows: the outage is in it.
        let window = window + 2;
        match burst(&mut redis, &g1, &g2, &format!("{BATCH}-{n}"), window).await {
            Ok(()) => return,
            Err(Late) => too_short(window),
        }
    }
}

/// One burst on a fresh batch with a `window`-second session, Redis killed and restarted
/// in its middle; [`Late`] if the machine was too slow for the window.
async fn burst(
    redis: &mut Redis,
    g1: &Serve,
    g2: &Serve,
    batch: &str,
    window: u32,
) -> Result<(), Late> {
    let start = server_time(&g1.base).await + 1_500;
    let deadline = start + i64::from(window) * 1_000;
    // One family more than the burst: the probe (F{FAMILIES+1}).
    upload(
        &g1.base,
        batch,
        2 * FAMILIES + 2,
        FAMILIES + 1,
        start,
        window,
    )
    .await;
    // The second gateway picks the batch up by itself (it lists batches every 5 s).
    until_served(&g2.base, batch).await;
    until_server_time(&g1.base, start).await;

    let history = Arc::new(History::new());
    let probe_family = format!("F{:02}", FAMILIES + 1);
    let probe_unit = format!("U{:02}", 2 * FAMILIES + 2);
    let mut probe = Player::new(&probe_family, &[g1.port]).in_batch(batch);
    probe.try_enter(&[&probe_unit], &history, deadline).await?;

    let mut tasks = Vec::new();
    for i in 1..=FAMILIES {
        let (history, batch) = (history.clone(), batch.to_owned());
        // Each family stays on its gateway: that gateway must come back by itself.
        let port = if i % 2 == 0 { g2.port } else { g1.port };
        tasks.push(tokio::spawn(async move {
            let (f, units) = plan(i, FAMILIES);
            let units: Vec<&str> = units.iter().map(String::as_str).collect();
            let mut p = Player::new(&f, &[port]).in_batch(&batch);
            let units = p.try_enter(&units, &history, deadline).await?;
            let sent = if i % 4 != 0 {
                p.try_confirm_first(&units, &history, deadline).await?
            } else {
                Vec::new()
            };
            Ok::<_, Late>((port, sent, p.trouble))
        }));
    }
    let end = Instant::now() + T;
    while history.acks().len() < FAMILIES {
        assert!(Instant::now() < end, "the burst never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    redis.kill9();

    // During the outage: a confirm over the socket is answered with a retryable error
    // naming its req_id (the socket stays open), and HTTP with 503.
    let probe_confirm = ClientMsg::Confirm {
        req_id: probe.req_id(),
        unit: UnitId::from(probe_unit.as_str()),
    };
    let during = probe.once(&probe_confirm, &history).await;
    assert!(
        matches!(
            during,
            Ok(ServerMsg::Error {
                code: ErrorCode::Internal,
                ..
            })
        ),
        "a confirm during the outage: {during:?}"
    );
    let (status, body) = get(
        format!("{}/api/me?batch={batch}", g2.base),
        Some(&token(&probe_family, xuanfang_gateway::auth::Role::Family)),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "internal", "{body}");
    assert!(is_retryable(ErrorCode::Internal));

    redis.restart();
    // The probe's retry with the same req_id is decided once Redis is back...
    let first = probe.answer(&probe_confirm, &history).await;
    let mut late = false;
    if is_late_refusal(&first) {
        probe.late(deadline, "confirm after the outage").await;
        late = true;
    } else {
        assert!(matches!(first, ServerMsg::Ok { .. }), "{first:?}");
    }
    // ...and answered the same again (the checker compares the two).
    probe.answer(&probe_confirm, &history).await;

    let mut sent = Vec::new();
    let mut troubled = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok((port, s, trouble)) => {
                troubled += usize::from(!trouble.is_empty());
                sent.extend(s.into_iter().map(|m| (port, m)));
            }
            Err(Late) => late = true,
        }
    }
    let log = until_closed(&g1.base, batch, window).await;

    // Every answered confirm, sent again with its req_id (to either gateway), gets
    // the answer it got the first time (the checker compares them).
    for (i, (port, m)) in sent.iter().enumerate() {
        let family = match m {
            ClientMsg::Confirm { req_id, .. } => req_id.split('-').next().unwrap().to_owned(),
            _ => unreachable!(),
        };
        let other = if *port == g1.port { g2.port } else { g1.port };
        let mut p = Player::new(&family, &[if i % 2 == 0 { *port } else { other }]).in_batch(batch);
        p.answer(m, &history).await;
    }
    // Whatever the timing, nothing acknowledged is lost.
    let summary = history.check(&log).unwrap_or_else(|v| panic!("{v}"));
    if late {
        return Err(Late);
    }
    assert!(troubled > 0, "some phone saw the outage");
    assert_eq!(summary.taken, FAMILIES + 1, "{summary:?}");
    assert_eq!(summary.automatic, FAMILIES / 4, "{summary:?}");
    assert_eq!(summary.sessions_closed, 1);
    // The log as each gateway reads it now is the same.
    assert_eq!(events(&g2.base, batch).await, log);
    Ok(())
}
