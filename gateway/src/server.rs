//! The HTTP router and the serve loop with graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use xuanfang_hub::ErrorCode;

use crate::app::App;
use crate::http_error::ApiError;
use crate::{api, connection, import_api, ops, web};

/// Uploads (unit and family sheets) may be a few MB.
const MAX_UPLOAD: usize = 16 * 1024 * 1024;

pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/api/catalog", get(api::catalog))
        .route("/api/board", get(api::board))
        .route("/api/time", get(api::time))
        .route("/api/me", get(api::me))
        .route("/api/me/batches", get(api::my_batches))
        .route("/api/batches", get(api::batches))
        .route("/api/demo/logins", get(demo_logins))
        .route("/api/ops/progress", get(ops::progress))
        .route("/api/ops/applications", get(ops::applications))
        .route("/api/ops/supplementary", post(ops::publish_supplementary))
        .route("/api/ops/results.csv", get(ops::results_csv))
        .route("/api/ops/results.xlsx", get(ops::results_xlsx))
        .route("/api/ops/events", get(ops::events))
        .route("/api/ops/batch", get(ops::batch))
        .route(
            "/api/ops/batches",
            post(import_api::create_batch).layer(DefaultBodyLimit::max(MAX_UPLOAD)),
        )
        .layer(middleware::from_fn_with_state(app.clone(), http_rate_limit));
    Router::new()
        .merge(api)
        .route("/ws", get(connection::upgrade))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/", get(web::index))
        .route("/app", get(web::app_page))
        .route("/hall", get(web::hall_page))
        .route("/console", get(web::console_page))
        .route("/web/{*path}", get(web::asset))
        .with_state(app)
}

async fn demo_logins(State(app): State<Arc<App>>) -> Response {
    match &app.demo {
        Some(info) => Json(info.clone()).into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, ErrorCode::Forbidden)
            .detail("demo mode only")
            .into_response(),
    }
}

async fn http_rate_limit(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = ip {
        if !app.limits.http_request(ip) {
            return ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited)
                .into_response();
        }
    }
    next.run(req).await
}

/// Serves until the app's shutdown token is cancelled: then open sockets get a close
/// frame (1001) and in-flight requests drain.
pub async fn serve(app: Arc<App>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    tokio::spawn(app.clone().upkeep());
    let shutdown = app.shutdown.clone();
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}
