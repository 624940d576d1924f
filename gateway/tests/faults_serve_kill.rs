//! Fault: `kill -9` of `xuanfang serve --data-dir` in the middle of a burst of confirms.
//! The restarted process replays its journal to exactly what was acknowledged: every
//! answer a family got is in the final log, no unit twice, no family twice, and the
//! session's deadline (after the restart) is kept exactly once.

use crate::common;

use std::ffi::OsString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use xuanfang_hub::EventKind;
use xuanfang_tests::history::History;

const BATCH: &str = "kill9-burst";
const FAMILIES: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_serve_mid_burst_loses_no_acknowledged_answer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let engine: Vec<OsString> = vec!["--data-dir".into(), data.clone().into()];
    let mut serve = Serve::start(&engine, dir.path()).await;
    let mut missed = 0;
    let mut n = 0;
    for window in WINDOWS {
        loop {
            n += 1;
            match burst(&mut serve, &format!("{BATCH}-{n}"), window).await {
                Ok(Cut::Mid) => return,
                // Timing, not a fault of the gateway: the same window again, a few times.
                Ok(Cut::Missed) if missed < 5 => missed += 1,
                Ok(Cut::Missed) => panic!("the kill never came in the middle of a burst"),
                Err(Late) => {
                    too_short(window);
                    break;
                }
            }
        }
    }
}

/// Where the kill fell.
enum Cut {
    /// In the middle of the burst: some phone's request was cut, answers came after.
    Mid,
    /// Between the phones' requests or after them: nothing was cut, nothing proven.
    Missed,
}

/// One burst on a fresh batch with a `window`-second session, the kill in its middle;
/// [`Late`] if the machine was too slow for the window.
async fn burst(serve: &mut Serve, batch: &str, window: u32) -> Result<Cut, Late> {
    let start = server_time(&serve.base).await + 1_500;
    let deadline = start + i64::from(window) * 1_000;
    upload(&serve.base, batch, 2 * FAMILIES, FAMILIES, start, window).await;
    until_server_time(&serve.base, start).await;

    let history = Arc::new(History::new());
    let mut tasks = Vec::new();
    for i in 1..=FAMILIES {
        let (history, port, batch) = (history.clone(), serve.port, batch.to_owned());
        tasks.push(tokio::spawn(async move {
            let (f, units) = plan(i, FAMILIES);
            let units: Vec<&str> = units.iter().map(String::as_str).collect();
            let mut p = Player::new(&f, &[port]).in_batch(&batch);
            let units = p.try_enter(&units, &history, deadline).await?;
            if i % 4 != 0 {
                p.try_confirm_first(&units, &history, deadline).await?;
            }
            Ok::<_, Late>(p.trouble)
        }));
    }
    // Mid-burst: some answers given, not all.
    let end = Instant::now() + T;
    while history.acks().len() < FAMILIES {
        assert!(Instant::now() < end, "the burst never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed_at = server_time(&serve.base).await;
    serve.kill9();
    let at_kill = history.acks().len();
    serve.restart().await;

    let mut saw_trouble = 0;
    let mut late = false;
    for t in tasks {
        match t.await.unwrap() {
            Ok(trouble) => saw_trouble += usize::from(!trouble.is_empty()),
            Err(Late) => late = true,
        }
    }
    let log = until_closed(&serve.base, batch, window).await;
    // Whatever the timing, nothing acknowledged is lost.
    let summary = history.check(&log).unwrap_or_else(|v| panic!("{v}"));
    if late || killed_at >= deadline {
        return Err(Late);
    }
    // The kill must have cut the burst for the run to prove anything: on a machine so
    // busy that every phone was between requests, or done, run another batch.
    if at_kill >= summary.acks || saw_trouble == 0 {
        eprintln!(
            "the kill missed the burst ({at_kill} of {} answers before it, {saw_trouble} \
             phones saw it): again",
            summary.acks
        );
        return Ok(Cut::Missed);
    }
    // Every family has its unit (the second intentions are all distinct), the idle ones
    // by the deadline, which was kept once.
    assert_eq!(summary.taken, FAMILIES, "{summary:?}");
    assert_eq!(summary.automatic, FAMILIES / 4, "{summary:?}");
    assert_eq!(summary.sessions_closed, 1);
    let closes: Vec<_> = log
        .iter()
        .filter(|e| matches!(e.event, EventKind::SessionClosed { .. }))
        .collect();
    assert_eq!(closes.len(), 1);
    assert!(
        closes[0].at.0 >= killed_at,
        "the restarted process kept the deadline: {:?}",
        closes[0]
    );

    // A second restart replays the same log.
    serve.kill9();
    serve.restart().await;
    assert_eq!(events(&serve.base, batch).await, log);
    Ok(Cut::Mid)
}
