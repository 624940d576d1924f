//! The signing conformance suite against the Redis engine on a private redis-server,
//! plus what only Redis has: no key holds a card number or phone in clear.

use std::sync::Arc;

use xuanfang_allocator::testing::{redis_signing_engine, redis_signing_engine_in, RedisServer};
use xuanfang_allocator::{Allocator, SigningStore};
use xuanfang_hub::ManualClock;

async fn make_redis(clock: Arc<ManualClock>) -> (Arc<dyn Allocator>, Arc<dyn SigningStore>) {
    let (e, _) = redis_signing_engine(clock).await;
    let e = Arc::new(e);
    (e.clone(), e)
}

signing_conformance_suite!(make_redis);

mod redis_only {
    use super::*;
    use crate::signing_suite::*;
    use redis::AsyncCommands;
    use xuanfang_hub::signing::Status;
    use xuanfang_hub::{SigningAction, SigningEvent};

    /// Every value under `namespace`, whatever its type, as text.
    async fn dump(namespace: &str) -> Vec<(String, String)> {
        let mut conn = RedisServer::shared()
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let keys: Vec<String> = conn.keys(format!("{namespace}*")).await.unwrap();
        let mut out = Vec::new();
        for k in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&k)
                .query_async(&mut conn)
                .await
                .unwrap();
            let value: redis::Value = match kind.as_str() {
                "hash" => redis::cmd("HGETALL")
                    .arg(&k)
                    .query_async(&mut conn)
                    .await
                    .unwrap(),
                "stream" => redis::cmd("XRANGE")
                    .arg(&k)
                    .arg("-")
                    .arg("+")
                    .query_async(&mut conn)
                    .await
                    .unwrap(),
                "string" => redis::cmd("GET")
                    .arg(&k)
                    .query_async(&mut conn)
                    .await
                    .unwrap(),
                "zset" => redis::cmd("ZRANGE")
                    .arg(&k)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut conn)
                    .await
                    .unwrap(),
                other => panic!("unexpected key type {other} of {k}"),
            };
            out.push((k, format!("{value:?}")));
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_key_holds_a_card_number_or_phone_in_clear() {
        let clock = Arc::new(ManualClock::new(START));
        let (e, namespace) = redis_signing_engine(clock.clone()).await;
        let e = Arc::new(e);
        let c = Ctx::load(e.clone(), e, clock, "clear").await;
        c.in_review("f1", "A101").await;
        c.act("f1", &op(), SigningAction::Approve).await.unwrap();
        let values = dump(&namespace).await;
        assert!(
            values.iter().any(|(k, _)| k.ends_with(":signing")),
            "the signing stream exists: {:?}",
            values.iter().map(|(k, _)| k).collect::<Vec<_>>()
        );
        // Redis prints bulk strings as byte lists in Debug; look at the decoded text too.
        let card = card();
        for (k, v) in &values {
            assert!(
                !v.contains(&card) && !v.contains(PHONE),
                "{k} holds clear data"
            );
        }
        let mut conn = RedisServer::shared()
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let keys: Vec<String> = conn.keys(format!("{namespace}*signing*")).await.unwrap();
        for k in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&k)
                .query_async(&mut conn)
                .await
                .unwrap();
            let text: Vec<String> = match kind.as_str() {
                "hash" => {
                    let h: Vec<String> = conn.hgetall(&k).await.unwrap();
                    h
                }
                "stream" => {
                    let r: redis::streams::StreamRangeReply = conn.xrange_all(&k).await.unwrap();
                    r.ids
                        .iter()
                        .flat_map(|id| {
                            id.map
                                .values()
                                .map(|v| redis::from_redis_value::<String>(v).unwrap_or_default())
                        })
                        .collect()
                }
                _ => vec![redis::cmd("GET")
                    .arg(&k)
                    .query_async(&mut conn)
                    .await
                    .unwrap()],
            };
            for t in text {
                assert!(!t.contains(&card), "{k} holds the card number");
                assert!(!t.contains(PHONE), "{k} holds the phone");
            }
        }
        // And the engine reads them back.
        let rec = c.record("f1").await.unwrap();
        assert_eq!(rec.details().latest().unwrap().card_number.as_str(), card);
    }

    /// Two gateways (two engines over the same keys) deciding on one family at once:
    /// the compare-and-append lets exactly one win, and the loser decides again on the
    /// winner's events.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_gateways_deciding_on_one_family_have_one_winner() {
        let clock = Arc::new(ManualClock::new(START));
        let (a, namespace) = redis_signing_engine(clock.clone()).await;
        let b = Arc::new(redis_signing_engine_in(clock.clone(), &namespace).await);
        let a = Arc::new(a);
        let c = Ctx::load(a.clone(), a.clone(), clock, "two-gateways").await;
        c.opened("f1", "A101").await;
        c.ok("f1", fill()).await;
        c.face_passed("f1").await;
        c.ok("f1", sign_contract()).await;
        let n = c.log().await.len();
        let me = fam("f1");
        let family = f("f1");
        for round in 0..10 {
            // Two phones order at once through two gateways: one order, and the other
            // sees it pending (the clock stands, so it never expires here).
            let (req_a, req_b) = (format!("a{round}"), format!("b{round}"));
            let (ra, rb) = tokio::join!(
                a.sign(&c.batch, &family, &me, &req_a, order(&format!("A{round}"))),
                b.sign(&c.batch, &family, &me, &req_b, order(&format!("B{round}"))),
            );
            let (ra, rb) = (ra.unwrap(), rb.unwrap());
            if round == 0 {
                assert_eq!([ra.is_ok(), rb.is_ok()].iter().filter(|x| **x).count(), 1);
            } else {
                assert!(ra.is_err() && rb.is_err(), "an order is pending");
            }
        }
        let log = c.log().await;
        assert_eq!(log.len(), n + 1);
        let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=log.len() as u64).collect::<Vec<_>>());
        // The same notification id through both gateways at once: one answer, one event.
        let won = log
            .iter()
            .find_map(|e| match &e.event {
                SigningEvent::DepositOrdered { out_trade_no, .. } => Some(out_trade_no.clone()),
                _ => None,
            })
            .unwrap();
        let (ra, rb) = tokio::join!(
            a.signing_callback(&c.batch, &PAY, "n-1", paid(&won, "T1")),
            b.signing_callback(&c.batch, &PAY, "n-1", paid(&won, "T1")),
        );
        let (fa, va) = ra.unwrap().expect("the payment is taken");
        let (fb, vb) = rb.unwrap().expect("the same answer");
        assert_eq!((fa, va.status), (fb, vb.status));
        assert_eq!(vb.status, Status::InReview);
        assert_eq!(c.log().await.len(), n + 2);
    }
}
