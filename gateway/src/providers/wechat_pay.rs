//! 微信支付 APIv3, Native payment (扫码支付): the order's `code_url` is the QR payload.
//!
//! - Every request is signed `WECHATPAY2-SHA256-RSA2048` with the merchant's API key
//!   (RSA-SHA256 over `METHOD\nURL\ntimestamp\nnonce\nbody\n`), and every answer's
//!   `Wechatpay-Signature` is checked with the platform's public key.
//! - A notification is believed only with a valid `Wechatpay-Signature` (RSA-SHA256 over
//!   `timestamp\nnonce\nbody\n`) whose `Wechatpay-Timestamp` is within 5 minutes of now;
//!   its `resource` is then decrypted (AEAD_AES_256_GCM under the APIv3 key) and must be a
//!   `SUCCESS` transaction of our `mchid` and `appid`.
//! - The batch travels in the order's `attach`, so a notification names it.
//!
//! The platform key is the 微信支付公钥 (public key mode, its id in `Wechatpay-Serial`), or
//! the platform certificate (平台证书, `BEGIN CERTIFICATE`, [`super::certificate`]): its
//! serial is then the `Wechatpay-Serial` required, and a signature is believed only while
//! the certificate is valid.

use async_trait::async_trait;
use axum::http::HeaderMap;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use xuanfang_hub::{BatchId, Millis};

use super::certificate::{is_certificate, PlatformCertificate};
use super::keys::{RsaSigner, RsaVerifier};
use super::payment::{
    NotifyError, OrderQuery, OrderRequest, PayOrder, PaymentNotification, PaymentProvider,
    RefundNotification, RefundRequest, RefundState,
};
use super::{random_ref, ProviderError};

/// How far a notification's timestamp may be from now.
pub const NOTIFY_WINDOW_MS: i64 = 5 * 60_000;

/// The merchant's settings (`[payment]` with `vendor = "wechat"`).
#[derive(Clone)]
pub struct WechatPayConfig {
    /// `https://api.mch.weixin.qq.com` (a test's local server in tests).
    pub base_url: String,
    pub appid: String,
    pub mchid: String,
    /// The serial number of the merchant's API certificate.
    pub serial_no: String,
    /// Where WeChat posts notifications: our `/api/providers/payment/notify`.
    pub notify_url: String,
    /// The merchant's API private key, PKCS#8 PEM (`apiclient_key.pem`).
    pub private_key_pem: String,
    /// The platform's public key (`BEGIN PUBLIC KEY`) or its certificate
    /// (`BEGIN CERTIFICATE`), PEM.
    pub platform_public_key_pem: String,
    /// The public key's id (`PUB_KEY_ID_…`): `Wechatpay-Serial` must be it. Empty: not
    /// checked. With a certificate, its serial is required; this, when given, must be it.
    pub platform_serial: String,
    /// The APIv3 key (32 bytes) that encrypts notification resources.
    pub api_v3_key: [u8; 32],
}

impl std::fmt::Debug for WechatPayConfig {
    // Keys never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatPayConfig")
            .field("base_url", &self.base_url)
            .field("appid", &self.appid)
            .field("mchid", &self.mchid)
            .field("serial_no", &self.serial_no)
            .field("notify_url", &self.notify_url)
            .finish_non_exhaustive()
    }
}

pub struct WechatPay {
    cfg: WechatPayConfig,
    signer: RsaSigner,
    platform: RsaVerifier,
    /// The platform certificate, when given as one (its validity is checked).
    certificate: Option<PlatformCertificate>,
    http: reqwest::Client,
}

fn now_millis() -> Millis {
    Millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
    )
}

/// The transaction of a notification's resource or a query's answer.
#[derive(Debug, Deserialize)]
struct Transaction {
    appid: String,
    mchid: String,
    out_trade_no: String,
    #[serde(default)]
    transaction_id: String,
    trade_state: String,
    #[serde(default)]
    attach: String,
    #[serde(default)]
    amount: Option<Amount>,
}

#[derive(Debug, Deserialize)]
struct Amount {
    total: u64,
}

