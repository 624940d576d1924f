//! `POST /api/ops/batches`: a new batch from uploaded unit and family sheets.
//!
//! Every bad row of either file is reported with its row number, a code and its
//! message in Chinese and English; nothing is loaded when any row is bad.
//!
//! A new batch becomes the live one (hall screens and families follow it), so an upload
//! while the live batch's selection is under way is refused with `409 conflict` and the
//! running batch named, unless the form says `replace=true` (the console asks first).

use std::sync::Arc;

use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;
use xuanfang_hub::import::{self, BatchMeta, Format, ImportErrors, SessionPlan};
use xuanfang_hub::{BatchId, ErrorCode, Family, Millis, Unit};

use crate::app::App;
use crate::caller::Operator;
use crate::http_error::ApiError;

/// A bad row of an upload, as the `422` lists it.
#[derive(Debug, Serialize)]
pub struct RowProblem {
    file: &'static str,
    /// The row as the spreadsheet shows it (header = 1; 0: the whole file).
    row: usize,
    code: &'static str,
    reason: xuanfang_hub::protocol::Text,
}

/// The upload as `/api/openapi.json` shows it; `read_form` reads it part by part (the
/// plan's fields are text parts; blank ones take their defaults).
#[derive(utoipa::ToSchema)]
pub struct BatchUpload {
    /// The units sheet, CSV or XLSX (by its file name, else `PK…` is XLSX).
    #[schema(value_type = String, format = Binary)]
    pub units: Vec<u8>,
    /// The families sheet, likewise.
    #[schema(value_type = String, format = Binary)]
    pub families: Vec<u8>,
    /// Default `batch-<now in ms>`.
    pub batch_id: Option<String>,
    /// Default `选房批次`.
    pub name: Option<String>,
    /// Milliseconds since the epoch; default now.
    pub preselect_start: Option<i64>,
    pub preselect_end: Option<i64>,
    /// Families per session, default 50.
    pub session_size: Option<i64>,
    /// Milliseconds since the epoch; default in 30 minutes.
    pub first_session_start: Option<i64>,
    /// Default 5 (`session_interval_seconds` wins when given).
    pub session_interval_minutes: Option<i64>,
    pub session_interval_seconds: Option<i64>,
    /// The formal window, default 3 (`window_seconds` wins when given).
    pub window_minutes: Option<i64>,
    pub window_seconds: Option<i64>,
    /// `true`: load even while the live batch's selection is under way.
    pub replace: Option<bool>,
}

/// What a loaded upload answers (`201`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchCreated {
    pub batch: BatchId,
    /// Applicants' identities of the family sheet kept for signing (sealed); 0 without
    /// identity columns or without signing's data key.
    pub identities: usize,
}

fn problems(file: &'static str, e: ImportErrors) -> Vec<RowProblem> {
    e.0.into_iter()
        .map(|r| RowProblem {
            file,
            row: r.row,
            code: r.problem.code(),
            reason: xuanfang_hub::protocol::Text {
                zh: r.zh(),
                en: r.to_string(),
            },
        })
        .collect()
}

fn refused(errors: Vec<RowProblem>) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        // The error body's fields (code, message), and the rows at fault.
        Json(json!({
            "code": ErrorCode::InvalidBatch,
            "message": xuanfang_hub::protocol::Text::from(ErrorCode::InvalidBatch),
            "errors": errors,
        })),
    )
        .into_response()
}

/// The live batch when its selection is under way: pre-selection has opened and some
/// session is not closed yet.
async fn running_batch(app: &App, now: Millis) -> Result<Option<(BatchId, String)>, ApiError> {
    let Some(live) = app.live() else {
        return Ok(None);
    };
    let statics = live.statics();
    if now < statics.preselect_start {
        return Ok(None);
    }
    let board = app.alloc.board(&live.batch).await?;
    Ok(board
        .sessions
        .iter()
        .any(|s| !s.closed)
        .then(|| (statics.id.clone(), statics.name.clone())))
}

/// A malformed upload: not multipart, a missing file, a form field that does not parse.
fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest).detail(detail)
}

/// Well-formed, but the batch it describes is not valid.
fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidBatch).detail(detail)
}

