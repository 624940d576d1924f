//! The signing conformance suite against the Redis engine on a real three-node Redis
//! Cluster: every signing key shares the batch's hash tag, so both scripts (and the
//! callback's pipelined look-up) run on one node.

use std::sync::Arc;

use xuanfang_allocator::{Allocator, SigningStore};
use xuanfang_hub::ManualClock;

async fn make_cluster(clock: Arc<ManualClock>) -> (Arc<dyn Allocator>, Arc<dyn SigningStore>) {
    let e = Arc::new(xuanfang_allocator::testing::cluster_signing_engine(clock).await);
    (e.clone(), e)
}

signing_conformance_suite!(make_cluster);
