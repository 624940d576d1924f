//! The refund ledger's compare-and-set (`refund_swap.lua`) on a real redis-server and on
//! a Redis Cluster: a record is written only over the one expected (none, or the same
//! bytes), every engine on the namespace (every gateway) reads what another wrote, and of
//! writers racing on one refund exactly one wins. The gateway's own suite holds its typed
//! store to the same contract (`xuanfang_gateway::refunds`).

use std::collections::HashMap;
use std::sync::Arc;

use xuanfang_allocator::redis_engine::conn::Target;
use xuanfang_allocator::redis_engine::refunds::Swapped;
use xuanfang_allocator::redis_engine::{RedisEngine, RedisOptions};
use xuanfang_allocator::testing::{unique_namespace, RedisCluster, RedisServer};

/// Two engines in one namespace: two gateways of one deployment.
async fn two_engines(target: impl Fn() -> Target) -> (RedisEngine, RedisEngine) {
    let namespace = unique_namespace();
    let engine = || {
        let options = RedisOptions {
            namespace: namespace.clone(),
            ..RedisOptions::default()
        };
        RedisEngine::connect_to(target(), options)
    };
    (engine().await.unwrap(), engine().await.unwrap())
}

async fn the_swap_holds_its_contract(a: RedisEngine, b: RedisEngine) {
    assert_eq!(a.refund_record("RF1").await.unwrap(), None);
    assert!(a.refund_records().await.unwrap().is_empty());
    // Nothing stored: a swap expecting a record loses, one expecting none wins.
    assert_eq!(
        a.swap_refund_record("RF1", Some("x"), "a").await.unwrap(),
        Swapped::Lost(None)
    );
    assert_eq!(a.refund_record("RF1").await.unwrap(), None);
    assert_eq!(
        a.swap_refund_record("RF1", None, "a").await.unwrap(),
        Swapped::Done
    );
    // The other gateway reads it, and its swaps are held to it.
    assert_eq!(b.refund_record("RF1").await.unwrap().as_deref(), Some("a"));
    assert_eq!(
        b.swap_refund_record("RF1", None, "b").await.unwrap(),
        Swapped::Lost(Some("a".into()))
    );
    assert_eq!(
        b.swap_refund_record("RF1", Some("A"), "b").await.unwrap(),
        Swapped::Lost(Some("a".into()))
    );
    assert_eq!(
        b.swap_refund_record("RF1", Some("a"), "b").await.unwrap(),
        Swapped::Done
    );
    assert_eq!(a.refund_record("RF1").await.unwrap().as_deref(), Some("b"));
    // An empty record is a record, not none.
    assert_eq!(
        a.swap_refund_record("RF2", Some(""), "z").await.unwrap(),
        Swapped::Lost(None)
    );
    assert_eq!(
        a.swap_refund_record("RF2", None, "").await.unwrap(),
        Swapped::Done
    );
    assert_eq!(
        a.swap_refund_record("RF2", None, "z").await.unwrap(),
        Swapped::Lost(Some(String::new()))
    );
    assert_eq!(
        b.refund_records().await.unwrap(),
        HashMap::from([("RF1".into(), "b".into()), ("RF2".into(), String::new())])
    );

    // Racing on a new refund, then on its record: one winner each time.
    let (a, b) = (Arc::new(a), Arc::new(b));
    for expected in [None, Some("first")] {
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let e = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move {
                    let new = if expected.is_none() {
                        "first".to_owned()
                    } else {
                        format!("w{i}")
                    };
                    e.swap_refund_record("RF3", expected, &new).await.unwrap()
                })
            })
            .collect();
        let mut won = 0;
        for r in racers {
            if r.await.unwrap() == Swapped::Done {
                won += 1;
            }
        }
        assert_eq!(won, 1, "expecting {expected:?}");
    }
    let stored = a.refund_record("RF3").await.unwrap().unwrap();
    assert!(stored.starts_with('w'), "{stored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_swaps_one_record_at_a_time_on_a_redis_server() {
    let (a, b) = two_engines(|| Target::Single(RedisServer::shared().client())).await;
    the_swap_holds_its_contract(a, b).await;
    // Another deployment's namespace holds none of it.
    let (other, _) = two_engines(|| Target::Single(RedisServer::shared().client())).await;
    assert!(other.refund_records().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_swaps_one_record_at_a_time_on_a_cluster() {
    let urls = RedisCluster::shared().urls();
    let (a, b) = two_engines(|| Target::parse(&urls).unwrap()).await;
    the_swap_holds_its_contract(a, b).await;
}
