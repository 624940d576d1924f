//! The conformance suite against the Redis engine, on a private redis-server.

use std::sync::Arc;

use xuanfang_allocator::Allocator;
use xuanfang_hub::ManualClock;

async fn make_redis(clock: Arc<ManualClock>) -> Arc<dyn Allocator> {
    xuanfang_allocator::testing::redis_engine(clock).await
}

conformance_suite!(make_redis);

/// The Redis engine against the hub's `Selection` itself: random sequences of actions,
/// auto-confirm steps and supplementary publications at random server times (with
/// every window edge hit exactly), answered by both; every answer, every event and the
/// final state must be identical. This pins the Lua check order to `Selection::decide`.
mod differential {
    use std::collections::HashMap;
    use std::sync::Arc;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use xuanfang_allocator::redis_engine::RedisEngine;
    use xuanfang_allocator::testing::redis_engine_concrete;
    use xuanfang_allocator::{AllocError, Allocator, CloseStep};
    use xuanfang_hub::{
        Action, Batch, BatchId, Clock, Edit, ErrorCode, Event, EventKind, Family, FamilyId, Layout,
        ListKind, ManualClock, Millis, Phase, Rejection, Selection, Session, SessionId,
        SessionKind, Stage, Unit, UnitId,
    };

    const T0: i64 = 1_900_000_000_000;
    /// Windows are seconds long here so a few hundred steps cross every phase.
    const SEC: i64 = 1_000;
    const UNITS: [&str; 8] = ["U1", "U2", "U3", "U4", "U5", "U6", "U7", "U8"];
    const FAMILIES: [&str; 6] = ["f1", "f2", "f3", "f4", "f5", "f6"];

    fn batch(id: &str) -> Batch {
        let big = Layout::new("两房一厅");
        let small = Layout::new("一房一厅");
        let units = UNITS
            .iter()
            .enumerate()
            .map(|(i, u)| Unit {
                id: UnitId::new(*u),
                building: "1栋".into(),
                number: format!("10{i}"),
                floor: 1,
                layout: if i % 3 == 0 {
                    big.clone()
                } else {
                    small.clone()
                },
                area: 40.0,
                orientation: "南".into(),
                rent: 1000.0,
            })
            .collect();
        let families = FAMILIES
            .iter()
            .enumerate()
            .map(|(i, f)| Family {
                id: FamilyId::new(*f),
                name: format!("李*{i}"),
                rank: i as u32 + 1,
                session: SessionId::new(if i < 3 { "S1" } else { "S2" }),
                eligible_layouts: if i % 2 == 0 {
                    vec![small.clone(), big.clone()]
                } else {
                    vec![small.clone()]
                },
            })
            .collect();
        let session = |id: &str, start: i64, fams: &[&str]| Session {
            id: SessionId::new(id),
            kind: SessionKind::Formal,
            start: Millis(start),
            window_ms: 20 * SEC,
            families: fams.iter().map(|f| FamilyId::new(*f)).collect(),
        };
        Batch {
            id: BatchId::new(id),
            name: "差分".into(),
            preselect_start: Millis(T0),
            preselect_end: None,
            utc_offset_minutes: 480,
            units,
            families,
            sessions: vec![
                session("S1", T0 + 20 * SEC, &["f1", "f2", "f3"]),
                session("S2", T0 + 60 * SEC, &["f4", "f5", "f6"]),
            ],
        }
    }

    /// The reference: the hub machine, plus the req_id memory every engine keeps.
    struct Reference {
        sel: Selection,
        log: Vec<Event>,
        answers: Memory,
    }

    /// Each family's most recent `REPLIES_PER_FAMILY` answers, oldest first; an unknown
    /// family's answers are not kept.
    #[derive(Default)]
    struct Memory(HashMap<String, Vec<(String, Remembered)>>);

    type Remembered = Result<(), Rejection>;

    impl Memory {
        fn get(&self, family: &str, req_id: &str) -> Option<Remembered> {
            let kept = self.0.get(family)?;
            kept.iter()
                .find(|(r, _)| r == req_id)
                .map(|(_, a)| a.clone())
        }

        fn insert(&mut self, family: &str, req_id: String, answer: Remembered) {
            if matches!(&answer, Err(r) if r.code == ErrorCode::UnknownFamily) {
                return;
            }
            let kept = self.0.entry(family.to_owned()).or_default();
            kept.push((req_id, answer));
            if kept.len() > xuanfang_allocator::REPLIES_PER_FAMILY {
                let _oldest = kept.remove(0);
            }
        }
    }

