//! Where refund entries are kept: one trait, three backends held to one contract
//! ([`conformance`], run on each): the journal file ([`super::RefundJournal`]), the
//! deployment's Redis ([`super::RedisRefunds`]) and memory ([`MemoryRefunds`]).
//!
//! A store knows nothing of the refund rules: it keeps one entry per refund number and
//! replaces it only over the entry the caller read (compare-and-set), so the rules,
//! decided in [`super::Refunds`], hold however many gateways share the store.

use std::collections::HashMap;

use async_trait::async_trait;
use parking_lot::Mutex;
use xuanfang_allocator::AllocError;

use super::RefundEntry;

/// Why the refunds could not be read or recorded. Nothing was recorded; the caller
/// answers so that it is asked again (the provider resends, the sweep retries).
#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    #[error("refund journal: {0}")]
    Journal(#[from] std::io::Error),
    #[error("refund ledger: {0}")]
    Ledger(#[from] AllocError),
    /// A stored entry this build cannot read (written by another version, or damaged).
    #[error("refund ledger: the entry of {no} does not read: {why}")]
    Unreadable { no: String, why: String },
    /// Others kept changing the entry between our read and our write.
    #[error("refund {0} kept changing; nothing recorded")]
    Contended(String),
}

/// One entry per refund number, replaced only over the entry read.
#[async_trait]
pub trait RefundStore: Send + Sync + 'static {
    /// The entry of refund `no`, if recorded.
    async fn get(&self, no: &str) -> Result<Option<RefundEntry>, RefundError>;
    /// Stores `new` as the entry of its refund number (`new.req.out_refund_no`) only if
    /// the stored entry is still `expected` (`None`: there is none); answers whether it
    /// did. Once it answers `true` the entry is durable as the store is (the file
    /// synced; Redis acknowledged, in Sentinel mode by a replica).
    async fn swap(
        &self,
        expected: Option<&RefundEntry>,
        new: &RefundEntry,
    ) -> Result<bool, RefundError>;
    /// Every entry (in no particular order).
    async fn all(&self) -> Result<Vec<RefundEntry>, RefundError>;
}

/// The compare-and-set of a store that holds its entries in one process's memory:
/// `new` replaces the entry of its refund number if that is still `expected`, after
/// `persist` has kept it (called under the caller's lock, so changes persist in order).
pub(super) fn swap_in(
    entries: &mut HashMap<String, RefundEntry>,
    expected: Option<&RefundEntry>,
    new: &RefundEntry,
    persist: impl FnOnce(&RefundEntry) -> std::io::Result<()>,
) -> Result<bool, RefundError> {
    if entries.get(&new.req.out_refund_no) != expected {
        return Ok(false);
    }
    persist(new)?;
    entries.insert(new.req.out_refund_no.clone(), new.clone());
    Ok(true)
}

/// Entries in memory only (demo and tests): a restart forgets them.
#[derive(Default)]
pub struct MemoryRefunds {
    entries: Mutex<HashMap<String, RefundEntry>>,
}

#[async_trait]
impl RefundStore for MemoryRefunds {
    async fn get(&self, no: &str) -> Result<Option<RefundEntry>, RefundError> {
        Ok(self.entries.lock().get(no).cloned())
    }

    async fn swap(
        &self,
        expected: Option<&RefundEntry>,
        new: &RefundEntry,
    ) -> Result<bool, RefundError> {
        swap_in(&mut self.entries.lock(), expected, new, |_| Ok(()))
    }

    async fn all(&self) -> Result<Vec<RefundEntry>, RefundError> {
        Ok(self.entries.lock().values().cloned().collect())
    }
}

/// The contract every [`RefundStore`] keeps, as a test each backend runs.
#[cfg(test)]
pub(crate) mod conformance {
    use std::sync::Arc;

    use xuanfang_hub::{BatchId, Millis};

    use super::*;
    use crate::providers::payment::RefundRequest;
    use crate::refunds::RefundStatus;

