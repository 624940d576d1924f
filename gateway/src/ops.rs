//! Operator API under `/api/ops/` (operator token): progress, supplementary sessions,
//! results export, the event log, and batch import.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use xuanfang_allocator::FamilyRecord;
use xuanfang_hub::protocol::SessionInfo;
use xuanfang_hub::selection::{EventKind, NoUnitReason, Outcome};
use xuanfang_hub::{supplementary, views, ErrorCode, Event, FamilyId, How, Millis};

use crate::app::App;
use crate::caller::{Operator, Target};
use crate::fanout::BatchHub;
use crate::http_error::ApiError;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    pub batch: String,
    pub seq: u64,
    pub families_total: usize,
    pub families_online: usize,
    pub watchers: usize,
    pub selected: usize,
    pub automatic: usize,
    pub no_unit: usize,
    pub waived: usize,
    pub pending: usize,
    pub applications: usize,
    pub remaining_by_layout: BTreeMap<String, usize>,
    pub sessions: Vec<SessionInfo>,
}

/// `GET /api/ops/progress`.
pub async fn progress(
    State(app): State<Arc<App>>,
    _op: Operator,
    Target(hub): Target,
) -> Result<Json<Progress>, ApiError> {
    let records = app.alloc.results(&hub.batch).await?;
    let batch = hub.statics();
    let board = app.alloc.board(&hub.batch).await?;
    let mut p = Progress {
        batch: hub.batch.to_string(),
        seq: board.seq,
        families_total: records.len(),
        families_online: hub.families_online(),
        watchers: hub.watchers(),
        selected: 0,
        automatic: 0,
        no_unit: 0,
        waived: 0,
        pending: 0,
        applications: 0,
        remaining_by_layout: BTreeMap::new(),
        sessions: board.sessions,
    };
    for r in &records {
        match &r.state.outcome {
            Some(Outcome::Selected {
                how: How::Confirmed,
                ..
            }) => p.selected += 1,
            Some(Outcome::Selected {
                how: How::Automatic,
                ..
            }) => p.automatic += 1,
            Some(Outcome::NoUnit { .. }) => p.no_unit += 1,
            Some(Outcome::Waived { .. }) => p.waived += 1,
            None => p.pending += 1,
        }
        if r.state.applied_supplementary_at.is_some() && r.state.supplementary_session.is_none() {
            p.applications += 1;
        }
    }
    let taken: std::collections::HashSet<_> = board.taken.iter().map(|t| &t.unit).collect();
    for u in &batch.units {
        if !taken.contains(&u.id) {
            *p.remaining_by_layout
                .entry(u.layout.to_string())
                .or_default() += 1;
        }
    }
    Ok(Json(p))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Application {
    pub family: FamilyId,
    pub name: String,
    pub rank: u32,
    pub applied_at: Millis,
}

fn applications_of(records: &[FamilyRecord]) -> Vec<Application> {
    let mut v: Vec<_> = records
        .iter()
        .filter(|r| supplementary::awaits_session(&r.state))
        .filter_map(|r| {
            Some(Application {
                family: r.family.id.clone(),
                name: r.family.name.clone(),
                rank: r.family.rank,
                applied_at: r.state.applied_supplementary_at?,
            })
        })
        .collect();
    v.sort_by_key(|a| a.rank);
    v
}

/// `GET /api/ops/applications`: families waiting for a supplementary session.
pub async fn applications(
    State(app): State<Arc<App>>,
    _op: Operator,
    Target(hub): Target,
) -> Result<Json<Vec<Application>>, ApiError> {
    let records = app.alloc.results(&hub.batch).await?;
    Ok(Json(applications_of(&records)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PublishRequest {
    /// The session's start, milliseconds since the epoch.
    pub start: Millis,
    #[serde(default = "default_window")]
    pub window_ms: i64,
    /// Defaults to every family that applied and has no supplementary session yet.
    pub families: Option<Vec<FamilyId>>,
}

fn default_window() -> i64 {
    xuanfang_hub::domain::DEFAULT_WINDOW_MS
}

/// `POST /api/ops/supplementary`: publishes a supplementary session.
pub async fn publish_supplementary(
    State(app): State<Arc<App>>,
    _op: Operator,
    Target(hub): Target,
    Json(req): Json<PublishRequest>,
) -> Result<(StatusCode, Json<SessionInfo>), ApiError> {
    let records = app.alloc.results(&hub.batch).await?;
    // The engine's batch, not the hub's copy: a session published a moment ago counts.
    let batch = app.alloc.batch(&hub.batch).await?;
    let states = records.iter().map(|r| (&r.family, &r.state));
    let session = supplementary::plan(&batch, states, req.start, req.window_ms, req.families)
        .map_err(|code| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code))?;
    app.alloc
        .publish_supplementary(&hub.batch, session.clone())
        .await?;
    let mut with = batch;
    with.sessions.push(session.clone());
    Ok((
        StatusCode::CREATED,
        Json(views::session_info(&with, &session, false)),
    ))
}

/// One row of the results export. Its `Serialize` is the CSV form: every text cell that
/// comes from imported data goes through [`spreadsheet_text`].
///
/// A family that went on to a supplementary session (补选) keeps both results: its formal
/// session's outcome (from the event log: the state holds only the current session's)
/// and the supplementary one. The unit columns name the unit the family holds.
#[derive(Debug, Serialize)]
struct ResultRow<'a> {
    #[serde(rename = "排位 rank")]
    rank: u32,
    #[serde(rename = "家庭编号 family", serialize_with = "text_cell")]
    family: &'a str,
    #[serde(rename = "姓名 name", serialize_with = "text_cell")]
    name: &'a str,
    #[serde(rename = "正选场次 formal session", serialize_with = "text_cell")]
    session: &'a str,
    #[serde(rename = "正选结果 formal result")]
    result: &'static str,
    /// Local date-time of the batch's time zone (Excel shows epoch milliseconds as a number).
    #[serde(rename = "正选时间 formal at")]
    at: String,
    #[serde(
        rename = "补选场次 supplementary session",
        serialize_with = "text_cell"
    )]
    supplementary_session: &'a str,
    #[serde(rename = "补选结果 supplementary result")]
    supplementary_result: &'static str,
    #[serde(rename = "补选时间 supplementary at")]
    supplementary_at: String,
    #[serde(rename = "房源 unit", serialize_with = "text_cell")]
    unit: String,
    #[serde(rename = "楼栋 building", serialize_with = "text_cell")]
    building: String,
    #[serde(rename = "房号 number", serialize_with = "text_cell")]
    number: String,
    #[serde(rename = "户型 layout", serialize_with = "text_cell")]
    layout: String,
}

