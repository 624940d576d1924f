//! Payment (租赁保证金): [`PaymentProvider::create_order`] gives the QR payload of an
//! order; the provider's notification of a payment is accepted only with a valid
//! signature over the raw body ([`PaymentProvider::verify_notification`]) and is
//! de-duplicated by the provider's event id (the engine's request id for it).

use std::collections::HashMap;

use async_trait::async_trait;
use axum::http::HeaderMap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use xuanfang_hub::{BatchId, Millis};

use super::{hmac_sha256, random_ref, same_bytes, ProviderError};

/// The sandbox's signature header: hex HMAC-SHA256 of the raw body.
pub const SANDBOX_SIGNATURE_HEADER: &str = "x-sandbox-signature";

#[derive(Clone, Debug)]
pub struct OrderRequest {
    pub batch: BatchId,
    pub out_trade_no: String,
    pub amount_fen: u64,
    /// The provider stops accepting payment at this time (earlier than the hub's
    /// expiry, so every accepted payment is notified while the order is live).
    pub expires_at: Millis,
    pub description: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct PayOrder {
    pub out_trade_no: String,
    /// What the QR code encodes.
    pub qr_payload: String,
    /// The provider's page for the order (the sandbox's pay page).
    pub pay_url: String,
    pub expires_at: Millis,
}

/// A verified payment notification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentNotification {
    /// The provider's id of this notification: repeats of it are one request.
    pub event_id: String,
    pub batch: BatchId,
    pub out_trade_no: String,
    pub provider_txn_id: String,
    pub amount_fen: u64,
}

/// Why a notification is not believed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("missing or malformed signature")]
    Unsigned,
    #[error("signature does not match the body")]
    Forged,
    /// Signed under a platform certificate that has expired or is not valid yet.
    #[error("the platform certificate is not valid now")]
    CertificateInvalid,
    #[error("body is not a notification: {0}")]
    Malformed(String),
    /// Signed, but too old or from the future (a replay).
    #[error("timestamp outside the accepted window")]
    Stale,
    /// Signed, but not for this merchant, or not a successful payment.
    #[error("not a payment of ours: {0}")]
    NotOurs(String),
}

/// What the provider says of an order ([`PaymentProvider::query_order`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderQuery {
    /// Paid: the payment, as a notification would carry it.
    Paid(PaymentNotification),
    /// Can still be paid at the provider.
    Open,
    /// Closed, expired or failed at the provider: it will never be paid.
    Closed,
    /// The provider does not know the order.
    Unknown,
}

/// Money to give back: a payment the hub did not take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RefundRequest {
    /// Our refund number, derived from the payment (the provider refunds a number once).
    pub out_refund_no: String,
    pub out_trade_no: String,
    pub provider_txn_id: String,
    pub amount_fen: u64,
    pub reason: String,
}

/// Where a refund stands at the provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    /// Accepted, the money on its way: the outcome comes by notification or query.
    Accepted,
    /// The money is back with the payer.
    Succeeded,
    /// Refused, closed or abnormal at the provider (the reason): an operator must look.
    Failed(String),
}

/// A verified refund notification (WeChat Pay's `REFUND.*` events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundNotification {
    /// The provider's id of this notification: repeats of it change nothing.
    pub event_id: String,
    pub out_refund_no: String,
    pub amount_fen: u64,
    pub state: RefundState,
}

#[async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// Creates (or, for an `out_trade_no` it knows, returns again) an order.
    async fn create_order(&self, req: OrderRequest) -> Result<PayOrder, ProviderError>;
    /// Checks a notification's signature over the raw body, then reads it.
    /// `now` bounds the age of a signed timestamp.
    fn verify_notification(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: Millis,
    ) -> Result<PaymentNotification, NotifyError>;
    /// The bare text the provider expects as the answer to a notification (Alipay:
    /// `success` / `fail`); `None` for the JSON answer (`{"code":"SUCCESS"}`, WeChat Pay).
    fn plain_reply(&self, _received: bool) -> Option<&'static str> {
        None
    }
    /// What the provider knows of an order (the reconciliation sweep asks).
    async fn query_order(
        &self,
        batch: &BatchId,
        out_trade_no: &str,
    ) -> Result<OrderQuery, ProviderError>;
    /// Starts a refund; asking again with the same `out_refund_no` is the same refund.
    async fn refund(&self, req: &RefundRequest) -> Result<RefundState, ProviderError>;
    /// Where a refund accepted earlier stands (the reconciliation sweep asks).
    async fn query_refund(&self, req: &RefundRequest) -> Result<RefundState, ProviderError>;
    /// A refund notification, verified like a payment notification; `Ok(None)` when the
    /// body is not a refund notification (a payment one, or a provider without them).
    fn verify_refund_notification(
        &self,
        _headers: &HeaderMap,
        _body: &[u8],
        _now: Millis,
    ) -> Result<Option<RefundNotification>, NotifyError> {
        Ok(None)
    }
}

