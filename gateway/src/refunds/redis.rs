//! The refund ledger in the deployment's Redis (`serve --redis`): one hash that every
//! gateway on that Redis reads and writes (the engine's
//! [`refund records`](xuanfang_allocator::redis_engine::refunds)), each entry as its
//! JSON, so a refund asked by one gateway is listed, settled and swept by any.

use std::sync::Arc;

use async_trait::async_trait;
use xuanfang_allocator::redis_engine::refunds::Swapped;
use xuanfang_allocator::redis_engine::RedisEngine;

use super::store::{RefundError, RefundStore};
use super::RefundEntry;

/// The refund ledger of the Redis `engine` is on.
pub struct RedisRefunds {
    engine: Arc<RedisEngine>,
}

impl RedisRefunds {
    pub fn new(engine: Arc<RedisEngine>) -> Self {
        Self { engine }
    }
}

fn encode(e: &RefundEntry) -> Result<String, RefundError> {
    serde_json::to_string(e).map_err(|err| RefundError::Unreadable {
        no: e.req.out_refund_no.clone(),
        why: err.to_string(),
    })
}

fn decode(no: &str, text: &str) -> Result<RefundEntry, RefundError> {
    serde_json::from_str(text).map_err(|e| RefundError::Unreadable {
        no: no.to_owned(),
        why: e.to_string(),
    })
}

#[async_trait]
impl RefundStore for RedisRefunds {
    async fn get(&self, no: &str) -> Result<Option<RefundEntry>, RefundError> {
        (self.engine.refund_record(no).await?)
            .map(|text| decode(no, &text))
            .transpose()
    }

    async fn swap(
        &self,
        expected: Option<&RefundEntry>,
        new: &RefundEntry,
    ) -> Result<bool, RefundError> {
        let no = &new.req.out_refund_no;
        let new = encode(new)?;
        let mut want = expected.map(encode).transpose()?;
        // The script compares texts; the store's contract compares entries. They differ
        // only for an entry another build wrote (another field order, a field this build
        // omits): then the stored text is the one to expect.
        for _ in 0..2 {
            match self
                .engine
                .swap_refund_record(no, want.as_deref(), &new)
                .await?
            {
                Swapped::Done => return Ok(true),
                Swapped::Lost(Some(stored))
                    if want.as_deref() != Some(stored.as_str())
                        && expected.is_some_and(|e| decode(no, &stored).is_ok_and(|s| s == *e)) =>
                {
                    want = Some(stored);
                }
                Swapped::Lost(_) => return Ok(false),
            }
        }
        Ok(false)
    }

    async fn all(&self) -> Result<Vec<RefundEntry>, RefundError> {
        let mut out = Vec::new();
        for (no, text) in self.engine.refund_records().await? {
            match decode(&no, &text) {
                Ok(e) => out.push(e),
                // Listed without it rather than not at all; settling it fails loudly.
                Err(e) => tracing::error!("{e}"),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refunds::store::conformance::{entry, holds_the_contract};
    use crate::refunds::RefundStatus;
    use xuanfang_allocator::redis_engine::RedisOptions;
    use xuanfang_allocator::testing::{unique_namespace, RedisServer};

    async fn engine_in(namespace: &str) -> Arc<RedisEngine> {
        let options = RedisOptions {
            namespace: namespace.to_owned(),
            ..RedisOptions::default()
        };
        Arc::new(
            RedisEngine::connect(RedisServer::shared().client(), options)
                .await
                .unwrap(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_redis_ledger_holds_the_contract_across_gateways() {
        let ns = unique_namespace();
        // Two engines on one namespace: two gateways' own connections.
        let a = Arc::new(RedisRefunds::new(engine_in(&ns).await));
        let b = Arc::new(RedisRefunds::new(engine_in(&ns).await));
        holds_the_contract(a, b).await;
        let elsewhere = RedisRefunds::new(engine_in(&unique_namespace()).await);
        assert!(elsewhere.all().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_entry_another_build_wrote_is_replaced_over_what_it_reads_as() {
        let ns = unique_namespace();
        let engine = engine_in(&ns).await;
        let ledger = RedisRefunds::new(engine.clone());
        let asked = entry("RF1", RefundStatus::Asked, 1);
        // The same entry, its fields in another order (as another serializer may write).
        let mut v = serde_json::to_value(&asked).unwrap();
        let obj = v.as_object_mut().unwrap();
        let reordered: serde_json::Map<_, _> = (obj.iter().rev())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let text = serde_json::to_string(&reordered).unwrap();
        assert_ne!(text, encode(&asked).unwrap());
        assert_eq!(
            engine.swap_refund_record("RF1", None, &text).await.unwrap(),
            Swapped::Done
        );
        assert_eq!(ledger.get("RF1").await.unwrap(), Some(asked.clone()));
        let accepted = entry("RF1", RefundStatus::Accepted, 2);
        assert!(!ledger
            .swap(Some(&entry("RF1", RefundStatus::Asked, 9)), &accepted)
            .await
            .unwrap());
        assert!(ledger.swap(Some(&asked), &accepted).await.unwrap());
        assert_eq!(ledger.get("RF1").await.unwrap(), Some(accepted));
    }
}
