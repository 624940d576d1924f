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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Recorded; the provider has not answered yet (asked again by the sweep).
    Asked,
    Accepted,
    /// The provider refused: an operator must look.
    Failed,
}

/// One line of the journal: a refund and its status at `at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundEntry {
    pub batch: BatchId,
    #[serde(flatten)]
    pub req: RefundRequest,
    pub status: RefundStatus,
    pub at: Millis,
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
        })
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
            Some(s @ (RefundStatus::Accepted | RefundStatus::Failed)) => return Ok(Some(s)),
            Some(RefundStatus::Asked) => {}
            None => self.record(RefundEntry {
                batch: batch.clone(),
                req: req.clone(),
                status: RefundStatus::Asked,
                at: now,
            })?,
        }
        if !self.in_flight.lock().insert(no.clone()) {
            return Ok(None);
        }
        // Answered while we were not yet the one asking: done.
        let now_known = self.entries.lock().get(&no).map(|e| e.status);
        if let Some(s @ (RefundStatus::Accepted | RefundStatus::Failed)) = now_known {
            self.in_flight.lock().remove(&no);
            return Ok(Some(s));
        }
        let answer = pay.refund(&req).await;
        self.in_flight.lock().remove(&no);
        let status = match answer {
            Ok(RefundState::Accepted) => RefundStatus::Accepted,
            Ok(RefundState::Failed) => {
                tracing::error!(refund = %no, order = %req.out_trade_no, "refund refused by the provider: an operator must look");
                RefundStatus::Failed
            }
            Err(e) => {
                tracing::warn!(refund = %no, "refund not asked yet ({e}); the sweep asks again");
                return Ok(Some(RefundStatus::Asked));
            }
        };
        self.record(RefundEntry {
            batch: batch.clone(),
            req,
            status,
            at: now,
        })?;
        Ok(Some(status))
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
}