    /// An entry of refund `no`, at `at`.
    pub fn entry(no: &str, status: RefundStatus, at: i64) -> RefundEntry {
        RefundEntry {
            batch: BatchId("b".into()),
            req: RefundRequest {
                out_refund_no: no.into(),
                out_trade_no: format!("D-{no}"),
                provider_txn_id: format!("t-{no}"),
                amount_fen: 500,
                reason: "租赁保证金退款 deposit refund: order_expired".into(),
            },
            status,
            at: Millis(at),
            failure: None,
            event_id: None,
        }
    }

    /// `a` and `b` are two handles on one store (two gateways of one deployment; the
    /// same handle twice for a store only one process holds).
    pub async fn holds_the_contract(a: Arc<dyn RefundStore>, b: Arc<dyn RefundStore>) {
        let asked = entry("RF1", RefundStatus::Asked, 1);
        let accepted = entry("RF1", RefundStatus::Accepted, 2);
        let succeeded = RefundEntry {
            event_id: Some("e1".into()),
            ..entry("RF1", RefundStatus::Succeeded, 3)
        };
        assert_eq!(a.get("RF1").await.unwrap(), None);
        assert!(a.all().await.unwrap().is_empty());

        // Nothing stored: a swap over an entry loses, one over none wins.
        assert!(!a.swap(Some(&asked), &accepted).await.unwrap());
        assert_eq!(a.get("RF1").await.unwrap(), None);
        assert!(a.swap(None, &asked).await.unwrap());
        assert_eq!(b.get("RF1").await.unwrap(), Some(asked.clone()));
        // Stored: a swap over none, or over another entry, loses and changes nothing.
        assert!(!b.swap(None, &accepted).await.unwrap());
        let other_time = entry("RF1", RefundStatus::Asked, 9);
        assert!(!b.swap(Some(&other_time), &accepted).await.unwrap());
        assert_eq!(a.get("RF1").await.unwrap(), Some(asked.clone()));
        // Over the entry read: replaced, for every handle.
        assert!(b.swap(Some(&asked), &accepted).await.unwrap());
        assert!(!a.swap(Some(&asked), &succeeded).await.unwrap());
        assert!(a.swap(Some(&accepted), &succeeded).await.unwrap());
        assert_eq!(b.get("RF1").await.unwrap(), Some(succeeded.clone()));

        // Every refund number is its own entry; `all` lists each once, as last stored.
        let other = entry("RF2", RefundStatus::Asked, 4);
        assert!(b.swap(None, &other).await.unwrap());
        for s in [&a, &b] {
            let mut all = s.all().await.unwrap();
            all.sort_by(|x, y| x.req.out_refund_no.cmp(&y.req.out_refund_no));
            assert_eq!(all, vec![succeeded.clone(), other.clone()]);
        }

        // Racing on a new refund, then on its entry: one winner each time.
        for round in 0..2 {
            let expected = (round == 1).then(|| entry("RF3", RefundStatus::Asked, 0));
            let racers: Vec<_> = (0..8)
                .map(|i| {
                    let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                    let expected = expected.clone();
                    let status = [RefundStatus::Asked, RefundStatus::Accepted][round];
                    let new = entry("RF3", status, if round == 0 { 0 } else { 100 + i });
                    tokio::spawn(async move { s.swap(expected.as_ref(), &new).await.unwrap() })
                })
                .collect();
            let mut won = 0;
            for r in racers {
                won += usize::from(r.await.unwrap());
            }
            assert_eq!(won, 1, "round {round}");
        }
        let last = a.get("RF3").await.unwrap().unwrap();
        assert_eq!(last.status, RefundStatus::Accepted);
        assert!((100..108).contains(&last.at.0), "{last:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_holds_the_contract() {
        let s: Arc<dyn RefundStore> = Arc::new(MemoryRefunds::default());
        holds_the_contract(s.clone(), s).await;
    }
}
