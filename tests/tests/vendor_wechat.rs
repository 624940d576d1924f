//! 微信支付 APIv3 Native through the gateway's adapter, against a local server in the
//! test that plays WeChat Pay's documented API: it checks each request's
//! `WECHATPAY2-SHA256-RSA2048` signature with the merchant's public key, signs its
//! answers and its notifications with the platform key, encrypts the notification
//! resource with the APIv3 key (AEAD_AES_256_GCM), answers order queries and takes
//! refunds. The embedded engine and the gateway share one manual clock; at the end, two
//! gateways on one Redis share one refund ledger.

use crate::common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use common::signing::DAY;
use common::vendor::{b64, rsa_sign, rsa_verify};
use common::*;
use serde_json::{json, Value};
use xuanfang_allocator::embedded::EmbeddedEngine;
use xuanfang_allocator::testing::{redis_signing_engine_in, unique_namespace};
use xuanfang_allocator::SigningStore;
use xuanfang_gateway::app::App;
use xuanfang_gateway::blobs::MemoryBlobs;
use xuanfang_gateway::limits::LimitConfig;
use xuanfang_gateway::providers::wechat_pay::{WechatPay, WechatPayConfig};
use xuanfang_gateway::reconcile::Reconciler;
use xuanfang_gateway::refunds::{out_refund_no, RedisRefunds, RefundStatus, Refunds};
use xuanfang_gateway::signing_api::{DepositRule, Signing};
use xuanfang_hub::signing::{Actor, Step};
use xuanfang_hub::{BatchId, FamilyId, ManualClock, Millis, OperatorId, SigningAction};

const MERCHANT_KEY: &str = include_str!("fixtures/vendor/merchant_key.pem");
const MERCHANT_PUB: &str = include_str!("fixtures/vendor/merchant_pub.pem");
const PLATFORM_KEY: &str = include_str!("fixtures/vendor/platform_key.pem");
const PLATFORM_PUB: &str = include_str!("fixtures/vendor/platform_pub.pem");
const APIV3_KEY: [u8; 32] = *b"apiv3-key-of-the-test-merchant!!";
const APPID: &str = "wxd678efh567hg6787";
const MCHID: &str = "1230000109";
const PLATFORM_SERIAL: &str = "PUB_KEY_ID_0112300001092026";

fn encrypt(key: &[u8; 32], nonce: &str, aad: &str, plain: &[u8]) -> String {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let mut data = plain.to_vec();
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).unwrap())
        .seal_in_place_append_tag(
            Nonce::try_assume_unique_for_key(nonce.as_bytes()).unwrap(),
            Aad::from(aad.as_bytes()),
            &mut data,
        )
        .unwrap();
    b64().encode(data)
}

/// The headers WeChat Pay signs a body with (answers and notifications alike).
fn platform_headers(body: &[u8], ts_secs: i64, key_pem: &str) -> Vec<(&'static str, String)> {
    let nonce = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS";
    let mut msg = format!("{ts_secs}\n{nonce}\n").into_bytes();
    msg.extend_from_slice(body);
    msg.push(b'\n');
    vec![
        ("Wechatpay-Timestamp", ts_secs.to_string()),
        ("Wechatpay-Nonce", nonce.to_owned()),
        ("Wechatpay-Signature", rsa_sign(key_pem, &msg)),
        ("Wechatpay-Serial", PLATFORM_SERIAL.to_owned()),
    ]
}

#[derive(Clone, Debug)]
struct VendorOrder {
    request: Value,
    /// The transaction id once paid.
    paid: Option<String>,
}

#[derive(Default)]
struct Vendor {
    orders: HashMap<String, VendorOrder>,
    /// Every refund request, in order (a refund asked twice shows twice).
    refund_requests: Vec<Value>,
    /// Requests whose signature did not verify.
    unsigned: usize,
    /// A refund's status as queries answer it (absent: `PROCESSING`).
    refund_status: HashMap<String, String>,
    /// Refund queries answered, by refund number.
    refund_queries: Vec<String>,
}

type Shared = Arc<Mutex<Vendor>>;

/// Checks a request's `Authorization` as WeChat Pay does.
fn signed_by_merchant(method: &str, url: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(params) = auth.strip_prefix("WECHATPAY2-SHA256-RSA2048 ") else {
        return false;
    };
    let p: HashMap<&str, &str> = params
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim_matches('"')))
        .collect();
    if p.get("mchid") != Some(&MCHID) || p.get("serial_no") != Some(&"MERCHANT-SERIAL-1") {
        return false;
    }
    let (Some(ts), Some(nonce), Some(sig)) =
        (p.get("timestamp"), p.get("nonce_str"), p.get("signature"))
    else {
        return false;
    };
    let mut msg = format!("{method}\n{url}\n{ts}\n{nonce}\n").into_bytes();
    msg.extend_from_slice(body);
    msg.push(b'\n');
    rsa_verify(MERCHANT_PUB, &msg, sig)
}

fn signed_answer(status: StatusCode, body: Value) -> Response {
    let bytes = body.to_string().into_bytes();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut res = (status, bytes.clone()).into_response();
    for (k, v) in platform_headers(&bytes, now, PLATFORM_KEY) {
        res.headers_mut().insert(k, v.parse().unwrap());
    }
    res.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    res
}

async fn native(State(v): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !signed_by_merchant("POST", "/v3/pay/transactions/native", &headers, &body) {
        v.lock().unwrap().unsigned += 1;
        return signed_answer(
            StatusCode::UNAUTHORIZED,
            json!({"code": "SIGN_ERROR", "message": "签名错误"}),
        );
    }
    let req: Value = serde_json::from_slice(&body).unwrap();
    let no = req["out_trade_no"].as_str().unwrap().to_owned();
    let mut v = v.lock().unwrap();
    let o = v.orders.entry(no.clone()).or_insert(VendorOrder {
        request: req.clone(),
        paid: None,
    });
    if o.request != req {
        return signed_answer(
            StatusCode::BAD_REQUEST,
            json!({"code": "INVALID_REQUEST", "message": "订单号重复"}),
        );
    }
    signed_answer(
        StatusCode::OK,
        json!({"code_url": format!("weixin://wxpay/bizpayurl?pr={no}")}),
    )
}