#[derive(Clone, Debug)]
pub struct SandboxOrder {
    pub batch: BatchId,
    pub amount_fen: u64,
    pub expires_at: Millis,
    pub qr_payload: String,
    /// The notification sent when paid.
    pub paid: Option<PaymentNotification>,
}

/// 沙箱 payment provider: its pay page (`/sandbox/pay/{order}`) has a button that makes
/// it send a signed notification. Orders live in this process's memory; the key signs
/// its notifications (HMAC-SHA256, header [`SANDBOX_SIGNATURE_HEADER`]).
pub struct SandboxPayment {
    key: [u8; 32],
    orders: Mutex<HashMap<String, SandboxOrder>>,
    /// Refunds asked, by refund number.
    refunds: Mutex<HashMap<String, RefundRequest>>,
}

impl SandboxPayment {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            key,
            orders: Mutex::new(HashMap::new()),
            refunds: Mutex::new(HashMap::new()),
        }
    }

    /// The refunds asked of the sandbox.
    pub fn refunds(&self) -> Vec<RefundRequest> {
        self.refunds.lock().values().cloned().collect()
    }

    /// The hex signature of `body` (the sandbox signs what it sends with it).
    pub fn sign(&self, body: &[u8]) -> String {
        hex::encode(hmac_sha256(&self.key, body))
    }

    pub fn order(&self, out_trade_no: &str) -> Option<SandboxOrder> {
        self.orders.lock().get(out_trade_no).cloned()
    }

    /// The applicant paid `out_trade_no` at `now`: the notification to send and its
    /// signature. The same one again for an order already paid; `None` for an unknown
    /// or expired order.
    pub fn pay(&self, out_trade_no: &str, now: Millis) -> Option<(Vec<u8>, String)> {
        let mut orders = self.orders.lock();
        let o = orders.get_mut(out_trade_no)?;
        if o.paid.is_none() {
            if now >= o.expires_at {
                return None;
            }
            o.paid = Some(PaymentNotification {
                event_id: random_ref("sbe-"),
                batch: o.batch.clone(),
                out_trade_no: out_trade_no.to_owned(),
                provider_txn_id: random_ref("sbt-"),
                amount_fen: o.amount_fen,
            });
        }
        let body = serde_json::to_vec(o.paid.as_ref()?).ok()?;
        let sig = self.sign(&body);
        Some((body, sig))
    }
}

#[async_trait]
impl PaymentProvider for SandboxPayment {
    async fn create_order(&self, req: OrderRequest) -> Result<PayOrder, ProviderError> {
        let mut orders = self.orders.lock();
        let o = orders
            .entry(req.out_trade_no.clone())
            .or_insert_with(|| SandboxOrder {
                batch: req.batch.clone(),
                amount_fen: req.amount_fen,
                expires_at: req.expires_at,
                qr_payload: format!("sandbox://pay/{}", req.out_trade_no),
                paid: None,
            });
        if o.amount_fen != req.amount_fen {
            return Err(ProviderError("order exists with another amount".into()));
        }
        Ok(PayOrder {
            out_trade_no: req.out_trade_no.clone(),
            qr_payload: o.qr_payload.clone(),
            pay_url: format!("/sandbox/pay/{}", req.out_trade_no),
            expires_at: o.expires_at,
        })
    }

    fn verify_notification(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        _now: Millis,
    ) -> Result<PaymentNotification, NotifyError> {
        let sig = headers
            .get(SANDBOX_SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| hex::decode(s.trim()).ok())
            .ok_or(NotifyError::Unsigned)?;
        if !same_bytes(&sig, &hmac_sha256(&self.key, body)) {
            return Err(NotifyError::Forged);
        }
        serde_json::from_slice(body).map_err(|e| NotifyError::Malformed(e.to_string()))
    }

    async fn query_order(
        &self,
        _batch: &BatchId,
        out_trade_no: &str,
    ) -> Result<OrderQuery, ProviderError> {
        Ok(match self.orders.lock().get(out_trade_no) {
            None => OrderQuery::Unknown,
            Some(o) => match &o.paid {
                Some(n) => OrderQuery::Paid(n.clone()),
                None => OrderQuery::Open,
            },
        })
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundState, ProviderError> {
        self.refunds
            .lock()
            .entry(req.out_refund_no.clone())
            .or_insert_with(|| req.clone());
        // The sandbox's money moves at once (and the demo runs no sweep to ask later).
        Ok(RefundState::Succeeded)
    }

    /// The sandbox's money moves at once: a refund it was asked is back.
    async fn query_refund(&self, req: &RefundRequest) -> Result<RefundState, ProviderError> {
        Ok(match self.refunds.lock().get(&req.out_refund_no) {
            Some(_) => RefundState::Succeeded,
            None => return Err(ProviderError("refund unknown to the sandbox".into())),
        })
    }
}
