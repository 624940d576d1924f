//! 支付宝 当面付 through the gateway's adapter, against a local server in the test that
//! plays Alipay's gateway (`/gateway.do`): it checks each call's RSA2 signature with the
//! app's public key, answers `alipay.trade.precreate`, `alipay.trade.query` and
//! `alipay.trade.refund` (each answer signed with Alipay's key over the raw text of its
//! `<method>_response`, as Alipay does), and sends form notifications signed with
//! Alipay's key.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::Form;
use common::vendor::{rsa_sign, rsa_verify};
use common::*;
use serde_json::{json, Value};
use xuanfang_gateway::app::App;
use xuanfang_gateway::blobs::MemoryBlobs;
use xuanfang_gateway::providers::alipay::{Alipay, AlipayConfig};
use xuanfang_gateway::reconcile::Reconciler;
use xuanfang_gateway::signing_api::{DepositRule, Signing};
use xuanfang_hub::{ManualClock, Millis};

const APP_KEY: &str = include_str!("fixtures/vendor/merchant_key.pem");
const APP_PUB: &str = include_str!("fixtures/vendor/merchant_pub.pem");
const ALIPAY_KEY: &str = include_str!("fixtures/vendor/platform_key.pem");
const ALIPAY_PUB: &str = include_str!("fixtures/vendor/platform_pub.pem");
const APP_ID: &str = "2021000000000001";

