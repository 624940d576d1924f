//! Contention on real Redis: 5,000 families, 500 units, most families wanting the same
//! 50 units, 64 concurrent tasks over two engine instances (two "gateways"), then the
//! deadline closed from several callers at once. Afterwards the invariants of the
//! mission: no unit twice, no family twice, every ok answer stands in the final state,
//! every "taken" answer names a unit another family holds, and the event stream alone
//! replays to the state the engine reports.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use xuanfang_allocator::redis_engine::{RedisEngine, RedisOptions};
use xuanfang_allocator::testing::{unique_namespace, RedisServer};
use xuanfang_allocator::Allocator;
use xuanfang_hub::selection::Outcome;
use xuanfang_hub::{
    Action, Batch, BatchId, ErrorCode, EventKind, Family, FamilyId, How, Layout, ListKind,
    ManualClock, Millis, Selection, Session, SessionId, SessionKind, Stage, Unit, UnitId,
};

const FAMILIES: usize = 5_000;
const UNITS: usize = 500;
const HOT: usize = 50;
const TASKS: usize = 64;
/// Families per session: every session starts at once, so all families select together.
const SESSION_SIZE: usize = 20;
const START: i64 = 1_900_000_000_000;
const WINDOW_MS: i64 = 180_000;

fn unit_id(i: usize) -> UnitId {
    UnitId(format!("U{i:03}"))
}

fn batch(id: &BatchId) -> Batch {
    let layout = Layout::new("一房一厅");
    let units = (0..UNITS)
        .map(|i| Unit {
            id: unit_id(i),
            building: format!("{}栋", i / 100 + 1),
            number: format!("{}", 100 + i),
            floor: (i % 30) as i32 + 1,
            layout: layout.clone(),
            area: 45.0,
            orientation: "南".into(),
            rent: 1200.0,
        })
        .collect();
    let mut families = Vec::new();
    let mut sessions = Vec::new();
    for (s, chunk) in (0..FAMILIES)
        .collect::<Vec<_>>()
        .chunks(SESSION_SIZE)
        .enumerate()
    {
        let sid = SessionId(format!("S{s:03}"));
        let ids: Vec<FamilyId> = chunk.iter().map(|i| FamilyId(format!("F{i:04}"))).collect();
        for (i, fid) in chunk.iter().zip(&ids) {
            families.push(Family {
                id: fid.clone(),
                name: format!("张*{i}"),
                rank: *i as u32 + 1,
                session: sid.clone(),
                eligible_layouts: vec![layout.clone()],
            });
        }
        sessions.push(Session {
            id: sid,
            kind: SessionKind::Formal,
            start: Millis(START),
            window_ms: WINDOW_MS,
            families: ids,
        });
    }
    Batch {
        id: id.clone(),
        name: "contention".into(),
        preselect_start: Millis(START - 86_400_000),
        preselect_end: None,
        utc_offset_minutes: 480,
        units,
        families,
        sessions,
    }
}

/// What the engines answered during the run.
#[derive(Default)]
struct Log {
    /// family -> unit its confirm was accepted for.
    confirmed: HashMap<FamilyId, UnitId>,
    /// (family, unit) pairs refused as unit_taken.
    taken_refusals: Vec<(FamilyId, UnitId)>,
}

/// Five intentions: mostly from the hot 50, avoiding units already seen taken.
fn pick(rng: &mut StdRng, seen_taken: &HashSet<UnitId>) -> Vec<UnitId> {
    let free: Vec<usize> = (0..UNITS)
        .filter(|i| !seen_taken.contains(&unit_id(*i)))
        .collect();
    let hot: Vec<usize> = free.iter().copied().filter(|i| *i < HOT).collect();
    let pool = if !hot.is_empty() && rng.random_bool(0.9) {
        hot
    } else {
        free
    };
    pool.choose_multiple(rng, 5).map(|i| unit_id(*i)).collect()
}

