//! A real Sentinel failover in the middle of a busy session.
//!
//! A primary, its replica and three Sentinels (`xuanfang_allocator::testing::sentinel`);
//! the engine connects with `redis+sentinel://…/xf` and waits for the replica on every
//! acknowledged write. Families confirm concurrently; the primary is killed with
//! SIGKILL while confirms are in flight; the Sentinels promote the replica; the old
//! primary is started again as a service manager would (with its own, stale AOF) and
//! the Sentinels turn it into the new primary's replica. The engine follows all of it
//! by itself. Then:
//! - every acknowledged confirm is in the results read from the new primary, and the
//!   retry of each with its request id returns the same answer;
//! - every failed request failed retryably (no refusal or corrupt answer was invented);
//! - while the new primary had no replica, writes were done but not answered
//!   (`NotReplicated`), and the retry of such a confirm returned the decision made
//!   then, not a fresh one;
//! - the stream follower (`wait_events`) never handed out an event that the failover
//!   took back: what it followed equals the new primary's log;
//! - auto-confirm at the deadline runs on the new primary.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xuanfang_allocator::redis_engine::conn::Target;
use xuanfang_allocator::redis_engine::{RedisEngine, RedisOptions};
use xuanfang_allocator::testing::sentinel::{self, wait_until, SentinelSet, PATIENCE};
use xuanfang_allocator::{AllocError, Allocator, Answer};
use xuanfang_hub::{
    Action, Batch, BatchId, Edit, ErrorCode, Event, Family, FamilyId, How, Layout, ListKind,
    ManualClock, Millis, Outcome, Session, SessionId, SessionKind, Stage, Unit, UnitId,
};

const T0: i64 = 1_900_000_000_000;
const WINDOW: i64 = 3 * 60_000;
/// Families 1–8 confirm before the kill, 9–16 while it happens, 17–20 after the
/// failover; 21–24 never confirm (auto-confirmed at the deadline); 25 is the probe.
const FAMILIES: usize = 25;
const PROBE: usize = 25;
/// Contested units U01–U12 (families 2k-1 and 2k both want U(k)), then one own unit
/// per family, U13–U37.
const CONTESTED: usize = 12;

fn family(i: usize) -> FamilyId {
    FamilyId::new(format!("F{i:02}"))
}

fn unit(i: usize) -> UnitId {
    UnitId::new(format!("U{i:02}"))
}

/// Family i's intentions: the contested unit first, then its own.
fn wants(i: usize) -> [UnitId; 2] {
    [unit((i - 1) / 2 % CONTESTED + 1), unit(CONTESTED + i)]
}

fn batch() -> Batch {
    let layout = Layout::new("一房一厅");
    let units = (1..=CONTESTED + FAMILIES)
        .map(|i| Unit {
            id: unit(i),
            building: "1栋".into(),
            number: format!("{i:03}"),
            floor: 1,
            layout: layout.clone(),
            area: 40.0,
            orientation: "南".into(),
            rent: 1000.0,
        })
        .collect();
    let families: Vec<Family> = (1..=FAMILIES)
        .map(|i| Family {
            id: family(i),
            name: format!("家*{i}"),
            rank: i as u32,
            session: SessionId::new("S1"),
            eligible_layouts: vec![layout.clone()],
        })
        .collect();
    Batch {
        id: BatchId::new("sentinel-failover"),
        name: "Sentinel failover".into(),
        preselect_start: Millis(T0 - 3_600_000),
        preselect_end: None,
        utc_offset_minutes: 480,
        sessions: vec![Session {
            id: SessionId::new("S1"),
            kind: SessionKind::Formal,
            start: Millis(T0),
            window_ms: WINDOW,
            families: families.iter().map(|f| f.id.clone()).collect(),
        }],
        units,
        families,
    }
}

/// An answered request.
#[derive(Clone, Debug)]
struct Ack {
    family: FamilyId,
    req_id: String,
    action: Action,
    answer: Answer,
}

/// What the requests saw.
#[derive(Default)]
struct Log {
    acks: Mutex<Vec<Ack>>,
    /// Retryable failures: Redis errors and not-replicated writes.
    errors: AtomicUsize,
    not_replicated: AtomicUsize,
}

/// Whether a failure is one a client may retry (the gateway answers `internal`).
/// Anything else would be a wrong answer.
fn retryable(e: &AllocError) -> bool {
    matches!(e, AllocError::Redis(_) | AllocError::NotReplicated { .. })
}

struct World {
    engine: Arc<RedisEngine>,
    batch: BatchId,
    log: Log,
}