#[derive(Debug, Deserialize)]
struct Notification {
    id: String,
    /// `TRANSACTION.SUCCESS`, or `REFUND.SUCCESS` / `REFUND.ABNORMAL` / `REFUND.CLOSED`.
    #[serde(default)]
    event_type: String,
    resource: Resource,
}

/// The refund of a `REFUND.*` notification's resource, or of a refund query's answer.
#[derive(Debug, Deserialize)]
struct Refund {
    #[serde(default)]
    mchid: String,
    out_refund_no: String,
    /// Query: `status`; notification: `refund_status`.
    #[serde(default, alias = "refund_status")]
    status: String,
    #[serde(default)]
    amount: Option<RefundAmount>,
}

#[derive(Debug, Deserialize)]
struct RefundAmount {
    refund: u64,
}

/// A refund status word as the journal's state.
fn refund_state(status: &str) -> RefundState {
    match status {
        "SUCCESS" => RefundState::Succeeded,
        "PROCESSING" => RefundState::Accepted,
        // CLOSED (closed by WeChat), ABNORMAL (the payer's account cannot take it back).
        other => RefundState::Failed(format!("wechat pay refund {other}")),
    }
}

#[derive(Debug, Deserialize)]
struct Resource {
    algorithm: String,
    ciphertext: String,
    #[serde(default)]
    associated_data: String,
    nonce: String,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Decrypts a notification resource: AEAD_AES_256_GCM, the tag at the end of the
/// ciphertext.
pub fn decrypt_resource(
    key: &[u8; 32],
    nonce: &str,
    associated_data: &str,
    ciphertext_b64: &str,
) -> Result<Vec<u8>, NotifyError> {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let bad = |m: &str| NotifyError::Malformed(m.to_owned());
    let mut data = b64()
        .decode(ciphertext_b64)
        .map_err(|_| bad("ciphertext is not base64"))?;
    let nonce = Nonce::try_assume_unique_for_key(nonce.as_bytes())
        .map_err(|_| bad("nonce is not 12 bytes"))?;
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| bad("key"))?);
    let plain = key
        .open_in_place(nonce, Aad::from(associated_data.as_bytes()), &mut data)
        .map_err(|_| NotifyError::Forged)?;
    Ok(plain.to_vec())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

impl WechatPay {
    pub fn new(cfg: WechatPayConfig) -> Result<Self, ProviderError> {
        Self::new_at(cfg, now_millis())
    }