async fn select_one(
    engine: &RedisEngine,
    b: &BatchId,
    family: &FamilyId,
    rng: &mut StdRng,
    seen_taken: &Mutex<HashSet<UnitId>>,
    log: &Mutex<Log>,
) {
    let view = engine
        .act(
            b,
            family,
            "decl",
            Action::Declare {
                stage: Stage::Formal,
            },
        )
        .await
        .expect("engine")
        .expect("formal declaration accepted");
    assert!(view.formal_declared_at.is_some());
    for round in 0..40 {
        let wanted = pick(rng, &seen_taken.lock());
        if wanted.is_empty() {
            return; // every unit is gone: the deadline will give this family no unit
        }
        let set = Action::SetList {
            list: ListKind::Intentions,
            units: wanted.clone(),
        };
        match engine
            .act(b, family, &format!("set{round}"), set)
            .await
            .expect("engine")
        {
            Ok(view) => assert_eq!(view.intentions, wanted, "ok answer shows the new list"),
            Err(r) => {
                assert_eq!(r.code, ErrorCode::UnitTaken, "{family}: {r:?}");
                let unit = r.unit.expect("unit_taken names the unit");
                log.lock()
                    .taken_refusals
                    .push((family.clone(), unit.clone()));
                seen_taken.lock().insert(unit);
                continue;
            }
        }
        for (n, unit) in wanted.iter().enumerate() {
            let req = format!("c{round}-{n}");
            let confirm = Action::Confirm { unit: unit.clone() };
            match engine
                .act(b, family, &req, confirm.clone())
                .await
                .expect("engine")
            {
                Ok(view) => {
                    let Some(Outcome::Selected { unit: got, how, .. }) = &view.outcome else {
                        panic!("{family}: ok confirm without a unit: {:?}", view.outcome);
                    };
                    assert_eq!((got, *how), (unit, How::Confirmed));
                    log.lock().confirmed.insert(family.clone(), unit.clone());
                    seen_taken.lock().insert(unit.clone());
                    // A retry of the same request (lost reply) gets the same ok.
                    let again = engine.act(b, family, &req, confirm).await.expect("engine");
                    let again = again.expect("a repeated ok stays ok");
                    assert_eq!(again.outcome, view.outcome);
                    return;
                }
                Err(r) => {
                    assert_eq!(r.code, ErrorCode::UnitTaken, "{family}: {r:?}");
                    assert_eq!(r.unit.as_ref(), Some(unit));
                    log.lock()
                        .taken_refusals
                        .push((family.clone(), unit.clone()));
                    seen_taken.lock().insert(unit.clone());
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_families_contend_for_fifty_hot_units() {
    let server = RedisServer::shared();
    let clock = Arc::new(ManualClock::new(Millis(START + 1_000)));
    let namespace = unique_namespace();
    let mut gateways = Vec::new();
    for _ in 0..2 {
        let options = RedisOptions {
            namespace: namespace.clone(),
            clock: Some(clock.clone()),
            ..RedisOptions::default()
        };
        let engine = RedisEngine::connect(server.client(), options)
            .await
            .expect("connect");
        gateways.push(Arc::new(engine));
    }
    let b = BatchId::new("contention");
    let loaded = batch(&b);
    gateways[0].load_batch(loaded.clone()).await.expect("load");

    let next = Arc::new(AtomicUsize::new(0));
    let seen_taken = Arc::new(Mutex::new(HashSet::new()));
    let log = Arc::new(Mutex::new(Log::default()));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let engine = gateways[t % gateways.len()].clone();
        let (next, seen_taken, log, b) = (next.clone(), seen_taken.clone(), log.clone(), b.clone());
        let families: Vec<FamilyId> = loaded.families.iter().map(|f| f.id.clone()).collect();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(t as u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(family) = families.get(i) else {
                    return;
                };
                select_one(&engine, &b, family, &mut rng, &seen_taken, &log).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }

    // The deadline: every session closed by several callers at once.
    let before = gateways[0].results(&b).await.expect("results");
    let undecided = before.iter().filter(|r| r.state.outcome.is_none()).count();
    clock.set(Millis(START + WINDOW_MS));
    let mut closers = Vec::new();
    for c in 0..4 {
        let engine = gateways[c % gateways.len()].clone();
        let (b, sessions) = (b.clone(), loaded.sessions.clone());
        closers.push(tokio::spawn(async move {
            let mut decided = 0;
            for s in &sessions {
                decided += engine.close_session(&b, &s.id).await.expect("close");
            }
            decided
        }));
    }
    let mut decided = 0;
    for c in closers {
        decided += c.await.expect("closer");
    }
    assert_eq!(decided, undecided, "each family decided exactly once");

    // The final state as the engine reports it.
    let results = gateways[1].results(&b).await.expect("results");
    let board = gateways[1].board(&b).await.expect("board");
    let mut holder_of: HashMap<UnitId, FamilyId> = HashMap::new();
    for r in &results {
        let outcome = r
            .state
            .outcome
            .as_ref()
            .expect("every family has an outcome");
        if let Some(unit) = outcome.unit() {
            let previous = holder_of.insert(unit.clone(), r.family.id.clone());
            assert!(previous.is_none(), "unit {unit} given twice");
        }
    }
    assert_eq!(holder_of.len(), UNITS, "every unit found a family");
    assert_eq!(board.taken.len(), UNITS);
    for t in &board.taken {
        let family = &holder_of[&t.unit];
        let rank = loaded
            .families
            .iter()
            .find(|f| &f.id == family)
            .map(|f| f.rank);
        assert_eq!(
            Some(t.rank),
            rank,
            "the board names the holder of {}",
            t.unit
        );
    }
    assert!(board.sessions.iter().all(|s| s.closed));

    let log = std::mem::take(&mut *log.lock());
    assert!(!log.confirmed.is_empty());
    for (family, unit) in &log.confirmed {
        assert_eq!(
            holder_of.get(unit),
            Some(family),
            "ok confirm of {unit} stands"
        );
    }
    assert!(
        !log.taken_refusals.is_empty(),
        "the hot units were contended"
    );
    for (family, unit) in &log.taken_refusals {
        let holder = holder_of
            .get(unit)
            .expect("a unit refused as taken is held");
        assert_ne!(holder, family, "{family} was refused its own unit {unit}");
    }

    // The stream alone rebuilds the same state.
    let events = gateways[0].events(&b, 0, usize::MAX).await.expect("events");
    assert_eq!(events.last().map(|e| e.seq), Some(board.seq));
    let mut selected_units = HashSet::new();
    let mut selected_families = HashSet::new();
    let mut closed = Vec::new();
    for e in &events {
        match &e.event {
            EventKind::Selected { family, unit, .. } => {
                assert!(
                    selected_units.insert(unit.clone()),
                    "{unit} selected twice in the log"
                );
                assert!(
                    selected_families.insert(family.clone()),
                    "{family} selected twice"
                );
            }
            EventKind::SessionClosed { session } => closed.push(session.clone()),
            _ => {}
        }
    }
    assert_eq!(
        closed.len(),
        loaded.sessions.len(),
        "each session closed once"
    );
    let replayed = Selection::replay(&events).expect("the log replays");
    assert_eq!(replayed.seq(), board.seq);
    assert_eq!(replayed.batch(), &loaded);
    for r in &results {
        assert_eq!(
            replayed.state(&r.family.id),
            Some(&r.state),
            "{}",
            r.family.id
        );
    }
    let replayed_holders: HashMap<UnitId, FamilyId> = replayed
        .taken()
        .iter()
        .map(|(u, h)| (u.clone(), h.family.clone()))
        .collect();
    assert_eq!(replayed_holders, holder_of);
    assert_eq!(replayed.closed_sessions().len(), loaded.sessions.len());
}