fn content(p: &BTreeMap<String, String>, skip: &[&str]) -> String {
    (p.iter())
        .filter(|(k, v)| !v.is_empty() && !skip.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[derive(Default)]
struct Vendor {
    /// out_trade_no → (biz_content of the precreate, trade_no once paid).
    orders: HashMap<String, (Value, Option<String>)>,
    refunds: Vec<Value>,
    unsigned: usize,
    /// How the answers are signed (a test plays a party between gateway and Alipay).
    answers: Answers,
    /// How `alipay.trade.refund` answers (default: refunded at once, `fund_change` Y).
    refund_answer: RefundAnswer,
    /// Refunds (`out_request_no`) the refund query says are back with the payer.
    refunds_done: Vec<String>,
    /// `alipay.trade.fastpay.refund.query` calls answered.
    refund_queries: usize,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum RefundAnswer {
    #[default]
    FundChanged,
    /// Accepted, the money not moved yet (`fund_change` N): the query tells later.
    Pending,
    /// A business refusal (40004).
    Refused,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Answers {
    #[default]
    Signed,
    /// Signed by a key that is not Alipay's.
    WrongKey,
    /// Signed, then the QR code changed.
    Altered,
    /// No `sign`.
    Unsigned,
}

/// Alipay's answer: `{"<key>":<content>,"sign":"…"}`, `sign` over `content` exactly as
/// written here.
fn answer(key: &str, r: &Value, how: Answers) -> String {
    let content = r.to_string();
    let signer = if how == Answers::WrongKey {
        APP_KEY
    } else {
        ALIPAY_KEY
    };
    let sign = rsa_sign(signer, content.as_bytes());
    let content = match how {
        Answers::Altered => content.replace("https://qr.alipay.com/", "https://evil.example/"),
        _ => content,
    };
    match how {
        Answers::Unsigned => format!(r#"{{"{key}":{content}}}"#),
        _ => format!(r#"{{"{key}":{content},"sign":"{sign}"}}"#),
    }
}

type Shared = Arc<Mutex<Vendor>>;

async fn gateway_do(
    State(v): State<Shared>,
    Form(p): Form<BTreeMap<String, String>>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let mut v = v.lock().unwrap();
    let signed = p.get("sign_type").map(String::as_str) == Some("RSA2")
        && p.get("app_id").map(String::as_str) == Some(APP_ID)
        && rsa_verify(APP_PUB, content(&p, &["sign"]).as_bytes(), &p["sign"]);
    let method = p["method"].clone();
    let key = format!("{}_response", method.replace('.', "_"));
    if !signed {
        v.unsigned += 1;
        let r = json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature"});
        return (json_type(), answer(&key, &r, Answers::Unsigned));
    }
    let biz: Value = serde_json::from_str(&p["biz_content"]).unwrap();
    let r = match method.as_str() {
        "alipay.trade.precreate" => {
            let no = biz["out_trade_no"].as_str().unwrap().to_owned();
            v.orders.entry(no.clone()).or_insert((biz.clone(), None));
            json!({"code": "10000", "msg": "Success", "out_trade_no": no,
                   "qr_code": format!("https://qr.alipay.com/bax{no}")})
        }
        "alipay.trade.query" => {
            let no = biz["out_trade_no"].as_str().unwrap();
            match v.orders.get(no) {
                None => {
                    json!({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST"})
                }
                Some((o, paid)) => json!({"code": "10000", "msg": "Success", "out_trade_no": no,
                    "trade_no": paid.clone().unwrap_or_default(),
                    "trade_status": if paid.is_some() { "TRADE_SUCCESS" } else { "WAIT_BUYER_PAY" },
                    "total_amount": o["total_amount"]}),
            }
        }
        "alipay.trade.refund" => match v.refund_answer {
            RefundAnswer::Refused => json!({"code": "40004", "msg": "Business Failed",
                "sub_code": "ACQ.TRADE_HAS_CLOSE", "sub_msg": "交易已经关闭"}),
            how => {
                v.refunds.push(biz.clone());
                let changed = if how == RefundAnswer::Pending {
                    "N"
                } else {
                    "Y"
                };
                json!({"code": "10000", "msg": "Success", "trade_no": biz["trade_no"], "fund_change": changed})
            }
        },
        "alipay.trade.fastpay.refund.query" => {
            v.refund_queries += 1;
            let no = biz["out_request_no"].as_str().unwrap_or_default();
            match (v.refunds.iter()).find(|r| r["out_request_no"] == no) {
                // Alipay answers Success without the refund's fields for a number it has
                // no refund under.
                None => json!({"code": "10000", "msg": "Success"}),
                Some(r) => {
                    let mut a = json!({"code": "10000", "msg": "Success", "trade_no": r["trade_no"],
                        "out_request_no": no, "refund_amount": r["refund_amount"],
                        "total_amount": r["refund_amount"]});
                    if v.refunds_done.iter().any(|d| d == no) {
                        a["refund_status"] = json!("REFUND_SUCCESS");
                    }
                    a
                }
            }
        }
        _ => json!({"code": "40004", "sub_code": "isv.invalid-method"}),
    };
    (json_type(), answer(&key, &r, v.answers))
}

fn json_type() -> [(axum::http::HeaderName, &'static str); 1] {
    [(
        axum::http::header::CONTENT_TYPE,
        "application/json;charset=utf-8",
    )]
}

struct Setup {
    journey: signing::Journey,
    app: Arc<App>,
    clock: Arc<ManualClock>,
    vendor: Shared,
}

impl std::ops::Deref for Setup {
    type Target = signing::Journey;
    fn deref(&self) -> &signing::Journey {
        &self.journey
    }
}

impl Setup {
    async fn post(&self, path: &str, key: &str) -> reqwest::Response {
        (self.http.post(self.url(path)))
            .bearer_auth(family_token("F1"))
            .header("Idempotency-Key", key)
            .header("Connection", "close")
            .send()
            .await
            .unwrap()
    }
    async fn status(&self) -> String {
        let v = self.view("F1").await;
        v["status"]["status"].as_str().unwrap().to_owned()
    }
    async fn up_to_deposit(&self) {
        self.journey.up_to_deposit("F1").await;
    }
    /// Alipay's notification of `no` paid by trade `trade`, signed with `key`.
    fn notification(&self, no: &str, trade: &str, key: &str) -> BTreeMap<String, String> {
        let mut v = self.vendor.lock().unwrap();
        let o = v.orders.get_mut(no).unwrap();
        o.1 = Some(trade.to_owned());
        let mut p: BTreeMap<String, String> = [
            ("notify_id", format!("ntf-{trade}")),
            ("notify_type", "trade_status_sync".into()),
            ("notify_time", "2026-12-01 00:35:00".into()),
            ("app_id", APP_ID.into()),
            ("charset", "utf-8".into()),
            ("version", "1.0".into()),
            ("trade_no", trade.into()),
            ("out_trade_no", no.into()),
            ("trade_status", "TRADE_SUCCESS".into()),
            ("total_amount", o.0["total_amount"].as_str().unwrap().into()),
            ("body", o.0["body"].as_str().unwrap().into()),
            ("subject", o.0["subject"].as_str().unwrap().into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let sig = rsa_sign(key, content(&p, &[]).as_bytes());
        p.insert("sign_type".into(), "RSA2".into());
        p.insert("sign".into(), sig);
        p
    }
    async fn notify(&self, p: &BTreeMap<String, String>) -> (u16, String) {
        let r = (self.http.post(self.url("/api/providers/payment/notify")))
            .form(p)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

async fn setup() -> Setup {
    let shared: Shared = Arc::default();
    let router = axum::Router::new()
        .route("/gateway.do", post(gateway_do))
        .with_state(shared.clone());
    let vendor_addr = serve_router(router).await;

    let day = signing::signing_day("alipay", &[("F1", "U01")]).await;
    let app = app_on_clock(
        day.engine.clone(),
        day.clock.clone(),
        signing::unthrottled(),
    );
    let alipay = Alipay::new(AlipayConfig {
        base_url: format!("http://{vendor_addr}"),
        app_id: APP_ID.into(),
        notify_url: "https://xuanfang.example/api/providers/payment/notify".into(),
        private_key_pem: APP_KEY.into(),
        alipay_public_key_pem: ALIPAY_PUB.into(),
    })
    .unwrap();
    let mut sg = Signing::sandbox(
        day.engine.clone(),
        Arc::new(MemoryBlobs::default()),
        [7; 32],
        DepositRule::default(),
    );
    sg.payment = Some(Arc::new(alipay));
    sg.sandbox_payment = None;
    assert!(app.enable_signing(sg));
    let addr = serve_on_free_port(&app, &day.batch.id).await;
    Setup {
        journey: signing::Journey::new(addr),
        app,
        clock: day.clock,
        vendor: shared,
    }
}

#[tokio::test]
async fn a_precreate_gives_the_qr_and_a_signed_notification_is_answered_success() {
    let s = setup().await;
    s.up_to_deposit().await;
    let o: Value = s
        .post("/api/me/signing/deposit", "dep1")
        .await
        .json()
        .await
        .unwrap();
    let no = o["out_trade_no"].as_str().unwrap().to_owned();
    assert_eq!(o["qr_payload"], format!("https://qr.alipay.com/bax{no}"));
    {
        let v = s.vendor.lock().unwrap();
        assert_eq!(v.unsigned, 0, "every call signed RSA2 with the app's key");
        let biz = &v.orders[&no].0;
        let fen = o["amount_fen"].as_u64().unwrap();
        assert_eq!(
            biz["total_amount"],
            format!("{}.{:02}", fen / 100, fen % 100)
        );
        assert_eq!(
            biz["time_expire"], "2026-12-01 00:44:00",
            "the provider's expiry, Beijing time"
        );
    }
    // Signed by another key, or altered after signing: "fail", nothing paid.
    let forged = s.notification(&no, "2026120122001400000000000001", APP_KEY);
    assert_eq!(s.notify(&forged).await, (401, "fail".into()));
    let mut altered = s.notification(&no, "2026120122001400000000000001", ALIPAY_KEY);
    altered.insert("total_amount".into(), "0.01".into());
    assert_eq!(s.notify(&altered).await, (401, "fail".into()));
    assert_eq!(s.status().await, "open");
    let good = s.notification(&no, "2026120122001400000000000001", ALIPAY_KEY);
    assert_eq!(s.notify(&good).await, (200, "success".into()));
    assert_eq!(s.status().await, "in_review");
    assert_eq!(s.notify(&good).await, (200, "success".into()), "a repeat");
}

#[tokio::test]
async fn the_sweep_finds_an_unnotified_payment_and_a_late_one_is_refunded() {
    let s = setup().await;
    s.up_to_deposit().await;
    let o: Value = s
        .post("/api/me/signing/deposit", "dep1")
        .await
        .json()
        .await
        .unwrap();
    let no = o["out_trade_no"].as_str().unwrap().to_owned();
    let expires_at = o["expires_at"].as_i64().unwrap();
    // Paid at Alipay after the hub's expiry; the notification is lost.
    s.clock.set(Millis(expires_at + 1));
    s.vendor.lock().unwrap().orders.get_mut(&no).unwrap().1 =
        Some("2026120122001400000000000002".into());
    let rep = Reconciler::default().sweep(&s.app).await;
    assert_eq!((rep.payments_found, rep.errors), (1, 0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while s.vendor.lock().unwrap().refunds.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no refund asked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refunds = s.vendor.lock().unwrap().refunds.clone();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0]["trade_no"], "2026120122001400000000000002");
    assert_eq!(
        refunds[0]["refund_amount"],
        o["amount_fen"]
            .as_u64()
            .map(|f| format!("{}.{:02}", f / 100, f % 100))
            .unwrap()
    );
    assert_eq!(s.status().await, "open");
}

#[tokio::test]
async fn an_answer_not_signed_by_alipay_is_refused() {
    let s = setup().await;
    s.up_to_deposit().await;
    let page = || async {
        let v: Value = (s.http.get(s.url("/api/me/signing")))
            .bearer_auth(family_token("F1"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v
    };
    for (i, how) in [Answers::WrongKey, Answers::Altered, Answers::Unsigned]
        .into_iter()
        .enumerate()
    {
        s.vendor.lock().unwrap().answers = how;
        let r = s
            .post("/api/me/signing/deposit", &format!("dep-x{i}"))
            .await;
        assert_eq!(
            r.status(),
            502,
            "a refused precreate answer is a failed call"
        );
        // The page asks the provider again for the QR code: refused again, none shown.
        let v = page().await;
        assert!(v.get("qr_svg").is_none(), "{v}");
        assert!(!v.to_string().contains("evil.example"));
    }
    // Signed by Alipay: the same order's QR code.
    s.vendor.lock().unwrap().answers = Answers::Signed;
    let o: Value = (s.post("/api/me/signing/deposit", "dep1").await)
        .json()
        .await
        .unwrap();
    let no = o["out_trade_no"].as_str().unwrap().to_owned();
    assert_eq!(o["qr_payload"], format!("https://qr.alipay.com/bax{no}"));
    // A query answer not signed by Alipay does not make the sweep take a payment.
    {
        let mut v = s.vendor.lock().unwrap();
        v.orders.get_mut(&no).unwrap().1 = Some("2026120122001400000000000009".into());
        v.answers = Answers::WrongKey;
    }
    let rep = Reconciler::default().sweep(&s.app).await;
    assert_eq!((rep.payments_found, rep.errors), (0, 1));
    assert_eq!(s.status().await, "open");
    // Signed again: the next sweep finds it.
    s.vendor.lock().unwrap().answers = Answers::Signed;
    let rep = Reconciler::default().sweep(&s.app).await;
    assert_eq!((rep.payments_found, rep.errors), (1, 0));
    assert_eq!(s.status().await, "in_review");
}

// ---- Refund outcomes: the refund's answer and alipay.trade.fastpay.refund.query ----

/// F1 pays at Alipay after the hub's expiry, the notification lost: the sweep finds it
/// and the refund is asked. Waits until the journal has the answer (not `Asked`).
async fn a_late_payment_refunded(s: &Setup) -> xuanfang_gateway::refunds::RefundEntry {
    use xuanfang_gateway::refunds::RefundStatus;
    s.up_to_deposit().await;
    let o: Value = s
        .post("/api/me/signing/deposit", "dep1")
        .await
        .json()
        .await
        .unwrap();
    let no = o["out_trade_no"].as_str().unwrap().to_owned();
    s.clock.set(Millis(o["expires_at"].as_i64().unwrap() + 1));
    s.vendor.lock().unwrap().orders.get_mut(&no).unwrap().1 =
        Some("2026120122001400000000000009".into());
    assert_eq!(Reconciler::default().sweep(&s.app).await.payments_found, 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let e = s.app.signing().unwrap().refunds.entries().await.unwrap();
        if e.first().is_some_and(|e| e.status != RefundStatus::Asked) {
            return e[0].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "refund not answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_refund_alipay_has_not_paid_back_yet_is_settled_by_the_refund_query() {
    use xuanfang_gateway::refunds::RefundStatus;
    let s = setup().await;
    s.vendor.lock().unwrap().refund_answer = RefundAnswer::Pending;
    let e = a_late_payment_refunded(&s).await;
    assert_eq!(e.status, RefundStatus::Accepted, "fund_change N: pending");
    let sweep = Reconciler::default();
    // Not back yet: asked, nothing recorded.
    let queries = s.vendor.lock().unwrap().refund_queries;
    let rep = sweep.sweep(&s.app).await;
    assert_eq!((rep.refunds_settled, rep.errors), (0, 0));
    assert_eq!(s.vendor.lock().unwrap().refund_queries, queries + 1);
    // Back with the payer: recorded succeeded, then never asked again.
    (s.vendor.lock().unwrap().refunds_done).push(e.req.out_refund_no.clone());
    let rep = sweep.sweep(&s.app).await;
    assert_eq!((rep.refunds_settled, rep.errors), (1, 0));
    assert_eq!(
        s.app.signing().unwrap().refunds.entries().await.unwrap()[0].status,
        RefundStatus::Succeeded
    );
    let rep = sweep.sweep(&s.app).await;
    assert_eq!(rep.refunds_settled, 0);
    assert_eq!(s.vendor.lock().unwrap().refund_queries, queries + 2);
    assert_eq!(s.vendor.lock().unwrap().refunds.len(), 1);
}

#[tokio::test]
async fn a_refund_alipay_refunds_at_once_is_succeeded_and_a_refused_one_failed_with_its_reason() {
    use xuanfang_gateway::refunds::RefundStatus;
    let s = setup().await;
    s.vendor.lock().unwrap().refund_answer = RefundAnswer::Refused;
    let e = a_late_payment_refunded(&s).await;
    assert_eq!(e.status, RefundStatus::Failed);
    assert_eq!(
        e.failure.as_deref(),
        Some("alipay ACQ.TRADE_HAS_CLOSE 交易已经关闭")
    );
    // Final: the sweep neither asks the refund again nor queries it.
    let queries = s.vendor.lock().unwrap().refund_queries;
    let rep = Reconciler::default().sweep(&s.app).await;
    assert_eq!((rep.refunds_retried, rep.refunds_settled), (0, 0));
    assert_eq!(s.vendor.lock().unwrap().refund_queries, queries);
    // Listed for the operators.
    let failed: Value = (s.http.get(s.url("/api/ops/refunds?status=failed")))
        .bearer_auth(operator_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(failed[0]["out_refund_no"], e.req.out_refund_no.as_str());
    assert_eq!(failed[0]["status"], "failed");

    // Another gateway's Alipay answering fund_change Y: succeeded without a query.
    let s = setup().await;
    let e = a_late_payment_refunded(&s).await;
    assert_eq!(e.status, RefundStatus::Succeeded);
    assert_eq!(s.vendor.lock().unwrap().refund_queries, 0);
}
