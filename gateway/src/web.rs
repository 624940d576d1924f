//! The web client's pages and assets, embedded in the binary (no Node.js needed to run).

use axum::extract::Path;
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

pub async fn app_page() -> Response {
    serve("app/index.html")
}
pub async fn hall_page() -> Response {
    serve("hall/index.html")
}
pub async fn console_page() -> Response {
    serve("console/index.html")
}
pub async fn asset(Path(path): Path<String>) -> Response {
    serve(&path)
}
pub async fn index() -> axum::response::Redirect {
    axum::response::Redirect::temporary("/hall")
}
