//! The payment provider's notification: verified by its signature over the raw body,
//! then given to the engine as the payment provider's callback.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Serialize;
use xuanfang_hub::signing::Actor;
use xuanfang_hub::{ErrorCode, SigningAction};

use super::{alloc_err, err, Signing};
use crate::app::App;
use crate::http_error::ApiError;

/// What the notification route answers a verified notification.
#[derive(Debug, Serialize)]
pub struct NotifyAnswer {
    /// Taken: the deposit is paid (or was already).
    pub accepted: bool,
    /// Not taken: the money must go back (the refund is not automated yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<ErrorCode>,
}

/// Verifies, then gives the payment to the engine as the payment provider's callback.
pub async fn payment_notify(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<NotifyAnswer>, ApiError> {
    let unsigned = || err(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized);
    let sg = app.signing().ok_or_else(unsigned)?;
    let pay = sg.payment.as_ref().ok_or_else(unsigned)?;
    let n = pay.verify_notification(&headers, &body).map_err(|e| {
        tracing::warn!("payment notification refused: {e}");
        unsigned().detail(e.to_string())
    })?;
    receive_payment(sg, n).await
}

pub(crate) async fn receive_payment(
    sg: &Signing,
    n: crate::providers::payment::PaymentNotification,
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
            accepted: true,
            refused: None,
        })),
        Err(rej) => {
            tracing::warn!(
                batch = %n.batch, order = %n.out_trade_no, txn = %n.provider_txn_id,
                amount_fen = n.amount_fen, code = ?rej.code,
                "payment not taken: it must be refunded"
            );
            Ok(Json(NotifyAnswer {
                accepted: false,
                refused: Some(rej.code),
            }))
        }
    }
}
