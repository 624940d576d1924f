//! Step 3, the contract (签订合同): the family reads the lease as a PDF (unsigned,
//! （待签字）), signs on the phone's signature pad, and the gateway renders the lease
//! with the signature, stores both and records the PDF's SHA-256 (`SignContract`).
//! The signed PDF is then served byte for byte as stored.

use std::sync::Arc;

use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use xuanfang_allocator::SigningView;
use xuanfang_hub::blob::BlobRef;
use xuanfang_hub::signing::{Actor, Step};
use xuanfang_hub::{BatchId, ErrorCode, FamilyId, SigningAction};

use super::details::{check_image_within, CheckedImage};
use super::documents::{file_names, lease_data, local_date};
use super::{
    alloc_err, answer, blob_response, ensure_open, err, file_response, fresh, page_of, read_part,
    rejected, signing_of, store_blob, IdempotencyKey, Signing, SigningPage, Viewer,
};
use crate::app::App;
use crate::caller::{FamilyTarget, Operator, Target};
use crate::http_error::ApiError;

/// Largest signature image accepted (a signature pad's PNG is a few KB to tens of KB).
pub const MAX_SIGNATURE_BYTES: usize = 256 * 1024;
/// Largest width and height of a signature image.
pub const MAX_SIGNATURE_SIDE: u32 = 2048;
/// The body limit of the contract upload: the signature and the multipart framing.
pub const MAX_SIGNATURE_BODY: usize = MAX_SIGNATURE_BYTES + 16 * 1024;

fn needs(view: &SigningView, step: Step) -> Result<(), ApiError> {
    if step.needs().iter().all(|s| view.done.contains(s)) {
        Ok(())
    } else {
        Err(rejected(ErrorCode::StepLocked.into()))
    }
}

/// `GET /api/me/signing/lease.pdf`: the lease to read before signing, rendered now from
/// the record, unsigned. Needs the details (the lease prints the phone).
pub async fn lease_pdf(State(app): State<Arc<App>>, t: FamilyTarget) -> Result<Response, ApiError> {
    let sg = signing_of(&app)?;
    let view = ensure_open(&app, sg, &t.hub.batch, &t.family).await?;
    if !view.done.contains(&Step::Details) {
        return Err(rejected(ErrorCode::StepLocked.into()));
    }
    let batch = t.hub.statics();
    let signed = local_date(app.now(), batch.utc_offset_minutes);
    let identity = sg.identity_of(&t.hub.batch, &t.family).await?;
    let data = lease_data(&view, &batch, &sg.terms, signed, identity.as_ref());
    let pdf = (sg.renderer)
        .run(move || xuanfang_documents::render_lease(&data, None))
        .await?;
    let name = file_names(&view.family).lease;
    Ok(file_response(pdf.bytes, "application/pdf", &name))
}

/// The signature upload as `/api/openapi.json` shows it; [`read_signature`] reads it.
#[derive(utoipa::ToSchema)]
pub struct SignatureUpload {
    /// The handwritten signature, a PNG.
    #[schema(value_type = String, format = Binary)]
    pub signature: Vec<u8>,
}

/// `POST /api/me/signing/contract`: multipart with one part `signature` (PNG). Renders
/// the lease with it, stores the signature and the PDF, then `SignContract`.
///
/// A request the hub would refuse for the steps (face not passed, contract already
/// signed) stores nothing: those are checked first. A retry of a signed contract (same
/// key: the first answer again; another key: `step_done`) reuses the stored files.
pub async fn sign_contract(
    State(app): State<Arc<App>>,
    t: FamilyTarget,
    IdempotencyKey(req_id): IdempotencyKey,
    form: Multipart,
) -> Result<Json<SigningPage>, ApiError> {
    let sg = signing_of(&app)?;
    let view = ensure_open(&app, sg, &t.hub.batch, &t.family).await?;
    let raw = read_signature(form).await?;
    needs(&view, Step::Contract)?;
    let png = tokio::task::spawn_blocking(move || {
        check_image_within(&raw, true, MAX_SIGNATURE_BYTES, MAX_SIGNATURE_SIDE)
    })
    .await
    .map_err(|_| err(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal))??;
    let actor = Actor::Family(t.family.clone());
    let (action, stored) = match (&view.contract, view.done.contains(&Step::Contract)) {
        // Signed already: nothing new is stored; the engine answers a repeated request
        // as the first time and anything else with `step_done`.
        (Some(c), true) => (
            SigningAction::SignContract {
                pdf: c.pdf.clone(),
                signature: c.signature.clone(),
            },
            Vec::new(),
        ),
        _ => {
            let (pdf, signature) = signed_lease(&app, sg, &t.hub, &view, png).await?;
            let stored = vec![pdf.clone(), signature.clone()];
            (SigningAction::SignContract { pdf, signature }, stored)
        }
    };
    let answered = (sg.store)
        .sign(&t.hub.batch, &t.family, &actor, &req_id, action)
        .await;
    fresh::settle(sg, &t.hub.batch, &t.family, &stored, &answered).await;
    let view = answer(answered)?;
    Ok(Json(page_of(sg, view, Viewer::Family)))
}

