//! Refunds (退款) of payments the hub did not take: a notification it refused (paid after
//! expiry, a second payment, an unknown order) or a payment voided by a rejection of the
//! deposit step.
//!
//! **Once only, by two means.** The refund number is derived from the provider's
//! transaction id ([`out_refund_no`]), and a provider refunds a number once (WeChat Pay
//! and Alipay both de-duplicate by it), so two gateways or a retry can never refund a
//! payment twice. On top of that a durable inbox, the refund ledger, records each refund
//! asked (before the provider is asked) and its answer, so a restarted gateway does not
//! ask again and the operators have the list. It is the gateway's record rather than a
//! hub event because a refund is the gateway's conversation with the provider, not a
//! step of the family's signing: the hub's rule (which payments are not taken) is
//! already in its log.
//!
//! **One ledger per deployment.** The entries are kept by a [`RefundStore`]: with
//! several gateways on one Redis, a hash in that Redis ([`RedisRefunds`]), so any gateway
//! lists, settles and sweeps the refunds any other asked (a provider's notification goes
//! wherever the load balancer sends it); with the embedded engine (one gateway) the
//! journal file ([`RefundJournal`]); in memory for demo and tests. The rules (noted once,
//! a final status never changes, an outcome of another amount is not ours, a repeated
//! notification changes nothing) are decided here, as pure decisions over the entry the
//! store holds, and stored with its compare-and-set: a decision that lost to another
//! gateway's change is made again on what that change left.

mod journal;
mod redis;
mod store;

pub use journal::RefundJournal;
pub use redis::RedisRefunds;
pub use store::{MemoryRefunds, RefundError, RefundStore};

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use xuanfang_hub::{BatchId, Millis};

use crate::providers::payment::{PaymentNotification, PaymentProvider, RefundRequest, RefundState};

/// The refund number of a payment: the same payment always gets the same one.
pub fn out_refund_no(provider_txn_id: &str) -> String {
    let h = Sha256::digest(provider_txn_id.as_bytes());
    format!("RF{}", &hex::encode(h)[..30])
}

/// The refund of payment `n`, refused (or voided) for `reason`.
pub fn request_for(n: &PaymentNotification, reason: &str) -> RefundRequest {
    RefundRequest {
        out_refund_no: out_refund_no(&n.provider_txn_id),
        out_trade_no: n.out_trade_no.clone(),
        provider_txn_id: n.provider_txn_id.clone(),
        amount_fen: n.amount_fen,
        reason: format!("租赁保证金退款 deposit refund: {reason}"),
    }
}

/// Where one refund stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Recorded; the provider has not answered yet (asked again by the sweep).
    Asked,
    /// Accepted by the provider, the outcome pending (its notification, or the sweep's
    /// query, settles it).
    Accepted,
    /// The money is back with the payer: final.
    Succeeded,
    /// The provider refused, closed or could not pay it back (`failure` says why): final,
    /// an operator must look (and refund by hand at the merchant platform).
    Failed,
}

impl RefundStatus {
    /// Whether nothing changes it any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// What [`Refunds::settle`] did with an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Recorded: the refund's status changed.
    Changed(RefundStatus),
    /// Already settled (or the same notification again): nothing changed.
    Unchanged(RefundStatus),
    /// Not a refund of ours, or not its amount: nothing changed.
    NotOurs,
}

/// One refund and its status at `at` (a line of the journal, a record of the ledger).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RefundEntry {
    pub batch: BatchId,
    #[serde(flatten)]
    pub req: RefundRequest,
    pub status: RefundStatus,
    pub at: Millis,
    /// Why it failed (the provider's words), for [`RefundStatus::Failed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The provider notification that settled it (repeats of it change nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

fn status_of(s: &RefundState) -> (RefundStatus, Option<String>) {
    match s {
        RefundState::Accepted => (RefundStatus::Accepted, None),
        RefundState::Succeeded => (RefundStatus::Succeeded, None),
        RefundState::Failed(why) => (RefundStatus::Failed, Some(why.clone())),
    }
}

/// What a decision makes of the stored entry: the entry to store in its place (`None`:
/// nothing changes) and the answer.
type Decision<T> = (Option<RefundEntry>, T);

