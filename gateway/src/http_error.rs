//! The one place HTTP errors become responses: a status and a protocol error code with
//! its Chinese and English message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use xuanfang_allocator::AllocError;

use crate::refunds::RefundError;
use xuanfang_hub::protocol::Text;
use xuanfang_hub::ErrorCode;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub detail: Option<String>,
}

/// The body of every refusal (`docs/protocol.md`, "Error codes"). Some add fields of
/// their own: the batch upload's `422` its rows at fault (`errors`), its `409` the batch
/// under way (`running`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    /// The protocol error code, e.g. `unit_taken`.
    code: ErrorCode,
    /// The code's message in Chinese and English: `{"zh": …, "en": …}`.
    message: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode) -> Self {
        Self {
            status,
            code,
            detail: None,
        }
    }
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code,
            message: self.code.into(),
            detail: self.detail.as_deref(),
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<AllocError> for ApiError {
    fn from(e: AllocError) -> Self {
        match e {
            AllocError::Rejected(r) => {
                let status = match r.code {
                    ErrorCode::UnknownBatch
                    | ErrorCode::UnknownFamily
                    | ErrorCode::UnknownSession
                    | ErrorCode::UnknownUnit => StatusCode::NOT_FOUND,
                    ErrorCode::Conflict => StatusCode::CONFLICT,
                    ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                ApiError::new(status, r.code)
            }
            other => {
                tracing::warn!("allocator error: {other}");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Internal)
            }
        }
    }
}

impl From<RefundError> for ApiError {
    fn from(e: RefundError) -> Self {
        tracing::error!("{e}");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Internal)
    }
}
