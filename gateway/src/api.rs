//! Public and family HTTP API under `/api/`: thin handlers over the allocator.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::json;
use xuanfang_allocator::BoardState;
use xuanfang_hub::protocol::{Catalog, FamilyView};
use xuanfang_hub::ErrorCode;

use crate::app::App;
use crate::auth::{self, Identity};
use crate::fanout::BatchHub;
use crate::http_error::ApiError;

pub fn current(app: &App) -> Result<Arc<BatchHub>, ApiError> {
    app.hub()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::UnknownBatch))
}

/// The caller's verified identity from `Authorization: Bearer`.
pub fn identity(app: &App, headers: &HeaderMap) -> Result<Identity, ApiError> {
    let token = auth::bearer(headers)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized))?;
    app.auth
        .verify(token)
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.code()))
}

/// `GET /api/catalog`: units and sessions of the current batch.
pub async fn catalog(State(app): State<Arc<App>>) -> Result<Json<Catalog>, ApiError> {
    let hub = current(&app)?;
    Ok(Json(app.alloc.catalog(&hub.batch).await?))
}

/// `GET /api/board`: every taken unit at the current seq.
pub async fn board(State(app): State<Arc<App>>) -> Result<Json<BoardState>, ApiError> {
    let hub = current(&app)?;
    Ok(Json(app.alloc.board(&hub.batch).await?))
}

/// `GET /api/time`: server time, for clients without a WebSocket.
pub async fn time(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(json!({ "server_time": app.now() }))
}

/// `GET /api/me`: the calling family's view.
pub async fn me(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<FamilyView>, ApiError> {
    let Identity::Family(f) = identity(&app, &headers)? else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden));
    };
    let hub = current(&app)?;
    Ok(Json(app.alloc.family(&hub.batch, &f).await?))
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the engine answers and a batch is being served.
pub async fn readyz(State(app): State<Arc<App>>) -> Result<&'static str, ApiError> {
    app.alloc.ping().await?;
    current(&app)?;
    Ok("ready")
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(app): State<Arc<App>>) -> String {
    let (watchers, online, seq) = app
        .hub()
        .map(|h| (h.watchers(), h.families_online(), h.seq()))
        .unwrap_or_default();
    app.metrics.render(watchers, online, seq)
}