fn asked(batch: &BatchId, req: &RefundRequest, now: Millis) -> RefundEntry {
    RefundEntry {
        batch: batch.clone(),
        req: req.clone(),
        status: RefundStatus::Asked,
        at: now,
        failure: None,
        event_id: None,
    }
}

/// A refund noted: recorded as asked unless it is known; answers where it stands.
fn decide_note(
    known: Option<&RefundEntry>,
    batch: &BatchId,
    req: &RefundRequest,
    now: Millis,
) -> Decision<RefundStatus> {
    match known {
        Some(e) => (None, e.status),
        None => (Some(asked(batch, req, now)), RefundStatus::Asked),
    }
}

/// The provider's outcome of the refund `known` (see [`Refunds::settle`]).
fn decide_outcome(
    known: Option<&RefundEntry>,
    state: &RefundState,
    amount_fen: Option<u64>,
    event_id: Option<&str>,
    now: Millis,
) -> Decision<Settled> {
    let Some(e) = known else {
        return (None, Settled::NotOurs);
    };
    if amount_fen.is_some_and(|a| a != e.req.amount_fen) {
        return (None, Settled::NotOurs);
    }
    let (status, failure) = status_of(state);
    let repeat = event_id.is_some() && e.event_id.as_deref() == event_id;
    // Accepted after Accepted, or anything after a final status: nothing new.
    if repeat || e.status.is_final() || status == e.status {
        return (None, Settled::Unchanged(e.status));
    }
    let settled = RefundEntry {
        status,
        failure,
        event_id: event_id.map(str::to_owned),
        at: now,
        ..e.clone()
    };
    (Some(settled), Settled::Changed(status))
}

/// How far along a refund is: asked, accepted, settled.
fn progress(s: RefundStatus) -> u8 {
    match s {
        RefundStatus::Asked => 0,
        RefundStatus::Accepted => 1,
        RefundStatus::Succeeded | RefundStatus::Failed => 2,
    }
}

/// An entry of a gateway's former journal brought into the shared ledger: taken unless
/// the ledger knows the refund as far along (another gateway's journal had it too, or
/// it was settled since). Answers whether it was taken.
fn decide_import(known: Option<&RefundEntry>, old: &RefundEntry) -> Decision<bool> {
    match known {
        Some(e) if progress(e.status) >= progress(old.status) => (None, false),
        _ => (Some(old.clone()), true),
    }
}

/// How many times a decision that lost the compare-and-set is made again: each loss is
/// another gateway's change of the same refund, and a refund changes at most thrice.
const CAS_ROUNDS: usize = 8;

pub struct Refunds {
    store: Arc<dyn RefundStore>,
    /// Refunds this process is asking of the provider right now, so one process asks
    /// each once at a time. Per process on purpose: two gateways may still ask one
    /// refund at once (a notification on one, the sweep on another), and the provider
    /// refunds a number once (it de-duplicates by `out_refund_no`), so that costs a
    /// call, never a second refund.
    in_flight: Mutex<HashSet<String>>,
}

impl Refunds {
    /// The refunds kept in `store`.
    pub fn new(store: Arc<dyn RefundStore>) -> Self {
        Self {
            store,
            in_flight: Mutex::new(HashSet::new()),
        }
    }

    /// Refunds in memory only (demo and tests): a restart forgets them, and only the
    /// provider's de-duplication by refund number keeps refunds single.
    pub fn in_memory() -> Self {
        Self::new(Arc::new(MemoryRefunds::default()))
    }

