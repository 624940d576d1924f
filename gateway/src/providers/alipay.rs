//! 支付宝 当面付 (face-to-face), `alipay.trade.precreate`: the answer's `qr_code` is the QR
//! payload.
//!
//! - Every call is a form to the gateway (`/gateway.do`) signed RSA2: RSA-SHA256 over the
//!   parameters other than `sign`, sorted by name, as `k=v&k=v` (values not encoded).
//! - A notification is a form, verified the same way over its parameters other than
//!   `sign` and `sign_type` with Alipay's public key, and must be `TRADE_SUCCESS` (or
//!   `TRADE_FINISHED`) of our `app_id`; it is answered with the bare word `success`.
//! - The batch travels in the order's `body`, which the notification carries back.
//!
//! - Every answer of a call is checked as Alipay specifies before it is read: `sign` is
//!   RSA2 by Alipay's key over the exact text of the `<method>_response` value as it
//!   came on the wire (not re-serialised: key order and spacing are Alipay's). An
//!   unsigned or forged answer is a failed call ([`AnswerError`]), so a party between
//!   the gateway and Alipay can neither hand out its own QR code nor tell the sweep an
//!   order was paid.

use std::collections::BTreeMap;

use async_trait::async_trait;
use axum::http::HeaderMap;
use serde_json::{json, Value};
use xuanfang_hub::{BatchId, Millis};

use super::keys::{RsaSigner, RsaVerifier};
use super::payment::{
    NotifyError, OrderQuery, OrderRequest, PayOrder, PaymentNotification, PaymentProvider,
    RefundRequest, RefundState,
};
use super::ProviderError;

/// The merchant's settings (`[payment]` with `vendor = "alipay"`).
#[derive(Clone)]
pub struct AlipayConfig {
    /// `https://openapi.alipay.com` (a test's local server in tests).
    pub base_url: String,
    pub app_id: String,
    pub notify_url: String,
    /// The app's private key, PKCS#8 PEM.
    pub private_key_pem: String,
    /// Alipay's public key, PEM (`BEGIN PUBLIC KEY`).
    pub alipay_public_key_pem: String,
}

impl std::fmt::Debug for AlipayConfig {
    // Keys never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipayConfig")
            .field("base_url", &self.base_url)
            .field("app_id", &self.app_id)
            .field("notify_url", &self.notify_url)
            .finish_non_exhaustive()
    }
}

pub struct Alipay {
    cfg: AlipayConfig,
    signer: RsaSigner,
    alipay: RsaVerifier,
    http: reqwest::Client,
}

/// What RSA2 signs: the parameters but `skip`, sorted, non-empty, `k=v` joined by `&`.
pub fn signing_string(params: &BTreeMap<String, String>, skip: &[&str]) -> String {
    params
        .iter()
        .filter(|(k, v)| !v.is_empty() && !skip.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Why an answer of Alipay's gateway is not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnswerError {
    #[error("not a JSON object")]
    NotJson,
    #[error("no {0} in the answer")]
    Missing(String),
    #[error("the answer is not signed")]
    Unsigned,
    #[error("the answer's signature does not verify with Alipay's public key")]
    Forged,
}

/// The top-level members of a JSON object as `(key, raw value text)`, the text exactly
/// as in `body` (what Alipay's answer signature covers). `None` unless `body` is one
/// JSON object.
pub fn raw_members(body: &str) -> Option<Vec<(&str, &str)>> {
    let b = body.as_bytes();
    let ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    // The end of the string starting at `i` (on its opening quote): past the closing one.
    let string_end = |mut i: usize| -> Option<usize> {
        i += 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return Some(i + 1),
                _ => i += 1,
            }
        }
        None
    };
    // The end of the value starting at `i`: the `,` or `}` after it at depth 0.
    let value_end = |mut i: usize| -> Option<usize> {
        let mut depth = 0usize;
        while let Some(&c) = b.get(i) {
            match c {
                b'"' => i = string_end(i)?,
                b'{' | b'[' => {
                    depth += 1;
                    i += 1;
                }
                b'}' | b']' if depth == 0 => return Some(i),
                b'}' | b']' => {
                    depth -= 1;
                    i += 1;
                }
                b',' if depth == 0 => return Some(i),
                _ => i += 1,
            }
        }
        None
    };
    let mut i = 0;
    ws(&mut i);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let mut out = Vec::new();
    loop {
        ws(&mut i);
        match b.get(i)? {
            b'}' if out.is_empty() => break,
            b'"' => {}
            _ => return None,
        }
        let k_end = string_end(i)?;
        let key = body.get(i + 1..k_end - 1)?;
        i = k_end;
        ws(&mut i);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i += 1;
        ws(&mut i);
        let v_start = i;
        let v_end = value_end(i)?;
        out.push((key, body.get(v_start..v_end)?.trim_end()));
        i = v_end;
        ws(&mut i);
        match b.get(i)? {
            b',' => i += 1,
            b'}' => break,
            _ => return None,
        }
    }
    ws(&mut i);
    (i + 1 == b.len()).then_some(out)
}