    impl Reference {
        fn commit(&mut self, events: Vec<EventKind>, now: Millis) {
            for event in events {
                let e = Event {
                    seq: self.sel.seq() + 1,
                    at: now,
                    event,
                };
                self.sel.apply(&e);
                self.log.push(e);
            }
        }
    }

    fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
        from[rng.random_range(0..from.len())]
    }

    fn unit(rng: &mut StdRng) -> UnitId {
        UnitId::new(if rng.random_bool(0.05) {
            "X9"
        } else {
            pick(rng, &UNITS)
        })
    }

    fn edit(rng: &mut StdRng, list: ListKind) -> Action {
        if rng.random_bool(0.2) {
            return Action::SetList {
                list,
                units: (0..rng.random_range(0..7)).map(|_| unit(rng)).collect(),
            };
        }
        Action::Edit {
            list,
            edit: [
                Edit::Add,
                Edit::Add,
                Edit::Add,
                Edit::Remove,
                Edit::Up,
                Edit::Down,
                Edit::Top,
            ][rng.random_range(0..7)],
            unit: unit(rng),
        }
    }

    /// Any action at all, sensible or not.
    fn any_action(rng: &mut StdRng) -> Action {
        let list = if rng.random_bool(0.5) {
            ListKind::Cart
        } else {
            ListKind::Intentions
        };
        match rng.random_range(0..100) {
            0..20 => Action::Declare {
                stage: if rng.random_bool(0.5) {
                    Stage::Preselection
                } else {
                    Stage::Formal
                },
            },
            20..50 => edit(rng, list),
            50..60 => Action::Sync,
            60..80 => Action::Confirm { unit: unit(rng) },
            80..83 => Action::Waive,
            _ => Action::ApplySupplementary,
        }
    }

    /// Mostly what a family in `phase` would do, sometimes anything.
    fn action(rng: &mut StdRng, phase: Option<Phase>) -> Action {
        if rng.random_bool(0.25) {
            return any_action(rng);
        }
        match phase {
            Some(Phase::Preselection) if rng.random_bool(0.2) => Action::Declare {
                stage: Stage::Preselection,
            },
            Some(Phase::Preselection) => edit(rng, ListKind::Cart),
            Some(Phase::Formal) => match rng.random_range(0..100) {
                0..15 => Action::Declare {
                    stage: Stage::Formal,
                },
                15..30 => Action::Sync,
                30..70 => edit(rng, ListKind::Intentions),
                _ => Action::Confirm { unit: unit(rng) },
            },
            Some(Phase::Done) => Action::ApplySupplementary,
            _ => any_action(rng),
        }
    }

    /// The next server time: a small step, or exactly a window edge (or 1 ms before).
    fn advance(rng: &mut StdRng, now: i64, edges: &[i64]) -> i64 {
        if rng.random_bool(0.01) {
            if let Some(&edge) = edges.iter().find(|&&e| e > now) {
                return if rng.random_bool(0.5) { edge - 1 } else { edge };
            }
        }
        now + [0, 1, 50, 100, 200, 500][rng.random_range(0..6)]
    }

    async fn run(seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let clock = Arc::new(ManualClock::new(Millis(T0 - 2 * SEC)));
        let engine: RedisEngine = redis_engine_concrete(clock.clone()).await;
        let b = batch(&format!("diff-{seed}"));
        let id = b.id.clone();
        engine.load_batch(b.clone()).await.expect("load");
        let mut reference = Reference {
            sel: Selection::new(b.clone()).expect("valid batch"),
            log: Vec::new(),
            answers: Memory::default(),
        };
        let loaded = EventKind::BatchLoaded { batch: b.clone() };
        reference.commit(vec![loaded], clock.now());

        let mut edges = vec![
            T0,
            T0 + 20 * SEC,
            T0 + 40 * SEC,
            T0 + 60 * SEC,
            T0 + 80 * SEC,
        ];
        let mut req = 0u32;
        let mut published = 0;
        for step in 0..600 {
            let t = advance(&mut rng, clock.now().0, &edges);
            clock.set(Millis(t));
            let now = clock.now();
            let roll = rng.random_range(0..100);
            if roll < 6 {
                // An auto-confirm step of a random session, with a random chunk size.
                let sessions: Vec<SessionId> = reference
                    .sel
                    .batch()
                    .sessions
                    .iter()
                    .map(|s| s.id.clone())
                    .collect();
                let s = &sessions[rng.random_range(0..sessions.len())];
                let max = rng.random_range(0..3);
                let got = engine.close_session_step(&id, s, max).await;
                match reference.sel.close_session_step(s, now, max) {
                    Ok(events) => {
                        let want = CloseStep {
                            decided: events
                                .iter()
                                .filter(|e| !matches!(e, EventKind::SessionClosed { .. }))
                                .count(),
                            closed: events
                                .iter()
                                .any(|e| matches!(e, EventKind::SessionClosed { .. }))
                                || reference.sel.closed_sessions().contains(s),
                        };
                        reference.commit(events, now);
                        assert_eq!(got.expect("close step"), want, "seed {seed} step {step}");
                    }
                    Err(r) => match got {
                        Err(AllocError::Rejected(g)) => assert_eq!(g, r, "seed {seed} step {step}"),
                        other => panic!("seed {seed} step {step}: want {r:?}, got {other:?}"),
                    },
                }
            } else if roll < 9 {
                // An operator publishes a supplementary session of some families.
                published += 1;
                let families = FAMILIES
                    .iter()
                    .filter(|_| rng.random_bool(0.5))
                    .map(|f| FamilyId::new(*f))
                    .collect();
                let session = Session {
                    id: SessionId::new(format!("B{}", published % 3)),
                    kind: SessionKind::Supplementary,
                    start: Millis(t + 10 * SEC),
                    window_ms: 20 * SEC,
                    families,
                };
                let got = engine.publish_supplementary(&id, session.clone()).await;
                match reference.sel.decide_publish(&session, now) {
                    Ok(events) => {
                        reference.commit(events, now);
                        got.expect("publish");
                        edges.extend([t + 10 * SEC, t + 30 * SEC]);
                        edges.sort();
                    }
                    Err(r) => match got {
                        Err(AllocError::Rejected(g)) => assert_eq!(g, r, "seed {seed} step {step}"),
                        other => panic!("seed {seed} step {step}: want {r:?}, got {other:?}"),
                    },
                }
            } else {
                let family = if rng.random_bool(0.03) {
                    "ghost"
                } else {
                    pick(&mut rng, &FAMILIES)
                };
                // Now and then a retry of an earlier req_id.
                let req_id = if req > 0 && rng.random_bool(0.1) {
                    format!("r{}", rng.random_range(0..req))
                } else {
                    req += 1;
                    format!("r{}", req - 1)
                };
                let fid = FamilyId::new(family);
                let action = action(&mut rng, reference.sel.phase(&fid, now));
                let want = match reference.answers.get(family, &req_id) {
                    Some(answer) => answer,
                    None => {
                        let answer = reference.sel.decide(&fid, &action, now);
                        let answer = answer.map(|events| reference.commit(events, now));
                        reference
                            .answers
                            .insert(family, req_id.clone(), answer.clone());
                        answer
                    }
                };
                let got = engine
                    .act(&id, &fid, &req_id, action.clone())
                    .await
                    .expect("engine");
                let what = format!("seed {seed} step {step} at {t}: {family} {req_id} {action:?}");
                match (want, got) {
                    (Ok(()), Ok(view)) => {
                        assert_eq!(Some(view), reference.sel.family_view(&fid, now), "{what}")
                    }
                    (Err(w), Err(g)) => assert_eq!(g, w, "{what}"),
                    (w, g) => panic!("{what}: want {w:?}, got {g:?}"),
                }
            }
        }

        let events = engine.events(&id, 0, usize::MAX).await.expect("events");
        assert_eq!(events, reference.log, "seed {seed}: the event logs differ");
        let results = engine.results(&id).await.expect("results");
        for r in &results {
            assert_eq!(
                Some(&r.state),
                reference.sel.state(&r.family.id),
                "seed {seed}"
            );
        }
        assert_eq!(
            &engine.batch(&id).await.expect("batch"),
            reference.sel.batch()
        );
        let replayed = Selection::replay(&events).expect("replay");
        assert_eq!(replayed, reference.sel, "seed {seed}: replay differs");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn random_sessions_answer_exactly_like_the_hub_selection() {
        for seed in 0..12 {
            run(seed).await;
        }
    }
}

