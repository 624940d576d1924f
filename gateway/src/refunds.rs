//! Refunds (退款) of payments the hub did not take: a notification it refused (paid after
//! expiry, a second payment, an unknown order) or a payment voided by a rejection of the
//! deposit step.
//!
//! **Once only, by two means.** The refund number is derived from the provider's
//! transaction id ([`out_refund_no`]), and a provider refunds a number once (WeChat Pay
//! and Alipay both de-duplicate by it), so two gateways or a retry can never refund a
//! payment twice. On top of that a durable inbox, the refund journal (one JSON line per
//! change, synced before the provider is asked), records each refund asked and its
//! answer, so a restarted gateway does not ask again and the operators have the list.
//! It is a gateway file rather than a hub event because a refund is the gateway's
//! conversation with the provider, not a step of the family's signing: the hub's rule
//! (which payments are not taken) is already in its log.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

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

/// One line of the journal: a refund and its status at `at`.
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

pub struct Refunds {
    path: Option<PathBuf>,
    entries: Mutex<HashMap<String, RefundEntry>>,
    in_flight: Mutex<HashSet<String>>,
}

impl Refunds {
    /// A journal in memory only (demo and tests): a restart forgets it, and only the
    /// provider's de-duplication by refund number keeps refunds single.
    pub fn in_memory() -> Self {
        Self {
            path: None,
            entries: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
        }
    }

