//! Blobs a signing request stored are removed again when the engine keeps none of them
//! (a refusal, an idempotent replay of an earlier request), and never while the record
//! or the signing log names them. With the directory store: the files are counted.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::signing::{png, png_part};
use common::*;
use serde_json::Value;
use xuanfang_allocator::embedded::EmbeddedEngine;
use xuanfang_allocator::SigningStore;
use xuanfang_gateway::blobs::DirBlobs;
use xuanfang_gateway::signing_api::{DepositRule, Signing};
use xuanfang_hub::{BatchId, ManualClock, SigningEvent};

const PAY_KEY: [u8; 32] = *b"sandbox-payment-key-for-tests!!!";

struct Setup {
    journey: signing::Journey,
    engine: Arc<EmbeddedEngine>,
    clock: Arc<ManualClock>,
    batch: BatchId,
    blob_dir: tempfile::TempDir,
}

impl std::ops::Deref for Setup {
    type Target = signing::Journey;
    fn deref(&self) -> &signing::Journey {
        &self.journey
    }
}

impl Setup {
    /// The blob files (random ids; the sealed identities live in a sub-directory).
    fn files(&self) -> BTreeSet<String> {
        (std::fs::read_dir(self.blob_dir.path()).unwrap())
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| e.file_name().into_string().unwrap())
            .collect()
    }

    /// Every blob id the batch's signing log names.
    async fn logged(&self) -> BTreeSet<String> {
        let events = (self.engine.signing_events(&self.batch, 0, 10_000))
            .await
            .unwrap();
        let mut ids = BTreeSet::new();
        for e in events {
            match e.event {
                SigningEvent::DetailsFilled { details } => {
                    ids.extend([details.card_front.id, details.card_back.id])
                }
                SigningEvent::ContractSigned { pdf, signature } => {
                    ids.extend([pdf.id, signature.id])
                }
                SigningEvent::NoticeIssued { pdf, .. } => {
                    ids.insert(pdf.id);
                }
                _ => {}
            }
        }
        ids
    }

    async fn details(&self, key: &str, card: &str) -> reqwest::Response {
        let front = png_part("front.png");
        let back = png_part("back.png");
        self.upload_details("F1", key, card, front, back).await
    }
}

async fn setup() -> Setup {
    let day = signing::signing_day("blobs", &[("F1", "U01")]).await;
    let app = app_on_clock(
        day.engine.clone(),
        day.clock.clone(),
        signing::unthrottled(),
    );
    let blob_dir = tempfile::tempdir().unwrap();
    let blobs = Arc::new(DirBlobs::open(blob_dir.path()).unwrap());
    let signing = Signing::sandbox(day.engine.clone(), blobs, PAY_KEY, DepositRule::default());
    assert!(app.enable_signing(signing));
    let addr = serve_on_free_port(&app, &day.batch.id).await;
    Setup {
        journey: signing::Journey::new(addr),
        engine: day.engine,
        clock: day.clock,
        batch: day.batch.id,
        blob_dir,
    }
}

async fn code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_replayed_request_leaves_no_blob_and_a_logged_one_stays() {
    let s = setup().await;
    let (f1, op) = (family_token("F1"), operator_token());
    assert!(s.files().is_empty());

    // The details: two photos stored and logged.
    assert_eq!(s.details("d1", "4111111111111111").await.status(), 200);
    let first = s.files();
    assert_eq!(first.len(), 2);
    assert_eq!(s.logged().await, first);
    let photo = s.get(&f1, "/api/me/signing/card_front").await.bytes().await;
    // The same request again: the first answer, and the photos it stored are gone.
    assert_eq!(s.details("d1", "4111111111111111").await.status(), 200);
    assert_eq!(s.files(), first);
    let again = s.get(&f1, "/api/me/signing/card_front").await.bytes().await;
    assert_eq!(again.unwrap(), photo.unwrap());

    // New details (another key) replace the photos: the replaced ones stay, the log
    // names them.
    assert_eq!(s.details("d2", "5555555555554444").await.status(), 200);
    let replaced = s.files();
    assert_eq!(replaced.len(), 4);
    assert!(replaced.is_superset(&first));
    assert_eq!(s.logged().await, replaced);

    // The contract: the signature and the PDF. Then details again: stored, refused by
    // the engine (the contract closes them), removed.
    s.face("F1").await;
    assert_eq!(
        s.sign("F1", "c1", png(32, 20), "image/png").await.status(),
        200
    );
    let signed = s.files();
    assert_eq!(signed.len(), 6);
    assert_eq!(
        code(s.details("d3", "4111111111111111").await).await,
        (409, "step_done".to_owned())
    );
    assert_eq!(s.files(), signed);
    // The same refused request again: refused again, nothing left either.
    assert_eq!(code(s.details("d3", "4111111111111111").await).await.0, 409);
    assert_eq!(s.files(), signed);

    // The notice, issued again with the same key a day later (a new PDF, another date):
    // the first answer, the new PDF removed, the first one served.
    s.deposit_paid_at_sandbox("F1").await;
    let r = s.post(&op, "/api/ops/signing/F1/approve", "ap").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.post(&op, "/api/ops/signing/F1/notice", "n1")
            .await
            .status(),
        200
    );
    let issued = s.files();
    assert_eq!(issued.len(), 7);
    let notice = s.get(&f1, "/api/me/signing/notice.pdf").await.bytes().await;
    s.clock.advance(24 * 3_600_000);
    assert_eq!(
        s.post(&op, "/api/ops/signing/F1/notice", "n1")
            .await
            .status(),
        200
    );
    assert_eq!(s.files(), issued);
    let again = s.get(&f1, "/api/me/signing/notice.pdf").await.bytes().await;
    assert_eq!(again.unwrap(), notice.unwrap());

    // Every file is one the log names, and every blob it names is there.
    assert_eq!(s.logged().await, s.files());
}