/// The `<method>_response` object of an answer, once its `sign` verifies.
pub fn verified_answer(
    body: &str,
    response_key: &str,
    alipay: &RsaVerifier,
) -> Result<Value, AnswerError> {
    let members = raw_members(body).ok_or(AnswerError::NotJson)?;
    let raw = |k: &str| members.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let content = raw(response_key).ok_or_else(|| AnswerError::Missing(response_key.into()))?;
    let sign: String = raw("sign")
        .map(serde_json::from_str)
        .transpose()
        .map_err(|_| AnswerError::Unsigned)?
        .ok_or(AnswerError::Unsigned)?;
    if !alipay.verify_b64(content.as_bytes(), &sign) {
        return Err(AnswerError::Forged);
    }
    serde_json::from_str(content).map_err(|_| AnswerError::NotJson)
}

/// Fen as Alipay's yuan string (`1234.56`).
pub fn yuan(fen: u64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// Alipay's yuan string as fen; `None` unless it is digits with at most two decimals.
pub fn fen_of(yuan: &str) -> Option<u64> {
    let (int, frac) = yuan.split_once('.').unwrap_or((yuan, ""));
    if int.is_empty()
        || frac.len() > 2
        || !(int.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let frac = format!("{frac:0<2}");
    int.parse::<u64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(frac.parse().ok()?)
}

fn beijing(at: Millis) -> Result<String, ProviderError> {
    let t = time::OffsetDateTime::from_unix_timestamp(at.0.div_euclid(1000))
        .map_err(|e| ProviderError(e.to_string()))?
        .to_offset(time::macros::offset!(+8));
    t.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second]"
    ))
    .map_err(|e| ProviderError(e.to_string()))
}

impl Alipay {
    pub fn new(cfg: AlipayConfig) -> Result<Self, ProviderError> {
        let signer = RsaSigner::from_pem(&cfg.private_key_pem)?;
        let alipay = RsaVerifier::from_pem(&cfg.alipay_public_key_pem)?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| ProviderError(e.to_string()))?;
        Ok(Self {
            cfg,
            signer,
            alipay,
            http,
        })
    }

    /// One signed call of `method`; the `<method>_response` object.
    async fn call(&self, method: &str, biz: Value, notify: bool) -> Result<Value, ProviderError> {
        let now = Millis(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        );
        let mut p = BTreeMap::new();
        p.insert("app_id".to_owned(), self.cfg.app_id.clone());
        p.insert("method".to_owned(), method.to_owned());
        p.insert("format".to_owned(), "JSON".to_owned());
        p.insert("charset".to_owned(), "utf-8".to_owned());
        p.insert("sign_type".to_owned(), "RSA2".to_owned());
        p.insert("timestamp".to_owned(), beijing(now)?);
        p.insert("version".to_owned(), "1.0".to_owned());
        if notify {
            p.insert("notify_url".to_owned(), self.cfg.notify_url.clone());
        }
        p.insert("biz_content".to_owned(), biz.to_string());
        let sign = self
            .signer
            .sign_b64(signing_string(&p, &["sign"]).as_bytes())?;
        p.insert("sign".to_owned(), sign);
        let res = self
            .http
            .post(format!(
                "{}/gateway.do",
                self.cfg.base_url.trim_end_matches('/')
            ))
            .form(&p)
            .send()
            .await
            .map_err(|e| ProviderError(format!("alipay {method}: {e}")))?;
        let body = res
            .text()
            .await
            .map_err(|e| ProviderError(format!("alipay {method}: {e}")))?;
        let key = format!("{}_response", method.replace('.', "_"));
        verified_answer(&body, &key, &self.alipay)
            .map_err(|e| ProviderError(format!("alipay {method}: answer refused: {e}")))
    }
}

fn failure(method: &str, r: &Value) -> ProviderError {
    ProviderError(format!(
        "alipay {method}: {} {} {}",
        r["code"].as_str().unwrap_or("?"),
        r["sub_code"].as_str().unwrap_or(""),
        r["sub_msg"].as_str().unwrap_or("")
    ))
}