    /// The same, a certificate's validity judged at `now` (tests inject it).
    pub fn new_at(mut cfg: WechatPayConfig, now: Millis) -> Result<Self, ProviderError> {
        let signer = RsaSigner::from_pem(&cfg.private_key_pem)?;
        let (platform, certificate) = if is_certificate(&cfg.platform_public_key_pem) {
            let cert = PlatformCertificate::from_pem(&cfg.platform_public_key_pem)?;
            if !cfg.platform_serial.is_empty()
                && !cfg.platform_serial.eq_ignore_ascii_case(&cert.serial)
            {
                return Err(ProviderError(format!(
                    "platform_serial {} is not the certificate's serial {}",
                    cfg.platform_serial, cert.serial
                )));
            }
            if now > cert.not_after {
                return Err(ProviderError(format!(
                    "the platform certificate {} has expired",
                    cert.serial
                )));
            }
            cfg.platform_serial = cert.serial.clone();
            (cert.key.clone(), Some(cert))
        } else {
            (RsaVerifier::from_pem(&cfg.platform_public_key_pem)?, None)
        };
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| ProviderError(e.to_string()))?;
        Ok(Self {
            cfg,
            signer,
            platform,
            certificate,
            http,
        })
    }

    /// The `Authorization` header of a request.
    fn authorization(
        &self,
        method: &str,
        url: &str,
        body: &str,
        timestamp: i64,
        nonce: &str,
    ) -> Result<String, ProviderError> {
        let msg = format!("{method}\n{url}\n{timestamp}\n{nonce}\n{body}\n");
        let signature = self.signer.sign_b64(msg.as_bytes())?;
        Ok(format!(
            "WECHATPAY2-SHA256-RSA2048 mchid=\"{}\",nonce_str=\"{nonce}\",signature=\"{signature}\",timestamp=\"{timestamp}\",serial_no=\"{}\"",
            self.cfg.mchid, self.cfg.serial_no
        ))
    }

    /// The platform certificate, when the key was given as one.
    pub fn certificate(&self) -> Option<&PlatformCertificate> {
        self.certificate.as_ref()
    }

    /// Whether `headers` carry the platform's signature of `body`, made while its
    /// certificate (if any) is valid at `now`.
    fn signed_by_platform(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: Millis,
    ) -> Result<i64, NotifyError> {
        if self.certificate.as_ref().is_some_and(|c| !c.valid_at(now)) {
            return Err(NotifyError::CertificateInvalid);
        }
        let (Some(ts), Some(nonce), Some(sig)) = (
            header(headers, "wechatpay-timestamp"),
            header(headers, "wechatpay-nonce"),
            header(headers, "wechatpay-signature"),
        ) else {
            return Err(NotifyError::Unsigned);
        };
        if !self.cfg.platform_serial.is_empty()
            && header(headers, "wechatpay-serial") != Some(self.cfg.platform_serial.as_str())
        {
            return Err(NotifyError::Unsigned);
        }
        let ts_num: i64 = ts.parse().map_err(|_| NotifyError::Unsigned)?;
        let mut msg = format!("{ts}\n{nonce}\n").into_bytes();
        msg.extend_from_slice(body);
        msg.push(b'\n');
        if !self.platform.verify_b64(&msg, sig) {
            return Err(NotifyError::Forged);
        }
        Ok(ts_num)
    }

    /// One signed call; the answer's status and JSON (checked to be the platform's).
    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), ProviderError> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let nonce = random_ref("");
        let auth = self.authorization(method.as_str(), url, &body, ts, &nonce)?;
        let mut req = self
            .http
            .request(method.clone(), format!("{}{url}", self.cfg.base_url))
            .header("Authorization", auth)
            .header("Accept", "application/json");
        if method != reqwest::Method::GET {
            req = req.header("Content-Type", "application/json").body(body);
        }
        let res = req
            .send()
            .await
            .map_err(|e| ProviderError(format!("wechat pay: {e}")))?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res
            .bytes()
            .await
            .map_err(|e| ProviderError(format!("wechat pay: {e}")))?;
        // Only an answer the platform signed is believed (an error page of a proxy is not).
        if let Err(e) = self.signed_by_platform(&headers, &bytes, now_millis()) {
            return Err(ProviderError(format!(
                "wechat pay answer {status} not signed by the platform: {e}"
            )));
        }
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| ProviderError(format!("wechat pay answer: {e}")))?
        };
        Ok((status, v))
    }

    /// A notification whose signature, age and encryption check out, and its resource.
    fn verified(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: Millis,
    ) -> Result<(Notification, Vec<u8>), NotifyError> {
        let ts = self.signed_by_platform(headers, body, now)?;
        if (now.0 - ts.saturating_mul(1000)).abs() > NOTIFY_WINDOW_MS {
            return Err(NotifyError::Stale);
        }
        let n: Notification =
            serde_json::from_slice(body).map_err(|e| NotifyError::Malformed(e.to_string()))?;
        if n.resource.algorithm != "AEAD_AES_256_GCM" {
            return Err(NotifyError::Malformed("unknown algorithm".into()));
        }
        let plain = decrypt_resource(
            &self.cfg.api_v3_key,
            &n.resource.nonce,
            &n.resource.associated_data,
            &n.resource.ciphertext,
        )?;
        Ok((n, plain))
    }

    fn check_ours(&self, t: &Transaction) -> Result<(), NotifyError> {
        if t.mchid != self.cfg.mchid || t.appid != self.cfg.appid {
            return Err(NotifyError::NotOurs("another merchant or app".into()));
        }
        Ok(())
    }
}

fn rfc3339_shanghai(at: Millis) -> Result<String, ProviderError> {
    let t = time::OffsetDateTime::from_unix_timestamp(at.0.div_euclid(1000))
        .map_err(|e| ProviderError(e.to_string()))?
        .to_offset(time::macros::offset!(+8));
    t.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| ProviderError(e.to_string()))
}

