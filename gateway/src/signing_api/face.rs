//! Step 2, face verification (人脸识别): the family starts a session at the provider and
//! comes back; the gateway fetches the verdict itself (server to server).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use xuanfang_allocator::SigningView;
use xuanfang_hub::signing::{Actor, FaceState};
use xuanfang_hub::{BatchId, FamilyId, SigningAction};

use super::{
    alloc_err, answer, ensure_open, no_provider, page_of, provider_down, rejected, signing_of,
    IdempotencyKey, Signing, SigningPage, Viewer,
};
use crate::app::App;
use crate::caller::FamilyTarget;
use crate::http_error::ApiError;
use crate::providers::face::{FaceStart, FaceVerdict};

/// What starting a face check answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FaceStarted {
    pub provider_session: String,
    /// Where to send the applicant.
    pub url: String,
    pub signing: SigningPage,
}

pub async fn start_face(
    State(app): State<Arc<App>>,
    t: FamilyTarget,
    IdempotencyKey(req_id): IdempotencyKey,
) -> Result<Json<FaceStarted>, ApiError> {
    let sg = signing_of(&app)?;
    let face = sg.face.as_ref().ok_or_else(no_provider)?;
    let view = ensure_open(&app, sg, &t.hub.batch, &t.family).await?;
    let started = face
        .start(FaceStart {
            batch: t.hub.batch.clone(),
            family: t.family.clone(),
            applicant: view.applicant.clone(),
        })
        .await
        .map_err(provider_down)?;
    let actor = Actor::Family(t.family.clone());
    let action = SigningAction::StartFace {
        provider_session: started.session.clone(),
    };
    let view = answer(
        sg.store
            .sign(&t.hub.batch, &t.family, &actor, &req_id, action)
            .await,
    )?;
    // A repeated request answers the session its first try started.
    let session = pending_session(sg, &t.hub.batch, &t.family)
        .await?
        .unwrap_or(started.session);
    Ok(Json(FaceStarted {
        url: face.url_of(&session),
        provider_session: session,
        signing: page_of(sg, view, Viewer::Family),
    }))
}

async fn pending_session(
    sg: &Signing,
    batch: &BatchId,
    family: &FamilyId,
) -> Result<Option<String>, ApiError> {
    let rec = sg.store.signing(batch, family).await.map_err(alloc_err)?;
    Ok(rec.and_then(|r| match &r.face().state {
        FaceState::Pending { provider_session } => Some(provider_session.clone()),
        _ => None,
    }))
}

/// Fetches a session's verdict from the face provider (server to server) and gives it
/// to the engine as the face provider's callback. `Ok(None)`: no verdict yet.
pub async fn settle_face(
    sg: &Signing,
    batch: &BatchId,
    session: &str,
) -> Result<Option<SigningView>, ApiError> {
    let face = sg.face.as_ref().ok_or_else(no_provider)?;
    let Some(FaceVerdict { passed, score }) =
        face.fetch_result(session).await.map_err(provider_down)?
    else {
        return Ok(None);
    };
    let action = SigningAction::FaceResult {
        provider_session: session.to_owned(),
        passed,
        score,
    };
    let req_id = format!("face:{session}");
    let (_, view) = sg
        .store
        .signing_callback(batch, &Actor::FaceProvider, &req_id, action)
        .await
        .map_err(alloc_err)?
        .map_err(rejected)?;
    Ok(Some(view))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FaceFinished {
    /// The provider has no verdict yet.
    pub pending: bool,
    pub signing: SigningPage,
}

/// The applicant is back from the provider's page: the gateway fetches the verdict of
/// the pending session itself.
pub async fn finish_face(
    State(app): State<Arc<App>>,
    t: FamilyTarget,
    IdempotencyKey(_req_id): IdempotencyKey,
) -> Result<Json<FaceFinished>, ApiError> {
    let sg = signing_of(&app)?;
    let view = ensure_open(&app, sg, &t.hub.batch, &t.family).await?;
    let Some(session) = pending_session(sg, &t.hub.batch, &t.family).await? else {
        return Ok(Json(FaceFinished {
            pending: false,
            signing: page_of(sg, view, Viewer::Family),
        }));
    };
    match settle_face(sg, &t.hub.batch, &session).await? {
        Some(v) => Ok(Json(FaceFinished {
            pending: false,
            signing: page_of(sg, v, Viewer::Family),
        })),
        None => Ok(Json(FaceFinished {
            pending: true,
            signing: page_of(sg, view, Viewer::Family),
        })),
    }
}