#[async_trait]
impl PaymentProvider for Alipay {
    async fn create_order(&self, req: OrderRequest) -> Result<PayOrder, ProviderError> {
        let biz = json!({
            "out_trade_no": req.out_trade_no,
            "total_amount": yuan(req.amount_fen),
            "subject": req.description.chars().take(60).collect::<String>(),
            "body": req.batch.0,
            "time_expire": beijing(req.expires_at)?,
        });
        let r = self.call("alipay.trade.precreate", biz, true).await?;
        match (r["code"].as_str(), r["qr_code"].as_str()) {
            (Some("10000"), Some(qr)) => Ok(PayOrder {
                out_trade_no: req.out_trade_no,
                qr_payload: qr.to_owned(),
                pay_url: qr.to_owned(),
                expires_at: req.expires_at,
            }),
            _ => Err(failure("alipay.trade.precreate", &r)),
        }
    }

    fn verify_notification(
        &self,
        _headers: &HeaderMap,
        body: &[u8],
        _now: Millis,
    ) -> Result<PaymentNotification, NotifyError> {
        let p: BTreeMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
        let sig = p.get("sign").ok_or(NotifyError::Unsigned)?;
        if p.get("sign_type").map(String::as_str) != Some("RSA2") {
            return Err(NotifyError::Unsigned);
        }
        let msg = signing_string(&p, &["sign", "sign_type"]);
        if !self.alipay.verify_b64(msg.as_bytes(), sig) {
            return Err(NotifyError::Forged);
        }
        let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
        if get("app_id") != self.cfg.app_id {
            return Err(NotifyError::NotOurs("another app".into()));
        }
        if !matches!(get("trade_status"), "TRADE_SUCCESS" | "TRADE_FINISHED") {
            return Err(NotifyError::NotOurs(format!(
                "trade_status {}",
                get("trade_status")
            )));
        }
        let amount = fen_of(get("total_amount"))
            .ok_or_else(|| NotifyError::Malformed("total_amount".into()))?;
        if get("notify_id").is_empty() || get("trade_no").is_empty() || get("body").is_empty() {
            return Err(NotifyError::Malformed(
                "notify_id, trade_no or body missing".into(),
            ));
        }
        Ok(PaymentNotification {
            event_id: get("notify_id").to_owned(),
            batch: BatchId(get("body").to_owned()),
            out_trade_no: get("out_trade_no").to_owned(),
            provider_txn_id: get("trade_no").to_owned(),
            amount_fen: amount,
        })
    }