/// A text cell a spreadsheet will not run as a formula (CSV injection, OWASP): text
/// starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`,
/// which spreadsheets show as text. Only for text from imports (names, ids, unit
/// fields), never for numbers we write ourselves.
pub fn spreadsheet_text(s: &str) -> Cow<'_, str> {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => Cow::Owned(format!("'{s}")),
        _ => Cow::Borrowed(s),
    }
}

fn text_cell<S: serde::Serializer, T: AsRef<str>>(s: &T, out: S) -> Result<S::Ok, S::Error> {
    out.serialize_str(&spreadsheet_text(s.as_ref()))
}

/// Each family's outcome in its formal session, read from the event log: outcomes
/// logged before a supplementary session took the family in.
fn formal_outcomes(events: &[Event]) -> HashMap<FamilyId, Outcome> {
    let mut formal = HashMap::new();
    let mut moved = std::collections::HashSet::new();
    for e in events {
        let (family, outcome) = match &e.event {
            EventKind::Selected { family, unit, how } => (
                family,
                Outcome::Selected {
                    unit: unit.clone(),
                    how: *how,
                    at: e.at,
                },
            ),
            EventKind::NoUnit { family, reason } => (
                family,
                Outcome::NoUnit {
                    reason: *reason,
                    at: e.at,
                },
            ),
            EventKind::Waived { family } => (family, Outcome::Waived { at: e.at }),
            EventKind::SupplementaryPublished { session } => {
                moved.extend(session.families.iter().cloned());
                continue;
            }
            _ => continue,
        };
        if !moved.contains(family) {
            formal.insert(family.clone(), outcome);
        }
    }
    formal
}

