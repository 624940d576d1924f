//! The conformance suite against the Redis engine on a real three-node Redis Cluster:
//! every batch's keys share one hash tag, so every script runs on one node.

use std::sync::Arc;

use xuanfang_allocator::Allocator;
use xuanfang_hub::ManualClock;

async fn make_cluster(clock: Arc<ManualClock>) -> Arc<dyn Allocator> {
    xuanfang_allocator::testing::cluster_engine(clock).await
}

conformance_suite!(make_cluster);
