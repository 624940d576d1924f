//! 腾讯云人脸核身 through the gateway's adapter, against a local server in the test that
//! plays FaceId's API: it checks each request's TC3-HMAC-SHA256 signature (computed
//! here with ring's HMAC, another implementation than the gateway's), opens checks with
//! `DetectAuth` and answers `GetDetectInfoEnhanced` with the verdict the test sets.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Json;
use common::*;
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use xuanfang_allocator::embedded::EmbeddedEngine;
use xuanfang_allocator::testing::test_signing_options;
use xuanfang_allocator::Allocator;
use xuanfang_gateway::app::{App, WsConfig};
use xuanfang_gateway::blobs::MemoryBlobs;
use xuanfang_gateway::limits::{LimitConfig, Limits};
use xuanfang_gateway::providers::tencent_face::{TencentFace, TencentFaceConfig};
use xuanfang_gateway::signing_api::{DepositRule, Signing};
use xuanfang_hub::{ManualClock, Millis};

const SECRET_ID: &str = "AKIDtestsecretid0001";
const SECRET_KEY: &str = "test-secret-key-of-the-bureau";
const RULE: &str = "1";

#[derive(Default)]
struct Vendor {
    /// BizToken → the ErrCode the applicant's check ended with (`None`: not finished).
    checks: HashMap<String, Option<i64>>,
    unsigned: usize,
    extra: Vec<String>,
}

type Shared = Arc<Mutex<Vendor>>;

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&k, msg).as_ref().to_vec()
}

/// FaceId's check of a request's signature.
fn signed(headers: &HeaderMap, body: &[u8]) -> bool {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ts: i64 = h("x-tc-timestamp").parse().unwrap_or(0);
    let date = time::OffsetDateTime::from_unix_timestamp(ts)
        .unwrap()
        .date();
    let date = format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    );
    let canonical = format!(
        "POST\n/\n\ncontent-type:{}\nhost:{}\n\ncontent-type;host\n{}",
        h("content-type"),
        h("host"),
        hex::encode(Sha256::digest(body))
    );
    let scope = format!("{date}/faceid/tc3_request");
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{ts}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k = hmac(format!("TC3{SECRET_KEY}").as_bytes(), date.as_bytes());
    let k = hmac(&k, b"faceid");
    let k = hmac(&k, b"tc3_request");
    let sig = hex::encode(hmac(&k, to_sign.as_bytes()));
    h("authorization")
        == format!(
            "TC3-HMAC-SHA256 Credential={SECRET_ID}/{scope}, SignedHeaders=content-type;host, Signature={sig}"
        )
        && h("x-tc-version") == "2018-03-01"
        && h("x-tc-region") == "ap-guangzhou"
}

async fn api(State(v): State<Shared>, headers: HeaderMap, body: Bytes) -> Json<Value> {
    let mut v = v.lock().unwrap();
    if !signed(&headers, &body) {
        v.unsigned += 1;
        return Json(
            json!({"Response": {"Error": {"Code": "AuthFailure.SignatureFailure",
            "Message": "签名错误"}, "RequestId": "r0"}}),
        );
    }
    let req: Value = serde_json::from_slice(&body).unwrap();
    let action = headers["x-tc-action"].to_str().unwrap();
    match action {
        "DetectAuth" => {
            assert_eq!(req["RuleId"], RULE);
            v.extra.push(req["Extra"].as_str().unwrap_or("").to_owned());
            let token = format!("BIZ-{:04}", v.checks.len() + 1);
            v.checks.insert(token.clone(), None);
            Json(json!({"Response": {"BizToken": token,
                "Url": format!("https://faceid.qq.com/api/auth/index?token={token}"),
                "RequestId": "r1"}}))
        }
        "GetDetectInfoEnhanced" => {
            let token = req["BizToken"].as_str().unwrap();
            match v.checks.get(token) {
                None => Json(
                    json!({"Response": {"Error": {"Code": "InvalidParameter.BizTokenIllegal",
                    "Message": "BizToken不合法"}, "RequestId": "r2"}}),
                ),
                Some(None) => Json(
                    json!({"Response": {"Text": {"ErrCode": null, "ErrMsg": null}, "RequestId": "r3"}}),
                ),
                Some(Some(code)) => Json(json!({"Response": {"Text": {"ErrCode": code,
                    "ErrMsg": if *code == 0 { "成功" } else { "比对相似度未达到通过标准" },
                    "Sim": if *code == 0 { "92.5" } else { "31.0" }}, "RequestId": "r4"}})),
            }
        }
        _ => Json(json!({"Response": {"Error": {"Code": "InvalidAction"}}})),
    }
}

struct Setup {
    addr: std::net::SocketAddr,
    vendor: Shared,
    http: reqwest::Client,
}

