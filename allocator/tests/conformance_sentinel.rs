//! The conformance suite against the Redis engine in Sentinel mode: every operation
//! goes through `redis+sentinel://` to the primary, and every acknowledged write and
//! every event read waits for the replica (a barrier round: `PUBLISH` + `WAIT 1`). The same answers as a single
//! Redis, so the wait changes nothing but durability.

use std::sync::{Arc, OnceLock};

use xuanfang_allocator::redis_engine::conn::Target;
use xuanfang_allocator::redis_engine::{RedisEngine, RedisOptions};
use xuanfang_allocator::testing::{sentinel, unique_namespace};
use xuanfang_allocator::Allocator;
use xuanfang_hub::ManualClock;

use crate::suite;

fn deployment() -> &'static sentinel::SentinelSet {
    static SET: OnceLock<sentinel::SentinelSet> = OnceLock::new();
    SET.get_or_init(sentinel::SentinelSet::start)
}

async fn make_sentinel(clock: Arc<ManualClock>) -> Arc<dyn Allocator> {
    let url = deployment().url();
    let options = RedisOptions {
        namespace: unique_namespace(),
        clock: Some(clock),
        ..RedisOptions::default()
    };
    let target = Target::parse(&url).expect("sentinel url");
    Arc::new(
        RedisEngine::connect_to(target, options)
            .await
            .expect("connect through the Sentinels"),
    )
}

conformance_suite!(make_sentinel);

/// How often the primary ran `name` (`INFO commandstats`).
fn calls(port: u16, name: &str) -> u64 {
    let stats = sentinel::query(port, &["INFO", "commandstats"]).unwrap_or_default();
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{name}:calls=")))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// The suite above passes whether or not the engine waits; this pins that it does: a
/// write, an event read and a refund record each await one barrier round (one `PUBLISH`
/// and one `WAIT` on the primary; one at a time, no round has a second waiter), and a
/// plain read none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_event_reads_wait_for_the_replica() {
    // Its own deployment: the suite's tests run beside it on the shared one.
    let set = tokio::task::spawn_blocking(sentinel::SentinelSet::start)
        .await
        .unwrap();
    let primary = set.port(0);
    let clock = Arc::new(ManualClock::new(suite::START));
    let options = RedisOptions {
        clock: Some(clock),
        ..RedisOptions::default()
    };
    let engine = RedisEngine::connect_to(Target::parse(&set.url()).unwrap(), options)
        .await
        .unwrap();
    let batch = suite::unique_id("waits");
    let (w0, p0) = (calls(primary, "wait"), calls(primary, "publish"));
    engine.load_batch(suite::fixture(&batch)).await.unwrap();
    // Each of the load's calls waits (how many calls a load takes is its own business).
    let w1 = calls(primary, "wait");
    assert!(w1 > w0, "the load waited");
    engine.catalog(&batch).await.unwrap();
    engine.board(&batch).await.unwrap();
    assert_eq!(calls(primary, "wait"), w1, "plain reads do not wait");
    let family = xuanfang_hub::FamilyId::new("f1");
    let _answer = engine
        .act(&batch, &family, "sync-1", xuanfang_hub::Action::Sync)
        .await
        .unwrap();
    assert_eq!(calls(primary, "wait"), w1 + 1, "an action waited once");
    let events = engine.events(&batch, 0, 10).await.unwrap();
    assert!(!events.is_empty());
    assert_eq!(calls(primary, "wait"), w1 + 2, "an event read waits");
    // A refund record is written as durably; reading it back does not wait.
    let swapped = engine.swap_refund_record("RF1", None, "{}").await.unwrap();
    assert_eq!(
        swapped,
        xuanfang_allocator::redis_engine::refunds::Swapped::Done
    );
    assert_eq!(
        calls(primary, "wait"),
        w1 + 3,
        "a refund record waited once"
    );
    assert!(engine.refund_record("RF1").await.unwrap().is_some());
    assert_eq!(calls(primary, "wait"), w1 + 3);
    // Sentinels publish their hellos on the primary too: at least ours.
    assert!(calls(primary, "publish") >= p0 + (w1 - w0) + 3);
    // The waits ran on the barrier's own connection, not on a shared one.
    let clients = sentinel::query(primary, &["CLIENT", "LIST"]).unwrap_or_default();
    assert!(
        clients
            .lines()
            .any(|l| l.contains("name=xuanfang-barrier ")),
        "no barrier connection: {clients}"
    );
}

/// A `WAIT` out on the barrier holds none of the shared connections: with the replica
/// frozen, a write's round blocks (up to its 20 s bound), and meanwhile plain reads on
/// every shared connection and other writes on the primary go through. (When the
/// `WAIT` ran on a shared connection, the reads queued behind it on that connection
/// came back only when it timed out, after the write had failed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_the_replica_holds_no_shared_connection() {
    let set = tokio::task::spawn_blocking(sentinel::SentinelSet::start)
        .await
        .unwrap();
    let primary = set.port(0);
    let clock = Arc::new(ManualClock::new(suite::START));
    let options = RedisOptions {
        clock: Some(clock),
        replica_wait: std::time::Duration::from_secs(20),
        response_timeout: std::time::Duration::from_secs(30),
        ..RedisOptions::default()
    };
    let engine = Arc::new(
        RedisEngine::connect_to(Target::parse(&set.url()).unwrap(), options)
            .await
            .unwrap(),
    );
    let batch = suite::unique_id("holds");
    engine.load_batch(suite::fixture(&batch)).await.unwrap();
    set.freeze(1, true);
    let held = tokio::spawn({
        let (engine, batch) = (engine.clone(), batch.clone());
        async move {
            engine
                .act(
                    &batch,
                    &xuanfang_hub::FamilyId::new("f1"),
                    "held",
                    xuanfang_hub::Action::Sync,
                )
                .await
        }
    });
    tokio::task::spawn_blocking(move || {
        sentinel::wait_until("the round's WAIT is out", || {
            sentinel::query(primary, &["INFO", "clients"])
                .is_some_and(|i| i.contains("blocked_clients:1"))
        })
    })
    .await
    .unwrap();
    let scripts = set.script_calls(0);
    // Two turns of the engine's round robin over its shared connections.
    for _ in 0..32 {
        engine.ping().await.expect("a plain read");
    }
    let others: Vec<_> = (2..=5)
        .map(|i| {
            let (engine, batch) = (engine.clone(), batch.clone());
            tokio::spawn(async move {
                engine
                    .act(
                        &batch,
                        &xuanfang_hub::FamilyId::new(format!("f{i}")),
                        "other",
                        xuanfang_hub::Action::Sync,
                    )
                    .await
            })
        })
        .collect();
    let set = Arc::new(set);
    tokio::task::spawn_blocking({
        let set = set.clone();
        move || {
            sentinel::wait_until("the other writes ran on the primary", || {
                set.script_calls(0) >= scripts + 4
            })
        }
    })
    .await
    .unwrap();
    assert!(
        !held.is_finished(),
        "the write's wait ended with the replica frozen"
    );
    set.freeze(1, false);
    let _answer = held
        .await
        .unwrap()
        .expect("answered once the replica has it");
    for o in others {
        let _answer = o.await.unwrap().expect("answered once the replica has it");
    }
}
