//! 网上签约 over HTTP on Redis: the family's steps, the sandbox providers, the payment
//! notification's checks, the operator's review, and who may see what.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::signing::{done, png};
use common::*;
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::{json, Value};
use xuanfang_allocator::redis_engine::{RedisEngine, RedisOptions};
use xuanfang_allocator::testing::{test_signing_options, RedisServer};
use xuanfang_allocator::{Allocator, SigningStore};
use xuanfang_gateway::app::{App, WsConfig};
use xuanfang_gateway::blobs::MemoryBlobs;
use xuanfang_gateway::limits::Limits;
use xuanfang_gateway::providers::payment::{SandboxPayment, SANDBOX_SIGNATURE_HEADER};
use xuanfang_gateway::signing_api::{DepositRule, Signing};
use xuanfang_hub::BatchId;

const PAY_KEY: [u8; 32] = *b"sandbox-payment-key-for-tests!!!";

struct Setup {
    journey: signing::Journey,
    gw: Gateway,
    store: Arc<RedisEngine>,
    batch: BatchId,
}

impl std::ops::Deref for Setup {
    type Target = signing::Journey;
    fn deref(&self) -> &signing::Journey {
        &self.journey
    }
}

impl Setup {
    async fn events(&self) -> usize {
        self.store
            .signing_events(&self.batch, 0, 10_000)
            .await
            .unwrap()
            .len()
    }
    async fn details(
        &self,
        f: &str,
        key: &str,
        card: &str,
        front: Part,
        back: Part,
    ) -> reqwest::Response {
        self.journey.upload_details(f, key, card, front, back).await
    }
    async fn notify(
        &self,
        body: &[u8],
        sig: Option<&str>,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url("/api/providers/payment/notify"))
            .body(body.to_vec());
        if let Some(s) = sig {
            req = req.header(SANDBOX_SIGNATURE_HEADER, s);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }
}

fn part(bytes: Vec<u8>, name: &str, mime: &str) -> Part {
    Part::bytes(bytes)
        .file_name(name.to_owned())
        .mime_str(mime)
        .unwrap()
}

fn status_of(v: &Value) -> &str {
    v["status"]["status"].as_str().unwrap()
}