    fn plain_reply(&self, received: bool) -> Option<&'static str> {
        Some(if received { "success" } else { "fail" })
    }

    async fn query_order(
        &self,
        batch: &BatchId,
        out_trade_no: &str,
    ) -> Result<OrderQuery, ProviderError> {
        let r = self
            .call(
                "alipay.trade.query",
                json!({"out_trade_no": out_trade_no}),
                false,
            )
            .await?;
        if r["code"].as_str() != Some("10000") {
            if r["sub_code"].as_str() == Some("ACQ.TRADE_NOT_EXIST") {
                return Ok(OrderQuery::Unknown);
            }
            return Err(failure("alipay.trade.query", &r));
        }
        if r["out_trade_no"].as_str() != Some(out_trade_no) {
            return Err(ProviderError("alipay query answered another order".into()));
        }
        Ok(match r["trade_status"].as_str() {
            Some("TRADE_SUCCESS" | "TRADE_FINISHED") => {
                let txn = r["trade_no"].as_str().unwrap_or_default().to_owned();
                OrderQuery::Paid(PaymentNotification {
                    event_id: format!("query-{txn}"),
                    batch: batch.clone(),
                    out_trade_no: out_trade_no.to_owned(),
                    provider_txn_id: txn,
                    amount_fen: r["total_amount"].as_str().and_then(fen_of).unwrap_or(0),
                })
            }
            Some("WAIT_BUYER_PAY") => OrderQuery::Open,
            _ => OrderQuery::Closed,
        })
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundState, ProviderError> {
        let r = self
            .call(
                "alipay.trade.refund",
                json!({
                    "trade_no": req.provider_txn_id,
                    "refund_amount": yuan(req.amount_fen),
                    "out_request_no": req.out_refund_no,
                    "refund_reason": req.reason.chars().take(80).collect::<String>(),
                }),
                false,
            )
            .await?;
        match r["code"].as_str() {
            // fund_change Y: the money moved now; N: not (yet), the sweep's query says.
            Some("10000") if r["fund_change"].as_str() == Some("Y") => Ok(RefundState::Succeeded),
            Some("10000") => Ok(RefundState::Accepted),
            // A business refusal (e.g. the trade is closed): an operator looks.
            Some("40004") => Ok(RefundState::Failed(format!(
                "alipay {} {}",
                r["sub_code"].as_str().unwrap_or(""),
                r["sub_msg"].as_str().unwrap_or("")
            ))),
            _ => Err(failure("alipay.trade.refund", &r)),
        }
    }

    async fn query_refund(&self, req: &RefundRequest) -> Result<RefundState, ProviderError> {
        let r = self
            .call(
                "alipay.trade.fastpay.refund.query",
                json!({
                    "trade_no": req.provider_txn_id,
                    "out_request_no": req.out_refund_no,
                }),
                false,
            )
            .await?;
        if r["code"].as_str() != Some("10000") {
            return Err(failure("alipay.trade.fastpay.refund.query", &r));
        }
        if r["out_request_no"].as_str() != Some(req.out_refund_no.as_str()) {
            // Alipay answers 10000 without the refund's fields when it has none under
            // that number: not refunded yet.
            return Ok(RefundState::Accepted);
        }
        if r["refund_amount"].as_str().and_then(fen_of) != Some(req.amount_fen) {
            return Err(ProviderError("alipay refund query: another amount".into()));
        }
        Ok(match r["refund_status"].as_str() {
            Some("REFUND_SUCCESS") => RefundState::Succeeded,
            _ => RefundState::Accepted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_string_is_sorted_without_sign_and_empty_values() {
        let p: BTreeMap<String, String> = [("b", "2"), ("a", "1"), ("sign", "x"), ("c", "")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(signing_string(&p, &["sign"]), "a=1&b=2");
    }

    #[test]
    fn raw_members_keep_the_text_as_sent() {
        let body = r#" {"a_response" : {"code":"10000", "x":[1,{"y":"}\","}]} , "sign":"c2ln" ,"n":-1.5e3,"t":true}"#;
        assert_eq!(
            raw_members(body).unwrap(),
            [
                ("a_response", r#"{"code":"10000", "x":[1,{"y":"}\","}]}"#),
                ("sign", r#""c2ln""#),
                ("n", "-1.5e3"),
                ("t", "true"),
            ]
        );
        for bad in [
            "",
            "[]",
            "{",
            r#"{"a":1"#,
            r#"{"a":1}x"#,
            r#"{"a" 1}"#,
            r#"{"a":"1}"#,
        ] {
            assert_eq!(raw_members(bad), None, "{bad}");
        }
        assert_eq!(raw_members("{}"), Some(vec![]));
    }

    #[test]
    fn an_answer_is_taken_only_with_alipays_signature_over_its_raw_text() {
        const KEY: &str = include_str!("../../../tests/tests/fixtures/vendor/platform_key.pem");
        const PUB: &str = include_str!("../../../tests/tests/fixtures/vendor/platform_pub.pem");
        const OTHER: &str = include_str!("../../../tests/tests/fixtures/vendor/merchant_key.pem");
        let alipay = RsaVerifier::from_pem(PUB).unwrap();
        // Alipay's spacing and order, not serde's.
        let content = r#"{"msg":"Success","code":"10000","qr_code":"https://qr.alipay.com/x"}"#;
        let answer = |key: &str, content: &str| {
            let sign = RsaSigner::from_pem(key)
                .unwrap()
                .sign_b64(content.as_bytes())
                .unwrap();
            format!(r#"{{"k_response":{content},"sign":"{sign}"}}"#)
        };
        let v = verified_answer(&answer(KEY, content), "k_response", &alipay).unwrap();
        assert_eq!(v["qr_code"], "https://qr.alipay.com/x");
        assert_eq!(
            verified_answer(&answer(OTHER, content), "k_response", &alipay),
            Err(AnswerError::Forged)
        );
        let altered = answer(KEY, content).replace("qr.alipay.com/x", "evil.example/x");
        assert_eq!(
            verified_answer(&altered, "k_response", &alipay),
            Err(AnswerError::Forged)
        );
        assert_eq!(
            verified_answer(
                &format!(r#"{{"k_response":{content}}}"#),
                "k_response",
                &alipay
            ),
            Err(AnswerError::Unsigned)
        );
        assert_eq!(
            verified_answer(&answer(KEY, content), "other_response", &alipay),
            Err(AnswerError::Missing("other_response".into()))
        );
    }

    #[test]
    fn amounts_are_yuan_with_two_decimals() {
        assert_eq!(yuan(186_050), "1860.50");
        assert_eq!(yuan(5), "0.05");
        assert_eq!(fen_of("1860.50"), Some(186_050));
        assert_eq!(fen_of("1860.5"), Some(186_050));
        assert_eq!(fen_of("1860"), Some(186_000));
        for bad in ["", ".5", "1.234", "-1.00", "1,00", "1e3"] {
            assert_eq!(fen_of(bad), None, "{bad}");
        }
    }
}
