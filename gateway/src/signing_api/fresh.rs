//! Blobs a signing request stored before the engine decided (the card photos, the
//! signature and the signed PDF, the move-in notice), removed again when the engine
//! kept none of them: a definite refusal (`Ok(Err(..))`), or an idempotent replay
//! answered from an earlier request whose record names other files. Nothing else can
//! name them: the store's ids are random and this request made them.
//!
//! Never removed: a blob the record names, or any entry of the batch's signing log
//! (photos replaced by a later form stay with the log's history), and anything after an
//! engine error (`Err(AllocError)`): the action may have been applied, so the files are
//! kept (see docs/operations.md, retention).

use xuanfang_allocator::{AllocError, SigningAnswer};
use xuanfang_hub::blob::BlobRef;
use xuanfang_hub::{BatchId, FamilyId, SigningEvent, SigningRecord};

use super::Signing;

/// Entries read per call while looking for a reference in the signing log.
const EVENTS_PAGE: usize = 2000;

/// Removes the blobs of `fresh` the engine did not keep after `answered`. Failures are
/// logged, never answered: the request's answer stands and a file left behind is only
/// space.
pub(crate) async fn settle(
    sg: &Signing,
    batch: &BatchId,
    family: &FamilyId,
    fresh: &[BlobRef],
    answered: &Result<SigningAnswer, AllocError>,
) {
    if fresh.is_empty() {
        return;
    }
    let unkept = match answered {
        Ok(Err(_)) => fresh.to_vec(),
        Ok(Ok(_)) => match unreferenced(sg, batch, family, fresh).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("blob clean-up skipped: {e}");
                return;
            }
        },
        // Unknown outcome: the engine may hold them.
        Err(_) => return,
    };
    drop_all(sg, &unkept).await;
}

/// Removes blobs this request stored when it fails before asking the engine.
pub(crate) async fn drop_all(sg: &Signing, blobs: &[BlobRef]) {
    for b in blobs {
        if let Err(e) = sg.blobs.delete(b).await {
            tracing::warn!(blob = %b.id, "blob clean-up: {e}");
        }
    }
}

/// The blobs of `fresh` that neither `family`'s record nor any entry of the batch's
/// signing log names. Only reached by a replay (or a race lost to another request), so
/// the scan of the log is rare.
async fn unreferenced(
    sg: &Signing,
    batch: &BatchId,
    family: &FamilyId,
    fresh: &[BlobRef],
) -> Result<Vec<BlobRef>, AllocError> {
    let rec = sg.store.signing(batch, family).await?;
    let held = rec.as_ref().map(held_by_record).unwrap_or_default();
    let mut left: Vec<BlobRef> = (fresh.iter())
        .filter(|b| !held.contains(&b.id.as_str()))
        .cloned()
        .collect();
    let mut after = 0;
    while !left.is_empty() {
        let page = sg.store.signing_events(batch, after, EVENTS_PAGE).await?;
        for e in &page {
            let named = named_by_event(&e.event);
            left.retain(|b| !named.contains(&b.id.as_str()));
        }
        match page.last() {
            Some(last) if page.len() == EVENTS_PAGE => after = last.seq,
            _ => break,
        }
    }
    Ok(left)
}

fn held_by_record(rec: &SigningRecord) -> Vec<&str> {
    let mut ids = Vec::new();
    if let Some(d) = rec.details().latest() {
        ids.extend([d.card_front.id.as_str(), d.card_back.id.as_str()]);
    }
    if let Some(c) = rec.contract().latest() {
        ids.extend([c.pdf.id.as_str(), c.signature.id.as_str()]);
    }
    if let Some(n) = rec.notice() {
        ids.push(n.pdf.id.as_str());
    }
    ids
}

/// Every variant named (no `_`): an event that gains a blob must be added here.
fn named_by_event(e: &SigningEvent) -> Vec<&str> {
    use SigningEvent as E;
    match e {
        E::DetailsFilled { details } => {
            vec![
                details.card_front.id.as_str(),
                details.card_back.id.as_str(),
            ]
        }
        E::ContractSigned { pdf, signature } => {
            vec![pdf.id.as_str(), signature.id.as_str()]
        }
        E::NoticeIssued { pdf, .. } => vec![pdf.id.as_str()],
        E::Opened { .. }
        | E::FaceStarted { .. }
        | E::FaceResult { .. }
        | E::FaceUnlocked { .. }
        | E::DepositOrdered { .. }
        | E::DepositPaid { .. }
        | E::Approved { .. }
        | E::Rejected { .. } => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use xuanfang_allocator::embedded::{EmbeddedEngine, JournalOptions};
    use xuanfang_allocator::testing::test_signing_options;
    use xuanfang_hub::{ErrorCode, SystemClock};

    use super::*;
    use crate::blobs::{BlobStore, MemoryBlobs};
    use crate::signing_api::DepositRule;

    #[tokio::test]
    async fn an_engine_error_keeps_the_files_a_refusal_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let engine = EmbeddedEngine::open_full(
            dir.path(),
            Arc::new(SystemClock),
            JournalOptions::default(),
            Some(&test_signing_options()),
        )
        .unwrap();
        let blobs = Arc::new(MemoryBlobs::default());
        let sg =
            Signing::without_providers(Arc::new(engine), blobs.clone(), DepositRule::default());
        let (batch, family) = (BatchId::from("b"), FamilyId::from("F1"));
        let stored = [
            blobs.put(b"front", "image/png").await.unwrap(),
            blobs.put(b"back", "image/png").await.unwrap(),
        ];
        // The outcome is unknown (the write may have happened): kept.
        let unknown = Err(AllocError::Contended("test".into()));
        settle(&sg, &batch, &family, &stored, &unknown).await;
        assert_eq!(blobs.len(), 2);
        // A definite refusal: removed.
        settle(
            &sg,
            &batch,
            &family,
            &stored,
            &Ok(Err(ErrorCode::StepDone.into())),
        )
        .await;
        assert!(blobs.is_empty());
    }
}