async fn setup() -> Setup {
    let store = Arc::new(
        RedisEngine::connect(
            RedisServer::shared().client(),
            RedisOptions {
                namespace: namespace(),
                signing: Some(test_signing_options()),
                ..RedisOptions::default()
            },
        )
        .await
        .unwrap(),
    );
    let alloc: Arc<dyn Allocator> = store.clone();
    let batch = small_batch(
        "signing",
        Duration::from_millis(1500),
        Duration::from_secs(120),
    );
    alloc.load_batch(batch.clone()).await.unwrap();
    preselect_direct(&*alloc, &batch.id, "F1", &["U01"]).await;
    preselect_direct(&*alloc, &batch.id, "F2", &["U02"]).await;
    sleep_until(batch.sessions[0].start).await;
    confirm_direct(&*alloc, &batch.id, "F1", "U01").await;
    confirm_direct(&*alloc, &batch.id, "F2", "U02").await;

    let app = App::new(
        alloc,
        auth(),
        Limits::new(signing::unthrottled()),
        WsConfig::default(),
        None,
    );
    let signing = Signing::sandbox(
        store.clone(),
        Arc::new(MemoryBlobs::default()),
        PAY_KEY,
        DepositRule::default(),
    );
    assert!(app.enable_signing(signing));
    let addr = serve_on_free_port(&app, &batch.id).await;
    Setup {
        journey: signing::Journey::new(addr),
        gw: Gateway { addr, app },
        store,
        batch: batch.id,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_family_signs_over_http_and_an_operator_approves() {
    let s = setup().await;
    let f1 = family_token("F1");

    // Opened on the first request: the unit's lease, two months' rent as deposit.
    let v = s.view("F1").await;
    assert_eq!(status_of(&v), "open");
    assert_eq!(v["status"]["step"], "details");
    assert_eq!(v["deposit_fen"], 2 * 120_000);
    assert_eq!(v["lease"]["unit"], "U01");
    assert_eq!(v["steps"][0]["state"], "open");
    assert_eq!(v["steps"][1]["state"], "locked");

    // A write without Idempotency-Key is 400.
    let r = (s
        .http
        .post(s.url("/api/me/signing/face/start"))
        .bearer_auth(&f1))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    // Face before details: locked.
    let r = s
        .post(&f1, "/api/me/signing/face/start", "face-early")
        .await;
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "step_locked");

    // Refused details change nothing.
    let before = s.events().await;
    let photo = || part(png(64, 40), "card.png", "image/png");
    let r = s.details("F1", "d-bad1", "1234", photo(), photo()).await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid_card");
    let r = s
        .details("F1", "d-bad2", "4111111111111112", photo(), photo())
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "luhn_unconfirmed");
    let fake = part(
        b"GIF89a, or a text file renamed".to_vec(),
        "card.jpg",
        "image/jpeg",
    );
    let r = s
        .details("F1", "d-bad3", "4111111111111111", fake, photo())
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "bad_frame");
    let big = part(vec![0xFF; 9 * 1024 * 1024], "card.jpg", "image/jpeg");
    let r = s
        .details("F1", "d-bad4", "4111111111111111", big, photo())
        .await;
    assert!(matches!(r.status().as_u16(), 413 | 422), "{}", r.status());
    assert_eq!(s.events().await, before);
    assert!(done(&s.view("F1").await).is_empty());

    // Good details.
    let r = s
        .details("F1", "d-ok", "4111111111111111", photo(), photo())
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(done(&v), ["details"]);
    assert_eq!(v["phone_masked"], "138****5678");
    assert!(
        !v.to_string().contains("4111111111111111"),
        "card in clear: {v}"
    );
    // The family sees its photo, re-encoded, never cached.
    let r = s.get(&f1, "/api/me/signing/card_front").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.headers().contains_key("content-disposition"));
    image::load_from_memory(&r.bytes().await.unwrap()).expect("a picture");

    // Face: session A, then B abandons A; a verdict for A is refused.
    let r = s.post(&f1, "/api/me/signing/face/start", "face-a").await;
    assert_eq!(r.status(), 200);
    let a: Value = r.json().await.unwrap();
    let session_a = a["provider_session"].as_str().unwrap().to_owned();
    let page = s
        .http
        .get(s.url(a["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("沙箱"));
    let r = s.post(&f1, "/api/me/signing/face/start", "face-b").await;
    let b: Value = r.json().await.unwrap();
    let session_b = b["provider_session"].as_str().unwrap().to_owned();
    assert_ne!(session_a, session_b);
    // The same request again answers its own session.
    let again: Value = s
        .post(&f1, "/api/me/signing/face/start", "face-b")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["provider_session"], session_b.as_str());
    let r = s
        .http
        .post(s.url(&format!("/sandbox/face/{session_a}/result")))
        .form(&[("passed", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "face_session_mismatch"
    );
    assert_eq!(done(&s.view("F1").await), ["details"]);
    // Not back from the provider yet: pending.
    let fin: Value = s
        .post(&f1, "/api/me/signing/face/finish", "fin-1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fin["pending"], true);
    // B passes at the sandbox; the gateway fetches the verdict itself.
    let r = s
        .http
        .post(s.url(&format!("/sandbox/face/{session_b}/result")))
        .form(&[("passed", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "redirected to the sandbox page");
    let fin: Value = s
        .post(&f1, "/api/me/signing/face/finish", "fin-2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fin["pending"], false);
    assert_eq!(done(&fin["signing"]), ["details", "face"]);

    // The contract, signed over HTTP with a PNG from the signature pad.
    sign_contract(&s, "F1", "contract-1").await;

    // Deposit order through the sandbox provider.
    let r = s.post(&f1, "/api/me/signing/deposit", "dep-1").await;
    assert_eq!(r.status(), 200);
    let order: Value = r.json().await.unwrap();
    assert_eq!(order["amount_fen"], 240_000);
    assert!(order["provider_expires_at"].as_i64() < order["expires_at"].as_i64());
    let out_trade_no = order["out_trade_no"].as_str().unwrap().to_owned();
    let again: Value = s
        .post(&f1, "/api/me/signing/deposit", "dep-1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["out_trade_no"], out_trade_no.as_str());

    // Forged, unsigned and wrong-amount notifications change nothing.
    let before = s.events().await;
    let body = |amount: u64, event: &str| {
        serde_json::to_vec(&json!({
            "event_id": event, "batch": s.batch.0, "out_trade_no": out_trade_no,
            "provider_txn_id": "txn-1", "amount_fen": amount,
        }))
        .unwrap()
    };
    let ours = SandboxPayment::new(PAY_KEY);
    let other = SandboxPayment::new(*b"another-key-that-is-not-the-one!");
    let good = body(240_000, "ev-1");
    let r = s.notify(&good, None, Some(&operator_token())).await;
    assert_eq!(r.status(), 401);
    let r = s.notify(&good, Some(&other.sign(&good)), Some(&f1)).await;
    assert_eq!(r.status(), 401);
    let r = s
        .notify(&body(1, "ev-1"), Some(&ours.sign(&good)), None)
        .await;
    assert_eq!(r.status(), 401, "a signature of another body");
    let wrong = body(1, "ev-2");
    let r = s.notify(&wrong, Some(&ours.sign(&wrong)), None).await;
    assert_eq!(r.status(), 200);
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["accepted"], false);
    assert_eq!(a["refused"], "payment_mismatch");
    assert_eq!(s.events().await, before);
    assert_eq!(status_of(&s.view("F1").await), "open");

    // The sandbox's pay button: a signed notification, then in review.
    let page = s
        .http
        .get(s.url(order["pay_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert!(page.text().await.unwrap().contains("沙箱"));
    let r = s
        .http
        .post(s.url(&format!("/sandbox/pay/{out_trade_no}/pay")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(status_of(&s.view("F1").await), "in_review");
    // Replayed: the same notification again changes nothing.
    let sb = s.gw.app.signing().unwrap().sandbox_payment.clone().unwrap();
    let sent = serde_json::to_vec(&sb.order(&out_trade_no).unwrap().paid.unwrap()).unwrap();
    let before = s.events().await;
    let r = s.notify(&sent, Some(&ours.sign(&sent)), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["accepted"], true);
    assert_eq!(s.events().await, before);

    // Another family sees neither the record nor the photos.
    let f2 = family_token("F2");
    for path in [
        "/api/ops/signing/F1",
        "/api/ops/signing/F1/card_front",
        "/api/ops/signing",
    ] {
        assert_eq!(
            s.get(&f2, path).await.status(),
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    let r = s.get(&f2, "/api/me/signing/card_front").await;
    assert_eq!(r.status(), 404, "F2's own record has no photos");
    assert_eq!(
        s.get(&family_token("F9"), "/api/me/signing").await.status(),
        403
    );

    // The operator: queue, record (masked), photo, approve.
    let op = operator_token();
    let q: Value = s
        .get(&op, "/api/ops/signing?status=in_review")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q.as_array().unwrap().len(), 1);
    assert_eq!(q[0]["family"], "F1");
    let rec = s.get(&op, "/api/ops/signing/F1").await;
    assert_eq!(rec.status(), 200);
    let rec = rec.text().await.unwrap();
    assert!(!rec.contains("4111111111111111") && !rec.contains("13812345678"));
    let r = s.get(&op, "/api/ops/signing/F1/card_back").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let r = s.post(&op, "/api/ops/signing/F1/approve", "ap-1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(status_of(&s.view("F1").await), "approved");
}

/// Drives `f` to in review over HTTP: details, face, contract, the deposit paid at the
/// sandbox.
async fn to_review(s: &Setup, f: &str) {
    s.journey.details(f).await;
    s.journey.face(f).await;
    sign_contract(s, f, "c1").await;
    s.journey.deposit_paid_at_sandbox(f).await;
    assert_eq!(status_of(&s.view(f).await), "in_review");
}

async fn sign_contract(s: &Setup, f: &str, req: &str) {
    let part = part(png(240, 90), "signature.png", "image/png");
    let r = (s.http.post(s.url("/api/me/signing/contract")))
        .bearer_auth(family_token(f))
        .header("Idempotency-Key", req)
        .multipart(Form::new().part("signature", part))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_returns_the_details_and_the_family_resubmits() {
    let s = setup().await;
    to_review(&s, "F2").await;
    let op = operator_token();
    // A reason is required; a family cannot review.
    let r = (s
        .http
        .post(s.url("/api/ops/signing/F2/reject"))
        .bearer_auth(&op))
    .header("Idempotency-Key", "rj-0")
    .json(&json!({"step": "details", "reason": "  "}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 422);
    let r = s
        .post(&family_token("F2"), "/api/ops/signing/F2/approve", "x")
        .await;
    assert_eq!(r.status(), 403);
    let r = (s
        .http
        .post(s.url("/api/ops/signing/F2/reject"))
        .bearer_auth(&op))
    .header("Idempotency-Key", "rj-1")
    .json(&json!({"step": "details", "reason": "银行卡照片不清晰"}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let v = s.view("F2").await;
    assert_eq!(v["status"]["status"], "open");
    assert_eq!(v["status"]["returned"], true);
    assert_eq!(v["rejections"][0]["reason"], "银行卡照片不清晰");
    assert_eq!(done(&v), ["face", "deposit"], "details and contract reopen");
    let returned: Vec<Value> = (s.get(&op, "/api/ops/signing?status=returned").await)
        .json()
        .await
        .unwrap();
    assert_eq!(returned.len(), 1);
    // New photos, the contract again: back in review, the deposit not paid twice.
    let photo = || part(png(40, 30), "card.png", "image/png");
    let r = s
        .details("F2", "d2", "4111111111111111", photo(), photo())
        .await;
    assert_eq!(r.status(), 200);
    sign_contract(&s, "F2", "c2").await;
    let v = s.view("F2").await;
    assert_eq!(status_of(&v), "in_review");
    assert_eq!(v["submissions"], 2);
    let r = s.post(&op, "/api/ops/signing/F2/approve", "ap").await;
    assert_eq!(r.status(), 200);
    // Approving twice with the same key answers the same; another key: not in review.
    assert_eq!(
        s.post(&op, "/api/ops/signing/F2/approve", "ap")
            .await
            .status(),
        200
    );
    assert_eq!(
        s.post(&op, "/api/ops/signing/F2/approve", "ap2")
            .await
            .status(),
        409
    );
}