/// The result's words and time, `("", "")` for no outcome.
fn outcome_cells(outcome: Option<&Outcome>, utc_offset_minutes: i32) -> (&'static str, String) {
    let (words, at) = match outcome {
        Some(Outcome::Selected { how, at, .. }) => (
            match how {
                How::Confirmed => "确认正选 confirmed",
                How::Automatic => "系统自动确认 automatic",
            },
            Some(*at),
        ),
        Some(Outcome::NoUnit { reason, at }) => (
            match reason {
                NoUnitReason::Absent => "未参与 absent",
                NoUnitReason::NoFreeIntention => "未选定 no unit",
                NoUnitReason::NoIntentions => "未选定 no intentions",
            },
            Some(*at),
        ),
        Some(Outcome::Waived { at }) => ("主动放弃 waived", Some(*at)),
        None => ("未完成 pending", None),
    };
    (
        words,
        at.map(|a| local_time(a, utc_offset_minutes))
            .unwrap_or_default(),
    )
}

fn result_rows<'a>(
    batch: &'a xuanfang_hub::Batch,
    records: &'a [FamilyRecord],
    formal: &'a HashMap<FamilyId, Outcome>,
) -> Vec<ResultRow<'a>> {
    // One map, not a search of the units per family.
    let units: HashMap<&xuanfang_hub::UnitId, &xuanfang_hub::Unit> =
        batch.units.iter().map(|u| (&u.id, u)).collect();
    let tz = batch.utc_offset_minutes;
    let mut rows: Vec<_> = records
        .iter()
        .map(|r| {
            let current = r.state.outcome.as_ref();
            let (formal_outcome, supplementary) = match &r.state.supplementary_session {
                Some(s) => (formal.get(&r.family.id), Some((s, current))),
                None => (current, None),
            };
            let (result, at) = outcome_cells(formal_outcome, tz);
            let (supplementary_result, supplementary_at) = match supplementary {
                Some((_, o)) => outcome_cells(o, tz),
                None => ("", String::new()),
            };
            let unit = current.and_then(Outcome::unit);
            let u = unit.and_then(|u| units.get(u).copied());
            ResultRow {
                rank: r.family.rank,
                family: r.family.id.as_str(),
                name: &r.family.name,
                session: r.family.session.as_str(),
                result,
                at,
                supplementary_session: supplementary.map(|(s, _)| s.as_str()).unwrap_or(""),
                supplementary_result,
                supplementary_at,
                unit: unit.map(|u| u.to_string()).unwrap_or_default(),
                building: u.map(|u| u.building.clone()).unwrap_or_default(),
                number: u.map(|u| u.number.clone()).unwrap_or_default(),
                layout: u.map(|u| u.layout.to_string()).unwrap_or_default(),
            }
        })
        .collect();
    rows.sort_by_key(|r| r.rank);
    rows
}

/// `2025-06-07 09:03:12` in the batch's time zone.
fn local_time(at: Millis, utc_offset_minutes: i32) -> String {
    let offset = time::UtcOffset::from_whole_seconds(utc_offset_minutes * 60)
        .unwrap_or(time::UtcOffset::UTC);
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.0) * 1_000_000)
        .map(|t| t.to_offset(offset))
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| at.0.to_string())
}

fn export_failed(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal).detail(e.to_string())
}

/// What an export is made of: the batch, every family's record and the formal outcomes
/// of families that went on to a supplementary session (operators only).
struct ExportInputs {
    batch: xuanfang_hub::Batch,
    records: Vec<FamilyRecord>,
    formal: HashMap<FamilyId, Outcome>,
}

impl ExportInputs {
    async fn read(app: &App, hub: &BatchHub) -> Result<Self, ApiError> {
        let records = app.alloc.results(&hub.batch).await?;
        let events = all_events(app, hub).await?;
        Ok(ExportInputs {
            batch: hub.statics(),
            records,
            formal: formal_outcomes(&events),
        })
    }