fn fail_message(v: &Value) -> String {
    format!(
        "{} {}",
        v["code"].as_str().unwrap_or("?"),
        v["message"].as_str().unwrap_or("")
    )
}

#[async_trait]
impl PaymentProvider for WechatPay {
    async fn create_order(&self, req: OrderRequest) -> Result<PayOrder, ProviderError> {
        let body = json!({
            "appid": self.cfg.appid,
            "mchid": self.cfg.mchid,
            // At most 127 bytes at WeChat.
            "description": req.description.chars().take(40).collect::<String>(),
            "out_trade_no": req.out_trade_no,
            "time_expire": rfc3339_shanghai(req.expires_at)?,
            "attach": req.batch.0,
            "notify_url": self.cfg.notify_url,
            "amount": {"total": req.amount_fen, "currency": "CNY"},
        });
        let (status, v) = self
            .call(
                reqwest::Method::POST,
                "/v3/pay/transactions/native",
                Some(body),
            )
            .await?;
        let code_url = v["code_url"].as_str().filter(|_| status == 200);
        let Some(code_url) = code_url else {
            return Err(ProviderError(format!(
                "wechat pay order {status}: {}",
                fail_message(&v)
            )));
        };
        Ok(PayOrder {
            out_trade_no: req.out_trade_no,
            qr_payload: code_url.to_owned(),
            // Native payment has no page: the code is scanned with WeChat.
            pay_url: code_url.to_owned(),
            expires_at: req.expires_at,
        })
    }

    fn verify_notification(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: Millis,
    ) -> Result<PaymentNotification, NotifyError> {
        let (n, plain) = self.verified(headers, body, now)?;
        let t: Transaction =
            serde_json::from_slice(&plain).map_err(|e| NotifyError::Malformed(e.to_string()))?;
        self.check_ours(&t)?;
        if t.trade_state != "SUCCESS" {
            return Err(NotifyError::NotOurs(format!(
                "trade_state {}",
                t.trade_state
            )));
        }
        let amount = t
            .amount
            .ok_or_else(|| NotifyError::Malformed("no amount".into()))?;
        if t.transaction_id.is_empty() || t.attach.is_empty() {
            return Err(NotifyError::Malformed("no transaction id or batch".into()));
        }
        Ok(PaymentNotification {
            event_id: n.id,
            batch: BatchId(t.attach),
            out_trade_no: t.out_trade_no,
            provider_txn_id: t.transaction_id,
            amount_fen: amount.total,
        })
    }

