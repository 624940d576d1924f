//! The HTTP router and the serve loop with graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use xuanfang_hub::ErrorCode;

use crate::app::App;
use crate::http_error::ApiError;
use crate::{api, connection, import_api, ops, templates, web};

/// Uploads (unit and family sheets) may be a few MB.
const MAX_UPLOAD: usize = 16 * 1024 * 1024;

/// Who may call a route. The extractors in a handler's signature enforce it
/// (`caller.rs`); this list states it, so one test can walk every route and check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no token needed.
    Public,
    /// A family token (`role: family`).
    Family,
    /// An operator token (`role: operator`).
    Operator,
    /// Demo mode only; 404 otherwise.
    Demo,
}

/// One route: method, path, who may call it, and its handler.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    /// The limits layered on it: the HTTP API is rate limited per IP.
    pub api: bool,
    handler: fn() -> MethodRouter<Arc<App>>,
}

/// Every route of the gateway: the router is built from this list.
pub fn routes() -> Vec<Route> {
    use Access::*;
    let r = |method, path, access, api, handler| Route {
        method,
        path,
        access,
        api,
        handler,
    };
    vec![
        r("GET", "/api/catalog", Public, true, || get(api::catalog)),
        r("GET", "/api/board", Public, true, || get(api::board)),
        r("GET", "/api/time", Public, true, || get(api::time)),
        r("GET", "/api/batches", Public, true, || get(api::batches)),
        r("GET", "/api/me", Family, true, || get(api::me)),
        r("GET", "/api/me/batches", Family, true, || {
            get(api::my_batches)
        }),
        r("GET", "/api/demo/logins", Demo, true, || get(demo_logins)),
        r("GET", "/api/ops/progress", Operator, true, || {
            get(ops::progress)
        }),
        r("GET", "/api/ops/applications", Operator, true, || {
            get(ops::applications)
        }),
        r("POST", "/api/ops/supplementary", Operator, true, || {
            post(ops::publish_supplementary)
        }),
        r("GET", "/api/ops/results.csv", Operator, true, || {
            get(ops::results_csv)
        }),
        r("GET", "/api/ops/results.xlsx", Operator, true, || {
            get(ops::results_xlsx)
        }),
        r("GET", "/api/ops/events", Operator, true, || {
            get(ops::events)
        }),
        r("GET", "/api/ops/batch", Operator, true, || get(ops::batch)),
        r(
            "GET",
            "/api/ops/templates/units.csv",
            Operator,
            true,
            || get(templates::units_csv),
        ),
        r(
            "GET",
            "/api/ops/templates/units.xlsx",
            Operator,
            true,
            || get(templates::units_xlsx),
        ),
        r(
            "GET",
            "/api/ops/templates/families.csv",
            Operator,
            true,
            || get(templates::families_csv),
        ),
        r(
            "GET",
            "/api/ops/templates/families.xlsx",
            Operator,
            true,
            || get(templates::families_xlsx),
        ),
        r("POST", "/api/ops/batches", Operator, true, || {
            post(import_api::create_batch).layer(DefaultBodyLimit::max(MAX_UPLOAD))
        }),
        // A family token acts; without one the socket watches the public board.
        r("GET", "/ws", Public, false, || get(connection::upgrade)),
        r("GET", "/healthz", Public, false, || get(api::healthz)),
        r("GET", "/readyz", Public, false, || get(api::readyz)),
        r("GET", "/metrics", Public, false, || get(api::metrics)),
        r("GET", "/", Public, false, || get(web::index)),
        r("GET", "/app", Public, false, || get(web::app_page)),
        r("GET", "/hall", Public, false, || get(web::hall_page)),
        r("GET", "/console", Public, false, || get(web::console_page)),
        r("GET", "/web/{*path}", Public, false, || get(web::asset)),
    ]
}

pub fn router(app: Arc<App>) -> Router {
    let (mut api, mut rest) = (Router::new(), Router::new());
    for route in routes() {
        if route.api {
            api = api.route(route.path, (route.handler)());
        } else {
            rest = rest.route(route.path, (route.handler)());
        }
    }
    let api = api.layer(middleware::from_fn_with_state(app.clone(), http_rate_limit));
    Router::new().merge(api).merge(rest).with_state(app)
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
    let sockets = app.sockets.clone();
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await?;
    // Upgraded sockets live outside hyper: wait (boundedly) until each has sent its 1001
    // and finished its closing handshake, so no client sees 1006 when the process exits.
    sockets.close();
    if tokio::time::timeout(SOCKETS_DRAIN, sockets.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = sockets.len(),
            "sockets still open after the drain period"
        );
    }
    Ok(())
}

/// How long shutdown waits for open sockets to close (each sends 1001 at once and waits
/// at most a second for the client's reply).
const SOCKETS_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);
