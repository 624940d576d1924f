//! The gateway over real sockets and a real Redis: the selection flow, races,
//! deadlines, several gateways, resume, auth and bad input.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio_tungstenite::tungstenite::Message;
use xuanfang_allocator::embedded::EmbeddedEngine;
use xuanfang_allocator::Allocator;
use xuanfang_hub::protocol::{BoardChange, ClientMsg, Encoding, ServerMsg};
use xuanfang_hub::selection::{NoUnitReason, Outcome};
use xuanfang_hub::{Edit, ErrorCode, FamilyId, How, ListKind, Stage, UnitId};

/// Bounds a failure only (the deadline keeper looks at the clock about once a second).
const T: Duration = Duration::from_secs(30);

fn unit(s: &str) -> UnitId {
    UnitId::from(s)
}

/// Welcome, snapshot and (for families) the family view come first.
async fn handshake(c: &mut Client) -> (u64, u64) {
    let (epoch, seq) = c
        .until(T, |m| match m {
            ServerMsg::Welcome { epoch, seq, .. } => Some((*epoch, *seq)),
            _ => None,
        })
        .await
        .expect("welcome");
    c.until(T, |m| matches!(m, ServerMsg::Snapshot { .. }).then_some(()))
        .await
        .expect("snapshot");
    (epoch, seq)
}

async fn enter_formal(c: &mut Client) {
    let r = c
        .request(|req_id| ClientMsg::Declare {
            req_id,
            stage: Stage::Formal,
        })
        .await;
    assert!(is_ok(&r), "declare formal: {r:?}");
    let r = c.request(|req_id| ClientMsg::Sync { req_id }).await;
    assert!(is_ok(&r) || error_code(&r).is_none(), "sync: {r:?}");
}