fn transaction(o: &VendorOrder) -> Value {
    let r = &o.request;
    json!({
        "appid": r["appid"], "mchid": r["mchid"], "out_trade_no": r["out_trade_no"],
        "transaction_id": o.paid.clone().unwrap_or_default(),
        "trade_type": "NATIVE",
        "trade_state": if o.paid.is_some() { "SUCCESS" } else { "NOTPAY" },
        "attach": r["attach"],
        "amount": {"total": r["amount"]["total"], "payer_total": r["amount"]["total"], "currency": "CNY"},
    })
}

async fn query(
    State(v): State<Shared>,
    Path(no): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let url = uri.path_and_query().unwrap().as_str().to_owned();
    if !signed_by_merchant("GET", &url, &headers, b"") || !url.ends_with(&format!("?mchid={MCHID}"))
    {
        v.lock().unwrap().unsigned += 1;
        return signed_answer(StatusCode::UNAUTHORIZED, json!({"code": "SIGN_ERROR"}));
    }
    let v = v.lock().unwrap();
    match v.orders.get(&no) {
        Some(o) => signed_answer(StatusCode::OK, transaction(o)),
        None => signed_answer(
            StatusCode::NOT_FOUND,
            json!({"code": "ORDER_NOT_EXIST", "message": "订单不存在"}),
        ),
    }
}

async fn refund(State(v): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !signed_by_merchant("POST", "/v3/refund/domestic/refunds", &headers, &body) {
        v.lock().unwrap().unsigned += 1;
        return signed_answer(StatusCode::UNAUTHORIZED, json!({"code": "SIGN_ERROR"}));
    }
    let req: Value = serde_json::from_slice(&body).unwrap();
    v.lock().unwrap().refund_requests.push(req.clone());
    signed_answer(
        StatusCode::OK,
        json!({"refund_id": "50000000382019052709732678859",
               "out_refund_no": req["out_refund_no"], "status": "PROCESSING"}),
    )
}

/// `GET /v3/refund/domestic/refunds/{out_refund_no}`: a refund asked, its status.
async fn refund_query(
    State(v): State<Shared>,
    Path(no): Path<String>,
    headers: HeaderMap,
) -> Response {
    let url = format!("/v3/refund/domestic/refunds/{no}");
    if !signed_by_merchant("GET", &url, &headers, b"") {
        v.lock().unwrap().unsigned += 1;
        return signed_answer(StatusCode::UNAUTHORIZED, json!({"code": "SIGN_ERROR"}));
    }
    let mut v = v.lock().unwrap();
    v.refund_queries.push(no.clone());
    let Some(req) = (v.refund_requests.iter()).find(|r| r["out_refund_no"] == no.as_str()) else {
        return signed_answer(
            StatusCode::NOT_FOUND,
            json!({"code": "RESOURCE_NOT_EXISTS", "message": "退款单不存在"}),
        );
    };
    let status = v.refund_status.get(&no).cloned();
    signed_answer(
        StatusCode::OK,
        json!({"refund_id": "50000000382019052709732678859", "out_refund_no": no,
               "transaction_id": req["transaction_id"], "channel": "ORIGINAL",
               "status": status.as_deref().unwrap_or("PROCESSING"),
               "amount": {"total": req["amount"]["total"], "refund": req["amount"]["refund"],
                          "payer_total": req["amount"]["total"], "payer_refund": req["amount"]["refund"],
                          "currency": "CNY"}}),
    )
}

async fn start_vendor() -> (String, Shared) {
    let shared: Shared = Arc::default();
    let router = axum::Router::new()
        .route("/v3/pay/transactions/native", post(native))
        .route("/v3/pay/transactions/out-trade-no/{no}", get(query))
        .route("/v3/refund/domestic/refunds", post(refund))
        .route("/v3/refund/domestic/refunds/{no}", get(refund_query))
        .with_state(shared.clone());
    (format!("http://{}", serve_router(router).await), shared)
}

fn wechat(base_url: &str) -> WechatPay {
    WechatPay::new(WechatPayConfig {
        base_url: base_url.to_owned(),
        appid: APPID.into(),
        mchid: MCHID.into(),
        serial_no: "MERCHANT-SERIAL-1".into(),
        notify_url: "https://xuanfang.example/api/providers/payment/notify".into(),
        private_key_pem: MERCHANT_KEY.into(),
        platform_public_key_pem: PLATFORM_PUB.into(),
        platform_serial: PLATFORM_SERIAL.into(),
        api_v3_key: APIV3_KEY,
    })
    .unwrap()
}

struct Setup {
    journey: signing::Journey,
    app: Arc<App>,
    engine: Arc<EmbeddedEngine>,
    clock: Arc<ManualClock>,
    batch: BatchId,
    vendor: Shared,
    vendor_url: String,
    journal: tempfile::TempDir,
}

impl std::ops::Deref for Setup {
    type Target = signing::Journey;
    fn deref(&self) -> &signing::Journey {
        &self.journey
    }
}

