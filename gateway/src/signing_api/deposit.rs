//! Step 4, the deposit (租赁保证金): an order at the payment provider, its QR code as an
//! inline SVG (the phone scans it from another device: long-press recognition does not
//! work), paid through the provider's signed notification ([`super::notify`]).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use xuanfang_allocator::SigningView;
use xuanfang_hub::signing::Actor;
use xuanfang_hub::{BatchId, ErrorCode, Millis, SigningAction};

use super::{
    alloc_err, ensure_open, no_provider, page_of, provider_down, rejected, signing_of,
    IdempotencyKey, Signing, SigningPage, Viewer, PROVIDER_EXPIRY_MARGIN_MS,
};
use crate::app::App;
use crate::caller::FamilyTarget;
use crate::http_error::ApiError;
use crate::providers::payment::{OrderRequest, PayOrder};

/// What ordering the deposit answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DepositOrdered {
    pub out_trade_no: String,
    pub amount_fen: u64,
    /// The hub's expiry of the order.
    pub expires_at: Millis,
    /// What the QR code encodes, and the provider's page for it.
    pub qr_payload: String,
    /// The QR code of `qr_payload` as an inline SVG (`<svg …>`), for the phone to show.
    pub qr_svg: String,
    pub pay_url: String,
    /// The provider's (earlier) expiry.
    pub provider_expires_at: Millis,
    pub signing: SigningPage,
}

pub async fn order_deposit(
    State(app): State<Arc<App>>,
    t: FamilyTarget,
    IdempotencyKey(req_id): IdempotencyKey,
) -> Result<Json<DepositOrdered>, ApiError> {
    let sg = signing_of(&app)?;
    sg.payment.as_ref().ok_or_else(no_provider)?;
    ensure_open(&app, sg, &t.hub.batch, &t.family).await?;
    let actor = Actor::Family(t.family.clone());
    let action = SigningAction::OrderDeposit {
        out_trade_no: crate::providers::random_ref("D"),
    };
    let r = sg
        .store
        .sign(&t.hub.batch, &t.family, &actor, &req_id, action)
        .await
        .map_err(alloc_err)?;
    let view = match r {
        Ok(v) => v,
        // The family lost its QR code: show the live order's again.
        Err(rej) if rej.code == ErrorCode::OrderPending => {
            match sg
                .store
                .signing_view(&t.hub.batch, &t.family)
                .await
                .map_err(alloc_err)?
            {
                Some(v) if v.live_order.is_some() => v,
                _ => return Err(rejected(rej)),
            }
        }
        Err(rej) => return Err(rejected(rej)),
    };
    // The order in the record (a repeated request answers its first order).
    let order = view
        .live_order
        .clone()
        .ok_or_else(|| rejected(ErrorCode::OrderExpired.into()))?;
    let qr = provider_order(sg, &t.hub.batch, &view, app.now()).await?;
    Ok(Json(DepositOrdered {
        out_trade_no: order.out_trade_no,
        amount_fen: order.amount_fen,
        expires_at: order.expires_at,
        qr_svg: qr_svg(&qr.qr_payload),
        qr_payload: qr.qr_payload,
        pay_url: qr.pay_url,
        provider_expires_at: qr.expires_at,
        signing: page_of(sg, view, Viewer::Family),
    }))
}

/// The provider's order for the record's live order (created, or for an order it knows,
/// answered again); its QR payload is remembered for the pages.
async fn provider_order(
    sg: &Signing,
    batch: &BatchId,
    view: &SigningView,
    now: Millis,
) -> Result<PayOrder, ApiError> {
    let pay = sg.payment.as_ref().ok_or_else(no_provider)?;
    let order =
        (view.live_order.as_ref()).ok_or_else(|| rejected(ErrorCode::OrderExpired.into()))?;
    let provider_expires_at = order.expires_at.plus_ms(-PROVIDER_EXPIRY_MARGIN_MS);
    let qr = pay
        .create_order(OrderRequest {
            batch: batch.clone(),
            out_trade_no: order.out_trade_no.clone(),
            amount_fen: order.amount_fen,
            expires_at: provider_expires_at,
            description: format!("租赁保证金 {} {}", view.lease.building, view.lease.number),
        })
        .await
        .map_err(provider_down)?;
    sg.remember_qr(&order.out_trade_no, &qr.qr_payload, order.expires_at, now);
    Ok(qr)
}

/// Before a page is shown: a live order whose payload this gateway does not hold (it
/// was made on another gateway, or before a restart) is asked of the provider again,
/// so the page carries its QR code. A provider failure only leaves the code out.
pub(crate) async fn recall_qr(sg: &Signing, batch: &BatchId, view: &SigningView, now: Millis) {
    let Some(order) = &view.live_order else {
        return;
    };
    if sg.qr_of(&order.out_trade_no).is_some() || sg.payment.is_none() {
        return;
    }
    if let Err(e) = provider_order(sg, batch, view, now).await {
        tracing::warn!(code = ?e.code, detail = ?e.detail, "no QR code for the page");
    }
}

/// The QR code of `payload` as an SVG element (no XML declaration, so it can be put in
/// a page as it is), black on white with the standard quiet zone, scaled by its viewBox.
pub fn qr_svg(payload: &str) -> String {
    use qrcode::render::svg;
    match qrcode::QrCode::new(payload.as_bytes()) {
        Ok(code) => {
            let full = code
                .render::<svg::Color<'_>>()
                .min_dimensions(240, 240)
                .quiet_zone(true)
                .build();
            // The renderer starts with an XML declaration: drop it for inline use.
            match full.find("<svg") {
                Some(i) => full[i..].to_owned(),
                None => full,
            }
        }
        // Longer than a QR code holds (a few KB): the provider's payloads are short URLs.
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::qr_svg;

    #[test]
    fn the_qr_code_is_an_svg_that_depends_on_the_payload() {
        let a = qr_svg("sandbox://pay/D0001");
        let b = qr_svg("sandbox://pay/D0002");
        assert!(a.starts_with("<svg") && a.ends_with("</svg>"), "{a}");
        assert!(a.contains("viewBox"));
        assert_ne!(a, b);
        assert_eq!(a, qr_svg("sandbox://pay/D0001"), "same payload, same code");
    }
}