async fn taken_units(c: &mut Client, want: usize, timeout: Duration) -> Vec<(UnitId, How)> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while got.len() < want {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(m) = c.next(left).await else { break };
        if let ServerMsg::Delta { changes, .. } = m {
            for ch in changes {
                if let BoardChange::Taken(t) = ch {
                    got.push((t.unit, t.how));
                }
            }
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_selection_flow_for_several_families_on_redis() {
    let clock = manual_clock();
    let alloc = clocked_redis_engine(&namespace(), &clock).await;
    let batch = small_batch(
        "flow",
        Duration::from_millis(1500),
        Duration::from_millis(3000),
    );
    let s1 = batch.sessions[0].clone();
    alloc.load_batch(batch.clone()).await.unwrap();
    let gw = clocked_gateway(alloc.clone(), &clock, &batch.id).await;

    let mut watcher = connect(gw.addr, None, Encoding::MsgPack).await;
    handshake(&mut watcher).await;
    let mut f1 = connect(gw.addr, Some(&family_token("F1")), Encoding::Json).await;
    let mut f2 = connect(gw.addr, Some(&family_token("F2")), Encoding::MsgPack).await;
    let mut f3 = connect(gw.addr, Some(&family_token("F3")), Encoding::Json).await;
    for c in [&mut f1, &mut f2, &mut f3] {
        handshake(c).await;
    }
    preselect(&mut f1, &["U01", "U02"]).await;
    preselect(&mut f2, &["U03"]).await;
    preselect(&mut f3, &["U01", "U04"]).await;

    // Confirm before the session opens is refused by server time.
    let early = f1
        .request(|req_id| ClientMsg::Confirm {
            req_id,
            unit: unit("U01"),
        })
        .await;
    assert_eq!(error_code(&early), Some(ErrorCode::WindowClosed));

    clock.set(s1.start);
    for c in [&mut f1, &mut f2, &mut f3] {
        enter_formal(c).await;
    }
    let r = f1
        .request(|req_id| ClientMsg::Confirm {
            req_id,
            unit: unit("U01"),
        })
        .await;
    match &r {
        ServerMsg::Ok {
            family: Some(v), ..
        } => assert!(matches!(
            &v.outcome,
            Some(Outcome::Selected { unit: u, how: How::Confirmed, .. }) if u == &unit("U01")
        )),
        other => panic!("confirm U01: {other:?}"),
    }
    let r = f2
        .request(|req_id| ClientMsg::Confirm {
            req_id,
            unit: unit("U03"),
        })
        .await;
    assert!(is_ok(&r), "{r:?}");

    // F3 stays idle: at the deadline it gets its first free intention, U04 (U01 is
    // taken); F4 never entered formal selection and gets no unit.
    clock.set(s1.deadline());
    let f3_outcome = f3
        .until(T, |m| match m {
            ServerMsg::Family { family } if family.outcome.is_some() => family.outcome.clone(),
            _ => None,
        })
        .await
        .expect("F3 is told its automatic result");
    assert!(
        matches!(&f3_outcome, Outcome::Selected { unit: u, how: How::Automatic, .. } if u == &unit("U04")),
        "{f3_outcome:?}"
    );

    // The watcher saw all three units taken, in order, and the session close.
    let taken = taken_units(&mut watcher, 3, T).await;
    assert_eq!(
        taken,
        vec![
            (unit("U01"), How::Confirmed),
            (unit("U03"), How::Confirmed),
            (unit("U04"), How::Automatic)
        ]
    );
    let f4 = alloc
        .family(&batch.id, &FamilyId::from("F4"))
        .await
        .unwrap();
    assert!(matches!(
        f4.outcome,
        Some(Outcome::NoUnit {
            reason: NoUnitReason::Absent,
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_families_racing_for_one_unit_one_wins_and_the_other_is_told_at_once() {
    let clock = manual_clock();
    let alloc = clocked_redis_engine(&namespace(), &clock).await;
    let batch = small_batch("race", Duration::from_millis(800), Duration::from_secs(20));
    alloc.load_batch(batch.clone()).await.unwrap();
    let gw = clocked_gateway(alloc.clone(), &clock, &batch.id).await;
    let mut a = connect(gw.addr, Some(&family_token("F1")), Encoding::Json).await;
    let mut b = connect(gw.addr, Some(&family_token("F2")), Encoding::MsgPack).await;
    handshake(&mut a).await;
    handshake(&mut b).await;
    preselect(&mut a, &["U05", "U06"]).await;
    preselect(&mut b, &["U05", "U07"]).await;
    clock.set(batch.sessions[0].start);
    enter_formal(&mut a).await;
    enter_formal(&mut b).await;

    let (ra, rb) = (a.req_id(), b.req_id());
    let confirm = |req_id: String| ClientMsg::Confirm {
        req_id,
        unit: unit("U05"),
    };
    // Both frames leave before either reply is read.
    a.send(&confirm(ra.clone())).await;
    b.send(&confirm(rb.clone())).await;
    let reply = |id: String| {
        move |m: &ServerMsg| match m {
            ServerMsg::Ok { req_id, .. } if *req_id == id => Some(m.clone()),
            ServerMsg::Error {
                req_id: Some(req_id),
                ..
            } if *req_id == id => Some(m.clone()),
            _ => None,
        }
    };
    let t0 = std::time::Instant::now();
    let x = a.until(T, reply(ra)).await.unwrap();
    let y = b.until(T, reply(rb)).await.unwrap();
    // A figure, not a verdict: latency is the load tool's to measure, on a quiet machine.
    eprintln!("both racing confirms answered in {:?}", t0.elapsed());
    let oks = [&x, &y].iter().filter(|m| is_ok(m)).count();
    assert_eq!(oks, 1, "exactly one winner: {x:?} / {y:?}");
    let loser = if is_ok(&x) { &y } else { &x };
    assert_eq!(error_code(loser), Some(ErrorCode::UnitTaken));
    // The loser keeps its list and can take another unit.
    let (loser_client, other) = if is_ok(&x) {
        (&mut b, "U07")
    } else {
        (&mut a, "U06")
    };
    let r = loser_client
        .request(|req_id| ClientMsg::Confirm {
            req_id,
            unit: unit(other),
        })
        .await;
    assert!(is_ok(&r), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirm_on_gateway_a_reaches_a_screen_on_gateway_b() {
    let (ns, clock) = (namespace(), manual_clock());
    let alloc_a = clocked_redis_engine(&ns, &clock).await;
    let alloc_b = clocked_redis_engine(&ns, &clock).await;
    let batch = small_batch(
        "two-gw",
        Duration::from_millis(500),
        Duration::from_secs(20),
    );
    alloc_a.load_batch(batch.clone()).await.unwrap();
    let gw_a = clocked_gateway(alloc_a, &clock, &batch.id).await;
    let gw_b = clocked_gateway(alloc_b, &clock, &batch.id).await;
    let mut screen = connect(gw_b.addr, None, Encoding::MsgPack).await;
    handshake(&mut screen).await;
    let mut f = connect(gw_a.addr, Some(&family_token("F1")), Encoding::Json).await;
    handshake(&mut f).await;
    preselect(&mut f, &["U09"]).await;
    clock.set(batch.sessions[0].start);
    enter_formal(&mut f).await;
    let t0 = std::time::Instant::now();
    let r = f
        .request(|req_id| ClientMsg::Confirm {
            req_id,
            unit: unit("U09"),
        })
        .await;
    assert!(is_ok(&r));
    let seen = taken_units(&mut screen, 1, T).await;
    assert_eq!(seen, vec![(unit("U09"), How::Confirmed)]);
    // A figure, not a verdict: latency is the load tool's to measure, on a quiet machine.
    eprintln!("confirm on A to screen on B: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_is_kept_exactly_once_by_the_surviving_gateway() {
    let (ns, clock) = (namespace(), manual_clock());
    let alloc_a = clocked_redis_engine(&ns, &clock).await;
    let alloc_b = clocked_redis_engine(&ns, &clock).await;
    let batch = small_batch(
        "deadline",
        Duration::from_millis(700),
        Duration::from_millis(1500),
    );
    alloc_a.load_batch(batch.clone()).await.unwrap();
    let gw_a = clocked_gateway(alloc_a.clone(), &clock, &batch.id).await;
    let gw_b = clocked_gateway(alloc_b, &clock, &batch.id).await;
    let gw_c = clocked_gateway(clocked_redis_engine(&ns, &clock).await, &clock, &batch.id).await;
    let mut fams = Vec::new();
    for (f, units) in [
        ("F1", ["U01", "U02"]),
        ("F2", ["U01", "U03"]),
        ("F3", ["U01", "U02"]),
    ] {
        let mut c = connect(gw_a.addr, Some(&family_token(f)), Encoding::Json).await;
        handshake(&mut c).await;
        preselect(&mut c, &units).await;
        fams.push(c);
    }
    clock.set(batch.sessions[0].start);
    for c in fams.iter_mut() {
        enter_formal(c).await;
    }
    // Gateway A dies before the deadline; B and C both try to close the session.
    drop(gw_a);
    clock.set(batch.sessions[0].deadline());
    let decided = || gw_b.app.metrics.auto_confirmed.get() + gw_c.app.metrics.auto_confirmed.get();
    let end = tokio::time::Instant::now() + T;
    while decided() < 4 {
        assert!(
            tokio::time::Instant::now() < end,
            "the deadline was never kept"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both survivors' keepers look about once a second: give the other one its look,
    // so a second close would show (waiting longer can only make this stricter).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events = alloc_a.events(&batch.id, 0, 1000).await.unwrap();
    let mut selected = std::collections::HashMap::new();
    let mut closed = 0;
    for e in &events {
        match &e.event {
            xuanfang_hub::EventKind::Selected { family, unit, how } => {
                assert_eq!(*how, How::Automatic);
                assert!(
                    selected.insert(family.clone(), unit.clone()).is_none(),
                    "{family} twice"
                );
            }
            xuanfang_hub::EventKind::SessionClosed { .. } => closed += 1,
            _ => {}
        }
    }
    assert_eq!(closed, 1, "session closed once");
    // Rank order: F1 takes U01, F2 its next free U03, F3 its next free U02.
    assert_eq!(selected.get(&FamilyId::from("F1")), Some(&unit("U01")));
    assert_eq!(selected.get(&FamilyId::from("F2")), Some(&unit("U03")));
    assert_eq!(selected.get(&FamilyId::from("F3")), Some(&unit("U02")));
    assert_eq!(
        decided(),
        4,
        "three with intentions and the absent F4, each once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_with_last_seq_gets_exactly_the_missed_deltas() {
    let clock = manual_clock();
    let alloc = clocked_redis_engine(&namespace(), &clock).await;
    let batch = small_batch(
        "resume",
        Duration::from_millis(500),
        Duration::from_secs(20),
    );
    alloc.load_batch(batch.clone()).await.unwrap();
    let gw = clocked_gateway(alloc.clone(), &clock, &batch.id).await;
    let mut screen = connect(gw.addr, None, Encoding::Json).await;
    let (epoch, seq) = handshake(&mut screen).await;
    drop(screen);

    let mut f = connect(gw.addr, Some(&family_token("F1")), Encoding::Json).await;
    handshake(&mut f).await;
    preselect(&mut f, &["U02"]).await;
    clock.set(batch.sessions[0].start);
    enter_formal(&mut f).await;
    assert!(is_ok(
        &f.request(|req_id| ClientMsg::Confirm {
            req_id,
            unit: unit("U02")
        })
        .await
    ));
    // Wait (generously) until the hub has followed the confirm.
    let hub = gw.app.hub(&batch.id).await.unwrap();
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    while hub.seq() <= seq {
        assert!(
            tokio::time::Instant::now() < end,
            "the hub never saw the confirm"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let now_seq = hub.seq();

    let addr = format!("{}/ws?epoch={epoch}&seq={seq}", gw.addr);
    let mut back = connect_path(&addr, Encoding::Json).await;
    back.until(T, |m| matches!(m, ServerMsg::Welcome { .. }).then_some(()))
        .await
        .unwrap();
    // Contiguous deltas from the client's seq to the hub's: no snapshot, no gap.
    let mut last = seq;
    let mut got_u02 = false;
    while last < now_seq {
        match back.next(T).await {
            Some(ServerMsg::Delta {
                prev,
                seq: to,
                changes,
                ..
            }) => {
                assert_eq!(prev, last, "each delta follows on exactly");
                last = to;
                got_u02 |= changes
                    .iter()
                    .any(|c| matches!(c, BoardChange::Taken(t) if t.unit == unit("U02")));
            }
            other => panic!("expected a missed delta, got {other:?}"),
        }
    }
    assert_eq!(last, now_seq);
    assert!(got_u02, "the missed confirm is among the deltas");

    // A stale epoch gets a fresh snapshot instead of a silent gap.
    let addr = format!("{}/ws?epoch={}&seq={seq}", gw.addr, epoch.wrapping_add(1));
    let mut stale = connect_path(&addr, Encoding::Json).await;
    stale
        .until(T, |m| matches!(m, ServerMsg::Welcome { .. }).then_some(()))
        .await
        .unwrap();
    assert!(
        matches!(stale.next(T).await, Some(ServerMsg::Snapshot { seq: s, .. }) if s == now_seq)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_forged_and_operator_misuse_are_refused() {
    let alloc = redis_engine(&namespace()).await;
    let batch = small_batch("auth", Duration::from_secs(60), Duration::from_secs(20));
    alloc.load_batch(batch.clone()).await.unwrap();
    let gw = start_gateway(alloc.clone(), &batch.id).await;

    let forged = xuanfang_gateway::auth::Auth::hs256(b"not-the-secret-but-as-long-as-one")
        .unwrap()
        .mint("F1", xuanfang_gateway::auth::Role::Family, 60)
        .unwrap();
    let err = try_connect(gw.addr, Some(&forged), Encoding::Json)
        .await
        .err();
    assert!(
        matches!(err, Some(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401)
    );

    let expired = expired_token("F1");
    let err = try_connect(gw.addr, Some(&expired), Encoding::Json)
        .await
        .err();
    match err {
        Some(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 401);
            let body = String::from_utf8(r.body().clone().unwrap_or_default()).unwrap();
            assert!(body.contains("token_expired"), "{body}");
        }
        other => panic!("expired token accepted: {other:?}"),
    }

    // A family of another batch (unknown here) is refused.
    let stranger = family_token("F999");
    assert!(try_connect(gw.addr, Some(&stranger), Encoding::Json)
        .await
        .is_err());

    // A family token is not an operator token.
    let http = reqwest::Client::new();
    let r = http
        .get(format!("http://{}/api/ops/progress", gw.addr))
        .bearer_auth(family_token("F1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .get(format!("http://{}/api/ops/progress", gw.addr))
        .bearer_auth(operator_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_family_can_only_act_for_itself() {
    let alloc = redis_engine(&namespace()).await;
    let batch = small_batch("self", Duration::from_secs(60), Duration::from_secs(20));
    alloc.load_batch(batch.clone()).await.unwrap();
    let gw = start_gateway(alloc.clone(), &batch.id).await;
    let mut f1 = connect(gw.addr, Some(&family_token("F1")), Encoding::Json).await;
    handshake(&mut f1).await;
    // A frame naming another family acts for the token's family only.
    f1.send_raw(Message::Text(
        r#"{"type":"declare","req_id":"x1","stage":"preselection","family":"F2"}"#.into(),
    ))
    .await;
    let r = f1
        .until(T, |m| matches!(m, ServerMsg::Ok { .. }).then(|| m.clone()))
        .await
        .unwrap();
    let ServerMsg::Ok {
        family: Some(v), ..
    } = r
    else {
        panic!()
    };
    assert_eq!(v.family, FamilyId::from("F1"));
    let f2 = alloc
        .family(&batch.id, &FamilyId::from("F2"))
        .await
        .unwrap();
    assert_eq!(f2.preselect_declared_at, None, "F2 untouched");

    // An anonymous watcher cannot act at all.
    let mut anon = connect(gw.addr, None, Encoding::Json).await;
    handshake(&mut anon).await;
    let r = anon.request(|req_id| ClientMsg::Waive { req_id }).await;
    assert_eq!(error_code(&r), Some(ErrorCode::Unauthorized));

    // Both answers are in the server-side latency histogram, by action.
    let metrics = reqwest::get(format!("http://{}/metrics", gw.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("xuanfang_action_seconds_count{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted, 2, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_frames_get_errors_and_change_nothing() {
    let alloc = redis_engine(&namespace()).await;
    let batch = small_batch("bad", Duration::from_secs(60), Duration::from_secs(20));
    alloc.load_batch(batch.clone()).await.unwrap();
    let gw = start_gateway(alloc.clone(), &batch.id).await;
    let seq0 = alloc.board(&batch.id).await.unwrap().seq;
    let mut c = connect(gw.addr, Some(&family_token("F1")), Encoding::Json).await;
    handshake(&mut c).await;

    c.send_raw(Message::Text("not json".into())).await;
    assert_eq!(next_error(&mut c).await, Some(ErrorCode::BadFrame));
    c.send_raw(Message::Text(r#"{"type":"teleport","req_id":"1"}"#.into()))
        .await;
    assert_eq!(next_error(&mut c).await, Some(ErrorCode::BadFrame));
    c.send_raw(Message::Binary(vec![0xc1, 0xff, 0x00].into()))
        .await;
    assert_eq!(next_error(&mut c).await, Some(ErrorCode::BadFrame));
    let big = format!(r#"{{"type":"waive","req_id":"{}"}}"#, "x".repeat(5000));
    c.send_raw(Message::Text(big.into())).await;
    assert_eq!(next_error(&mut c).await, Some(ErrorCode::FrameTooLarge));
    let long_id = "y".repeat(65);
    c.send(&ClientMsg::Waive { req_id: long_id }).await;
    assert_eq!(next_error(&mut c).await, Some(ErrorCode::BadFrame));
    for control in ["r\n1", "r\r", "\u{0}", "r\u{85}"] {
        let req_id = control.to_owned();
        c.send(&ClientMsg::Waive { req_id }).await;
        assert_eq!(
            next_error(&mut c).await,
            Some(ErrorCode::BadFrame),
            "{control:?}"
        );
    }

    // The connection is still usable, and nothing changed.
    c.send(&ClientMsg::Ping { t0: 1.5 }).await;
    let pong = c
        .until(T, |m| {
            matches!(m, ServerMsg::Pong { .. }).then(|| m.clone())
        })
        .await;
    assert!(matches!(pong, Some(ServerMsg::Pong { t0, .. }) if t0 == 1.5));
    assert_eq!(alloc.board(&batch.id).await.unwrap().seq, seq0);
    let f1 = alloc
        .family(&batch.id, &FamilyId::from("F1"))
        .await
        .unwrap();
    assert!(f1.outcome.is_none(), "the oversized waive did nothing");

    // Past the transport limit the connection is closed with 1009.
    c.send_raw(Message::Binary(vec![0u8; 200 * 1024].into()))
        .await;
    let closed = tokio::time::timeout(T, async {
        use futures_util::StreamExt;
        while let Some(m) = c.ws.next().await {
            if let Ok(Message::Close(f)) = m {
                return f.map(|f| u16::from(f.code));
            }
            if m.is_err() {
                return None;
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(closed, Some(1009));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_engine_serves_the_same_flow() {
    let dir = tempfile_dir();
    let clock = manual_clock();
    let alloc: Arc<dyn Allocator> = Arc::new(EmbeddedEngine::open(&dir, clock.clone()).unwrap());
    let batch = small_batch("emb", Duration::from_millis(600), Duration::from_secs(20));
    alloc.load_batch(batch.clone()).await.unwrap();
    let gw = clocked_gateway(alloc.clone(), &clock, &batch.id).await;
    let mut screen = connect(gw.addr, None, Encoding::Json).await;
    handshake(&mut screen).await;
    let mut f = connect(gw.addr, Some(&family_token("F2")), Encoding::MsgPack).await;
    handshake(&mut f).await;
    preselect(&mut f, &["U08"]).await;
    clock.set(batch.sessions[0].start);
    enter_formal(&mut f).await;
    assert!(is_ok(
        &f.request(|req_id| ClientMsg::Confirm {
            req_id,
            unit: unit("U08")
        })
        .await
    ));
    assert_eq!(
        taken_units(&mut screen, 1, T).await,
        vec![(unit("U08"), How::Confirmed)]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "xuanfang-gw-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

async fn next_error(c: &mut Client) -> Option<ErrorCode> {
    c.until(T, |m| match m {
        ServerMsg::Error { code, .. } => Some(*code),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn families_are_told_when_their_formal_window_opens() {
    let clock = manual_clock();
    let alloc = clocked_redis_engine(&namespace(), &clock).await;
    let batch = small_batch("opens", Duration::from_millis(800), Duration::from_secs(20));
    alloc.load_batch(batch.clone()).await.unwrap();
    let gw = clocked_gateway(alloc.clone(), &clock, &batch.id).await;
    let mut f = connect(gw.addr, Some(&family_token("F1")), Encoding::Json).await;
    let first = f
        .until(T, |m| match m {
            ServerMsg::Family { family } => Some(family.phase),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(first, xuanfang_hub::Phase::Preselection);
    // Nothing is pushed while the clock stands before the start.
    let early = before_pong(&mut f).await;
    assert!(
        !early.iter().any(|m| matches!(m, ServerMsg::Family { .. })),
        "no view before the start: {early:?}"
    );
    clock.set(batch.sessions[0].start);
    let pushed = f
        .until(T, |m| match m {
            ServerMsg::Family { family } => Some(family.phase),
            _ => None,
        })
        .await
        .expect("a view is pushed at the session start");
    assert_eq!(pushed, xuanfang_hub::Phase::Formal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_familys_second_device_sees_its_changes_and_the_first_is_not_told_twice() {
    let alloc = redis_engine(&namespace()).await;
    let batch = small_batch("devices", Duration::from_secs(60), Duration::from_secs(20));
    alloc.load_batch(batch.clone()).await.unwrap();
    let gw = start_gateway(alloc.clone(), &batch.id).await;
    let token = family_token("F1");
    let mut phone = connect(gw.addr, Some(&token), Encoding::Json).await;
    let mut tablet = connect(gw.addr, Some(&token), Encoding::MsgPack).await;
    for c in [&mut phone, &mut tablet] {
        handshake(c).await;
        c.until(T, |m| matches!(m, ServerMsg::Family { .. }).then_some(()))
            .await
            .unwrap();
    }
    preselect(&mut phone, &["U04"]).await;
    let seen = tablet
        .until(T, |m| match m {
            ServerMsg::Family { family } if family.cart == vec![unit("U04")] => Some(()),
            _ => None,
        })
        .await;
    assert!(seen.is_some(), "the tablet sees the cart the phone filled");
    // Anything the phone was told twice would come before the pong to a later ping.
    let extra = before_pong(&mut phone).await;
    assert!(
        extra.is_empty(),
        "the phone got its ok replies, nothing twice: {extra:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_board_arrives_as_a_snapshot_in_small_parts() {
    use xuanfang_hub::{Action, Family, Session, SessionId, SessionKind, Unit};
    let clock = manual_clock();
    let alloc = clocked_redis_engine(&namespace(), &clock).await;
    let mut batch = small_batch("parts", Duration::from_millis(300), Duration::from_secs(30));
    let layout = batch.units[0].layout.clone();
    let n: usize = 150;
    batch.units = (0..n)
        .map(|i| Unit {
            id: UnitId(format!("P{i:03}")),
            number: format!("{i}"),
            ..batch.units[0].clone()
        })
        .collect();
    batch.families = (0..n)
        .map(|i| Family {
            id: FamilyId(format!("G{i:03}")),
            name: "李*".into(),
            rank: i as u32 + 1,
            session: SessionId::from("S1"),
            eligible_layouts: vec![layout.clone()],
        })
        .collect();
    let start = batch.sessions[0].start;
    batch.sessions = vec![Session {
        id: SessionId::from("S1"),
        kind: SessionKind::Formal,
        start,
        window_ms: 30_000,
        families: batch.families.iter().map(|f| f.id.clone()).collect(),
    }];
    alloc.load_batch(batch.clone()).await.unwrap();
    clock.set(start);
    for i in 0..n {
        let f = FamilyId(format!("G{i:03}"));
        let u = UnitId(format!("P{i:03}"));
        for (r, a) in [
            (
                "d",
                Action::Declare {
                    stage: Stage::Formal,
                },
            ),
            (
                "a",
                Action::Edit {
                    list: ListKind::Intentions,
                    edit: Edit::Add,
                    unit: u.clone(),
                },
            ),
            ("c", Action::Confirm { unit: u }),
        ] {
            alloc.act(&batch.id, &f, r, a).await.unwrap().unwrap();
        }
    }
    let gw = clocked_gateway(alloc.clone(), &clock, &batch.id).await;
    let mut screen = connect(gw.addr, None, Encoding::Json).await;
    let mut taken = std::collections::HashSet::new();
    let mut parts_seen = 0;
    let mut n_sessions = 0;
    loop {
        match screen.next(T).await {
            Some(ServerMsg::Welcome { .. }) => {}
            Some(ServerMsg::Snapshot {
                part,
                parts,
                taken: t,
                sessions,
                ..
            }) => {
                assert_eq!(part, parts_seen, "parts in order");
                assert_eq!(
                    parts as usize,
                    n.div_ceil(xuanfang_hub::protocol::SNAPSHOT_PART),
                    "150 units in parts"
                );
                assert!(t.len() <= xuanfang_hub::protocol::SNAPSHOT_PART);
                assert!(sessions.len() <= xuanfang_hub::protocol::SNAPSHOT_SESSIONS_PART);
                n_sessions += sessions.len();
                taken.extend(t.into_iter().map(|t| t.unit));
                parts_seen += 1;
                if parts_seen == parts {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(taken.len(), n);
    assert_eq!(n_sessions, 1, "every session arrives once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_limits_requests_are_refused_and_a_flood_is_closed() {
    use xuanfang_gateway::limits::LimitConfig;
    let alloc = redis_engine(&namespace()).await;
    let batch = small_batch("limits", Duration::from_secs(60), Duration::from_secs(20));
    alloc.load_batch(batch.clone()).await.unwrap();
    let limits = LimitConfig {
        family_msgs_per_sec: 1,
        conn_msgs_per_sec: 5,
        ..LimitConfig::default()
    };
    // The limiters count on a clock the test moves: however slow the run, no bucket
    // refills by itself.
    let clock = manual_clock();
    let app = xuanfang_gateway::app::App::new(
        alloc.clone(),
        auth(),
        xuanfang_gateway::limits::Limits::with_clock(limits, clock.clone()),
        xuanfang_gateway::app::WsConfig::default(),
        None,
    );
    let addr = serve_on_free_port(&app, &batch.id).await;

    // Family requests: a burst of 4 passes, the rest are refused with rate_limited.
    let mut f = connect(addr, Some(&family_token("F1")), Encoding::Json).await;
    handshake(&mut f).await;
    let declare = |req_id| ClientMsg::Declare {
        req_id,
        stage: Stage::Preselection,
    };
    let mut codes = Vec::new();
    for _ in 0..8 {
        codes.push(error_code(&f.request(declare).await));
    }
    assert!(codes[..4].iter().all(Option::is_none), "{codes:?}");
    assert!(
        codes[4..]
            .iter()
            .all(|c| *c == Some(ErrorCode::RateLimited)),
        "{codes:?}"
    );
    // A second later one more passes (1 per second), and only one.
    clock.advance(1_000);
    assert_eq!(error_code(&f.request(declare).await), None);
    assert_eq!(
        error_code(&f.request(declare).await),
        Some(ErrorCode::RateLimited)
    );

    // Any frames: past the connection's burst, errors; a sustained flood is closed.
    let mut w = connect(addr, None, Encoding::Json).await;
    handshake(&mut w).await;
    for i in 0..200 {
        let _ = futures_util::SinkExt::send(
            &mut w.ws,
            Message::Text(format!(r#"{{"type":"ping","t0":{i}}}"#).into()),
        )
        .await;
    }
    let mut limited = 0;
    let close = tokio::time::timeout(T, async {
        use futures_util::StreamExt;
        while let Some(m) = w.ws.next().await {
            match m {
                Ok(Message::Close(f)) => return f.map(|f| u16::from(f.code)),
                Ok(Message::Text(t)) if t.contains("rate_limited") => limited += 1,
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .unwrap();
    assert!(limited > 0);
    assert_eq!(close, Some(4008));
}

/// MessagePack can carry a NaN or infinite `t0`, JSON cannot: a JSON `pong` would say
/// `t0: null`. No clock reads that, so such a ping is refused as `bad_frame` on either
/// socket, and the socket goes on answering a finite ping exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_with_a_non_finite_t0_is_refused_in_both_encodings() {
    let alloc = redis_engine(&namespace()).await;
    let batch = small_batch("nan", Duration::from_secs(60), Duration::from_secs(20));
    alloc.load_batch(batch.clone()).await.unwrap();
    let gw = start_gateway(alloc.clone(), &batch.id).await;
    for enc in [Encoding::Json, Encoding::MsgPack] {
        let mut c = connect(gw.addr, None, enc).await;
        handshake(&mut c).await;
        for t0 in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let frame = rmp_serde::to_vec_named(&ClientMsg::Ping { t0 }).unwrap();
            c.send_raw(Message::Binary(frame.into())).await;
            let answer = c
                .until(T, |m| {
                    matches!(m, ServerMsg::Error { .. } | ServerMsg::Pong { .. }).then(|| m.clone())
                })
                .await;
            assert!(
                matches!(
                    &answer,
                    Some(ServerMsg::Error {
                        code: ErrorCode::BadFrame,
                        req_id: None,
                        ..
                    })
                ),
                "{enc:?} {t0}: {answer:?}"
            );
        }
        c.send(&ClientMsg::Ping {
            t0: 1749258011987.5,
        })
        .await;
        let pong = c
            .until(T, |m| match m {
                ServerMsg::Pong { t0, .. } => Some(*t0),
                _ => None,
            })
            .await;
        assert_eq!(pong, Some(1749258011987.5), "{enc:?}");
    }
}
