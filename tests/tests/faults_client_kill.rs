//! Fault: `CLIENT KILL TYPE normal` of every Redis connection, over and over, while
//! families act and confirm through a gateway. A request whose connection was killed is
//! answered with a retryable `internal`; sent again with its req_id it gets the answer
//! the engine decided (once); every request sent again at the end gets the same answer
//! as the first time, and the history checker finds the log consistent.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use xuanfang_allocator::redis_engine::{RedisEngine, RedisOptions};
use xuanfang_allocator::testing::RedisServer;
use xuanfang_allocator::Allocator;
use xuanfang_hub::protocol::{ClientMsg, Encoding, ServerMsg};
use xuanfang_hub::{
    Batch, BatchId, Edit, ErrorCode, Family, FamilyId, Layout, ListKind, Millis, Session,
    SessionId, SessionKind, Stage, Unit, UnitId,
};
use xuanfang_tests::history::{History, Reply};

const FAMILIES: usize = 12;
/// Requests a kill must have cut in flight (answered `internal`, then retried).
const HITS: usize = 5;

/// FAMILIES families in one formal session open now (window 5 min), 2×FAMILIES units.
fn batch() -> Batch {
    let now = Millis::now();
    let layout = Layout::from("一房一厅");
    let units = (1..=2 * FAMILIES as u32)
        .map(|i| Unit {
            id: UnitId(format!("U{i:02}")),
            building: "1栋".into(),
            number: format!("{i:02}01"),
            floor: i as i32,
            layout: layout.clone(),
            area: 45.0,
            orientation: "南".into(),
            rent: 1200.0,
        })
        .collect();
    let families: Vec<Family> = (1..=FAMILIES as u32)
        .map(|i| Family {
            id: FamilyId(format!("F{i:02}")),
            name: format!("张*{i}"),
            rank: i,
            session: SessionId::from("S1"),
            eligible_layouts: vec![layout.clone()],
        })
        .collect();
    Batch {
        id: BatchId::from("client-kill"),
        name: "断连测试".into(),
        preselect_start: now.plus_ms(-60_000),
        preselect_end: None,
        utc_offset_minutes: 480,
        units,
        sessions: vec![Session {
            id: SessionId::from("S1"),
            kind: SessionKind::Formal,
            start: now.plus_ms(-1_000),
            window_ms: 300_000,
            families: families.iter().map(|f| f.id.clone()).collect(),
        }],
        families,
    }
}

