//! The refund journal: a file of JSON lines, one per change of an entry, synced before
//! the change is answered; read back whole at start, the last line of each refund
//! winning. The store of the embedded engine's gateway (`<data-dir>/refunds.jsonl`, or
//! `[payment] refund_journal`): one process holds it, so its compare-and-set is a lock
//! in memory, held while the line is written.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::store::{swap_in, RefundError, RefundStore};
use super::RefundEntry;

/// The journal at one path, and its entries as last written.
pub struct RefundJournal {
    path: PathBuf,
    entries: Mutex<HashMap<String, RefundEntry>>,
}

impl RefundJournal {
    /// The journal at `path` (created on the first entry); the last line of each refund
    /// wins.
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
            path: path.to_owned(),
            entries: Mutex::new(entries),
        })
    }

    fn append(&self, e: &RefundEntry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(e)?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&line)?;
        f.sync_data()
    }
}

#[async_trait]
impl RefundStore for RefundJournal {
    async fn get(&self, no: &str) -> Result<Option<RefundEntry>, RefundError> {
        Ok(self.entries.lock().get(no).cloned())
    }

    async fn swap(
        &self,
        expected: Option<&RefundEntry>,
        new: &RefundEntry,
    ) -> Result<bool, RefundError> {
        // Written under the lock (a refund is rare; its line is a few hundred bytes), so
        // the file's order of lines is the order of the changes.
        swap_in(&mut self.entries.lock(), expected, new, |e| self.append(e))
    }

    async fn all(&self) -> Result<Vec<RefundEntry>, RefundError> {
        Ok(self.entries.lock().values().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::refunds::store::conformance::{entry, holds_the_contract};
    use crate::refunds::RefundStatus;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_journal_holds_the_contract_and_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refunds.jsonl");
        let j: Arc<dyn RefundStore> = Arc::new(RefundJournal::open(&path).unwrap());
        holds_the_contract(j.clone(), j.clone()).await;
        let mut before = j.all().await.unwrap();
        drop(j);
        // A line per change that won (the suite's: RF1 three, RF2 one, RF3 two).
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(lines, 6);
        let mut back = RefundJournal::open(&path).unwrap().all().await.unwrap();
        for v in [&mut before, &mut back] {
            v.sort_by(|x, y| x.req.out_refund_no.cmp(&y.req.out_refund_no));
        }
        assert_eq!(back, before);
    }

    #[tokio::test]
    async fn a_torn_line_is_skipped_and_the_last_status_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refunds.jsonl");
        let e = |status| entry("RF1", status, 1);
        let mut text = String::new();
        for s in [RefundStatus::Asked, RefundStatus::Accepted] {
            text.push_str(&serde_json::to_string(&e(s)).unwrap());
            text.push('\n');
        }
        text.push_str("{\"batch\":\"b\",\"out_ref");
        std::fs::write(&path, text).unwrap();
        let j = RefundJournal::open(&path).unwrap();
        assert_eq!(j.all().await.unwrap(), vec![e(RefundStatus::Accepted)]);
        // The torn line was ended: the next change is a line of its own, and reads back.
        let done = e(RefundStatus::Succeeded);
        assert!(j
            .swap(Some(&e(RefundStatus::Accepted)), &done)
            .await
            .unwrap());
        let back = RefundJournal::open(&path).unwrap();
        assert_eq!(back.all().await.unwrap(), vec![done]);
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
