//! The payment provider's notification: verified by its signature over the raw body,
//! then given to the engine as the payment provider's callback. A payment the engine
//! refuses is refunded ([`crate::refunds`]).
//!
//! The answers are the ones WeChat Pay expects (and the others accept): 200 with
//! `{"code":"SUCCESS"}` once the notification is received (taken or refused: a refused
//! payment is being refunded, so the provider must not send it again), a 4xx/5xx with
//! `{"code":"FAIL","message":…}` when it is not believed or cannot be recorded (the
//! provider retries). Repeats are de-duplicated by the notification's id (the engine's
//! request id `pay:<id>`: its inbox).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use xuanfang_hub::signing::Actor;
use xuanfang_hub::{ErrorCode, Millis, SigningAction};

use super::{alloc_err, Signing};
use crate::app::App;
use crate::http_error::ApiError;
use crate::providers::payment::{NotifyError, PaymentNotification, RefundNotification};
use crate::refunds::{RefundError, Settled};

/// What the notification route answers a verified notification.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotifyAnswer {
    /// `SUCCESS`: received (the provider stops sending it).
    pub code: &'static str,
    /// Taken: the deposit is paid (or was already).
    pub accepted: bool,
    /// Not taken: the money goes back (a refund is started).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<ErrorCode>,
}

/// A notification not received: the provider retries it.
fn fail(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"code": "FAIL", "message": message})),
    )
        .into_response()
}

/// Verifies, then gives the payment to the engine as the payment provider's callback.
pub async fn payment_notify(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(sg) = app.signing() else {
        return fail(StatusCode::UNAUTHORIZED, "signing is not enabled");
    };
    let Some(pay) = sg.payment.as_ref() else {
        return fail(StatusCode::UNAUTHORIZED, "no payment provider");
    };
    // A provider that wants a bare word back (Alipay) gets it, with the same statuses.
    let fail = |status: StatusCode, message: &str| match pay.plain_reply(false) {
        Some(word) => (status, word).into_response(),
        None => fail(status, message),
    };
    // A refund's outcome (WeChat Pay's REFUND.* events) comes to the same route.
    match pay.verify_refund_notification(&headers, &body, app.now()) {
        Ok(None) => {}
        Ok(Some(rn)) => {
            return match refund_outcome(sg, &rn, app.now()).await {
                Ok(a) => a.into_response(),
                Err(e) => {
                    tracing::error!("{e}");
                    fail(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "not recorded, send it again",
                    )
                }
            };
        }
        Err(e) => {
            tracing::warn!("refund notification refused: {e}");
            let status = match e {
                NotifyError::Malformed(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNAUTHORIZED,
            };
            return fail(status, &e.to_string());
        }
    }
    let n = match pay.verify_notification(&headers, &body, app.now()) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("payment notification refused: {e}");
            let status = match e {
                NotifyError::Malformed(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNAUTHORIZED,
            };
            return fail(status, &e.to_string());
        }
    };
    match receive_payment(sg, n, app.now()).await {
        Ok(a) => match pay.plain_reply(true) {
            Some(word) => word.into_response(),
            None => a.into_response(),
        },
        Err(e) => {
            tracing::warn!(code = ?e.code, detail = ?e.detail, "payment notification not recorded");
            fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "not recorded, send it again",
            )
        }
    }
}

/// A verified payment (from a notification, or found by the reconciliation sweep) given
/// to the engine; a refusal starts its refund.
pub(crate) async fn receive_payment(
    sg: &Signing,
    n: PaymentNotification,
    now: Millis,
) -> Result<Json<NotifyAnswer>, ApiError> {
    let action = SigningAction::DepositPaid {
        out_trade_no: n.out_trade_no.clone(),
        provider_txn_id: n.provider_txn_id.clone(),
        amount_fen: n.amount_fen,
    };
    let req_id = format!("pay:{}", n.event_id);
    let r = sg
        .store
        .signing_callback(&n.batch, &Actor::PaymentProvider, &req_id, action)
        .await
        .map_err(alloc_err)?;
    match r {
        Ok(_) => Ok(Json(NotifyAnswer {
            code: "SUCCESS",
            accepted: true,
            refused: None,
        })),
        Err(rej) => {
            tracing::warn!(
                batch = %n.batch, order = %n.out_trade_no, txn = %n.provider_txn_id,
                amount_fen = n.amount_fen, code = ?rej.code,
                "payment not taken: refunding it"
            );
            let reason = serde_json::to_value(rej.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "refused".into());
            start_refund(sg, &n, &reason, now).await;
            Ok(Json(NotifyAnswer {
                code: "SUCCESS",
                accepted: false,
                refused: Some(rej.code),
            }))
        }
    }
}

/// A verified refund notification recorded in the refund ledger (the deployment's: the
/// refund may have been asked by another gateway). Received (SUCCESS) whether or not it
/// changed anything: a repeat, one of a refund already settled, or one that is not ours
/// (unknown number, another amount; logged) must not be sent again.
async fn refund_outcome(
    sg: &Signing,
    rn: &RefundNotification,
    now: Millis,
) -> Result<Json<NotifyAnswer>, RefundError> {
    let s = (sg.refunds.settle(
        &rn.out_refund_no,
        &rn.state,
        Some(rn.amount_fen),
        Some(&rn.event_id),
        now,
    ))
    .await?;
    if s == Settled::NotOurs {
        tracing::error!(refund = %rn.out_refund_no, amount_fen = rn.amount_fen, "refund notification of no refund of ours: ignored");
    }
    Ok(Json(NotifyAnswer {
        code: "SUCCESS",
        accepted: matches!(s, Settled::Changed(_) | Settled::Unchanged(_)),
        refused: None,
    }))
}

/// Records the refund of `n` (durably, before answering) and asks the provider in the
/// background: the notification's answer does not wait for the refund, and the sweep
/// asks again if this call fails.
pub(crate) async fn start_refund(sg: &Signing, n: &PaymentNotification, reason: &str, now: Millis) {
    let Some(pay) = sg.payment.clone() else {
        return;
    };
    let refunds = sg.refunds.clone();
    let req = crate::refunds::request_for(n, reason);
    let batch = n.batch.clone();
    if let Err(e) = refunds.note(&batch, &req, now).await {
        tracing::error!("{e}");
    }
    tokio::spawn(async move {
        if let Err(e) = refunds.refund(&*pay, &batch, req, now).await {
            tracing::error!("{e}");
        }
    });
}

/// Starts the refund of every payment of `rec` voided by a rejection of the deposit that
/// the refund ledger does not know yet; answers how many. The reviewer's rejection calls it
/// at once and the reconciliation sweep again (for a rejection whose gateway stopped
/// before it ran): once either way, as the refund number is the payment's.
pub(crate) async fn refund_voided(
    sg: &Signing,
    batch: &xuanfang_hub::BatchId,
    rec: &xuanfang_hub::SigningRecord,
    now: Millis,
) -> usize {
    let mut started = 0;
    for v in rec.voided_payments() {
        let no = crate::refunds::out_refund_no(&v.provider_txn_id);
        match sg.refunds.entry(&no).await {
            Ok(None) => {}
            Ok(Some(_)) => continue,
            // Unknown for now: the next sweep looks again.
            Err(e) => {
                tracing::error!("{e}");
                continue;
            }
        }
        let n = PaymentNotification {
            event_id: String::new(),
            batch: batch.clone(),
            out_trade_no: v.out_trade_no.clone(),
            provider_txn_id: v.provider_txn_id.clone(),
            amount_fen: v.amount_fen,
        };
        start_refund(sg, &n, "deposit_voided", now).await;
        started += 1;
    }
    started
}