    /// The journal at `path` (created if missing); the last line of each refund wins.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut entries = HashMap::new();
        match std::fs::File::open(path) {
            Ok(f) => {
                for line in std::io::BufReader::new(f).lines() {
                    let line = line?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    // A torn last line (a crash mid-write) is skipped: its refund was
                    // not asked yet, or is asked again under the same number.
                    match serde_json::from_str::<RefundEntry>(&line) {
                        Ok(e) => {
                            entries.insert(e.req.out_refund_no.clone(), e);
                        }
                        Err(e) => tracing::warn!("refund journal: a line skipped: {e}"),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // End a torn last line, so the next line appended stands on its own.
        if let Ok(bytes) = std::fs::read(path) {
            if bytes.last().is_some_and(|b| *b != b'\n') {
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(path)?
                    .write_all(b"\n")?;
            }
        }
        Ok(Self {
            path: Some(path.to_owned()),
            entries: Mutex::new(entries),
            in_flight: Mutex::new(HashSet::new()),
        })
    }

    /// Every refund, by refund number.
    pub fn entries(&self) -> Vec<RefundEntry> {
        let mut v: Vec<_> = self.entries.lock().values().cloned().collect();
        v.sort_by(|a, b| a.req.out_refund_no.cmp(&b.req.out_refund_no));
        v
    }

    fn record(&self, e: RefundEntry) -> std::io::Result<()> {
        if let Some(path) = &self.path {
            let mut line = serde_json::to_vec(&e)?;
            line.push(b'\n');
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            f.write_all(&line)?;
            f.sync_data()?;
        }
        self.entries.lock().insert(e.req.out_refund_no.clone(), e);
        Ok(())
    }

    /// Records `req` as asked unless it is known (durably, before anyone is answered).
    pub fn note(&self, batch: &BatchId, req: &RefundRequest, now: Millis) -> std::io::Result<()> {
        if self.entries.lock().contains_key(&req.out_refund_no) {
            return Ok(());
        }
        self.record(RefundEntry {
            batch: batch.clone(),
            req: req.clone(),
            status: RefundStatus::Asked,
            at: now,
            failure: None,
            event_id: None,
        })
    }

    /// Records the provider's outcome of refund `no` (from its notification, `event_id`,
    /// or a query): once final, nothing changes it, so a replay, a late notification or
    /// a restart's second query is harmless. `amount_fen` (when the provider says it)
    /// must be the refund's.
    pub fn settle(
        &self,
        no: &str,
        state: &RefundState,
        amount_fen: Option<u64>,
        event_id: Option<&str>,
        now: Millis,
    ) -> std::io::Result<Settled> {
        let Some(e) = self.entries.lock().get(no).cloned() else {
            return Ok(Settled::NotOurs);
        };
        if amount_fen.is_some_and(|a| a != e.req.amount_fen) {
            return Ok(Settled::NotOurs);
        }
        let (status, failure) = status_of(state);
        let repeat = event_id.is_some() && e.event_id.as_deref() == event_id;
        // Accepted after Accepted, or anything after a final status: nothing new.
        if repeat || e.status.is_final() || status == e.status {
            return Ok(Settled::Unchanged(e.status));
        }
        if status == RefundStatus::Failed {
            tracing::error!(refund = %no, order = %e.req.out_trade_no, reason = ?failure, "refund failed at the provider: an operator must look");
        }
        self.record(RefundEntry {
            status,
            failure,
            event_id: event_id.map(str::to_owned),
            at: now,
            ..e
        })?;
        Ok(Settled::Changed(status))
    }

    /// Asks the provider about every refund it accepted without an outcome yet, and
    /// records the outcomes; answers how many were settled.
    pub async fn query_pending(&self, pay: &dyn PaymentProvider, now: Millis) -> (usize, usize) {
        let pending: Vec<_> = (self.entries.lock().values())
            .filter(|e| e.status == RefundStatus::Accepted)
            .cloned()
            .collect();
        let (mut settled, mut errors) = (0, 0);
        for e in pending {
            match pay.query_refund(&e.req).await {
                Ok(state) => match self.settle(&e.req.out_refund_no, &state, None, None, now) {
                    Ok(Settled::Changed(_)) => settled += 1,
                    Ok(_) => {}
                    Err(err) => {
                        errors += 1;
                        tracing::error!("refund journal: {err}");
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
    /// of the provider. Answers the status afterwards; `None` when another task is
    /// asking right now.
    pub async fn refund(
        &self,
        pay: &dyn PaymentProvider,
        batch: &BatchId,
        req: RefundRequest,
        now: Millis,
    ) -> std::io::Result<Option<RefundStatus>> {
        let no = req.out_refund_no.clone();
        let known = self.entries.lock().get(&no).map(|e| e.status);
        match known {
            Some(RefundStatus::Asked) => {}
            Some(s) => return Ok(Some(s)),
            None => self.record(RefundEntry {
                batch: batch.clone(),
                req: req.clone(),
                status: RefundStatus::Asked,
                at: now,
                failure: None,
                event_id: None,
            })?,
        }
        if !self.in_flight.lock().insert(no.clone()) {
            return Ok(None);
        }
        // Answered while we were not yet the one asking: done.
        let now_known = self.entries.lock().get(&no).map(|e| e.status);
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
        Ok(Some(match self.settle(&no, &state, None, None, now)? {
            Settled::Changed(s) | Settled::Unchanged(s) => s,
            Settled::NotOurs => RefundStatus::Asked,
        }))
    }

    /// Asks again every refund the provider has not answered (a crash or a failed call).
    pub async fn retry_asked(&self, pay: &dyn PaymentProvider, now: Millis) -> usize {
        let asked: Vec<_> = (self.entries.lock().values())
            .filter(|e| e.status == RefundStatus::Asked)
            .cloned()
            .collect();
        let mut n = 0;
        for e in asked {
            match self.refund(pay, &e.batch, e.req, now).await {
                Ok(Some(RefundStatus::Accepted | RefundStatus::Failed)) => n += 1,
                Ok(_) => {}
                Err(err) => tracing::error!("refund journal: {err}"),
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refund_number_is_stable_and_short() {
        let a = out_refund_no("4200000001202612011234567890");
        assert_eq!(a, out_refund_no("4200000001202612011234567890"));
        assert_ne!(a, out_refund_no("4200000001202612011234567891"));
        assert!(a.len() <= 64 && a.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn a_torn_line_is_skipped_and_the_last_status_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refunds.jsonl");
        let e = |status| RefundEntry {
            batch: BatchId("b".into()),
            req: RefundRequest {
                out_refund_no: "RF1".into(),
                out_trade_no: "D1".into(),
                provider_txn_id: "t1".into(),
                amount_fen: 5,
                reason: "order_expired".into(),
            },
            status,
            at: Millis(1),
            failure: None,
            event_id: None,
        };
        let mut text = String::new();
        for s in [RefundStatus::Asked, RefundStatus::Accepted] {
            text.push_str(&serde_json::to_string(&e(s)).unwrap());
            text.push('\n');
        }
        text.push_str("{\"batch\":\"b\",\"out_ref");
        std::fs::write(&path, text).unwrap();
        let r = Refunds::open(&path).unwrap();
        assert_eq!(r.entries(), vec![e(RefundStatus::Accepted)]);
    }

    #[test]
    fn an_outcome_is_recorded_once_and_survives_a_restart() {
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
        r.note(&b, &req, Millis(1)).unwrap();
        let failed = RefundState::Failed("wechat pay refund ABNORMAL".into());
        // Not ours: an unknown number, another amount.
        assert_eq!(
            r.settle("RF9", &failed, None, None, Millis(2)).unwrap(),
            Settled::NotOurs
        );
        assert_eq!(
            r.settle("RF2", &failed, Some(499), Some("e1"), Millis(2))
                .unwrap(),
            Settled::NotOurs
        );
        assert_eq!(r.entries()[0].status, RefundStatus::Asked);
        assert_eq!(
            r.settle("RF2", &failed, Some(500), Some("e1"), Millis(3))
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
                r.settle("RF2", state, None, event, Millis(4)).unwrap(),
                Settled::Unchanged(RefundStatus::Failed)
            );
        }
        drop(r);
        let back = Refunds::open(&path).unwrap().entries();
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

    #[test]
    fn a_journal_line_of_before_outcomes_still_reads() {
        // Lines written before `failure` / `event_id` existed.
        let line = r#"{"batch":"b","out_refund_no":"RF1","out_trade_no":"D1","provider_txn_id":"t1","amount_fen":5,"reason":"x","status":"accepted","at":1}"#;
        let e: RefundEntry = serde_json::from_str(line).unwrap();
        assert_eq!(
            (e.status, e.failure, e.event_id),
            (RefundStatus::Accepted, None, None)
        );
    }
}
