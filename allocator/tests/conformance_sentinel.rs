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

#[macro_use]
#[path = "conformance/suite.rs"]
mod suite;
mod sentinel;

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
