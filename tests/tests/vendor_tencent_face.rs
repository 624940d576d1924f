//! 腾讯云人脸核身 through the gateway's adapter, against a local server in the test that
//! plays FaceId's API: it checks each request's TC3-HMAC-SHA256 signature (computed
//! here with ring's HMAC, another implementation than the gateway's), opens checks with
//! `DetectAuth` and answers `GetDetectInfoEnhanced` with the verdict the test sets.

use crate::common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Json;
use common::signing::done;
use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use xuanfang_gateway::blobs::MemoryBlobs;
use xuanfang_gateway::providers::tencent_face::{TencentFace, TencentFaceConfig};
use xuanfang_gateway::signing_api::{DepositRule, Signing};

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
    journey: signing::Journey,
    vendor: Shared,
}

impl std::ops::Deref for Setup {
    type Target = signing::Journey;
    fn deref(&self) -> &signing::Journey {
        &self.journey
    }
}

impl Setup {
    async fn post(&self, path: &str, key: &str) -> Value {
        let r = self.journey.post(&family_token("F1"), path, key).await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

async fn setup() -> Setup {
    let shared: Shared = Arc::default();
    let router = axum::Router::new()
        .route("/", post(api))
        .with_state(shared.clone());
    let vendor_addr = serve_router(router).await;

    let day = signing::signing_day("face", &[("F1", "U01")]).await;
    let app = app_on_clock(
        day.engine.clone(),
        day.clock.clone(),
        signing::unthrottled(),
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
        day.engine.clone(),
        Arc::new(MemoryBlobs::default()),
        [7; 32],
        DepositRule::default(),
    );
    sg.face = Some(Arc::new(face));
    sg.sandbox_face = None;
    assert!(app.enable_signing(sg));
    let addr = serve_on_free_port(&app, &day.batch.id).await;
    let s = Setup {
        journey: signing::Journey::new(addr),
        vendor: shared,
    };
    s.details("F1").await;
    s
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