    async fn query_order(
        &self,
        batch: &BatchId,
        out_trade_no: &str,
    ) -> Result<OrderQuery, ProviderError> {
        let url = format!(
            "/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={}",
            self.cfg.mchid
        );
        let (status, v) = self.call(reqwest::Method::GET, &url, None).await?;
        if status == 404 {
            return Ok(OrderQuery::Unknown);
        }
        if status != 200 {
            return Err(ProviderError(format!(
                "wechat pay query {status}: {}",
                fail_message(&v)
            )));
        }
        let t: Transaction =
            serde_json::from_value(v).map_err(|e| ProviderError(format!("query: {e}")))?;
        if t.mchid != self.cfg.mchid || t.appid != self.cfg.appid || t.out_trade_no != out_trade_no
        {
            return Err(ProviderError("query answered another order".into()));
        }
        Ok(match t.trade_state.as_str() {
            // REFUND: it was paid (and refunded since): the payment still happened.
            "SUCCESS" | "REFUND" => OrderQuery::Paid(PaymentNotification {
                // Repeated sweeps find the same payment: one request id for all of them.
                event_id: format!("query-{}", t.transaction_id),
                batch: batch.clone(),
                out_trade_no: t.out_trade_no,
                provider_txn_id: t.transaction_id,
                amount_fen: t.amount.map(|a| a.total).unwrap_or(0),
            }),
            "NOTPAY" | "USERPAYING" => OrderQuery::Open,
            _ => OrderQuery::Closed,
        })
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundState, ProviderError> {
        let body = json!({
            "transaction_id": req.provider_txn_id,
            "out_refund_no": req.out_refund_no,
            "reason": req.reason.chars().take(80).collect::<String>(),
            "amount": {"refund": req.amount_fen, "total": req.amount_fen, "currency": "CNY"},
            // The outcome (REFUND.*) comes to the same route as payments.
            "notify_url": self.cfg.notify_url,
        });
        let (status, v) = self
            .call(
                reqwest::Method::POST,
                "/v3/refund/domestic/refunds",
                Some(body),
            )
            .await?;
        if status != 200 {
            return Err(ProviderError(format!(
                "wechat pay refund {status}: {}",
                fail_message(&v)
            )));
        }
        Ok(refund_state(v["status"].as_str().unwrap_or("?")))
    }

    async fn query_refund(&self, req: &RefundRequest) -> Result<RefundState, ProviderError> {
        let url = format!("/v3/refund/domestic/refunds/{}", req.out_refund_no);
        let (status, v) = self.call(reqwest::Method::GET, &url, None).await?;
        if status != 200 {
            return Err(ProviderError(format!(
                "wechat pay refund query {status}: {}",
                fail_message(&v)
            )));
        }
        let r: Refund =
            serde_json::from_value(v).map_err(|e| ProviderError(format!("refund query: {e}")))?;
        if r.out_refund_no != req.out_refund_no {
            return Err(ProviderError("refund query answered another refund".into()));
        }
        Ok(refund_state(&r.status))
    }

    fn verify_refund_notification(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: Millis,
    ) -> Result<Option<RefundNotification>, NotifyError> {
        // Only the event type is read before the checks, to choose the path: a body that
        // says REFUND.* is believed only once verified exactly like a payment's.
        let is_refund = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["event_type"].as_str().map(|t| t.starts_with("REFUND.")))
            .unwrap_or(false);
        if !is_refund {
            return Ok(None);
        }
        let (n, plain) = self.verified(headers, body, now)?;
        let r: Refund =
            serde_json::from_slice(&plain).map_err(|e| NotifyError::Malformed(e.to_string()))?;
        if r.mchid != self.cfg.mchid {
            return Err(NotifyError::NotOurs("another merchant".into()));
        }
        let amount = r
            .amount
            .ok_or_else(|| NotifyError::Malformed("no amount".into()))?;
        let state = match n.event_type.as_str() {
            "REFUND.SUCCESS" => RefundState::Succeeded,
            "REFUND.ABNORMAL" | "REFUND.CLOSED" => refund_state(&r.status),
            other => return Err(NotifyError::Malformed(format!("event_type {other}"))),
        };
        // The event and the resource must agree (a SUCCESS event of an ABNORMAL refund
        // is not believed as either).
        if state != refund_state(&r.status) {
            return Err(NotifyError::Malformed(format!(
                "{} with refund_status {}",
                n.event_type, r.status
            )));
        }
        Ok(Some(RefundNotification {
            event_id: n.id,
            out_refund_no: r.out_refund_no,
            amount_fen: amount.refund,
            state,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_rfc_3339_in_beijing_time() {
        // 2026-12-01 00:30 +08:00.
        assert_eq!(
            rfc3339_shanghai(Millis(1_796_056_200_000)).unwrap(),
            "2026-12-01T00:30:00+08:00"
        );
    }

    #[test]
    fn a_resource_decrypts_only_with_its_key_and_associated_data() {
        use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
        let key = *b"an-apiv3-key-of-32-bytes-exactly";
        let mut data = br#"{"x":1}"#.to_vec();
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).unwrap())
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(*b"nonce0123456"),
                Aad::from(b"transaction"),
                &mut data,
            )
            .unwrap();
        let ct = b64().encode(&data);
        let plain = decrypt_resource(&key, "nonce0123456", "transaction", &ct).unwrap();
        assert_eq!(plain, br#"{"x":1}"#);
        assert!(decrypt_resource(&key, "nonce0123456", "other", &ct).is_err());
        let other = *b"another-key-of-thirty-two-bytes!";
        assert!(decrypt_resource(&other, "nonce0123456", "transaction", &ct).is_err());
    }
}