/// What only the Redis engine has: script caching, Redis TIME, key layout, and blocking
/// reads on their own connections.
mod redis_specific {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use redis::AsyncCommands;
    use xuanfang_allocator::redis_engine::{RedisEngine, RedisOptions};
    use xuanfang_allocator::testing::{unique_namespace, RedisServer};
    use xuanfang_allocator::Allocator;
    use xuanfang_hub::{
        Action, Batch, BatchId, Family, FamilyId, Layout, Millis, Session, SessionId, SessionKind,
        Stage, Unit, UnitId,
    };

    fn batch(id: &str, preselect_start: Millis, session_start: Millis) -> Batch {
        let layout = Layout::new("一房一厅");
        Batch {
            id: BatchId::new(id),
            name: "redis".into(),
            preselect_start,
            preselect_end: None,
            utc_offset_minutes: 480,
            units: vec![Unit {
                id: UnitId::new("U1"),
                building: "1栋".into(),
                number: "101".into(),
                floor: 1,
                layout: layout.clone(),
                area: 40.0,
                orientation: "南".into(),
                rent: 1000.0,
            }],
            families: vec![Family {
                id: FamilyId::new("f1"),
                name: "王*".into(),
                rank: 1,
                session: SessionId::new("S1"),
                eligible_layouts: vec![layout],
            }],
            sessions: vec![Session {
                id: SessionId::new("S1"),
                kind: SessionKind::Formal,
                start: session_start,
                window_ms: 180_000,
                families: vec![FamilyId::new("f1")],
            }],
        }
    }

