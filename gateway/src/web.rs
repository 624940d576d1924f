//! The web client's pages and assets, embedded in the binary (no Node.js needed to run).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::RustEmbed)]
#[folder = "../web-client/"]
struct Assets;

fn serve(path: &str) -> Response {
    match Assets::get(path) {
        Some(file) => {
            let mime = file.metadata.mimetype().to_owned();
            (
                [
                    (header::CONTENT_TYPE, mime),
                    (header::CACHE_CONTROL, "no-cache".to_owned()),
                ],
                file.data.into_owned(),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// A page; in demo mode with a banner saying it is not production.
fn page(app: &crate::app::App, path: &str) -> Response {
    if app.demo.is_none() {
        return serve(path);
    }
    let Some(file) = Assets::get(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let html = String::from_utf8_lossy(&file.data).replacen(
        "<body>",
        "<body><div class=\"demo-banner\" role=\"note\">演示模式 · 非生产环境 — DEMO, not for production</div>",
        1,
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (header::CACHE_CONTROL, "no-cache".to_owned()),
        ],
        html,
    )
        .into_response()
}

pub async fn app_page(State(app): State<Arc<crate::app::App>>) -> Response {
    page(&app, "app/index.html")
}
pub async fn hall_page(State(app): State<Arc<crate::app::App>>) -> Response {
    page(&app, "hall/index.html")
}
pub async fn console_page(State(app): State<Arc<crate::app::App>>) -> Response {
    page(&app, "console/index.html")
}
pub async fn asset(Path(path): Path<String>) -> Response {
    serve(&path)
}
pub async fn index() -> axum::response::Redirect {
    axum::response::Redirect::temporary("/hall")
}