    fn rows(&self) -> Vec<ResultRow<'_>> {
        result_rows(&self.batch, &self.records, &self.formal)
    }
}

/// The whole event log, read in pages.
async fn all_events(app: &App, hub: &BatchHub) -> Result<Vec<Event>, ApiError> {
    let mut out = Vec::new();
    loop {
        let after = out.last().map_or(0, |e: &Event| e.seq);
        let page = app.alloc.events(&hub.batch, after, 10_000).await?;
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

/// A file download named `<what>-<batch>.<ext>`.
fn attachment(
    content_type: &str,
    batch: &xuanfang_hub::BatchId,
    what: &str,
    ext: &str,
    body: Vec<u8>,
) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                content_disposition(&format!("{what}-{batch}.{ext}")),
            ),
        ],
        body,
    )
        .into_response()
}

/// `attachment` with the file name as RFC 6266 gives it for any text: `filename*` is
/// the UTF-8 name percent-encoded (RFC 8187), and `filename` an ASCII fallback for old
/// clients, every byte outside `[A-Za-z0-9._-]` written as `_`. The value is always
/// printable ASCII without quotes inside, so whatever the name holds (`"`, CR, LF,
/// Chinese) it is a valid header that cannot be split or broken out of.
pub fn content_disposition(name: &str) -> String {
    let keep = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    let fallback: String = name
        .bytes()
        .map(|b| if keep(b) { b as char } else { '_' })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if keep(b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// `GET /api/ops/results.csv`: UTF-8 with BOM so Excel shows the Chinese correctly.
pub async fn results_csv(
    State(app): State<Arc<App>>,
    _op: Operator,
    Target(hub): Target,
) -> Result<Response, ApiError> {
    let inputs = ExportInputs::read(&app, &hub).await?;
    let out = write_csv(&inputs.rows()).map_err(export_failed)?;
    Ok(attachment(
        "text/csv; charset=utf-8",
        &inputs.batch.id,
        "results",
        "csv",
        out,
    ))
}

/// The CSV export: a BOM, a header row, then one row per family.
fn write_csv(rows: &[ResultRow<'_>]) -> Result<Vec<u8>, csv::Error> {
    let mut out = "\u{feff}".as_bytes().to_vec();
    {
        let mut w = csv::Writer::from_writer(&mut out);
        for row in rows {
            w.serialize(row)?;
        }
        w.flush()?;
    }
    Ok(out)
}

/// `GET /api/ops/results.xlsx`.
pub async fn results_xlsx(
    State(app): State<Arc<App>>,
    _op: Operator,
    Target(hub): Target,
) -> Result<Response, ApiError> {
    let inputs = ExportInputs::read(&app, &hub).await?;
    let bytes = write_xlsx(&inputs.rows()).map_err(export_failed)?;
    Ok(attachment(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        &inputs.batch.id,
        "results",
        "xlsx",
        bytes,
    ))
}

fn write_xlsx(rows: &[ResultRow<'_>]) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    let head = [
        "排位",
        "家庭编号",
        "姓名",
        "正选场次",
        "正选结果",
        "正选时间",
        "补选场次",
        "补选结果",
        "补选时间",
        "房源",
        "楼栋",
        "房号",
        "户型",
    ];
    for (c, h) in head.iter().enumerate() {
        ws.write_string(0, c as u16, *h)?;
    }
    for (i, r) in rows.iter().enumerate() {
        let row = i as u32 + 1;
        ws.write_number(row, 0, r.rank)?;
        for (c, v) in [
            r.family,
            r.name,
            r.session,
            r.result,
            &r.at,
            r.supplementary_session,
            r.supplementary_result,
            &r.supplementary_at,
            &r.unit,
            &r.building,
            &r.number,
            &r.layout,
        ]
        .iter()
        .enumerate()
        {
            ws.write_string(row, c as u16 + 1, *v)?;
        }
    }
    wb.save_to_buffer()
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    #[serde(default)]
    pub after: u64,
    pub limit: Option<usize>,
}

/// `GET /api/ops/events?after=&limit=`: the event log, for auditors.
pub async fn events(
    State(app): State<Arc<App>>,
    _op: Operator,
    Target(hub): Target,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Vec<Event>>, ApiError> {
    let limit = q.limit.unwrap_or(10_000).min(100_000);
    Ok(Json(app.alloc.events(&hub.batch, q.after, limit).await?))
}

/// `GET /api/ops/events.jsonl`: the whole event log as JSON Lines (one event per line),
/// the file auditors download from the console.
pub async fn events_jsonl(
    State(app): State<Arc<App>>,
    _op: Operator,
    Target(hub): Target,
) -> Result<Response, ApiError> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = app.alloc.events(&hub.batch, after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            serde_json::to_writer(&mut out, e).map_err(export_failed)?;
            out.push(b'\n');
        }
    }
    Ok(attachment(
        "application/x-ndjson",
        &hub.batch,
        "events",
        "jsonl",
        out,
    ))
}

/// `GET /api/ops/batch`: the whole batch (units, families, sessions), for the load
/// tool and auditors.
pub async fn batch(
    State(app): State<Arc<App>>,
    _op: Operator,
    Target(hub): Target,
) -> Result<Json<xuanfang_hub::Batch>, ApiError> {
    Ok(Json(app.alloc.batch(&hub.batch).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_are_percent_encoded_with_an_ascii_fallback() {
        assert_eq!(
            content_disposition("results-b1.csv"),
            "attachment; filename=\"results-b1.csv\"; filename*=UTF-8''results-b1.csv"
        );
        assert_eq!(
            content_disposition("results-2025年.csv"),
            "attachment; filename=\"results-2025___.csv\"; \
             filename*=UTF-8''results-2025%E5%B9%B4.csv"
        );
        // Quotes, CR/LF and the like cannot end the value early or split the header.
        let v = content_disposition("results-a\"; x=\"y\r\nSet-Cookie: z.csv");
        assert_eq!(v.matches('"').count(), 2, "{v}");
        assert!(v.bytes().all(|b| b.is_ascii_graphic() || b == b' '), "{v}");
        assert!(axum::http::HeaderValue::from_str(&v).is_ok());
        assert!(
            v.ends_with("filename*=UTF-8''results-a%22%3B%20x%3D%22y%0D%0ASet-Cookie%3A%20z.csv")
        );
    }

    #[test]
    fn text_starting_like_a_formula_is_prefixed_with_a_quote() {
        for bad in [
            "=1+1",
            "+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "=HYPERLINK(\"x\")",
        ] {
            assert_eq!(spreadsheet_text(bad), format!("'{bad}"), "{bad:?}");
        }
        for fine in [
            "", "张*明", "A-1203", "1栋", "1203", " =x", "x=1", "'quoted",
        ] {
            assert_eq!(spreadsheet_text(fine), fine, "{fine:?}");
        }
    }

    #[test]
    fn csv_export_neutralises_imported_text_but_not_numbers() {
        let row = ResultRow {
            rank: 1,
            family: "=cmd|'/c calc'!A1",
            name: "+张*明",
            session: "@S1",
            result: "确认正选 confirmed",
            at: "-5".into(),
            supplementary_session: "=S9",
            supplementary_result: "",
            supplementary_at: String::new(),
            unit: "-A101".into(),
            building: "\t1栋".into(),
            number: "\r1203".into(),
            layout: "=一房一厅".into(),
        };
        let bytes = write_csv(&[row]).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        let body = text.strip_prefix('\u{feff}').expect("BOM");
        let mut r = csv::Reader::from_reader(body.as_bytes());
        let rec = r.records().next().unwrap().unwrap();
        let cells: Vec<&str> = rec.iter().collect();
        assert_eq!(
            cells,
            [
                "1",
                "'=cmd|'/c calc'!A1",
                "'+张*明",
                "'@S1",
                "确认正选 confirmed",
                "-5",
                "'=S9",
                "",
                "",
                "'-A101",
                "'\t1栋",
                "'\r1203",
                "'=一房一厅",
            ]
        );
    }
}