impl Setup {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    async fn post(&self, path: &str, key: &str) -> Value {
        let r = (self.http.post(self.url(path)))
            .bearer_auth(family_token("F1"))
            .header("Idempotency-Key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

fn png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(32, 20, |x, y| image::Rgb([x as u8, y as u8, 40]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

async fn setup() -> Setup {
    let shared: Shared = Arc::default();
    let router = axum::Router::new()
        .route("/", post(api))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let vendor_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let day = Millis(1_796_056_200_000);
    let clock = Arc::new(ManualClock::new(day.plus_ms(-3_600_000)));
    let engine =
        Arc::new(EmbeddedEngine::in_memory(clock.clone()).with_signing(&test_signing_options()));
    let alloc: Arc<dyn Allocator> = engine.clone();
    let mut batch = small_batch("face", Duration::from_secs(600), Duration::from_secs(180));
    let shift = day.0 - 3_600_000 - 60_000 - batch.preselect_start.0;
    batch.preselect_start = batch.preselect_start.plus_ms(shift);
    for s in &mut batch.sessions {
        s.start = s.start.plus_ms(shift);
    }
    alloc.load_batch(batch.clone()).await.unwrap();
    preselect_direct(&*alloc, &batch.id, "F1", &["U01"]).await;
    clock.set(batch.sessions[0].start);
    confirm_direct(&*alloc, &batch.id, "F1", "U01").await;
    clock.set(day);

    let app = App::with_clock(
        alloc,
        auth(),
        Limits::new(LimitConfig {
            http_per_sec_per_ip: 100_000,
            static_per_sec_per_ip: 100_000,
            ..Default::default()
        }),
        WsConfig::default(),
        None,
        clock.clone(),
    );
    let face = TencentFace::new(TencentFaceConfig {
        base_url: format!("http://{vendor_addr}"),
        region: "ap-guangzhou".into(),
        secret_id: SECRET_ID.into(),
        secret_key: SECRET_KEY.into(),
        rule_id: RULE.into(),
        redirect_url: "https://xuanfang.example/app".into(),
    })
    .unwrap();
    let mut sg = Signing::sandbox(
        engine.clone(),
        Arc::new(MemoryBlobs::default()),
        [7; 32],
        DepositRule::default(),
    );
    sg.face = Some(Arc::new(face));
    sg.sandbox_face = None;
    assert!(app.enable_signing(sg));
    app.serve_batch(batch.id.clone()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(xuanfang_gateway::server::serve(app, listener));
    let s = Setup {
        addr,
        vendor: shared,
        http: reqwest::Client::new(),
    };
    let photo = || {
        Part::bytes(png())
            .file_name("card.png")
            .mime_str("image/png")
            .unwrap()
    };
    let details =
        json!({"phone": "13812345678", "bank": "ICBC", "card_number": "4111111111111111"});
    let form = Form::new()
        .text("details", details.to_string())
        .part("card_front", photo())
        .part("card_back", photo());
    let r = (s.http.post(s.url("/api/me/signing/details")))
        .bearer_auth(family_token("F1"))
        .header("Idempotency-Key", "d1")
        .header("Connection", "close")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s
}

fn done(v: &Value) -> Vec<&str> {
    (v["done"].as_array().unwrap().iter())
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_face_check_opens_at_the_vendor_and_its_result_is_fetched_server_side() {
    let s = setup().await;
    let a = s.post("/api/me/signing/face/start", "fs1").await;
    assert_eq!(a["provider_session"], "BIZ-0001");
    assert_eq!(
        a["url"],
        "https://faceid.qq.com/api/auth/index?token=BIZ-0001"
    );
    // Back before finishing: no verdict yet.
    let f = s.post("/api/me/signing/face/finish", "ff1").await;
    assert_eq!(f["pending"], true);
    assert!(!done(&f["signing"]).contains(&"face"));
    // The vendor compared the faces and failed the applicant: fetched, one attempt.
    s.vendor
        .lock()
        .unwrap()
        .checks
        .insert("BIZ-0001".into(), Some(-1111));
    let f = s.post("/api/me/signing/face/finish", "ff2").await;
    assert_eq!(f["pending"], false);
    assert!(!done(&f["signing"]).contains(&"face"));
    assert_eq!(f["signing"]["face_attempts"], 1);
    // Again, passed.
    let a = s.post("/api/me/signing/face/start", "fs2").await;
    assert_eq!(a["provider_session"], "BIZ-0002");
    s.vendor
        .lock()
        .unwrap()
        .checks
        .insert("BIZ-0002".into(), Some(0));
    let f = s.post("/api/me/signing/face/finish", "ff3").await;
    assert!(done(&f["signing"]).contains(&"face"));
    let v = s.vendor.lock().unwrap();
    assert_eq!(v.unsigned, 0, "every request signed TC3-HMAC-SHA256");
    assert!(v.extra.iter().all(|e| e.ends_with("/F1")), "{:?}", v.extra);
}
