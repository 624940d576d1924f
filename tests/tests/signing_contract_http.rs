//! 签订合同 and 入住通知书 over HTTP: the lease read unsigned, signed with a PNG, stored
//! and served byte for byte with the hash of the signing log; the notice issued only
//! after approval; the deposit's QR code. On the embedded engine and a gateway sharing
//! one manual clock, so the printed dates are the test's.

use crate::common;

use std::sync::Arc;

use common::signing::{done, encoded, png};
use common::*;
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use xuanfang_allocator::embedded::EmbeddedEngine;
use xuanfang_allocator::SigningStore;
use xuanfang_gateway::blobs::MemoryBlobs;
use xuanfang_gateway::signing_api::{DepositRule, Signing};
use xuanfang_hub::{BatchId, ManualClock, SigningEvent};

const PAY_KEY: [u8; 32] = *b"sandbox-payment-key-for-tests!!!";

struct Setup {
    journey: signing::Journey,
    engine: Arc<EmbeddedEngine>,
    blobs: Arc<MemoryBlobs>,
    clock: Arc<ManualClock>,
    batch: BatchId,
}

impl std::ops::Deref for Setup {
    type Target = signing::Journey;
    fn deref(&self) -> &signing::Journey {
        &self.journey
    }
}

impl Setup {
    async fn events(&self) -> Vec<xuanfang_hub::SigningEntry> {
        (self.engine.signing_events(&self.batch, 0, 10_000))
            .await
            .unwrap()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The text of a PDF, by poppler's `pdftotext` (as the documents tests use it).
fn pdf_text(pdf: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("pdftotext")
        .args(["-layout", "-", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("pdftotext (poppler-utils) is installed by scripts/test");
    child.stdin.take().unwrap().write_all(pdf).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    // Justified CJK text is spaced out by -layout: compare without spaces.
    String::from_utf8(out.stdout)
        .unwrap()
        .replace([' ', '\n'], "")
}

/// The recorded contract's PDF hash in the signing log (its latest `ContractSigned`).
fn logged_contract(events: &[xuanfang_hub::SigningEntry], family: &str) -> Option<String> {
    (events.iter().rev())
        .filter(|e| e.family.0 == family)
        .find_map(|e| match &e.event {
            SigningEvent::ContractSigned { pdf, .. } => Some(pdf.sha256.to_string()),
            _ => None,
        })
}

/// F1 selected U01 and F2 U02; F3's name has a character outside the PDF font.
async fn setup() -> Setup {
    let selected = [("F1", "U01"), ("F2", "U02"), ("F3", "U03")];
    let day = signing::signing_day_with("contract", &selected, |batch| {
        batch.families[2].name = "王喆".into();
    })
    .await;
    let app = app_on_clock(
        day.engine.clone(),
        day.clock.clone(),
        signing::unthrottled(),
    );
    let blobs = Arc::new(MemoryBlobs::default());
    let signing = Signing::sandbox(
        day.engine.clone(),
        blobs.clone(),
        PAY_KEY,
        DepositRule::default(),
    );
    assert!(app.enable_signing(signing));
    let addr = serve_on_free_port(&app, &day.batch.id).await;
    Setup {
        journey: signing::Journey::new(addr),
        engine: day.engine,
        blobs,
        clock: day.clock,
        batch: day.batch.id,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_read_unsigned_then_signed_and_served_as_recorded() {
    let s = setup().await;
    let f1 = family_token("F1");

    // The page lists the banks the server accepts.
    let v = s.view("F1").await;
    assert_eq!(v["banks"].as_array().unwrap().len(), 15);
    assert_eq!(
        v["banks"][0],
        json!({"code": "ICBC", "zh": "中国工商银行", "en": "Industrial and Commercial Bank of China"})
    );
    assert_eq!(v["materials"], json!([]));

    // The lease needs the details (it prints the phone).
    let r = s.get(&f1, "/api/me/signing/lease.pdf").await;
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "step_locked");
    s.details("F1").await;

    // Unsigned, dated by the gateway's clock in Shenzhen time, never cached.
    let r = s.get(&f1, "/api/me/signing/lease.pdf").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let cd = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cd.starts_with("inline; filename=\"") && cd.contains("filename*=UTF-8''"),
        "{cd}"
    );
    let text = pdf_text(&r.bytes().await.unwrap());
    assert!(text.contains("（待签字）"), "{text}");
    assert!(
        text.contains("张*1") && text.contains("138****5678"),
        "{text}"
    );
    assert!(
        text.contains("2026年12月1日"),
        "signed on the Shenzhen date: {text}"
    );
    assert!(
        text.contains("2027年1月1日") && text.contains("2029年12月31日"),
        "the term: {text}"
    );
    assert!(text.contains("深圳市住房和建设局"), "{text}");

    // Before the face check: locked, nothing stored or logged.
    let (blobs, events) = (s.blobs.len(), s.events().await.len());
    let r = s.sign("F1", "c-early", png(300, 100), "image/png").await;
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "step_locked");
    assert_eq!((s.blobs.len(), s.events().await.len()), (blobs, events));
    s.face("F1").await;

    // A JPEG, a file that is no image, a signature too large: refused, nothing changes.
    let (blobs, events) = (s.blobs.len(), s.events().await.len());
    let r = s
        .sign(
            "F1",
            "c-jpeg",
            encoded(300, 100, image::ImageFormat::Jpeg),
            "image/png",
        )
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "bad_frame");
    let r = s
        .sign(
            "F1",
            "c-text",
            b"\x89PNG\r\n\x1a\n not really".to_vec(),
            "image/png",
        )
        .await;
    assert_eq!(r.status(), 422);
    let r = s
        .sign("F1", "c-big", vec![0x89; 300 * 1024], "image/png")
        .await;
    assert_eq!(r.status(), 413);
    // Without the client's own `Connection: close`, the server says it closes.
    let big = Part::bytes(vec![0x89; 300 * 1024])
        .file_name("signature.png")
        .mime_str("image/png")
        .unwrap();
    let r = reqwest::Client::new()
        .post(s.url("/api/me/signing/contract"))
        .bearer_auth(family_token("F1"))
        .header("Idempotency-Key", "c-big-2")
        .multipart(Form::new().part("signature", big))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.headers().get("connection").and_then(|v| v.to_str().ok()),
        Some("close")
    );
    assert_eq!(s.blobs.len(), blobs);
    assert_eq!(s.events().await.len(), events);
    assert!(!done(&s.view("F1").await).contains(&"contract"));

    // Signed: the signature and the PDF stored, the PDF's hash in the log.
    let r = s.sign("F1", "c-1", png(300, 100), "image/png").await;
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await.unwrap();
    assert_eq!(done(&page), ["details", "face", "contract"]);
    assert_eq!(s.blobs.len(), blobs + 2);
    let logged = logged_contract(&s.events().await, "F1").expect("ContractSigned in the log");
    assert_eq!(page["materials"][0]["kind"], "contract");
    assert_eq!(page["materials"][0]["url"], "/api/me/signing/contract.pdf");
    assert_eq!(page["materials"][0]["sha256"], logged.as_str());

    // The stored PDF, byte for byte: its SHA-256 is the logged one; signed, not 待签字.
    let r = s.get(&f1, "/api/me/signing/contract.pdf").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    let pdf = r.bytes().await.unwrap();
    assert_eq!(sha256_hex(&pdf), logged);
    let text = pdf_text(&pdf);
    assert!(
        !text.contains("（待签字）") && text.contains("张*1"),
        "{text}"
    );
    let ops = s
        .get(&operator_token(), "/api/ops/signing/F1/contract.pdf")
        .await;
    assert_eq!(ops.status(), 200);
    assert_eq!(ops.bytes().await.unwrap(), pdf);

    // The same request again: the same page, nothing new stored or logged.
    let events = s.events().await.len();
    let r = s.sign("F1", "c-1", png(300, 100), "image/png").await;
    assert_eq!(r.status(), 200);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["materials"], page["materials"]);
    assert_eq!(done(&again), done(&page));
    assert_eq!(s.blobs.len(), blobs + 2);
    assert_eq!(s.events().await.len(), events);
    // Another key: signed already.
    let r = s.sign("F1", "c-2", png(200, 80), "image/png").await;
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "step_done");
    assert_eq!(s.blobs.len(), blobs + 2);

    // Another family reads neither this contract nor one of its own.
    let f2 = family_token("F2");
    assert_eq!(
        s.get(&f2, "/api/me/signing/contract.pdf").await.status(),
        404
    );
    assert_eq!(
        s.get(&f2, "/api/ops/signing/F1/contract.pdf")
            .await
            .status(),
        403
    );
    let f1_batch = format!("/api/me/signing/contract.pdf?batch={}", s.batch);
    assert_eq!(s.get(&f1, &f1_batch).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notice_comes_after_approval_and_the_family_downloads_it() {
    let s = setup().await;
    let (f1, op) = (family_token("F1"), operator_token());
    s.details("F1").await;
    s.face("F1").await;
    assert_eq!(
        s.sign("F1", "c-1", png(240, 90), "image/png")
            .await
            .status(),
        200
    );

    // The deposit's QR code: an inline SVG, on the page too while the order is live.
    let r = s.post(&f1, "/api/me/signing/deposit", "dp1").await;
    assert_eq!(r.status(), 200);
    let order: Value = r.json().await.unwrap();
    let svg = order["qr_svg"].as_str().unwrap();
    assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
    assert_eq!(s.view("F1").await["qr_svg"], svg);
    let no = order["out_trade_no"].as_str().unwrap();
    let r = (s.http.post(s.url(&format!("/sandbox/pay/{no}/pay"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = s.view("F1").await;
    assert_eq!(v["status"]["status"], "in_review");
    assert!(v.get("qr_svg").is_none(), "paid: no live order, no code");

    // Before approval: no notice, nothing stored.
    let blobs = s.blobs.len();
    let r = s.post(&op, "/api/ops/signing/F1/notice", "n-early").await;
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "step_locked");
    assert_eq!(s.blobs.len(), blobs);
    assert_eq!(s.get(&f1, "/api/me/signing/notice.pdf").await.status(), 404);
    // A family cannot issue it.
    assert_eq!(
        s.post(&f1, "/api/ops/signing/F1/notice", "n-fam")
            .await
            .status(),
        403
    );

    assert_eq!(
        s.post(&op, "/api/ops/signing/F1/approve", "ap")
            .await
            .status(),
        200
    );
    // Issued a week later: the notice keeps the lease's term.
    s.clock.advance(7 * 24 * 3_600_000);
    let r = s.post(&op, "/api/ops/signing/F1/notice", "n-1").await;
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["status"]["status"], "completed");
    assert_eq!(page["materials"][1]["kind"], "notice");
    assert_eq!(
        page["materials"][1]["url"],
        "/api/ops/signing/F1/notice.pdf"
    );
    assert_eq!(s.blobs.len(), blobs + 1);
    // The same request again stores nothing.
    assert_eq!(
        s.post(&op, "/api/ops/signing/F1/notice", "n-1")
            .await
            .status(),
        200
    );
    assert_eq!(s.blobs.len(), blobs + 1);

    let v = s.view("F1").await;
    assert_eq!(v["materials"][1]["url"], "/api/me/signing/notice.pdf");
    let r = s.get(&f1, "/api/me/signing/notice.pdf").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    let pdf = r.bytes().await.unwrap();
    assert_eq!(
        sha256_hex(&pdf),
        v["materials"][1]["sha256"].as_str().unwrap()
    );
    let text = pdf_text(&pdf);
    assert!(
        text.contains("入住通知书") && text.contains("张*1"),
        "{text}"
    );
    assert!(
        text.contains("2027年1月1日"),
        "the lease's term and move-in date: {text}"
    );
    assert!(text.contains("12345"), "the enquiry phone: {text}");
    let ops = s.get(&op, "/api/ops/signing/F1/notice.pdf").await;
    assert_eq!(ops.bytes().await.unwrap(), pdf);
    // F2 has none of its own and cannot reach F1's.
    let f2 = family_token("F2");
    assert_eq!(s.get(&f2, "/api/me/signing/notice.pdf").await.status(), 404);
    assert_eq!(
        s.get(&f2, "/api/ops/signing/F1/notice.pdf").await.status(),
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_outside_the_font_is_signed_and_flagged_for_the_reviewer() {
    let s = setup().await;
    assert_eq!(
        s.view("F3").await["doc_flags"],
        json!([{"flag": "name_outside_font", "chars": "喆"}])
    );
    s.details("F3").await;
    s.face("F3").await;
    assert_eq!(
        s.sign("F3", "c-1", png(240, 90), "image/png")
            .await
            .status(),
        200
    );
    let rec: Value = (s.get(&operator_token(), "/api/ops/signing/F3").await)
        .json()
        .await
        .unwrap();
    assert_eq!(rec["doc_flags"][0]["flag"], "name_outside_font");
    let open: Value = (s
        .get(&operator_token(), "/api/ops/signing?status=open")
        .await)
        .json()
        .await
        .unwrap();
    let row = open
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["family"] == "F3")
        .unwrap();
    assert_eq!(row["doc_flags"][0]["chars"], "喆", "the queue shows it too");
    assert!(done(&rec).contains(&"contract"));
    assert_eq!(s.view("F1").await["doc_flags"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failed_face_checks_lock_until_an_operator_unlocks() {
    let s = setup().await;
    let f2 = family_token("F2");
    s.details("F2").await;
    for i in 0..5 {
        let a: Value = (s
            .post(&f2, "/api/me/signing/face/start", &format!("fs{i}"))
            .await)
            .json()
            .await
            .unwrap();
        let session = a["provider_session"].as_str().unwrap();
        let r = (s
            .http
            .post(s.url(&format!("/sandbox/face/{session}/result"))))
        .form(&[("passed", "false")])
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(s.view("F2").await["status"]["status"], "face_locked");
    let r = s.post(&f2, "/api/me/signing/face/start", "fs5").await;
    assert_eq!(r.status(), 429);
    let op = operator_token();
    let locked: Value = (s.get(&op, "/api/ops/signing?status=face_locked").await)
        .json()
        .await
        .unwrap();
    assert_eq!(locked[0]["family"], "F2");
    assert_eq!(
        s.post(&f2, "/api/ops/signing/F2/unlock_face", "u-fam")
            .await
            .status(),
        403
    );
    let r = s.post(&op, "/api/ops/signing/F2/unlock_face", "u-1").await;
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["face_attempts"], 0);
    assert_eq!(
        s.post(&f2, "/api/me/signing/face/start", "fs6")
            .await
            .status(),
        200
    );
}
