//! The operators' review (审核): the queue by status, a record, approve, return a step
//! with a reason, unlock the face check.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use xuanfang_allocator::{SigningFilter, SigningView};
use xuanfang_hub::signing::{Actor, Step};
use xuanfang_hub::{BatchId, ErrorCode, FamilyId, SigningAction};

use super::{
    alloc_err, answer, doc_flags, err, page_of, signing_of, DocFlag, IdempotencyKey, SigningPage,
    Viewer,
};
use crate::app::App;
use crate::caller::{Operator, Target};
use crate::http_error::ApiError;
use crate::refunds::{RefundEntry, RefundStatus};

/// `?status=` of the queue (default `in_review`).
#[derive(Debug, Deserialize)]
pub struct QueueParams {
    pub status: Option<SigningFilter>,
}

/// A row of the queue: the view and the documents' flags (the console shows both).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueRow {
    #[serde(flatten)]
    pub view: SigningView,
    pub doc_flags: Vec<DocFlag>,
}

pub async fn queue(
    State(app): State<Arc<App>>,
    _op: Operator,
    Target(hub): Target,
    Query(q): Query<QueueParams>,
) -> Result<Json<Vec<QueueRow>>, ApiError> {
    let sg = signing_of(&app)?;
    let filter = q.status.unwrap_or(SigningFilter::InReview);
    let recs = sg
        .store
        .signing_queue(&hub.batch, filter)
        .await
        .map_err(alloc_err)?;
    let now = app.now();
    let rows = recs
        .iter()
        .map(|r| QueueRow {
            doc_flags: doc_flags(r.applicant()),
            view: SigningView::of(r, now),
        })
        .collect();
    Ok(Json(rows))
}

pub async fn record(
    State(app): State<Arc<App>>,
    _op: Operator,
    Target(hub): Target,
    Path(family): Path<String>,
) -> Result<Json<SigningPage>, ApiError> {
    let sg = signing_of(&app)?;
    let view = sg
        .store
        .signing_view(&hub.batch, &FamilyId(family))
        .await
        .map_err(alloc_err)?
        .ok_or_else(|| err(StatusCode::NOT_FOUND, ErrorCode::NotSelected))?;
    let identity = sg.identity_of(&hub.batch, &view.family).await?;
    let mut page = page_of(sg, view, Viewer::Operator);
    if let Some(name) = identity.as_ref().and_then(|i| i.full_name.as_deref()) {
        page.doc_flags = doc_flags(name);
    }
    // The review record is where an operator checks the lease's tenant: whole.
    page.identity = identity.as_ref().map(super::identity::IdentityShown::whole);
    // The refunds of the family's payments: its orders name them in the refund ledger.
    if let Some(rec) = (sg.store.signing(&hub.batch, &page.view.family).await).map_err(alloc_err)? {
        let orders = rec.orders();
        page.refunds = (sg.refunds.entries().await?.into_iter())
            .filter(|e| e.batch == hub.batch && orders.contains(&e.req.out_trade_no))
            .collect();
        page.refunds.sort_by_key(|e| e.at);
    }
    Ok(Json(page))
}

/// `?status=` of the refund list (default: every refund).
#[derive(Debug, Deserialize)]
pub struct RefundParams {
    pub status: Option<RefundStatus>,
}

/// The batch's refunds, newest first (whichever gateway asked them); `?status=failed`
/// lists those an operator must settle by hand.
pub async fn refunds(
    State(app): State<Arc<App>>,
    _op: Operator,
    Target(hub): Target,
    Query(q): Query<RefundParams>,
) -> Result<Json<Vec<RefundEntry>>, ApiError> {
    let sg = signing_of(&app)?;
    let mut v: Vec<_> = (sg.refunds.entries().await?.into_iter())
        .filter(|e| e.batch == hub.batch && q.status.is_none_or(|s| e.status == s))
        .collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.at));
    Ok(Json(v))
}

async fn operate(
    app: &App,
    who: String,
    batch: &BatchId,
    family: String,
    req_id: &str,
    action: SigningAction,
) -> Result<Json<SigningPage>, ApiError> {
    let sg = signing_of(app)?;
    let actor = Actor::Operator(xuanfang_hub::OperatorId(who));
    let view = answer(
        sg.store
            .sign(batch, &FamilyId(family), &actor, req_id, action)
            .await,
    )?;
    Ok(Json(page_of(sg, view, Viewer::Operator)))
}

pub async fn approve(
    State(app): State<Arc<App>>,
    Operator(who): Operator,
    Target(hub): Target,
    IdempotencyKey(req_id): IdempotencyKey,
    Path(family): Path<String>,
) -> Result<Json<SigningPage>, ApiError> {
    operate(
        &app,
        who,
        &hub.batch,
        family,
        &req_id,
        SigningAction::Approve,
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RejectBody {
    /// The step returned to the family: `details`, `face`, `contract` or `deposit`.
    pub step: Step,
    pub reason: String,
}

pub async fn reject(
    State(app): State<Arc<App>>,
    Operator(who): Operator,
    Target(hub): Target,
    IdempotencyKey(req_id): IdempotencyKey,
    Path(family): Path<String>,
    body: Result<Json<RejectBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SigningPage>, ApiError> {
    let Json(b) = body
        .map_err(|e| err(StatusCode::BAD_REQUEST, ErrorCode::BadRequest).detail(e.body_text()))?;
    let action = SigningAction::Reject {
        step: b.step,
        reason: b.reason,
    };
    let family = FamilyId(family);
    let page = operate(&app, who, &hub.batch, family.0.clone(), &req_id, action).await?;
    // A rejection of the deposit voids its payment: refunded now, not at the next sweep
    // (and the demo runs none). Once either way: the journal knows it afterwards.
    let sg = signing_of(&app)?;
    match sg.store.signing(&hub.batch, &family).await {
        Ok(Some(rec)) => {
            super::notify::refund_voided(sg, &hub.batch, &rec, app.now()).await;
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("refund of a voided payment left to the sweep: {e}"),
    }
    Ok(page)
}

pub async fn unlock_face(
    State(app): State<Arc<App>>,
    Operator(who): Operator,
    Target(hub): Target,
    IdempotencyKey(req_id): IdempotencyKey,
    Path(family): Path<String>,
) -> Result<Json<SigningPage>, ApiError> {
    operate(
        &app,
        who,
        &hub.batch,
        family,
        &req_id,
        SigningAction::UnlockFace,
    )
    .await
}