/// The one part of the contract upload, `signature`, as sent (checked as an image by
/// the caller). The fuzz target `upload_signature` calls this.
pub async fn read_signature(mut form: Multipart) -> Result<Vec<u8>, ApiError> {
    let mut signature = None;
    loop {
        let mut field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                let status = e.status();
                return Err(err(status, ErrorCode::BadRequest).detail(e.body_text()));
            }
        };
        let name = field.name().unwrap_or_default().to_owned();
        if name != "signature" || signature.is_some() {
            return Err(err(StatusCode::BAD_REQUEST, ErrorCode::BadRequest)
                .detail(format!("one part `signature` expected, got {name:?}")));
        }
        signature = Some(read_part(&mut field, MAX_SIGNATURE_BYTES).await?);
    }
    signature.ok_or_else(|| {
        err(StatusCode::BAD_REQUEST, ErrorCode::BadRequest).detail("part signature required")
    })
}

/// Renders the lease with the signature and stores both: the signed PDF and the
/// signature of the `SignContract` to ask for.
async fn signed_lease(
    app: &App,
    sg: &Signing,
    hub: &crate::fanout::BatchHub,
    view: &SigningView,
    png: CheckedImage,
) -> Result<(BlobRef, BlobRef), ApiError> {
    let batch = hub.statics();
    let signed = local_date(app.now(), batch.utc_offset_minutes);
    let identity = sg.identity_of(&hub.batch, &view.family).await?;
    let data = lease_data(view, &batch, &sg.terms, signed, identity.as_ref());
    let sig = png.bytes.clone();
    let pdf = (sg.renderer)
        .run(move || xuanfang_documents::render_lease(&data, Some(&sig)))
        .await?;
    let signature = store_blob(sg, &png.bytes, png.content_type).await?;
    let pdf = match store_blob(sg, &pdf.bytes, "application/pdf").await {
        Ok(pdf) => pdf,
        Err(e) => {
            fresh::drop_all(sg, std::slice::from_ref(&signature)).await;
            return Err(e);
        }
    };
    Ok((pdf, signature))
}

async fn contract_response(
    sg: &Signing,
    batch: &BatchId,
    family: &FamilyId,
) -> Result<Response, ApiError> {
    let view = sg
        .store
        .signing_view(batch, family)
        .await
        .map_err(alloc_err)?;
    let not_signed =
        || err(StatusCode::NOT_FOUND, ErrorCode::StepLocked).detail("the contract is not signed");
    let contract = view
        .as_ref()
        .and_then(|v| v.contract.as_ref())
        .ok_or_else(not_signed)?;
    blob_response(sg, &contract.pdf, &file_names(family).contract).await
}

/// `GET /api/me/signing/contract.pdf`: the signed contract as stored (its SHA-256 is
/// the one in the signing log); the latest signed, also when a reviewer returned it.
pub async fn my_contract_pdf(
    State(app): State<Arc<App>>,
    t: FamilyTarget,
) -> Result<Response, ApiError> {
    let sg = signing_of(&app)?;
    contract_response(sg, &t.hub.batch, &t.family).await
}

/// `GET /api/ops/signing/{family}/contract.pdf`: the same for the reviewer.
pub async fn ops_contract_pdf(
    State(app): State<Arc<App>>,
    _op: Operator,
    Target(hub): Target,
    Path(family): Path<String>,
) -> Result<Response, ApiError> {
    let sg = signing_of(&app)?;
    contract_response(sg, &hub.batch, &FamilyId(family)).await
}
