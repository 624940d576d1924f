//! The gateway on an injected clock: windows open and deadlines are kept when the test
//! moves time, not when the machine gets there — so nothing here sleeps on a margin.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use xuanfang_allocator::embedded::EmbeddedEngine;
use xuanfang_allocator::Allocator;
use xuanfang_hub::protocol::{ClientMsg, Encoding, ServerMsg};
use xuanfang_hub::selection::How;
use xuanfang_hub::{Clock, Edit, ListKind, ManualClock, Millis, Phase, Stage, UnitId};

/// Generous: the deadline keeper looks at the clock at least once a second.
const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_clock_opens_the_formal_window_and_keeps_the_deadline() {
    let t0 = Millis(1_900_000_000_000);
    let clock = Arc::new(ManualClock::new(t0));
    let alloc: Arc<dyn Allocator> = Arc::new(EmbeddedEngine::in_memory(clock.clone()));
    let batch = batch_at(t0, "clocked", Duration::from_secs(3600));
    let (start, deadline) = (batch.sessions[0].start, batch.sessions[0].deadline());
    alloc.load_batch(batch.clone()).await.unwrap();
    let (app, addr) = gateway_on_clock(alloc.clone(), clock.clone(), &batch).await;

    let mut f = connect(addr, Some(&family_token("F1")), Encoding::Json).await;
    preselect(&mut f, &["U03"]).await;

    // The test moves server time to the session start: the gateway tells the family.
    clock.set(start);
    let formal = f
        .until(T, |m| match m {
            ServerMsg::Family { family } if family.phase == Phase::Formal => Some(()),
            _ => None,
        })
        .await;
    assert!(
        formal.is_some(),
        "pushed the formal phase when the clock reached the start"
    );
    // Entering syncs the pre-selection; the family then stays idle.
    let r = f
        .request(|req_id| ClientMsg::Declare {
            req_id,
            stage: Stage::Formal,
        })
        .await;
    assert!(is_ok(&r), "{r:?}");

    // One millisecond before the deadline nothing is decided; at the deadline it is.
    clock.set(deadline.plus_ms(-1));
    assert!(alloc
        .family(&batch.id, &"F1".into())
        .await
        .unwrap()
        .outcome
        .is_none());
    clock.set(deadline);
    let outcome = f
        .until(T, |m| match m {
            ServerMsg::Family { family } => family.outcome.clone(),
            _ => None,
        })
        .await
        .expect("the deadline was kept on the moved clock");
    assert_eq!(outcome.unit(), Some(&UnitId::from("U03")));
    assert!(matches!(
        outcome,
        xuanfang_hub::Outcome::Selected {
            how: How::Automatic,
            at,
            ..
        } if at == deadline
    ));
    app.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_clock_is_ten_minutes_ahead_changes_no_window() {
    let t0 = Millis(1_900_000_000_000);
    let engine_clock = Arc::new(ManualClock::new(t0));
    // The gateway's host clock runs 10 minutes ahead of the engine's.
    let gateway_clock = Arc::new(ManualClock::new(t0.plus_ms(10 * 60_000)));
    let alloc: Arc<dyn Allocator> = Arc::new(EmbeddedEngine::in_memory(engine_clock.clone()));
    let batch = batch_at(t0, "skewed", Duration::from_secs(60));
    let (start, deadline) = (batch.sessions[0].start, batch.sessions[0].deadline());
    alloc.load_batch(batch.clone()).await.unwrap();
    let (app, addr) = gateway_on_clock(alloc.clone(), gateway_clock.clone(), &batch).await;

    // Engine time: inside S1's window. Gateway time: past its deadline.
    engine_clock.set(start.plus_ms(1_000));
    assert!(gateway_clock.now() > deadline);
    let mut f = connect(addr, Some(&family_token("F1")), Encoding::Json).await;
    for msg in [
        ClientMsg::Declare {
            req_id: "d".into(),
            stage: Stage::Formal,
        },
        ClientMsg::Edit {
            req_id: "e".into(),
            list: ListKind::Intentions,
            edit: Edit::Add,
            unit: UnitId::from("U05"),
        },
        ClientMsg::Confirm {
            req_id: "c".into(),
            unit: UnitId::from("U05"),
        },
    ] {
        let id = match &msg {
            ClientMsg::Declare { req_id, .. }
            | ClientMsg::Edit { req_id, .. }
            | ClientMsg::Confirm { req_id, .. } => req_id.clone(),
            _ => unreachable!(),
        };
        f.send(&msg).await;
        let ok = f
            .until(T, |m| match m {
                ServerMsg::Ok { req_id, .. } if *req_id == id => Some(true),
                ServerMsg::Error {
                    req_id: Some(r), ..
                } if *r == id => Some(false),
                _ => None,
            })
            .await;
        assert_eq!(
            ok,
            Some(true),
            "{msg:?}: the engine's clock decides, not the gateway's"
        );
    }
    let view = alloc.family(&batch.id, &"F1".into()).await.unwrap();
    assert!(matches!(
        view.outcome,
        Some(xuanfang_hub::Outcome::Selected {
            how: How::Confirmed,
            ..
        })
    ));
    // F2 has no outcome: the gateway's early deadline call was refused as too early.
    let f2 = alloc.family(&batch.id, &"F2".into()).await.unwrap();
    assert!(f2.outcome.is_none());
    // Countdowns and pongs use the engine's time once measured.
    app.sync_clock().await.unwrap();
    assert_eq!(app.now(), engine_clock.now());
    app.shutdown.cancel();
}