/// The upload's parts: the two sheets (format, bytes) and the other form fields.
#[derive(Default)]
pub struct Form {
    units: Option<(Format, Vec<u8>)>,
    families: Option<(Format, Vec<u8>)>,
    fields: std::collections::HashMap<String, String>,
}

fn format_of(file_name: Option<&str>, bytes: &[u8]) -> Format {
    file_name
        .and_then(|n| Format::from_path(std::path::Path::new(n)))
        // XLSX is a zip: "PK".
        .unwrap_or(if bytes.starts_with(b"PK") {
            Format::Xlsx
        } else {
            Format::Csv
        })
}

async fn read_form(mut mp: Multipart) -> Result<Form, ApiError> {
    let mut form = Form::default();
    while let Some(field) = mp
        .next_field()
        .await
        .map_err(|e| bad(format!("bad upload: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let bytes = field
            .bytes()
            .await
            .map_err(|e| bad(format!("bad upload: {e}")))?;
        match name.as_str() {
            "units" => form.units = Some((format_of(file_name.as_deref(), &bytes), bytes.to_vec())),
            "families" => {
                form.families = Some((format_of(file_name.as_deref(), &bytes), bytes.to_vec()))
            }
            _ => {
                form.fields
                    .insert(name, String::from_utf8_lossy(&bytes).trim().to_owned());
            }
        }
    }
    Ok(form)
}

impl Form {
    fn num(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.fields.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| bad(format!("{key} must be a number"))),
        }
    }

    /// The units and families of both sheets, the families' layouts checked against the
    /// units; or every bad row.
    pub fn sheets(&self) -> Result<(Vec<Unit>, Vec<Family>, Identities), Refusal> {
        let (uf, ub) = self
            .units
            .as_ref()
            .ok_or_else(|| bad("missing file: units"))?;
        let (ff, fb) = self
            .families
            .as_ref()
            .ok_or_else(|| bad("missing file: families"))?;
        let units = import::units(*uf, ub);
        let families = import::families_with_identities(*ff, fb);
        let (units, families) = match (units, families) {
            (Ok(u), Ok(f)) => (u, f),
            (u, f) => {
                let mut errors = Vec::new();
                if let Err(e) = u {
                    errors.extend(problems("units", e));
                }
                if let Err(e) = f {
                    errors.extend(problems("families", e));
                }
                return Err(Refusal::Rows(errors));
            }
        };
        let (families, identities): (Vec<_>, Vec<_>) = families
            .into_iter()
            .map(|(row, f, identity)| {
                let id = f.id.clone();
                ((row, f), identity.map(|i| (id, i)))
            })
            .unzip();
        if let Err(e) = import::check_layouts(&units, &families) {
            return Err(Refusal::Rows(problems("families", e)));
        }
        let identities = identities.into_iter().flatten().collect();
        Ok((
            units,
            families.into_iter().map(|(_, f)| f).collect(),
            identities,
        ))
    }

    /// The batch's name, times and session plan from the form fields (defaults where
    /// blank), `now` the server's time.
    pub fn plan(&self, now: Millis) -> Result<(BatchMeta, SessionPlan), ApiError> {
        let id = self
            .fields
            .get("batch_id")
            .filter(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| format!("batch-{}", now.0));
        // Durations in minutes, or in seconds (`*_seconds` wins) for rehearsals and load tests.
        // Typed by an operator: a product that overflows is refused, not wrapped.
        let duration_ms = |key: &str, default_minutes: i64| -> Result<i64, ApiError> {
            let (field, value, unit_ms) = match self.num(&format!("{key}_seconds"))? {
                Some(secs) => ("seconds", secs, 1000),
                None => (
                    "minutes",
                    self.num(&format!("{key}_minutes"))?
                        .unwrap_or(default_minutes),
                    60_000,
                ),
            };
            value
                .checked_mul(unit_ms)
                .ok_or_else(|| invalid(format!("{key}_{field} is out of range")))
        };
        let meta = BatchMeta {
            id: BatchId(id),
            name: self
                .fields
                .get("name")
                .cloned()
                .unwrap_or_else(|| "选房批次".to_owned()),
            preselect_start: Millis(self.num("preselect_start")?.unwrap_or(now.0)),
            preselect_end: self.num("preselect_end")?.map(Millis),
            utc_offset_minutes: 480,
        };
        let plan = SessionPlan::Auto {
            per_session: self.num("session_size")?.unwrap_or(50).max(1) as usize,
            first_start: Millis(
                self.num("first_session_start")?
                    .unwrap_or(now.0 + 30 * 60_000),
            ),
            interval_ms: duration_ms("session_interval", 5)?,
            window_ms: duration_ms("window", 3)?,
        };
        Ok((meta, plan))
    }
}