impl Setup {
    async fn order(&self, f: &str, key: &str) -> Value {
        order_on(&self.journey, f, key).await
    }
    /// The vendor's notification of a payment of `no` by transaction `txn`, signed at
    /// `ts_secs` with `key_pem` and encrypted with `apiv3`.
    fn notification(
        &self,
        id: &str,
        no: &str,
        txn: &str,
        ts_secs: i64,
        (key_pem, apiv3): (&str, &[u8; 32]),
        edit: impl FnOnce(&mut Value),
    ) -> (Vec<u8>, Vec<(&'static str, String)>) {
        payment_notification(&self.vendor, id, no, txn, ts_secs, (key_pem, apiv3), edit)
    }
    async fn notify(&self, n: (Vec<u8>, Vec<(&'static str, String)>)) -> (u16, Value) {
        notify_on(&self.journey, n).await
    }
    fn now_secs(&self) -> i64 {
        self.clock_now().0 / 1000
    }
    fn clock_now(&self) -> Millis {
        use xuanfang_hub::Clock;
        self.clock.now()
    }
    async fn events(&self) -> usize {
        (self.engine.signing_events(&self.batch, 0, 10_000))
            .await
            .unwrap()
            .len()
    }
    /// A gateway's signing on this engine with the WeChat adapter and the refund
    /// journal of this test (a second one plays a restarted gateway).
    fn signing(&self) -> Signing {
        signing_of(&self.engine, &self.vendor_url, &self.journal)
    }
    async fn wait_refunds(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.vendor.lock().unwrap().refund_requests.len() < n {
            assert!(tokio::time::Instant::now() < deadline, "no refund asked");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// WeChat's notification of a payment of order `no` by transaction `txn` (the vendor
/// marks the order paid), signed at `ts_secs` with `key_pem` and encrypted with `apiv3`.
fn payment_notification(
    vendor: &Shared,
    id: &str,
    no: &str,
    txn: &str,
    ts_secs: i64,
    (key_pem, apiv3): (&str, &[u8; 32]),
    edit: impl FnOnce(&mut Value),
) -> (Vec<u8>, Vec<(&'static str, String)>) {
    let mut t = {
        let mut v = vendor.lock().unwrap();
        let o = v.orders.get_mut(no).expect("an order the vendor knows");
        o.paid = Some(txn.to_owned());
        transaction(o)
    };
    edit(&mut t);
    let nonce = "fdasflkja484";
    let body = json!({
        "id": id,
        "create_time": "2026-12-01T00:31:00+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": {
            "original_type": "transaction",
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": encrypt(apiv3, nonce, "transaction", t.to_string().as_bytes()),
            "associated_data": "transaction",
            "nonce": nonce,
        }
    })
    .to_string()
    .into_bytes();
    let headers = platform_headers(&body, ts_secs, key_pem);
    (body, headers)
}

/// Delivers a notification to the gateway at `j`, as WeChat Pay posts it.
async fn notify_on(
    j: &signing::Journey,
    (body, headers): (Vec<u8>, Vec<(&'static str, String)>),
) -> (u16, Value) {
    let mut req = j.http.post(j.url("/api/providers/payment/notify"));
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let r = req
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Family `f` orders the deposit on the gateway at `j`.
async fn order_on(j: &signing::Journey, f: &str, key: &str) -> Value {
    let r = j
        .post(&family_token(f), "/api/me/signing/deposit", key)
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn signing_of(
    engine: &Arc<EmbeddedEngine>,
    vendor_url: &str,
    journal: &tempfile::TempDir,
) -> Signing {
    let mut sg = Signing::sandbox(
        engine.clone(),
        Arc::new(MemoryBlobs::default()),
        [7; 32],
        DepositRule::default(),
    );
    sg.payment = Some(Arc::new(wechat(vendor_url)));
    sg.sandbox_payment = None;
    let refunds = Refunds::open(&journal.path().join("refunds.jsonl")).unwrap();
    sg.with_refunds(Arc::new(refunds))
}

async fn setup() -> Setup {
    let day = signing::signing_day("wechat", &[("F1", "U01"), ("F2", "U02")]).await;
    let (vendor_url, vendor) = start_vendor().await;
    let journal = tempfile::tempdir().unwrap();
    let app = app_on_clock(
        day.engine.clone(),
        day.clock.clone(),
        signing::unthrottled(),
    );
    assert!(app.enable_signing(signing_of(&day.engine, &vendor_url, &journal)));
    let addr = serve_on_free_port(&app, &day.batch.id).await;
    Setup {
        journey: signing::Journey::new(addr),
        app,
        engine: day.engine,
        clock: day.clock,
        batch: day.batch.id,
        vendor,
        vendor_url,
        journal,
    }
}

fn status_of(v: &Value) -> &str {
    v["status"]["status"].as_str().unwrap()
}

#[tokio::test]
async fn the_order_is_signed_and_its_code_url_is_the_qr_code() {
    let s = setup().await;
    s.up_to_deposit("F1").await;
    let o = s.order("F1", "dep1").await;
    let no = o["out_trade_no"].as_str().unwrap().to_owned();
    assert_eq!(o["qr_payload"], format!("weixin://wxpay/bizpayurl?pr={no}"));
    assert!(o["qr_svg"].as_str().unwrap().starts_with("<svg"));
    let v = s.vendor.lock().unwrap();
    assert_eq!(
        v.unsigned, 0,
        "every request verified with the merchant's key"
    );
    let req = &v.orders[&no].request;
    assert_eq!(req["appid"], APPID);
    assert_eq!(req["mchid"], MCHID);
    assert_eq!(
        req["amount"],
        json!({"total": o["amount_fen"], "currency": "CNY"})
    );
    assert_eq!(req["attach"], s.batch.0);
    assert_eq!(
        req["notify_url"],
        "https://xuanfang.example/api/providers/payment/notify"
    );
    // The provider stops a minute before the hub, in Beijing time: the hub's order
    // expires 15 minutes after 00:30.
    assert_eq!(o["expires_at"], DAY.0 + 15 * 60_000);
    assert_eq!(o["provider_expires_at"], DAY.0 + 14 * 60_000);
    assert_eq!(req["time_expire"], "2026-12-01T00:44:00+08:00");
    assert!(req["description"].as_str().unwrap().contains("租赁保证金"));
}

#[tokio::test]
async fn a_signed_notification_pays_the_deposit_and_forgeries_change_nothing() {
    let s = setup().await;
    s.up_to_deposit("F1").await;
    let o = s.order("F1", "dep1").await;
    let no = o["out_trade_no"].as_str().unwrap().to_owned();
    let txn = "4200000001202612010000000001";
    let now = s.now_secs();
    let before = s.events().await;

    // Signed by another key, too old, encrypted with another APIv3 key, for another
    // merchant: not believed (4xx with WeChat's FAIL body), nothing changes.
    let forged = s.notification("n1", &no, txn, now, (MERCHANT_KEY, &APIV3_KEY), |_| {});
    let (st, a) = s.notify(forged).await;
    assert_eq!((st, a["code"].as_str()), (401, Some("FAIL")));
    let stale = s.notification(
        "n1",
        &no,
        txn,
        now - 301,
        (PLATFORM_KEY, &APIV3_KEY),
        |_| {},
    );
    assert_eq!(s.notify(stale).await.0, 401, "older than 5 minutes");
    let other_key = *b"not-the-apiv3-key-of-the-merchnt";
    let bad_aead = s.notification("n1", &no, txn, now, (PLATFORM_KEY, &other_key), |_| {});
    assert_eq!(s.notify(bad_aead).await.0, 401);
    let other_mch = s.notification("n1", &no, txn, now, (PLATFORM_KEY, &APIV3_KEY), |t| {
        t["mchid"] = json!("1900000001")
    });
    assert_eq!(s.notify(other_mch).await.0, 401);
    let (mut body, headers) =
        s.notification("n1", &no, txn, now, (PLATFORM_KEY, &APIV3_KEY), |_| {});
    body.push(b' ');
    assert_eq!(
        s.notify((body, headers)).await.0,
        401,
        "a body other than the signed one"
    );
    assert_eq!(s.events().await, before);
    assert_eq!(status_of(&s.view("F1").await), "open");

    // The real one: received, taken, in review.
    let good = || s.notification("n1", &no, txn, now, (PLATFORM_KEY, &APIV3_KEY), |_| {});
    let (st, a) = s.notify(good()).await;
    assert_eq!(st, 200);
    assert_eq!(a["code"], "SUCCESS");
    assert_eq!(a["accepted"], true);
    assert_eq!(status_of(&s.view("F1").await), "in_review");
    let after = s.events().await;
    // WeChat sends it again (it does until it hears SUCCESS): nothing new.
    let (st, a) = s.notify(good()).await;
    assert_eq!((st, a["code"].as_str()), (200, Some("SUCCESS")));
    assert_eq!(s.events().await, after);
    assert!(s.vendor.lock().unwrap().refund_requests.is_empty());
}

#[tokio::test]
async fn a_payment_whose_notification_never_arrives_is_found_by_the_sweep() {
    let s = setup().await;
    s.up_to_deposit("F1").await;
    let o = s.order("F1", "dep1").await;
    let no = o["out_trade_no"].as_str().unwrap().to_owned();
    let sweep = Reconciler::default();
    // Not paid yet: asked, nothing happens.
    let rep = sweep.sweep(&s.app).await;
    assert_eq!((rep.queried, rep.payments_found, rep.errors), (1, 0, 0));
    assert_eq!(status_of(&s.view("F1").await), "open");
    // Paid at WeChat; the notification is lost.
    s.vendor.lock().unwrap().orders.get_mut(&no).unwrap().paid =
        Some("4200000001202612010000000002".into());
    let rep = sweep.sweep(&s.app).await;
    assert_eq!((rep.payments_found, rep.errors), (1, 0));
    let v = s.view("F1").await;
    assert_eq!(status_of(&v), "in_review");
    assert_eq!(
        v["deposit"]["provider_txn_id"],
        "4200000001202612010000000002"
    );
    // A paid order is not asked again.
    assert_eq!(sweep.sweep(&s.app).await.queried, 0);
    assert!(s.vendor.lock().unwrap().refund_requests.is_empty());
}

#[tokio::test]
async fn a_payment_after_expiry_is_refunded_exactly_once_across_a_restart() {
    let s = setup().await;
    s.up_to_deposit("F1").await;
    let o = s.order("F1", "dep1").await;
    let no = o["out_trade_no"].as_str().unwrap().to_owned();
    let txn = "4200000001202612010000000003";
    // The notification comes after the hub's expiry (held up somewhere).
    s.clock
        .set(Millis(o["expires_at"].as_i64().unwrap() + 1_000));
    let late = s.notification(
        "n9",
        &no,
        txn,
        s.now_secs(),
        (PLATFORM_KEY, &APIV3_KEY),
        |_| {},
    );
    let (st, a) = s.notify(late).await;
    assert_eq!(st, 200, "received: WeChat must not send it again");
    assert_eq!(a["code"], "SUCCESS");
    assert_eq!(a["accepted"], false);
    assert_eq!(a["refused"], "order_expired");
    s.wait_refunds(1).await;
    {
        let v = s.vendor.lock().unwrap();
        let r = &v.refund_requests[0];
        assert_eq!(r["transaction_id"], txn);
        assert_eq!(r["amount"]["refund"], o["amount_fen"]);
        assert_eq!(r["amount"]["total"], o["amount_fen"]);
    }
    let journal = s.app.signing().unwrap().refunds.entries().await.unwrap();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].req.provider_txn_id, txn);
    // Wait for the provider's answer to be journalled before "restarting".
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while s.app.signing().unwrap().refunds.entries().await.unwrap()[0].status
        != RefundStatus::Accepted
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The sweep of this gateway, then of a restarted one (a new process: new memory,
    // the same journal file), both find the paid order at WeChat and feed it again.
    assert_eq!(Reconciler::default().sweep(&s.app).await.payments_found, 1);
    let restarted = app_on_clock(s.engine.clone(), s.clock.clone(), LimitConfig::default());
    assert!(restarted.enable_signing(s.signing()));
    let rep = Reconciler::default().sweep(&restarted).await;
    assert_eq!((rep.payments_found, rep.errors), (1, 0));
    assert_eq!(
        restarted
            .signing()
            .unwrap()
            .refunds
            .entries()
            .await
            .unwrap()
            .len(),
        1
    );
    // Give a (wrong) second refund call every chance to arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.vendor.lock().unwrap().refund_requests.len(),
        1,
        "refunded exactly once"
    );
    assert_eq!(
        status_of(&s.view("F1").await),
        "open",
        "the deposit is still to pay"
    );
}

#[tokio::test]
async fn the_page_has_the_term_and_the_provider_expiry_and_a_stopped_code_can_be_replaced() {
    let s = setup().await;
    // Not signed: the term as if signed today (1 December in Shenzhen).
    let v = s.view("F1").await;
    assert_eq!(
        v["term"],
        json!({"start": "2027-01-01", "end": "2029-12-31", "projected": true})
    );
    s.up_to_deposit("F1").await;
    // Signed: from the contract's day, a month later the same.
    s.clock.set(DAY.plus_ms(40 * 24 * 3_600_000));
    let v = s.view("F1").await;
    assert_eq!(
        v["term"],
        json!({"start": "2027-01-01", "end": "2029-12-31", "projected": false})
    );
    assert!(v.get("provider_expires_at").is_none(), "no order yet");

    let first = s.order("F1", "dep1").await;
    let expires_at = first["expires_at"].as_i64().unwrap();
    let v = s.view("F1").await;
    assert_eq!(v["provider_expires_at"], expires_at - 60_000);
    // While WeChat can still take it: the same order again (one code per deposit).
    s.clock.set(Millis(expires_at - 60_001));
    let again = s.order("F1", "dep2").await;
    assert_eq!(again["out_trade_no"], first["out_trade_no"]);
    // WeChat has stopped it: a new code replaces it.
    s.clock.set(Millis(expires_at - 60_000));
    let second = s.order("F1", "dep3").await;
    assert_ne!(second["out_trade_no"], first["out_trade_no"]);
    assert_eq!(s.vendor.lock().unwrap().orders.len(), 2);
    // A payment WeChat took just before stopping, notified now: taken.
    let no = first["out_trade_no"].as_str().unwrap();
    let n = s.notification(
        "n5",
        no,
        "4200000001202612010000000005",
        s.now_secs(),
        (PLATFORM_KEY, &APIV3_KEY),
        |_| {},
    );
    let (st, a) = s.notify(n).await;
    assert_eq!((st, a["accepted"].as_bool()), (200, Some(true)));
    assert_eq!(status_of(&s.view("F1").await), "in_review");
}

/// F1 (or `family`) orders the deposit and WeChat notifies its payment `txn`: taken.
async fn a_paid_deposit(s: &Setup, family: &str, txn: &str) {
    s.up_to_deposit(family).await;
    let o = s.order(family, &format!("dep-{family}")).await;
    let no = o["out_trade_no"].as_str().unwrap().to_owned();
    let n = s.notification(
        &format!("n-{family}"),
        &no,
        txn,
        s.now_secs(),
        (PLATFORM_KEY, &APIV3_KEY),
        |_| {},
    );
    assert_eq!(s.notify(n).await.1["accepted"], true);
}

/// Waits until the journal says WeChat accepted every refund (the answer journalled).
async fn until_refunds_accepted(s: &Setup) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !(s
        .app
        .signing()
        .unwrap()
        .refunds
        .entries()
        .await
        .unwrap()
        .iter())
    .all(|e| e.status == RefundStatus::Accepted)
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_payment_voided_by_a_rejection_of_the_deposit_is_refunded_once_by_the_rejection_or_the_sweep(
) {
    let s = setup().await;
    let txn = "4200000001202612010000000007";
    a_paid_deposit(&s, "F1", txn).await;
    // The bureau did not receive it: the reviewer rejects the deposit, and its refund
    // starts at once (no sweep needed).
    let r = (s.http.post(s.url("/api/ops/signing/F1/reject")))
        .bearer_auth(operator_token())
        .header("Idempotency-Key", "rj-1")
        .json(&json!({"step": "deposit", "reason": "未到账，请重新缴纳"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.wait_refunds(1).await;
    assert_eq!(
        s.vendor.lock().unwrap().refund_requests[0]["transaction_id"],
        txn
    );
    until_refunds_accepted(&s).await;
    // The same rejection again, later sweeps and a restarted gateway's: not again.
    let r = (s.http.post(s.url("/api/ops/signing/F1/reject")))
        .bearer_auth(operator_token())
        .header("Idempotency-Key", "rj-1")
        .json(&json!({"step": "deposit", "reason": "未到账，请重新缴纳"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sweep = Reconciler::default();
    let rep = sweep.sweep(&s.app).await;
    assert_eq!((rep.voided_refunds, rep.errors), (0, 0));
    let restarted = app_on_clock(s.engine.clone(), s.clock.clone(), LimitConfig::default());
    assert!(restarted.enable_signing(s.signing()));
    assert_eq!(
        Reconciler::default().sweep(&restarted).await.voided_refunds,
        0
    );

    // F2's deposit is rejected by a gateway that stopped before refunding it (here: the
    // engine directly): the sweep starts that refund, once.
    let txn2 = "4200000001202612010000000008";
    a_paid_deposit(&s, "F2", txn2).await;
    let rejected = (s.engine)
        .sign(
            &s.batch,
            &FamilyId::from("F2"),
            &Actor::Operator(OperatorId::from("op")),
            "rj-2",
            SigningAction::Reject {
                step: Step::Deposit,
                reason: "未到账".into(),
            },
        )
        .await
        .unwrap();
    assert!(rejected.is_ok(), "{rejected:?}");
    assert_eq!(s.vendor.lock().unwrap().refund_requests.len(), 1);
    let rep = sweep.sweep(&s.app).await;
    assert_eq!((rep.voided_refunds, rep.errors), (1, 0));
    s.wait_refunds(2).await;
    assert_eq!(
        s.vendor.lock().unwrap().refund_requests[1]["transaction_id"],
        txn2
    );
    until_refunds_accepted(&s).await;
    assert_eq!(sweep.sweep(&s.app).await.voided_refunds, 0);
    // Give a (wrong) further refund call every chance to arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.vendor.lock().unwrap().refund_requests.len(), 2);
    // The families pay new orders.
    assert_eq!(status_of(&s.view("F1").await), "open");
    assert_eq!(status_of(&s.view("F2").await), "open");
}

// ---- Refund outcomes: REFUND.* notifications and the sweep's refund query ----

/// F1 pays after the hub's expiry: refused, refunded, and accepted by WeChat
/// (`PROCESSING`). Answers the journal's entry once it says so, and the payment's amount.
async fn a_refund_accepted(s: &Setup, txn: &str) -> xuanfang_gateway::refunds::RefundEntry {
    s.up_to_deposit("F1").await;
    let o = s.order("F1", "dep1").await;
    let no = o["out_trade_no"].as_str().unwrap().to_owned();
    s.clock
        .set(Millis(o["expires_at"].as_i64().unwrap() + 1_000));
    let late = s.notification(
        "n-late",
        &no,
        txn,
        s.now_secs(),
        (PLATFORM_KEY, &APIV3_KEY),
        |_| {},
    );
    assert_eq!(s.notify(late).await.1["accepted"], false);
    s.wait_refunds(1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let e = s.app.signing().unwrap().refunds.entries().await.unwrap();
        if e.first()
            .is_some_and(|e| e.status == RefundStatus::Accepted)
        {
            return e[0].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "refund not accepted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// WeChat Pay's refund notification (`REFUND.SUCCESS` / `.ABNORMAL` / `.CLOSED`) of
/// refund `e`, its resource's `refund_status` `status`, signed with `key_pem` at `ts_secs`
/// and encrypted with `apiv3`.
fn refund_notification(
    e: &xuanfang_gateway::refunds::RefundEntry,
    id: &str,
    event_type: &str,
    status: &str,
    ts_secs: i64,
    (key_pem, apiv3): (&str, &[u8; 32]),
    edit: impl FnOnce(&mut Value),
) -> (Vec<u8>, Vec<(&'static str, String)>) {
    let mut r = json!({
        "mchid": MCHID,
        "out_trade_no": e.req.out_trade_no,
        "transaction_id": e.req.provider_txn_id,
        "out_refund_no": e.req.out_refund_no,
        "refund_id": "50000000382019052709732678859",
        "refund_status": status,
        "success_time": "2026-12-01T00:40:00+08:00",
        "user_received_account": "招商银行信用卡0403",
        "amount": {"total": e.req.amount_fen, "refund": e.req.amount_fen,
                   "payer_total": e.req.amount_fen, "payer_refund": e.req.amount_fen},
    });
    edit(&mut r);
    let nonce = "refundnonce1";
    let body = json!({
        "id": id,
        "create_time": "2026-12-01T00:40:00+08:00",
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": "退款成功",
        "resource": {
            "original_type": "refund",
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": encrypt(apiv3, nonce, "refund", r.to_string().as_bytes()),
            "associated_data": "refund",
            "nonce": nonce,
        }
    })
    .to_string()
    .into_bytes();
    let headers = platform_headers(&body, ts_secs, key_pem);
    (body, headers)
}

async fn journal_of(s: &Setup) -> Vec<xuanfang_gateway::refunds::RefundEntry> {
    s.app.signing().unwrap().refunds.entries().await.unwrap()
}

async fn ops_get(s: &signing::Journey, path: &str) -> (u16, Value) {
    let r = (s.http.get(s.url(path)))
        .bearer_auth(operator_token())
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        st,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn a_refund_notification_settles_the_refund_once_and_forgeries_change_nothing() {
    let s = setup().await;
    let e = a_refund_accepted(&s, "4200000001202612010000000011").await;
    let now = s.now_secs();
    let genuine = (PLATFORM_KEY, &APIV3_KEY);
    async fn unchanged(s: &Setup) {
        let j = journal_of(s).await;
        assert_eq!(j.len(), 1);
        assert_eq!(
            (j[0].status, j[0].failure.as_deref()),
            (RefundStatus::Accepted, None)
        );
    }

    // Not believed, each answered FAIL (WeChat sends it again) and nothing changed.
    let success = |id: &str, ts, keys, edit: fn(&mut Value)| {
        refund_notification(&e, id, "REFUND.SUCCESS", "SUCCESS", ts, keys, edit)
    };
    let merchant_signed = success("r1", now, (MERCHANT_KEY, &APIV3_KEY), |_| {});
    let other_apiv3 = success(
        "r1",
        now,
        (PLATFORM_KEY, b"another-apiv3-key-of-32-bytes!!!"),
        |_| {},
    );
    let stale = success("r1", now - 6 * 60, genuine, |_| {});
    let other_merchant = success("r1", now, genuine, |r| r["mchid"] = json!("1900000001"));
    let no_amount = success("r1", now, genuine, |r| {
        r.as_object_mut().unwrap().remove("amount");
    });
    for (what, n, want) in [
        ("merchant-signed", merchant_signed, 401),
        ("another APIv3 key", other_apiv3, 401),
        ("stale", stale, 401),
        ("another merchant", other_merchant, 401),
        ("no amount", no_amount, 400),
    ] {
        let (st, a) = s.notify(n).await;
        assert_eq!(
            (st, a["code"].as_str()),
            (want, Some("FAIL")),
            "{what}: {a}"
        );
        unchanged(&s).await;
    }
    // The event and the resource disagree: not believed as either.
    let mixed = refund_notification(&e, "r1", "REFUND.SUCCESS", "ABNORMAL", now, genuine, |_| {});
    assert_eq!(s.notify(mixed).await.0, 400);
    // A body that says REFUND but was altered after signing.
    let (mut body, headers) = success("r1", now, genuine, |_| {});
    let at = body.len() - 3;
    body[at] ^= 1;
    assert_eq!(s.notify((body, headers)).await.0, 401);
    unchanged(&s).await;
    // Signed, but of no refund of ours, or of another amount: received, nothing changed.
    for (what, edit) in [
        (
            "unknown refund",
            (|r: &mut Value| r["out_refund_no"] = json!("RF0000")) as fn(&mut Value),
        ),
        ("another amount", |r: &mut Value| {
            r["amount"]["refund"] = json!(1)
        }),
    ] {
        let n = success("r0", now, genuine, edit);
        let (st, a) = s.notify(n).await;
        assert_eq!(
            (st, &a["code"], &a["accepted"]),
            (200, &json!("SUCCESS"), &json!(false)),
            "{what}"
        );
        unchanged(&s).await;
    }

    // The genuine one: succeeded, recorded with its event id and time.
    s.clock.set(s.clock_now().plus_ms(5_000));
    let (st, a) = s.notify(success("r1", s.now_secs(), genuine, |_| {})).await;
    assert_eq!(
        (st, &a["code"], &a["accepted"]),
        (200, &json!("SUCCESS"), &json!(true))
    );
    let j = journal_of(&s).await;
    assert_eq!(j[0].status, RefundStatus::Succeeded);
    assert_eq!(j[0].event_id.as_deref(), Some("r1"));
    let settled_at = j[0].at;
    assert_eq!(settled_at, s.clock_now());
    // Replayed, and a later contradicting event of the same refund: nothing changes.
    s.clock.set(s.clock_now().plus_ms(5_000));
    let (st, a) = s.notify(success("r1", s.now_secs(), genuine, |_| {})).await;
    assert_eq!((st, &a["accepted"]), (200, &json!(true)));
    let closed = refund_notification(
        &e,
        "r2",
        "REFUND.CLOSED",
        "CLOSED",
        s.now_secs(),
        genuine,
        |_| {},
    );
    assert_eq!(s.notify(closed).await.0, 200);
    let lines = std::fs::read_to_string(s.journal.path().join("refunds.jsonl")).unwrap();
    assert_eq!(
        lines.lines().count(),
        3,
        "asked, accepted, succeeded: {lines}"
    );

    // A restarted gateway reads the outcome back and asks WeChat nothing more.
    let restarted = app_on_clock(s.engine.clone(), s.clock.clone(), LimitConfig::default());
    assert!(restarted.enable_signing(s.signing()));
    let back = restarted
        .signing()
        .unwrap()
        .refunds
        .entries()
        .await
        .unwrap();
    assert_eq!(
        (back[0].status, back[0].at),
        (RefundStatus::Succeeded, settled_at)
    );
    let rep = Reconciler::default().sweep(&restarted).await;
    assert_eq!((rep.refunds_settled, rep.errors), (0, 0));
    assert!(s.vendor.lock().unwrap().refund_queries.is_empty());

    // The operator's review record shows it: amount, reason, status, time.
    let (st, rec) = ops_get(&s, "/api/ops/signing/F1").await;
    assert_eq!(st, 200);
    let r = &rec["refunds"][0];
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["amount_fen"], e.req.amount_fen);
    assert_eq!(r["at"], settled_at.0);
    assert!(
        r["reason"].as_str().unwrap().contains("order_expired"),
        "{r}"
    );
    // F2 has no refund: none shown.
    let (_, rec2) = ops_get(&s, "/api/ops/signing/F2").await;
    assert!(rec2.get("refunds").is_none(), "{rec2}");
    assert_eq!(
        ops_get(&s, "/api/ops/refunds?status=failed").await.1,
        json!([])
    );
}

#[tokio::test]
async fn an_abnormal_refund_fails_with_its_reason_and_is_listed_for_the_operators() {
    let s = setup().await;
    let e = a_refund_accepted(&s, "4200000001202612010000000012").await;
    let n = refund_notification(
        &e,
        "r-abn",
        "REFUND.ABNORMAL",
        "ABNORMAL",
        s.now_secs(),
        (PLATFORM_KEY, &APIV3_KEY),
        |_| {},
    );
    let (st, a) = s.notify(n).await;
    assert_eq!((st, &a["accepted"]), (200, &json!(true)));
    let j = journal_of(&s).await;
    assert_eq!(j[0].status, RefundStatus::Failed);
    assert_eq!(j[0].failure.as_deref(), Some("wechat pay refund ABNORMAL"));
    // Final: a later SUCCESS (WeChat's retry after a manual refund elsewhere) does not
    // turn it back, so the operator's list stays what happened.
    let ok = refund_notification(
        &e,
        "r-ok",
        "REFUND.SUCCESS",
        "SUCCESS",
        s.now_secs(),
        (PLATFORM_KEY, &APIV3_KEY),
        |_| {},
    );
    assert_eq!(s.notify(ok).await.0, 200);
    assert_eq!(journal_of(&s).await[0].status, RefundStatus::Failed);

    let (st, failed) = ops_get(&s, "/api/ops/refunds?status=failed").await;
    assert_eq!(st, 200);
    assert_eq!(failed.as_array().unwrap().len(), 1, "{failed}");
    assert_eq!(failed[0]["out_refund_no"], e.req.out_refund_no.as_str());
    assert_eq!(failed[0]["failure"], "wechat pay refund ABNORMAL");
    assert_eq!(
        ops_get(&s, "/api/ops/refunds?status=succeeded").await.1,
        json!([])
    );
    assert_eq!(
        ops_get(&s, "/api/ops/refunds")
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Bad input: a clear 400; a family's token: refused.
    assert_eq!(ops_get(&s, "/api/ops/refunds?status=lost").await.0, 400);
    let r = (s.http.get(s.url("/api/ops/refunds")))
        .bearer_auth(family_token("F1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn the_sweep_queries_a_pending_refund_and_records_its_outcome_once() {
    let s = setup().await;
    let e = a_refund_accepted(&s, "4200000001202612010000000013").await;
    let sweep = Reconciler::default();
    // Still processing at WeChat: asked, nothing recorded.
    let rep = sweep.sweep(&s.app).await;
    assert_eq!((rep.refunds_settled, rep.errors), (0, 0));
    assert_eq!(
        s.vendor.lock().unwrap().refund_queries,
        vec![e.req.out_refund_no.clone()]
    );
    assert_eq!(journal_of(&s).await[0].status, RefundStatus::Accepted);
    // Closed at WeChat (its notification lost): the next sweep records it failed.
    (s.vendor.lock().unwrap().refund_status).insert(e.req.out_refund_no.clone(), "CLOSED".into());
    let rep = sweep.sweep(&s.app).await;
    assert_eq!((rep.refunds_settled, rep.errors), (1, 0));
    let j = journal_of(&s).await;
    assert_eq!(
        (j[0].status, j[0].failure.as_deref()),
        (RefundStatus::Failed, Some("wechat pay refund CLOSED"))
    );
    // Settled: neither this gateway nor a restarted one asks again.
    let rep = sweep.sweep(&s.app).await;
    assert_eq!(rep.refunds_settled, 0);
    let restarted = app_on_clock(s.engine.clone(), s.clock.clone(), LimitConfig::default());
    assert!(restarted.enable_signing(s.signing()));
    assert_eq!(
        Reconciler::default()
            .sweep(&restarted)
            .await
            .refunds_settled,
        0
    );
    assert_eq!(s.vendor.lock().unwrap().refund_queries.len(), 2);
    assert_eq!(s.vendor.lock().unwrap().refund_requests.len(), 1);
}

// ---- Two gateways on one Redis: one refund ledger ----

/// A gateway of a deployment on the Redis namespace `ns`: its own engine (its own
/// connections, as a process has), the WeChat adapter, and the refunds in that Redis.
async fn redis_gateway(
    ns: &str,
    clock: &Arc<ManualClock>,
    batch: &BatchId,
    vendor_url: &str,
) -> (signing::Journey, Arc<App>) {
    let engine = Arc::new(redis_signing_engine_in(clock.clone(), ns).await);
    let app = app_on_clock(engine.clone(), clock.clone(), signing::unthrottled());
    let mut sg = Signing::sandbox(
        engine.clone(),
        Arc::new(MemoryBlobs::default()),
        [7; 32],
        DepositRule::default(),
    );
    sg.payment = Some(Arc::new(wechat(vendor_url)));
    sg.sandbox_payment = None;
    let ledger = Refunds::new(Arc::new(RedisRefunds::new(engine)));
    assert!(app.enable_signing(sg.with_refunds(Arc::new(ledger))));
    let addr = serve_on_free_port(&app, batch).await;
    (signing::Journey::new(addr), app)
}

/// The refunds gateway `j` lists, once `until` holds of them (20 s at most).
async fn listed_until(j: &signing::Journey, until: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (st, v) = ops_get(j, "/api/ops/refunds").await;
        assert_eq!(st, 200, "{v}");
        let v = v.as_array().unwrap().clone();
        if until(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "listed: {v:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_redis_list_settle_and_sweep_each_others_refunds() {
    use xuanfang_hub::Clock;
    let ns = unique_namespace();
    let clock = Arc::new(ManualClock::new(DAY));
    let loader = redis_signing_engine_in(clock.clone(), &ns).await;
    let batch =
        signing::selected_on(&loader, &clock, "wechat-redis", &[("F1", "U01")], |_| {}).await;
    let (vendor_url, vendor) = start_vendor().await;
    let (a, app_a) = redis_gateway(&ns, &clock, &batch.id, &vendor_url).await;
    let (b, app_b) = redis_gateway(&ns, &clock, &batch.id, &vendor_url).await;
    let genuine = (PLATFORM_KEY, &APIV3_KEY);

    // F1 orders on gateway A and pays after the hub's expiry; WeChat's notification comes
    // to A, which refuses the payment and asks its refund.
    a.up_to_deposit("F1").await;
    let o = order_on(&a, "F1", "dep1").await;
    let no = o["out_trade_no"].as_str().unwrap().to_owned();
    let txn = "4200000001202612010000000021";
    clock.set(Millis(o["expires_at"].as_i64().unwrap() + 1_000));
    let late = payment_notification(
        &vendor,
        "n-late",
        &no,
        txn,
        clock.now().0 / 1000,
        genuine,
        |_| {},
    );
    let (st, answer) = notify_on(&a, late).await;
    assert_eq!((st, &answer["accepted"]), (200, &json!(false)), "{answer}");

    // Gateway B lists it, as WeChat accepted it (A recorded the answer).
    let refund_no = out_refund_no(txn);
    let listed = listed_until(&b, |v| v.first().is_some_and(|r| r["status"] == "accepted")).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["out_refund_no"], refund_no.as_str());
    assert_eq!(listed[0]["out_trade_no"], no.as_str());
    // B's sweep asks WeChat where A's refund stands (still processing: nothing recorded).
    let rep = Reconciler::default().sweep(&app_b).await;
    assert_eq!((rep.refunds_settled, rep.errors), (0, 0));
    assert_eq!(
        vendor.lock().unwrap().refund_queries,
        vec![refund_no.clone()]
    );

    // WeChat's REFUND.SUCCESS is routed to B: B settles A's refund.
    let e = (app_b
        .signing()
        .unwrap()
        .refunds
        .entry(&refund_no)
        .await
        .unwrap())
    .unwrap();
    clock.set(clock.now().plus_ms(5_000));
    let n = refund_notification(
        &e,
        "r-1",
        "REFUND.SUCCESS",
        "SUCCESS",
        clock.now().0 / 1000,
        genuine,
        |_| {},
    );
    let (st, answer) = notify_on(&b, n).await;
    assert_eq!(
        (st, &answer["code"], &answer["accepted"]),
        (200, &json!("SUCCESS"), &json!(true)),
        "B knows the refund A asked: {answer}"
    );
    // A lists it succeeded, with the notification that settled it; so do A's review
    // record and B's list.
    for j in [&a, &b] {
        let listed = listed_until(j, |v| v.len() == 1).await;
        assert_eq!(listed[0]["status"], "succeeded");
        assert_eq!(listed[0]["event_id"], "r-1");
        assert_eq!(listed[0]["at"], clock.now().0);
    }
    let (st, rec) = ops_get(&a, "/api/ops/signing/F1").await;
    assert_eq!(
        (st, &rec["refunds"][0]["status"]),
        (200, &json!("succeeded"))
    );
    // Settled for both: neither sweep asks again, and WeChat was asked one refund.
    for app in [&app_a, &app_b] {
        let rep = Reconciler::default().sweep(app).await;
        assert_eq!(
            (rep.refunds_retried, rep.refunds_settled, rep.errors),
            (0, 0, 0)
        );
    }
    let v = vendor.lock().unwrap();
    assert_eq!(v.refund_queries.len(), 1);
    assert_eq!(v.refund_requests.len(), 1);
    assert_eq!(v.refund_requests[0]["out_refund_no"], refund_no.as_str());
}
