//! Public and family HTTP API under `/api/`: thin handlers over the allocator.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use xuanfang_allocator::BoardState;
use xuanfang_hub::protocol::FamilyView;
use xuanfang_hub::{BatchId, Outcome};

use crate::app::App;
use crate::caller::{FamilyCaller, FamilyTarget, Target};
use crate::http_error::ApiError;

/// `GET /api/catalog?batch=`: units and sessions of a batch, as cached bytes with an
/// ETag (`If-None-Match` answers 304).
pub async fn catalog(Target(hub): Target, headers: HeaderMap) -> Response {
    let c = hub.catalog();
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|t| t.trim() == c.etag || t.trim() == "*")
        });
    let common = [
        (header::ETAG, c.etag.clone()),
        (header::CACHE_CONTROL, "no-cache".to_owned()),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, "application/json".to_owned())],
        c.json.clone(),
    )
        .into_response()
}

/// `GET /api/board?batch=`: the board exactly as a WebSocket snapshot would carry it
/// now: taken units, sessions, and the chain position `seq` a client resumes from.
pub async fn board(Target(hub): Target) -> Json<BoardState> {
    Json(hub.board_state())
}

/// One served batch as `/api/batches` lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchSummary {
    pub batch: BatchId,
    pub name: String,
    /// `selecting` while any session is open, then `finished`.
    pub state: &'static str,
    /// The live batch: the one served when a request names none.
    pub live: bool,
    pub sessions: usize,
    pub families: usize,
}

fn summaries(app: &App) -> Vec<BatchSummary> {
    let live = app.live().map(|h| h.batch.clone());
    app.hubs()
        .into_iter()
        .rev()
        .map(|h| BatchSummary {
            live: live.as_ref() == Some(&h.batch),
            state: if h.selection_finished() {
                "finished"
            } else {
                "selecting"
            },
            name: h.name(),
            sessions: h.sessions().len(),
            families: h.family_count(),
            batch: h.batch.clone(),
        })
        .collect()
}

/// `GET /api/batches`: every served batch, newest first.
pub async fn batches(State(app): State<Arc<App>>) -> Json<Vec<BatchSummary>> {
    Json(summaries(&app))
}

/// One batch of the calling family, for its home page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MyBatch {
    pub batch: BatchId,
    pub name: String,
    pub state: &'static str,
    pub live: bool,
    /// The family's result in that batch, once decided (`docs/protocol.md`).
    pub outcome: Option<Outcome>,
}

/// `GET /api/me/batches`: the batches the calling person is a family of, newest first.
pub async fn my_batches(
    State(app): State<Arc<App>>,
    FamilyCaller(family): FamilyCaller,
) -> Result<Json<Vec<MyBatch>>, ApiError> {
    let mut out = Vec::new();
    for s in summaries(&app) {
        let Ok(hub) = app.hub(&s.batch).await else {
            continue;
        };
        if !hub.has_family(&family) {
            continue;
        }
        let view = app.alloc.family(&s.batch, &family).await?;
        out.push(MyBatch {
            batch: s.batch,
            name: s.name,
            state: s.state,
            live: s.live,
            outcome: view.outcome,
        });
    }
    Ok(Json(out))
}

/// The answer of `/api/time`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServerTime {
    /// Milliseconds since the epoch, on the engine's clock.
    pub server_time: xuanfang_hub::Millis,
}

/// `GET /api/time`: server time, for clients without a WebSocket.
pub async fn time(State(app): State<Arc<App>>) -> Json<ServerTime> {
    Json(ServerTime {
        server_time: app.now(),
    })
}

/// `GET /api/me?batch=`: the calling family's view in one of its batches.
pub async fn me(
    State(app): State<Arc<App>>,
    t: FamilyTarget,
) -> Result<Json<FamilyView>, ApiError> {
    Ok(Json(app.alloc.family(&t.hub.batch, &t.family).await?))
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the engine answers and a batch is being served.
pub async fn readyz(State(app): State<Arc<App>>) -> Result<&'static str, ApiError> {
    app.alloc.ping().await?;
    crate::caller::public_hub(&app, None).await?;
    Ok("ready")
}

/// `GET /metrics`: the OpenMetrics text format (`crate::metrics`).
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let hubs = app.hubs();
    let watchers = hubs.iter().map(|h| h.watchers()).sum();
    let online = hubs.iter().map(|h| h.families_online()).sum();
    let seq = app.live().map(|h| h.seq()).unwrap_or_default();
    let text = app
        .metrics
        .render(watchers, online, seq, app.limits.tcp_open());
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}