/// The upload's form from the request body (multipart), as the handler reads it; the fuzz
/// target `upload_batch` calls this and [`Form::sheets`], [`Form::plan`].
pub async fn read_upload(req: axum::extract::Request) -> Result<Form, ApiError> {
    let mp = <Multipart as axum::extract::FromRequest<()>>::from_request(req, &())
        .await
        .map_err(|e| bad(format!("expected a multipart upload: {e}")))?;
    read_form(mp).await
}

/// The applicants' full names and identity numbers a family sheet gave, by family.
pub type Identities =
    std::collections::HashMap<xuanfang_hub::FamilyId, xuanfang_hub::signing::Identity>;

/// Why an upload is refused: a malformed request, or rows that do not import (the
/// `422` listing them).
pub enum Refusal {
    Api(ApiError),
    Rows(Vec<RowProblem>),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Api(e)
    }
}

pub async fn create_batch(
    State(app): State<Arc<App>>,
    // Extracted before the (possibly large) body is read.
    _op: Operator,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let form = read_upload(req).await?;
    let (units, families, identities) = match form.sheets() {
        Ok(sheets) => sheets,
        Err(Refusal::Api(e)) => return Err(e),
        Err(Refusal::Rows(errors)) => return Ok(refused(errors)),
    };
    let now = app.now();
    let replace = form.fields.get("replace").is_some_and(|v| v == "true");
    if !replace {
        if let Some((running, name)) = running_batch(&app, now).await? {
            return Ok((
                StatusCode::CONFLICT,
                Json(json!({
                    "code": ErrorCode::Conflict,
                    "message": xuanfang_hub::protocol::Text::from(ErrorCode::Conflict),
                    "running": { "batch": running, "name": name },
                    "detail": format!(
                        "batch {running} is under way; send replace=true to load a new live batch anyway"
                    ),
                })),
            )
                .into_response());
        }
    }
    let (meta, plan) = form.plan(now)?;
    let batch =
        import::build_batch(meta, units, families, &plan).map_err(|e| invalid(e.to_string()))?;
    let id = batch.id.clone();
    let kept = keep_identities(&app, &id, identities).await?;
    app.alloc.load_batch(batch).await?;
    app.serve_batch(id.clone()).await?;
    Ok((
        StatusCode::CREATED,
        Json(BatchCreated {
            batch: id,
            identities: kept,
        }),
    )
        .into_response())
}

/// Stores the applicants' identities of a batch about to be loaded, sealed
/// ([`crate::signing_api::identity`]); answers how many were kept. A gateway without
/// signing's data key keeps none (signing, which alone prints them, is off there too).
async fn keep_identities(
    app: &App,
    batch: &BatchId,
    identities: Identities,
) -> Result<usize, ApiError> {
    if identities.is_empty() {
        return Ok(0);
    }
    let Some(sg) = app.signing().filter(|s| s.identities.is_some()) else {
        tracing::warn!(
            batch = %batch.0,
            "the family sheet gives identities, but signing has no data key: not kept"
        );
        return Ok(0);
    };
    // An id in use is refused by the load that follows; its identities stay as they are.
    if app.alloc.batch(batch).await.is_ok() {
        return Ok(0);
    }
    let n = identities.len();
    let Some(ids) = sg.identities.as_ref() else {
        return Ok(n);
    };
    match ids.store(sg.blobs.as_ref(), batch, identities).await {
        Err(e) => {
            tracing::error!("identities of batch {}: {e}", batch.0);
            Err(
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Internal)
                    .detail("the applicants' identities could not be stored; nothing was loaded"),
            )
        }
        _ => Ok(n),
    }
}