/// Sends `msg` until it is answered, resending the same frame (same req_id) after each
/// retryable error; the answer is recorded.
async fn answer(
    c: &mut Client,
    family: &FamilyId,
    msg: &ClientMsg,
    history: &History,
    retried: &AtomicUsize,
) -> ServerMsg {
    let (req_id, action) = msg.action().unwrap();
    let req_id = req_id.clone();
    let confirm = match action {
        xuanfang_hub::Action::Confirm { unit } => Some(unit),
        _ => None,
    };
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < end, "{family} {req_id} never answered");
        c.send(msg).await;
        let reply = c
            .until(Duration::from_secs(30), |m| match m {
                ServerMsg::Ok { req_id: r, .. } if *r == req_id => Some(m.clone()),
                ServerMsg::Error {
                    req_id: Some(r), ..
                } if *r == req_id => Some(m.clone()),
                _ => None,
            })
            .await
            .expect("a reply");
        match history.record(family, &req_id, confirm.as_ref(), &reply) {
            Reply::Answered => return reply,
            Reply::Retry(code) => {
                if code == ErrorCode::Internal {
                    retried.fetch_add(1, Ordering::Relaxed);
                }
                // Within the gateway's 10 requests a second per family.
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_of_every_redis_connection_changes_no_answer() {
    let server = RedisServer::start();
    let alloc: Arc<dyn Allocator> = Arc::new(
        RedisEngine::connect(server.client(), RedisOptions::default())
            .await
            .unwrap(),
    );
    let batch = batch();
    alloc.load_batch(batch.clone()).await.unwrap();
    let gw = start_gateway(alloc.clone(), &batch.id).await;

    // The killer: every Redis connection but its own, again and again.
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (stop, killed, client) = (stop.clone(), killed.clone(), server.client());
        tokio::task::spawn_blocking(move || {
            let mut conn = client.get_connection().unwrap();
            while !stop.load(Ordering::Relaxed) {
                // SKIPME yes (the default): not the killer's own connection.
                let n: usize = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("normal")
                    .query(&mut conn)
                    .unwrap();
                killed.fetch_add(n, Ordering::Relaxed);
                // Often enough to hit requests in flight (a connection killed while
                // idle costs no request: the engine sends again on a new one).
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let history = Arc::new(History::new());
    let retried = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 1..=FAMILIES {
        let (history, retried, addr) = (history.clone(), retried.clone(), gw.addr);
        tasks.push(tokio::spawn(async move {
            let family = FamilyId(format!("F{i:02}"));
            let mut c = connect(addr, Some(&family_token(family.as_str())), Encoding::Json).await;
            let first = UnitId(format!("U{:02}", i.div_ceil(2)));
            let second = UnitId(format!("U{:02}", FAMILIES + i));
            let mut sent = vec![ClientMsg::Declare {
                req_id: "declare".into(),
                stage: Stage::Formal,
            }];
            for u in [&first, &second] {
                sent.push(ClientMsg::Edit {
                    req_id: format!("add-{u}"),
                    list: ListKind::Intentions,
                    edit: Edit::Add,
                    unit: u.clone(),
                });
            }
            // Busy work until the kills have hit some requests: edits of a third unit.
            let spare = UnitId(format!("U{:02}", FAMILIES + (i % FAMILIES) + 1));
            let mut n = 0;
            for m in sent.clone() {
                answer(&mut c, &family, &m, &history, &retried).await;
            }
            while retried.load(Ordering::Relaxed) < HITS {
                n += 1;
                assert!(n < 400, "the kills never hit a request");
                let edit = if n % 2 == 1 { Edit::Add } else { Edit::Remove };
                let m = ClientMsg::Edit {
                    req_id: format!("busy-{n}"),
                    list: ListKind::Intentions,
                    edit,
                    unit: spare.clone(),
                };
                answer(&mut c, &family, &m, &history, &retried).await;
                sent.push(m);
                tokio::time::sleep(Duration::from_millis(120)).await;
            }
            for (k, u) in [&first, &second].into_iter().enumerate() {
                let m = ClientMsg::Confirm {
                    req_id: format!("confirm-{k}"),
                    unit: u.clone(),
                };
                let r = answer(&mut c, &family, &m, &history, &retried).await;
                sent.push(m);
                if matches!(r, ServerMsg::Ok { .. }) {
                    break;
                }
            }
            (family, sent, c)
        }));
    }
    let mut players = Vec::new();
    for t in tasks {
        players.push(t.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    killer.await.unwrap();
    assert!(killed.load(Ordering::Relaxed) > 0);
    assert!(retried.load(Ordering::Relaxed) >= HITS);

    // Every request again, with its req_id: the same answers (the checker compares).
    // The engine keeps each family's most recent REPLIES_PER_FAMILY answers; an older
    // req_id is decided afresh, as documented.
    for (family, sent, c) in &mut players {
        let keep = sent
            .len()
            .saturating_sub(xuanfang_allocator::REPLIES_PER_FAMILY);
        for m in sent[keep..].iter() {
            answer(c, family, m, &history, &retried).await;
        }
    }
    let log = alloc.events(&batch.id, 0, 100_000).await.unwrap();
    let s = history.check(&log).unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(s.confirmed, 2 * FAMILIES, "{s:?}");
    assert_eq!(s.taken, FAMILIES, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_while_idle_cost_no_request() {
    let server = RedisServer::start();
    let alloc: Arc<dyn Allocator> = Arc::new(
        RedisEngine::connect(server.client(), RedisOptions::default())
            .await
            .unwrap(),
    );
    let batch = batch();
    alloc.load_batch(batch.clone()).await.unwrap();
    let mut admin = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let family = FamilyId::from("F01");
    let steps = [
        xuanfang_hub::Action::Declare {
            stage: Stage::Formal,
        },
        xuanfang_hub::Action::Edit {
            list: ListKind::Intentions,
            edit: Edit::Add,
            unit: UnitId::from("U01"),
        },
        xuanfang_hub::Action::Confirm {
            unit: UnitId::from("U01"),
        },
    ];
    for (i, action) in steps.into_iter().enumerate() {
        // Every engine connection is dropped by the server while idle (as Redis
        // `timeout`, a proxy or a failover does) before each request.
        let killed: usize = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .query_async(&mut admin)
            .await
            .unwrap();
        assert!(killed > 0);
        let answer = alloc
            .act(&batch.id, &family, &format!("r{i}"), action)
            .await
            .expect("answered on a new connection, not failed");
        assert!(answer.is_ok(), "{answer:?}");
    }
}