    async fn engine(namespace: &str) -> RedisEngine {
        let options = RedisOptions {
            namespace: namespace.to_owned(),
            ..RedisOptions::default()
        };
        RedisEngine::connect(RedisServer::shared().client(), options)
            .await
            .expect("connect")
    }

    /// A load is written in slices and published by its last call: while another load
    /// of the id holds the lock the id is a conflict and nothing of the batch is
    /// visible; a family hash a failed load left (another load's token) is not taken
    /// for the batch's, and the next load writes its families afresh.
    #[tokio::test]
    async fn a_chunked_load_is_invisible_until_published_and_ignores_leftovers() {
        use xuanfang_allocator::redis_engine::keys::BatchKeys;
        use xuanfang_allocator::AllocError;
        use xuanfang_hub::ErrorCode;

        let ns = unique_namespace();
        let e = engine(&ns).await;
        let now = e.now().await.expect("now");
        let b = batch("chunked", now.plus_ms(-60_000), now.plus_ms(3_600_000));
        let k = BatchKeys::new(&ns, &b.id);
        let mut conn = RedisServer::shared()
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("conn");
        // What a failed earlier load left: a family of this batch with a stale outcome,
        // and one that is not in the batch at all.
        let ghost = FamilyId::new("ghost");
        for f in [FamilyId::new("f1"), ghost.clone()] {
            let _: () = conn
                .hset_multiple(
                    k.family(&f),
                    &[
                        ("id", f.as_str()),
                        ("rank", "1"),
                        ("cur", "S1"),
                        ("session", "S1"),
                        ("oresult", "waived"),
                        ("load", "an-earlier-load"),
                    ],
                )
                .await
                .expect("hset");
        }
        // Another load of the id under way.
        let _: () = conn.set(k.loading(), "another-load").await.expect("set");
        let refused = e.load_batch(b.clone()).await;
        assert!(
            matches!(&refused, Err(AllocError::Rejected(r)) if r.code == ErrorCode::Conflict),
            "{refused:?}"
        );
        let unseen = e.family(&b.id, &FamilyId::new("f1")).await;
        assert!(
            matches!(&unseen, Err(AllocError::Rejected(r)) if r.code == ErrorCode::UnknownBatch),
            "{unseen:?}"
        );
        assert!(!e.batches().await.expect("batches").contains(&b.id));
        let holder: String = conn.get(k.loading()).await.expect("get");
        assert_eq!(
            holder, "another-load",
            "a refused load leaves the other's lock"
        );

        let _: () = conn.del(k.loading()).await.expect("del");
        e.load_batch(b.clone()).await.expect("load");
        let view = e.family(&b.id, &FamilyId::new("f1")).await.expect("view");
        assert_eq!(view.outcome, None, "f1 was written afresh");
        let ghost_view = e.family(&b.id, &ghost).await;
        assert!(
            matches!(&ghost_view, Err(AllocError::Rejected(r)) if r.code == ErrorCode::UnknownFamily),
            "{ghost_view:?}"
        );
        let ghost_act = e
            .act(
                &b.id,
                &ghost,
                "r1",
                Action::Declare {
                    stage: Stage::Preselection,
                },
            )
            .await
            .expect("engine");
        assert!(
            matches!(&ghost_act, Err(r) if r.code == ErrorCode::UnknownFamily),
            "{ghost_act:?}"
        );
        let lock: Option<String> = conn.get(k.loading()).await.expect("get");
        assert_eq!(lock, None, "a published load releases its lock");
        // The id is now in use.
        let again = e.load_batch(b).await;
        assert!(
            matches!(&again, Err(AllocError::Rejected(r)) if r.code == ErrorCode::Conflict),
            "{again:?}"
        );
    }