    /// The journal file at `path` ([`RefundJournal`]).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self::new(Arc::new(RefundJournal::open(path)?)))
    }

    /// Reads the entry of `no`, decides with `decide`, and stores its entry over the
    /// one read; again while another gateway changed it in between.
    async fn change<T>(
        &self,
        no: &str,
        mut decide: impl FnMut(Option<&RefundEntry>) -> Decision<T>,
    ) -> Result<T, RefundError> {
        for _ in 0..CAS_ROUNDS {
            let known = self.store.get(no).await?;
            let (write, answer) = decide(known.as_ref());
            let Some(new) = write else {
                return Ok(answer);
            };
            debug_assert_eq!(new.req.out_refund_no, no);
            if self.store.swap(known.as_ref(), &new).await? {
                return Ok(answer);
            }
        }
        Err(RefundError::Contended(no.to_owned()))
    }

    /// Every refund, by refund number.
    pub async fn entries(&self) -> Result<Vec<RefundEntry>, RefundError> {
        let mut v = self.store.all().await?;
        v.sort_by(|a, b| a.req.out_refund_no.cmp(&b.req.out_refund_no));
        Ok(v)
    }

    /// Every refund standing at `status` (whichever gateway recorded it).
    async fn with_status(&self, status: RefundStatus) -> Result<Vec<RefundEntry>, RefundError> {
        let all = self.store.all().await?;
        Ok(all.into_iter().filter(|e| e.status == status).collect())
    }

    /// The refund `no`, if recorded.
    pub async fn entry(&self, no: &str) -> Result<Option<RefundEntry>, RefundError> {
        self.store.get(no).await
    }

    /// Records `req` as asked unless it is known (durably, before anyone is answered).
    pub async fn note(
        &self,
        batch: &BatchId,
        req: &RefundRequest,
        now: Millis,
    ) -> Result<(), RefundError> {
        let no = &req.out_refund_no;
        (self.change(no, |known| decide_note(known, batch, req, now))).await?;
        Ok(())
    }

    /// Records the provider's outcome of refund `no` (from its notification, `event_id`,
    /// or a query): once final, nothing changes it, so a replay, a late notification or
    /// a restart's second query is harmless. `amount_fen` (when the provider says it)
    /// must be the refund's.
    pub async fn settle(
        &self,
        no: &str,
        state: &RefundState,
        amount_fen: Option<u64>,
        event_id: Option<&str>,
        now: Millis,
    ) -> Result<Settled, RefundError> {
        let mut order = String::new();
        let s = (self.change(no, |known| {
            order = known
                .map(|e| e.req.out_trade_no.clone())
                .unwrap_or_default();
            decide_outcome(known, state, amount_fen, event_id, now)
        }))
        .await?;
        if s == Settled::Changed(RefundStatus::Failed) {
            let reason = status_of(state).1;
            tracing::error!(refund = %no, %order, ?reason, "refund failed at the provider: an operator must look");
        }
        Ok(s)
    }

    /// Asks the provider about every refund it accepted without an outcome yet (whichever
    /// gateway asked it), and records the outcomes; answers how many were settled and
    /// how many calls failed.
    pub async fn query_pending(&self, pay: &dyn PaymentProvider, now: Millis) -> (usize, usize) {
        let pending = match self.with_status(RefundStatus::Accepted).await {
            Ok(pending) => pending,
            Err(e) => {
                tracing::error!("{e}");
                return (0, 1);
            }
        };
        let (mut settled, mut errors) = (0, 0);
        for e in pending {
            match pay.query_refund(&e.req).await {
                Ok(state) => match self
                    .settle(&e.req.out_refund_no, &state, None, None, now)
                    .await
                {
                    Ok(Settled::Changed(_)) => settled += 1,
                    Ok(_) => {}
                    Err(err) => {
                        errors += 1;
                        tracing::error!("{err}");
                    }
                },
                Err(err) => {
                    errors += 1;
                    tracing::warn!(refund = %e.req.out_refund_no, "refund query failed: {err}");
                }
            }
        }
        (settled, errors)
    }

    /// Refunds `req` unless it was refunded already: recorded first (durably), then asked
    /// of the provider. Answers the status afterwards; `None` when another task of this
    /// process is asking right now.
    pub async fn refund(
        &self,
        pay: &dyn PaymentProvider,
        batch: &BatchId,
        req: RefundRequest,
        now: Millis,
    ) -> Result<Option<RefundStatus>, RefundError> {
        let no = req.out_refund_no.clone();
        let known = (self.change(&no, |known| decide_note(known, batch, &req, now))).await?;
        if known != RefundStatus::Asked {
            return Ok(Some(known));
        }
        if !self.in_flight.lock().insert(no.clone()) {
            return Ok(None);
        }
        // Answered while we were not yet the one asking: done.
        let now_known = match self.store.get(&no).await {
            Ok(e) => e.map(|e| e.status),
            Err(e) => {
                self.in_flight.lock().remove(&no);
                return Err(e);
            }
        };
        if let Some(s) = now_known.filter(|s| *s != RefundStatus::Asked) {
            self.in_flight.lock().remove(&no);
            return Ok(Some(s));
        }
        let answer = pay.refund(&req).await;
        self.in_flight.lock().remove(&no);
        let state = match answer {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(refund = %no, "refund not asked yet ({e}); the sweep asks again");
                return Ok(Some(RefundStatus::Asked));
            }
        };
        // A notification may have settled it while we asked: that outcome stands.
        Ok(Some(
            match self.settle(&no, &state, None, None, now).await? {
                Settled::Changed(s) | Settled::Unchanged(s) => s,
                Settled::NotOurs => RefundStatus::Asked,
            },
        ))
    }

    /// Asks again every refund the provider has not answered (a crash or a failed call),
    /// whichever gateway recorded it.
    pub async fn retry_asked(&self, pay: &dyn PaymentProvider, now: Millis) -> usize {
        let asked = match self.with_status(RefundStatus::Asked).await {
            Ok(asked) => asked,
            Err(e) => {
                tracing::error!("{e}");
                return 0;
            }
        };
        let mut n = 0;
        for e in asked {
            match self.refund(pay, &e.batch, e.req, now).await {
                Ok(Some(RefundStatus::Accepted | RefundStatus::Failed)) => n += 1,
                Ok(_) => {}
                Err(err) => tracing::error!("{err}"),
            }
        }
        n
    }

    /// Brings every entry of `from` (a gateway's former journal) into these refunds,
    /// unless they know the refund as far along; answers how many were taken.
    pub async fn import(&self, from: &dyn RefundStore) -> Result<usize, RefundError> {
        let mut taken = 0;
        for old in from.all().await? {
            let no = old.req.out_refund_no.clone();
            if self.change(&no, |known| decide_import(known, &old)).await? {
                taken += 1;
            }
        }
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::store::conformance::entry;
    use super::*;

    #[test]
    fn the_refund_number_is_stable_and_short() {
        let a = out_refund_no("4200000001202612011234567890");
        assert_eq!(a, out_refund_no("4200000001202612011234567890"));
        assert_ne!(a, out_refund_no("4200000001202612011234567891"));
        assert!(a.len() <= 64 && a.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[tokio::test]
    async fn an_outcome_is_recorded_once_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refunds.jsonl");
        let req = RefundRequest {
            out_refund_no: "RF2".into(),
            out_trade_no: "D2".into(),
            provider_txn_id: "t2".into(),
            amount_fen: 500,
            reason: "order_expired".into(),
        };
        let r = Refunds::open(&path).unwrap();
        let b = BatchId("b".into());
        r.note(&b, &req, Millis(1)).await.unwrap();
        // Noted again (a second gateway, a retry): the first stands.
        r.note(&b, &req, Millis(9)).await.unwrap();
        assert_eq!(r.entries().await.unwrap()[0].at, Millis(1));
        let failed = RefundState::Failed("wechat pay refund ABNORMAL".into());
        // Not ours: an unknown number, another amount.
        assert_eq!(
            r.settle("RF9", &failed, None, None, Millis(2))
                .await
                .unwrap(),
            Settled::NotOurs
        );
        assert_eq!(
            (r.settle("RF2", &failed, Some(499), Some("e1"), Millis(2)))
                .await
                .unwrap(),
            Settled::NotOurs
        );
        assert_eq!(r.entries().await.unwrap()[0].status, RefundStatus::Asked);
        assert_eq!(
            (r.settle("RF2", &failed, Some(500), Some("e1"), Millis(3)))
                .await
                .unwrap(),
            Settled::Changed(RefundStatus::Failed)
        );
        // Final: a replay, another event, a query's answer change nothing.
        for (state, event) in [
            (&failed, Some("e1")),
            (&RefundState::Succeeded, Some("e2")),
            (&RefundState::Accepted, None),
        ] {
            assert_eq!(
                r.settle("RF2", state, None, event, Millis(4))
                    .await
                    .unwrap(),
                Settled::Unchanged(RefundStatus::Failed)
            );
        }
        drop(r);
        let back = Refunds::open(&path).unwrap().entries().await.unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].status, RefundStatus::Failed);
        assert_eq!(
            back[0].failure.as_deref(),
            Some("wechat pay refund ABNORMAL")
        );
        assert_eq!(
            (back[0].at, back[0].event_id.as_deref()),
            (Millis(3), Some("e1"))
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
    }

    #[tokio::test]
    async fn a_former_journal_is_taken_in_unless_the_ledger_is_as_far_along() {
        let ledger = Refunds::in_memory();
        let journal = MemoryRefunds::default();
        for e in [
            entry("RF1", RefundStatus::Accepted, 5),
            entry("RF2", RefundStatus::Asked, 5),
            entry("RF3", RefundStatus::Succeeded, 5),
        ] {
            assert!(journal.swap(None, &e).await.unwrap());
        }
        // The ledger knows RF1 only asked (another gateway's journal), RF2 accepted.
        for e in [
            entry("RF1", RefundStatus::Asked, 1),
            entry("RF2", RefundStatus::Accepted, 1),
        ] {
            assert!(ledger.store.swap(None, &e).await.unwrap());
        }
        assert_eq!(ledger.import(&journal).await.unwrap(), 2);
        let at: Vec<_> = (ledger.entries().await.unwrap().into_iter())
            .map(|e| (e.req.out_refund_no, e.status, e.at.0))
            .collect();
        assert_eq!(
            at,
            [
                ("RF1".into(), RefundStatus::Accepted, 5),
                ("RF2".into(), RefundStatus::Accepted, 1),
                ("RF3".into(), RefundStatus::Succeeded, 5),
            ]
        );
        // Imported again (the next start): nothing more.
        assert_eq!(ledger.import(&journal).await.unwrap(), 0);
    }

    /// Two gateways on one Redis settle one refund at once, with contradicting outcomes
    /// (a notification on one, the sweep's query on the other): one outcome is
    /// recorded, the other decision sees it and changes nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_gateways_settling_one_refund_at_once_record_one_outcome() {
        use xuanfang_allocator::redis_engine::{RedisEngine, RedisOptions};
        use xuanfang_allocator::testing::{unique_namespace, RedisServer};
        let ns = unique_namespace();
        let mut gateways = Vec::new();
        for _ in 0..2 {
            let options = RedisOptions {
                namespace: ns.clone(),
                ..RedisOptions::default()
            };
            let engine = RedisEngine::connect(RedisServer::shared().client(), options);
            let store = RedisRefunds::new(Arc::new(engine.await.unwrap()));
            gateways.push(Arc::new(Refunds::new(Arc::new(store))));
        }
        let b = BatchId("b".into());
        for round in 0..20 {
            let e = entry(&format!("RF{round}"), RefundStatus::Asked, 0);
            gateways[0].note(&b, &e.req, Millis(1)).await.unwrap();
            let outcomes = [
                RefundState::Succeeded,
                RefundState::Failed("wechat pay refund CLOSED".into()),
            ];
            let racers: Vec<_> = (gateways.iter().zip(outcomes))
                .map(|(g, state)| {
                    let (g, no) = (g.clone(), e.req.out_refund_no.clone());
                    tokio::spawn(
                        async move { g.settle(&no, &state, Some(500), None, Millis(2)).await },
                    )
                })
                .collect();
            let mut changed = Vec::new();
            for r in racers {
                match r.await.unwrap().unwrap() {
                    Settled::Changed(s) => changed.push(s),
                    Settled::Unchanged(s) => assert!(s.is_final()),
                    Settled::NotOurs => panic!("noted above"),
                }
            }
            assert_eq!(changed.len(), 1, "round {round}");
            for g in &gateways {
                let stored = g.entry(&e.req.out_refund_no).await.unwrap().unwrap();
                assert_eq!(stored.status, changed[0]);
            }
        }
    }
}