impl World {
    /// Sends one action until it is answered, with the same request id each time.
    async fn act(&self, f: &FamilyId, req_id: &str, action: Action) -> Answer {
        let end = Instant::now() + PATIENCE;
        loop {
            match self
                .engine
                .act(&self.batch, f, req_id, action.clone())
                .await
            {
                Ok(answer) => {
                    self.log.acks.lock().unwrap().push(Ack {
                        family: f.clone(),
                        req_id: req_id.to_owned(),
                        action,
                        answer: answer.clone(),
                    });
                    return answer;
                }
                Err(e) => {
                    assert!(retryable(&e), "{f} {req_id}: not a retryable error: {e}");
                    self.log.errors.fetch_add(1, Ordering::Relaxed);
                    if matches!(e, AllocError::NotReplicated { .. }) {
                        self.log.not_replicated.fetch_add(1, Ordering::Relaxed);
                    }
                    assert!(Instant::now() < end, "{f} {req_id}: never answered: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Declares and lists family i's two units.
    async fn prepare(&self, i: usize) {
        let f = family(i);
        let declared = self
            .act(
                &f,
                "declare",
                Action::Declare {
                    stage: Stage::Formal,
                },
            )
            .await;
        assert!(declared.is_ok(), "{f} declare: {declared:?}");
        for (n, u) in wants(i).into_iter().enumerate() {
            let added = self
                .act(
                    &f,
                    &format!("add-{n}"),
                    Action::Edit {
                        list: ListKind::Intentions,
                        edit: Edit::Add,
                        unit: u,
                    },
                )
                .await;
            assert!(added.is_ok(), "{f} add: {added:?}");
        }
    }

    /// Confirms family i's contested unit, or its own if that was taken.
    async fn confirm(&self, i: usize) {
        let f = family(i);
        let [first, own] = wants(i);
        match self
            .act(&f, "confirm-0", Action::Confirm { unit: first })
            .await
        {
            Ok(_) => {}
            Err(r) if r.code == ErrorCode::UnitTaken => {
                let second = self
                    .act(&f, "confirm-1", Action::Confirm { unit: own })
                    .await;
                assert!(second.is_ok(), "{f}'s own unit: {second:?}");
            }
            Err(r) => panic!("{f} confirm: {r:?}"),
        }
    }
}

/// Follows the batch's stream with `wait_events` through everything, retrying on
/// errors, until it has reached seq `upto` (0: not known yet); returns what it was
/// handed.
async fn follow(world: Arc<World>, upto: Arc<AtomicU64>) -> Vec<Event> {
    let mut seen: Vec<Event> = Vec::new();
    loop {
        let after = seen.last().map_or(0, |e| e.seq);
        let target = upto.load(Ordering::Relaxed);
        if target != 0 && after >= target {
            return seen;
        }
        match world
            .engine
            .wait_events(&world.batch, after, 100, Duration::from_millis(300))
            .await
        {
            Ok(events) => seen.extend(events),
            Err(e) => {
                assert!(retryable(&e), "follower: not a retryable error: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Blocking waits off the async threads.
async fn until(what: &'static str, cond: impl FnMut() -> bool + Send + 'static) {
    tokio::task::spawn_blocking(move || wait_until(what, cond))
        .await
        .expect("wait");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_mid_session_loses_no_acknowledged_confirm() {
    let started = Instant::now();
    let set = Arc::new(Mutex::new(
        tokio::task::spawn_blocking(SentinelSet::start)
            .await
            .unwrap(),
    ));
    let set_up = started.elapsed();
    let (old_primary, replica) = set.lock().unwrap().data_ports();
    let url = set.lock().unwrap().url();
    let clock = Arc::new(ManualClock::new(Millis(T0 - 60_000)));
    let options = RedisOptions {
        clock: Some(clock.clone()),
        connection_timeout: Duration::from_secs(1),
        replica_wait: Duration::from_millis(500),
        ..RedisOptions::default()
    };
    let spec = batch();
    // The set-up load waits for the replica as long as a busy machine needs (the 500 ms
    // of the session's engine is about the failover, not about a starved replica process).
    let loader = RedisEngine::connect_to(
        Target::parse(&url).unwrap(),
        RedisOptions {
            clock: Some(clock.clone()),
            replica_wait: Duration::from_secs(30),
            response_timeout: Duration::from_secs(40),
            ..RedisOptions::default()
        },
    )
    .await
    .expect("connect through the Sentinels");
    loader.load_batch(spec.clone()).await.expect("load");
    drop(loader);
    let engine = RedisEngine::connect_to(Target::parse(&url).unwrap(), options)
        .await
        .expect("connect through the Sentinels");
    let world = Arc::new(World {
        engine: Arc::new(engine),
        batch: spec.id.clone(),
        log: Log::default(),
    });
    let upto = Arc::new(AtomicU64::new(0));
    let follower = tokio::spawn(follow(world.clone(), upto.clone()));

    // Before the kill: everyone declares and lists; families 1–8 confirm.
    clock.set(Millis(T0 + 1_000));
    let mut prep = Vec::new();
    for i in 1..=FAMILIES {
        let w = world.clone();
        prep.push(tokio::spawn(async move { w.prepare(i).await }));
    }
    for t in prep {
        t.await.unwrap();
    }
    let mut early = Vec::new();
    for i in 1..=8 {
        let w = world.clone();
        early.push(tokio::spawn(async move { w.confirm(i).await }));
    }
    for t in early {
        t.await.unwrap();
    }

    // Families 9–16 confirm while the primary dies, with its replica behind: the
    // replica is frozen (SIGSTOP) and its link cut, so what the primary runs from now
    // on exists only there. Without the wait those confirms would be answered, then
    // lost with the primary; with it they are not answered until a replica has them.
    {
        let set = set.lock().unwrap();
        set.freeze(1, true);
        let cut = sentinel::query(set.port(0), &["CLIENT", "KILL", "TYPE", "replica"]);
        assert_eq!(cut.as_deref(), Some("1"), "the replica's link was not cut");
    }
    let ran_before = set.lock().unwrap().script_calls(0);
    let mut during = Vec::new();
    for i in 9..=16 {
        let w = world.clone();
        during.push(tokio::spawn(async move { w.confirm(i).await }));
    }
    until("the primary ran confirms its replica never got", {
        let set = set.clone();
        move || set.lock().unwrap().script_calls(0) >= ran_before + 4
    })
    .await;
    {
        let mut set = set.lock().unwrap();
        set.kill9(0);
        set.freeze(1, false);
    }
    let killed_at = Instant::now();

    // Nothing can be answered now: the old primary is gone, and a write done on a
    // promoted replica has no replica of its own to wait for until the old primary
    // is back. So the probe's confirm fails, whenever it runs, and keeps failing.
    clock.set(Millis(T0 + 2_000));
    let probe = family(PROBE);
    let probe_unit = wants(PROBE)[1].clone();
    let probe_confirm = Action::Confirm {
        unit: probe_unit.clone(),
    };
    let first = world
        .engine
        .act(&spec.id, &probe, "probe", probe_confirm.clone())
        .await;
    match &first {
        Err(e) => assert!(retryable(e), "probe: {e}"),
        Ok(a) => panic!("a confirm was answered with no primary and replica: {a:?}"),
    }

    // The Sentinels promote the replica; the engine reaches it by itself, and its
    // writes are done there but not answered: no replica has them.
    until("the Sentinels promote the replica", {
        let set = set.clone();
        move || set.lock().unwrap().primary_port() == Some(replica)
    })
    .await;
    let failover = killed_at.elapsed();
    let end = Instant::now() + PATIENCE;
    loop {
        match world
            .engine
            .act(&spec.id, &probe, "probe", probe_confirm.clone())
            .await
        {
            Err(AllocError::NotReplicated { .. }) => break,
            Err(e) => assert!(retryable(&e), "probe: {e}"),
            Ok(a) => panic!("answered with no replica to hold it: {a:?}"),
        }
        assert!(
            Instant::now() < end,
            "the engine never reached the new primary"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    world
        .engine
        .ping()
        .await
        .expect("reads go to the new primary");

    // The old primary comes back (its AOF has writes the new primary never saw); the
    // Sentinels make it the new primary's replica, and writes are answered again.
    clock.set(Millis(T0 + 3_000));
    set.lock().unwrap().restart(0);
    let restarted_at = Instant::now();
    until("the old primary replicates the new one", {
        let set = set.clone();
        move || set.lock().unwrap().replicates(0, replica)
    })
    .await;
    let demoted = restarted_at.elapsed();
    let probe_answer = world.act(&probe, "probe", probe_confirm.clone()).await;
    assert_eq!(
        probe_answer.as_ref().ok().and_then(|v| v.outcome.clone()),
        Some(Outcome::Selected {
            unit: probe_unit.clone(),
            how: How::Confirmed,
            // Decided while there was no replica, answered only now: the retry
            // returned that decision, not a fresh one.
            at: Millis(T0 + 2_000),
        }),
        "the probe's retry"
    );
    for t in during {
        t.await.unwrap();
    }
    let mut late = Vec::new();
    for i in 17..=20 {
        let w = world.clone();
        late.push(tokio::spawn(async move { w.confirm(i).await }));
    }
    for t in late {
        t.await.unwrap();
    }

    // The deadline: auto-confirm for families 21–24, on the new primary.
    clock.set(Millis(T0 + WINDOW));
    let end = Instant::now() + PATIENCE;
    loop {
        match world
            .engine
            .close_session(&spec.id, &SessionId::new("S1"))
            .await
        {
            Ok(_) => break,
            Err(e) => assert!(retryable(&e), "close: {e}"),
        }
        assert!(Instant::now() < end, "auto-confirm never went through");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The verdict, read from the new primary.
    assert_eq!(set.lock().unwrap().primary_port(), Some(replica));
    assert_ne!(replica, old_primary);
    let results = world.engine.results(&spec.id).await.expect("results");
    let outcome: HashMap<FamilyId, Option<Outcome>> = results
        .iter()
        .map(|r| (r.family.id.clone(), r.state.outcome.clone()))
        .collect();
    let acks = world.log.acks.lock().unwrap().clone();
    let mut confirms = 0;
    for ack in &acks {
        let Action::Confirm { unit } = &ack.action else {
            continue;
        };
        confirms += 1;
        let held = outcome[&ack.family].as_ref().and_then(Outcome::unit);
        match &ack.answer {
            Ok(view) => {
                assert_eq!(
                    view.outcome.as_ref().and_then(Outcome::unit),
                    Some(unit),
                    "{} {}: an accepted confirm's view",
                    ack.family,
                    ack.req_id
                );
                assert_eq!(
                    outcome[&ack.family], view.outcome,
                    "{} {}: acknowledged, then lost",
                    ack.family, ack.req_id
                );
            }
            Err(r) => {
                assert_eq!(r.code, ErrorCode::UnitTaken, "{}: {r:?}", ack.family);
                assert_ne!(held, Some(unit), "{}: refused, yet holds it", ack.family);
            }
        }
        // The same request id, sent again, gets the same answer.
        let again = world
            .engine
            .act(&spec.id, &ack.family, &ack.req_id, ack.action.clone())
            .await
            .expect("retry after the failover");
        assert_eq!(
            again.as_ref().map(|v| v.outcome.clone()),
            ack.answer.as_ref().map(|v| v.outcome.clone()),
            "{} {}: the retry's answer",
            ack.family,
            ack.req_id
        );
    }
    assert!(confirms >= 20, "only {confirms} confirms were answered");
    let mut holders: HashMap<&UnitId, &FamilyId> = HashMap::new();
    for (f, o) in &outcome {
        let u = o
            .as_ref()
            .and_then(Outcome::unit)
            .unwrap_or_else(|| panic!("{f} has no unit after the deadline: {o:?}"));
        if let Some(other) = holders.insert(u, f) {
            panic!("{u} is held by both {f} and {other}");
        }
    }
    for i in 21..=24 {
        assert!(
            matches!(
                outcome[&family(i)],
                Some(Outcome::Selected {
                    how: How::Automatic,
                    ..
                })
            ),
            "{}: {:?}",
            family(i),
            outcome[&family(i)]
        );
    }
    assert!(
        world.log.not_replicated.load(Ordering::Relaxed) > 0,
        "no write ever waited in vain for a replica"
    );

    // The follower saw exactly the new primary's log: nothing it handed out was
    // taken back by the failover.
    let log = world
        .engine
        .events(&spec.id, 0, 100_000)
        .await
        .expect("the log");
    upto.store(log.last().expect("a log").seq, Ordering::Relaxed);
    let followed = tokio::time::timeout(PATIENCE, follower)
        .await
        .expect("the follower catches up")
        .unwrap();
    assert_eq!(
        followed.len(),
        log.len(),
        "the follower's log has another length"
    );
    for (a, b) in followed.iter().zip(&log) {
        assert_eq!(
            a, b,
            "the follower was handed an event the failover took back"
        );
    }
    eprintln!(
        "sentinel failover: {} answers, {} retryable errors ({} not replicated); \
         set up in {:.1} s, failover in {:.1} s, old primary a replica {:.1} s after its \
         restart; test {:.1} s",
        acks.len(),
        world.log.errors.load(Ordering::Relaxed),
        world.log.not_replicated.load(Ordering::Relaxed),
        set_up.as_secs_f64(),
        failover.as_secs_f64(),
        demoted.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