    /// The batch's JSON is staged in slices and renamed, not copied by the publishing
    /// call: meta holds none, `loaded` holds it whole (slices cut inside characters
    /// join up), event 1 still carries it, and an engine with no cache reads it back.
    #[tokio::test]
    async fn a_load_stages_the_batch_json_in_slices_and_event_one_still_carries_it() {
        use xuanfang_allocator::redis_engine::keys::BatchKeys;
        use xuanfang_hub::EventKind;

        let ns = unique_namespace();
        let e = engine(&ns).await;
        let now = e.now().await.expect("now");
        let mut b = batch("sliced", now.plus_ms(-60_000), now.plus_ms(3_600_000));
        // Over 256 KiB of JSON, with 栋 and 南 (3 bytes each) throughout: several slices.
        let template = b.units[0].clone();
        b.units = (0..5_000)
            .map(|i| Unit {
                id: UnitId(format!("U{i:05}")),
                building: format!("{}栋", i % 9 + 1),
                ..template.clone()
            })
            .collect();
        let json = serde_json::to_string(&b).expect("json");
        assert!(json.len() > 2 * 256 * 1024, "{} bytes", json.len());
        e.load_batch(b.clone()).await.expect("load");

        let k = BatchKeys::new(&ns, &b.id);
        let mut conn = RedisServer::shared()
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("conn");
        let in_meta: Option<String> = conn.hget(k.meta(), "batch").await.expect("hget");
        assert_eq!(
            in_meta, None,
            "the publishing call copied no JSON into meta"
        );
        let loaded: String = conn.get(k.loaded()).await.expect("get");
        assert_eq!(serde_json::from_str::<Batch>(&loaded).expect("parse"), b);
        let ttl: i64 = conn.pttl(k.loaded()).await.expect("pttl");
        assert_eq!(
            ttl, -1,
            "the loaded batch does not expire with the load's lock"
        );
        let events = e.events(&b.id, 0, 1).await.expect("events");
        assert!(
            matches!(&events[..], [ev] if ev.event == EventKind::BatchLoaded { batch: b.clone() }),
            "event 1 carries the batch"
        );
        let fresh = engine(&ns).await;
        assert_eq!(fresh.batch(&b.id).await.expect("batch"), b);
    }

    #[tokio::test]
    async fn without_an_injected_clock_scripts_use_redis_time() {
        let e = engine(&unique_namespace()).await;
        let now = e.now().await.expect("now");
        let wall = Millis::now();
        assert!((now.0 - wall.0).abs() < 5_000, "TIME {now} vs wall {wall}");
        let b = batch("t", now.plus_ms(-60_000), now.plus_ms(3_600_000));
        e.load_batch(b).await.expect("load");
        let view = e
            .act(
                &BatchId::new("t"),
                &FamilyId::new("f1"),
                "r1",
                Action::Declare {
                    stage: Stage::Preselection,
                },
            )
            .await
            .expect("engine")
            .expect("declared");
        let at = view.preselect_declared_at.expect("declaration time");
        assert!(
            at >= now && at.0 - now.0 < 5_000,
            "declared at {at}, now {now}"
        );
        assert_eq!(view.server_time, at);
    }

