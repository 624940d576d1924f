//! The conformance suite against the Redis engine in Sentinel mode: every operation
//! goes through `redis+sentinel://` to the primary, and every acknowledged write and
//! every event read waits for the replica (`WAIT 1`). The same answers as a single
//! Redis, so the wait changes nothing but durability.

use std::sync::{Arc, OnceLock};

use xuanfang_allocator::redis_engine::conn::Target;
use xuanfang_allocator::redis_engine::{RedisEngine, RedisOptions};
use xuanfang_allocator::testing::unique_namespace;
use xuanfang_allocator::Allocator;
use xuanfang_hub::ManualClock;

use crate::sentinel;
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
/// write and an event read each cost the primary one `PUBLISH` and one `WAIT`, and a
/// plain read costs none.
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
    assert_eq!(calls(primary, "wait"), w0 + 1, "the load waited once");
    engine.catalog(&batch).await.unwrap();
    engine.board(&batch).await.unwrap();
    assert_eq!(calls(primary, "wait"), w0 + 1, "plain reads do not wait");
    let events = engine.events(&batch, 0, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(calls(primary, "wait"), w0 + 2, "an event read waits");
    // Sentinels publish their hellos on the primary too: at least ours.
    assert!(calls(primary, "publish") >= p0 + 2);
}
