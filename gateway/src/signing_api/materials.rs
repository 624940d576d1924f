//! Materials (材料管理): the operator issues the move-in notice (入住通知书) once the
//! record is approved; the family and the operators download it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use xuanfang_allocator::SigningView;
use xuanfang_hub::signing::Actor;
use xuanfang_hub::{BatchId, ErrorCode, FamilyId, Millis, SigningAction, SigningEvent};

use super::documents::{file_names, local_date, notice_data};
use super::{
    alloc_err, answer, blob_response, err, fresh, page_of, rejected, signing_of, IdempotencyKey,
    Signing, SigningPage, Viewer,
};
use crate::app::App;
use crate::caller::{FamilyTarget, Operator, Target};
use crate::http_error::ApiError;

/// Entries read per call while looking for a contract's signing time.
const EVENTS_PAGE: usize = 2000;

/// When `family`'s current contract was signed: its last `ContractSigned` in the batch
/// log. The notice prints the lease's term, which starts from that date. A scan of the
/// batch's log: once per notice, an operator's action.
pub(crate) async fn contract_signed_at(
    sg: &Signing,
    batch: &BatchId,
    family: &FamilyId,
) -> Result<Option<Millis>, ApiError> {
    let (mut after, mut found) = (0, None);
    loop {
        let page = (sg.store)
            .signing_events(batch, after, EVENTS_PAGE)
            .await
            .map_err(alloc_err)?;
        for e in &page {
            if &e.family == family && matches!(e.event, SigningEvent::ContractSigned { .. }) {
                found = Some(e.at);
            }
        }
        match page.last() {
            Some(last) if page.len() == EVENTS_PAGE => after = last.seq,
            _ => return Ok(found),
        }
    }
}

/// `POST /api/ops/signing/{family}/notice`: renders the notice from the record and the
/// bureau's terms, stores it, `IssueNotice`. Only once approved (`step_locked` before,
/// and nothing is stored). The same notice again (same day) reuses the stored file.
pub async fn issue_notice(
    State(app): State<Arc<App>>,
    Operator(who): Operator,
    Target(hub): Target,
    IdempotencyKey(req_id): IdempotencyKey,
    Path(family): Path<String>,
) -> Result<Json<SigningPage>, ApiError> {
    let sg = signing_of(&app)?;
    let family = FamilyId(family);
    let view: SigningView = (sg.store.signing_view(&hub.batch, &family).await)
        .map_err(alloc_err)?
        .ok_or_else(|| err(StatusCode::NOT_FOUND, ErrorCode::NotSelected))?;
    if view.approval.is_none() {
        return Err(rejected(ErrorCode::StepLocked.into()));
    }
    let batch = hub.statics();
    let offset = batch.utc_offset_minutes;
    let signed_at = contract_signed_at(sg, &hub.batch, &family)
        .await?
        .unwrap_or(view.opened_at);
    let identity = sg.identity_of(&hub.batch, &family).await?;
    let data = notice_data(
        &view,
        &batch,
        &sg.terms,
        local_date(signed_at, offset),
        local_date(app.now(), offset),
        identity.as_ref(),
    );
    let pdf = (sg.renderer)
        .run(move || xuanfang_documents::render_notice(&data))
        .await?;
    let (blob, stored) = match &view.notice {
        Some(n) if n.pdf.sha256 == pdf.sha256 => (n.pdf.clone(), Vec::new()),
        _ => {
            let b = (sg.blobs.put(&pdf.bytes, "application/pdf").await).map_err(|e| {
                tracing::warn!("blob store: {e}");
                err(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Internal)
            })?;
            (b.clone(), vec![b])
        }
    };
    let actor = Actor::Operator(xuanfang_hub::OperatorId(who));
    let action = SigningAction::IssueNotice { pdf: blob };
    let answered = (sg.store)
        .sign(&hub.batch, &family, &actor, &req_id, action)
        .await;
    fresh::settle(sg, &hub.batch, &family, &stored, &answered).await;
    let view = answer(answered)?;
    Ok(Json(page_of(sg, view, Viewer::Operator)))
}

async fn notice_response(
    sg: &Signing,
    batch: &BatchId,
    family: &FamilyId,
) -> Result<Response, ApiError> {
    let view = (sg.store.signing_view(batch, family).await).map_err(alloc_err)?;
    let notice = (view.as_ref().and_then(|v| v.notice.as_ref())).ok_or_else(|| {
        err(StatusCode::NOT_FOUND, ErrorCode::StepLocked).detail("no move-in notice issued yet")
    })?;
    blob_response(sg, &notice.pdf, &file_names(family).notice).await
}

/// `GET /api/me/signing/notice.pdf`: the family's move-in notice, once issued.
pub async fn my_notice_pdf(
    State(app): State<Arc<App>>,
    t: FamilyTarget,
) -> Result<Response, ApiError> {
    let sg = signing_of(&app)?;
    notice_response(sg, &t.hub.batch, &t.family).await
}

/// `GET /api/ops/signing/{family}/notice.pdf`.
pub async fn ops_notice_pdf(
    State(app): State<Arc<App>>,
    _op: Operator,
    Target(hub): Target,
    Path(family): Path<String>,
) -> Result<Response, ApiError> {
    let sg = signing_of(&app)?;
    notice_response(sg, &hub.batch, &FamilyId(family)).await
}