    #[tokio::test]
    async fn scripts_reload_themselves_after_script_flush() {
        let ns = unique_namespace();
        let e = engine(&ns).await;
        let now = e.now().await.expect("now");
        e.load_batch(batch("f", now.plus_ms(-1), now.plus_ms(3_600_000)))
            .await
            .expect("load");
        let mut conn = RedisServer::shared()
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("conn");
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut conn)
            .await
            .expect("flush");
        let answer = e
            .act(
                &BatchId::new("f"),
                &FamilyId::new("f1"),
                "r1",
                Action::Declare {
                    stage: Stage::Preselection,
                },
            )
            .await
            .expect("the engine reloads the script on NOSCRIPT");
        assert!(answer.is_ok());
    }

    #[tokio::test]
    async fn every_key_of_a_batch_carries_its_hash_tag() {
        let ns = unique_namespace();
        let e = engine(&ns).await;
        let now = e.now().await.expect("now");
        let b = BatchId::new("tagged");
        e.load_batch(batch("tagged", now.plus_ms(-1), now.plus_ms(-1)))
            .await
            .expect("load");
        let f = FamilyId::new("f1");
        let declare = Action::Declare {
            stage: Stage::Formal,
        };
        e.act(&b, &f, "r1", declare).await.unwrap().unwrap();
        let set = Action::SetList {
            list: xuanfang_hub::ListKind::Intentions,
            units: vec![UnitId::new("U1")],
        };
        e.act(&b, &f, "r2", set).await.unwrap().unwrap();
        let confirm = Action::Confirm {
            unit: UnitId::new("U1"),
        };
        e.act(&b, &f, "r3", confirm).await.unwrap().unwrap();
        let mut conn = RedisServer::shared()
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("conn");
        let keys: Vec<String> = conn.keys(format!("{ns}*")).await.expect("keys");
        assert!(keys.len() >= 8, "{keys:?}");
        for k in keys {
            if k == format!("{ns}xuanfang:batches") {
                continue;
            }
            let tag = k.split('{').nth(1).and_then(|r| r.split('}').next());
            assert_eq!(tag, Some("b:tagged"), "key {k}");
        }
    }

    /// Blocked clients of a server, from `INFO clients`.
    async fn blocked_clients(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query_async(conn)
            .await
            .expect("INFO");
        info.lines()
            .find_map(|l| l.strip_prefix("blocked_clients:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("INFO clients lists blocked_clients")
    }

    #[tokio::test]
    async fn a_blocked_event_wait_does_not_hold_up_other_commands() {
        // Long enough that a command queued behind a blocked read, or a waiter that only
        // returns at its timeout, misses any bound below by far, however slow the machine.
        const WAIT: Duration = Duration::from_secs(60);
        // A private server, so every blocked client on it is one of this test's waiters.
        let server = RedisServer::start();
        let options = RedisOptions {
            namespace: unique_namespace(),
            ..RedisOptions::default()
        };
        let e = Arc::new(
            RedisEngine::connect(server.client(), options)
                .await
                .expect("connect"),
        );
        let now = e.now().await.expect("now");
        let b = BatchId::new("w");
        e.load_batch(batch("w", now.plus_ms(-1), now.plus_ms(3_600_000)))
            .await
            .expect("load");
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let (e, b) = (e.clone(), b.clone());
                tokio::spawn(async move { e.wait_events(&b, 1, 10, WAIT).await })
            })
            .collect();
        let mut admin = server
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("admin connection");
        let deadline = Instant::now() + Duration::from_secs(30);
        while blocked_clients(&mut admin).await < 3 {
            assert!(Instant::now() < deadline, "the waiters never blocked");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let started = Instant::now();
        e.board(&b).await.expect("board");
        e.ping().await.expect("ping");
        assert!(
            started.elapsed() < WAIT / 2,
            "commands waited behind XREAD BLOCK: {:?}",
            started.elapsed()
        );
        let declare = Action::Declare {
            stage: Stage::Preselection,
        };
        e.act(&b, &FamilyId::new("f1"), "r1", declare)
            .await
            .unwrap()
            .unwrap();
        for w in waiters {
            let events = w.await.expect("task").expect("wait");
            assert_eq!(events.first().map(|e| e.seq), Some(2));
        }
        assert!(
            started.elapsed() < WAIT / 2,
            "waiters woke on the event, not at their timeout"
        );
    }
}

/// A session much larger than one close window, most of whose families confirmed before
/// the deadline: the windowed close still decides every remaining family once, in rank
/// order, exactly as the hub's `Selection` does, whatever the chunk size.
mod large_session {
    use std::sync::Arc;

    use xuanfang_hub::{
        Action, Batch, BatchId, Edit, Event, Family, FamilyId, Layout, ListKind, ManualClock,
        Millis, Selection, Session, SessionId, SessionKind, Stage, Unit, UnitId,
    };

    const T0: i64 = 1_900_000_000_000;
    const N: usize = 1200;

    fn batch(id: &str) -> Batch {
        let layout = Layout::new("一房一厅");
        let units = (0..N)
            .map(|i| Unit {
                id: UnitId(format!("U{i:04}")),
                building: "1栋".into(),
                number: format!("{i}"),
                floor: 1,
                layout: layout.clone(),
                area: 40.0,
                orientation: "南".into(),
                rent: 1000.0,
            })
            .collect();
        let families: Vec<Family> = (0..N)
            .map(|i| Family {
                id: FamilyId(format!("F{i:04}")),
                name: "王*".into(),
                rank: i as u32 + 1,
                session: SessionId::new("S"),
                eligible_layouts: vec![layout.clone()],
            })
            .collect();
        Batch {
            id: BatchId::new(id),
            name: "large".into(),
            preselect_start: Millis(T0),
            preselect_end: None,
            utc_offset_minutes: 480,
            units,
            sessions: vec![Session {
                id: SessionId::new("S"),
                kind: SessionKind::Formal,
                start: Millis(T0 + 1000),
                window_ms: 1000,
                families: families.iter().map(|f| f.id.clone()).collect(),
            }],
            families,
        }
    }

    async fn run(chunk: usize) {
        let clock = Arc::new(ManualClock::new(Millis(T0 + 1500)));
        let engine = xuanfang_allocator::testing::redis_engine(clock.clone()).await;
        let b = batch(&format!("large-{chunk}"));
        engine.load_batch(b.clone()).await.unwrap();
        // Below 900, families confirm their own unit except a sparse, irregular few
        // (windows then run out between them); 900.. enter with two intentions each,
        // the first of which collides with a neighbour's; the last 100 are absent.
        for i in 0..N - 100 {
            let f = FamilyId(format!("F{i:04}"));
            let act = |n: &str, a: Action| {
                let (e, b, f, n) = (engine.clone(), b.id.clone(), f.clone(), n.to_owned());
                async move { e.act(&b, &f, &n, a).await.unwrap() }
            };
            act(
                "d",
                Action::Declare {
                    stage: Stage::Formal,
                },
            )
            .await
            .unwrap();
            let first = UnitId(format!("U{:04}", i - i % 2));
            for (n, u) in [("a", first.clone()), ("b", UnitId(format!("U{i:04}")))] {
                let _ = act(
                    n,
                    Action::Edit {
                        list: ListKind::Intentions,
                        edit: Edit::Add,
                        unit: u,
                    },
                )
                .await;
            }
            if i < 900 && i % 64 != 0 && i % 97 != 0 {
                act(
                    "c",
                    Action::Confirm {
                        unit: UnitId(format!("U{i:04}")),
                    },
                )
                .await
                .unwrap();
            }
        }
        clock.set(Millis(T0 + 2000));
        let mut steps = 0;
        loop {
            let step = engine
                .close_session_step(&b.id, &SessionId::new("S"), chunk)
                .await
                .unwrap();
            steps += 1;
            assert!(steps < 10_000, "close makes progress");
            if step.closed {
                break;
            }
        }
        let events: Vec<Event> = engine.events(&b.id, 0, 100_000).await.unwrap();
        let replayed = Selection::replay(&events).unwrap();
        // The reference: the hub's own state machine deciding from the same state.
        let before_close = events
            .iter()
            .position(|e| {
                matches!(e.event, xuanfang_hub::EventKind::NoUnit { .. })
                    || matches!(
                        e.event,
                        xuanfang_hub::EventKind::Selected {
                            how: xuanfang_hub::How::Automatic,
                            ..
                        }
                    )
            })
            .unwrap();
        let mut reference = Selection::replay(&events[..before_close]).unwrap();
        let mut seq = reference.seq();
        loop {
            let evs = reference
                .close_session_step(&SessionId::new("S"), Millis(T0 + 2000), 200)
                .unwrap();
            if evs.is_empty() {
                break;
            }
            for ev in evs {
                seq += 1;
                reference.apply(&Event {
                    seq,
                    at: Millis(T0 + 2000),
                    event: ev,
                });
            }
        }
        assert_eq!(replayed.taken(), reference.taken(), "chunk {chunk}");
        for (f, st) in reference.family_states() {
            assert_eq!(
                replayed.state(&f.id).unwrap().outcome,
                st.outcome,
                "{} chunk {chunk}",
                f.id
            );
        }
        let closes = events
            .iter()
            .filter(|e| matches!(e.event, xuanfang_hub::EventKind::SessionClosed { .. }))
            .count();
        assert_eq!(closes, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn windowed_close_of_a_large_session_matches_the_hub_with_small_and_large_chunks() {
        for chunk in [1, 7, 200] {
            run(chunk).await;
        }
    }
}

/// The fields of a family's hash are declared once (`redis_engine::family_hash`): after a
/// whole selection — pre-selection, formal, a waiver, auto-confirm, an application, a
/// supplementary session — every family hash holds only declared fields, and every
/// declared field was written by some script.
mod family_hash_fields {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use redis::AsyncCommands;
    use xuanfang_allocator::redis_engine::keys::BatchKeys;
    use xuanfang_allocator::redis_engine::{family_hash, RedisEngine, RedisOptions};
    use xuanfang_allocator::testing::{unique_namespace, RedisServer};
    use xuanfang_hub::{Action, FamilyId, ManualClock, Millis, Session, SessionId, SessionKind};

    use crate::suite::{self, Ctx};

    /// A whole selection up to a published supplementary session `SUP1` of `f4`.
    async fn through_a_supplementary_session(ns: &str) -> (Ctx, Session) {
        let clock = Arc::new(ManualClock::new(suite::START));
        let engine = RedisEngine::connect(
            RedisServer::shared().client(),
            RedisOptions {
                namespace: ns.to_owned(),
                clock: Some(clock.clone()),
                ..RedisOptions::default()
            },
        )
        .await
        .expect("engine");
        let c = Ctx::load(Arc::new(engine), clock, "fields").await;
        c.at(suite::PRE);
        c.cart("f1", &["A101", "A102"]).await;
        c.ok("f7", Action::Waive).await;
        c.at(suite::S1);
        c.intentions("f2", &["A103"]).await;
        c.ok("f2", suite::confirm("A103")).await;
        c.ok("f1", suite::declare(xuanfang_hub::Stage::Formal))
            .await;
        c.at(suite::DL1);
        c.close("S1").await;
        c.ok("f4", Action::ApplySupplementary).await;
        c.at(suite::DL3);
        let sup = Session {
            id: SessionId::new("SUP1"),
            kind: SessionKind::Supplementary,
            start: Millis(suite::SUP),
            window_ms: 180_000,
            families: vec![FamilyId::new("f4")],
        };
        c.engine
            .publish_supplementary(&c.batch, sup.clone())
            .await
            .expect("publish");
        (c, sup)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn family_hashes_hold_exactly_the_declared_fields() {
        let ns = unique_namespace();
        let (c, _) = through_a_supplementary_session(&ns).await;

        let keys = BatchKeys::new(&ns, &c.batch);
        let mut conn = RedisServer::shared()
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("conn");
        let declared: BTreeSet<&str> = family_hash::ALL.iter().copied().collect();
        let mut seen = BTreeSet::new();
        for f in &c.spec.families {
            let fields: Vec<String> = conn.hkeys(keys.family(&f.id)).await.expect("hkeys");
            for field in fields {
                assert!(
                    declared.contains(field.as_str()),
                    "{}: undeclared field {field:?}",
                    f.id
                );
                seen.insert(field);
            }
        }
        // f4 had its outcome cleared by the publication, but others hold one.
        let unused: Vec<_> = declared.iter().filter(|d| !seen.contains(**d)).collect();
        assert!(unused.is_empty(), "declared but never written: {unused:?}");
    }

    /// A publish appends the session to the batch's `supp` list instead of writing the
    /// whole batch into meta again; an engine with no cache reads the batch back whole,
    /// also from a store of before the list (meta holding `batch`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_supplementary_session_is_stored_alone_and_read_back_with_the_batch() {
        use xuanfang_allocator::Allocator;

        let ns = unique_namespace();
        let (c, sup) = through_a_supplementary_session(&ns).await;
        let keys = BatchKeys::new(&ns, &c.batch);
        let mut conn = RedisServer::shared()
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("conn");
        let in_meta: Option<String> = conn.hget(keys.meta(), "batch").await.expect("hget");
        assert_eq!(in_meta, None, "the publish copied no batch into meta");
        let listed: Vec<String> = conn
            .lrange(keys.supplementary(), 0, -1)
            .await
            .expect("lrange");
        assert_eq!(listed.len(), 1);
        assert_eq!(
            serde_json::from_str::<Session>(&listed[0]).expect("session"),
            sup
        );
        let mut expected = c.spec.clone();
        expected.sessions.push(sup.clone());
        let fresh = || async {
            RedisEngine::connect(
                RedisServer::shared().client(),
                RedisOptions {
                    namespace: ns.clone(),
                    ..RedisOptions::default()
                },
            )
            .await
            .expect("engine")
        };
        assert_eq!(
            fresh().await.batch(&c.batch).await.expect("batch"),
            expected
        );

        // A store of before: meta's `batch` held the sessions published then (here a
        // made-up `SUP0`); the list holds those published since.
        let mut earlier = c.spec.clone();
        earlier.sessions.push(Session {
            id: SessionId::new("SUP0"),
            ..sup.clone()
        });
        let _: () = conn
            .hset(
                keys.meta(),
                "batch",
                serde_json::to_string(&earlier).expect("json"),
            )
            .await
            .expect("hset");
        earlier.sessions.push(sup);
        assert_eq!(fresh().await.batch(&c.batch).await.expect("batch"), earlier);
    }
}
