//! The lease and the move-in notice, filled from the record, the batch and the bureau's
//! terms ([`SigningConfig`]), rendered by `xuanfang-documents` on the blocking pool,
//! at most [`SigningConfig::render_concurrency`] at once.
//!
//! Where each value comes from:
//! - unit (building, number, floor, layout, area, orientation) and rent: the record's
//!   lease, with floor and orientation from the batch's unit sheet; project: the
//!   `[signing] project` setting, else the batch's name;
//! - tenant: the main applicant's full name and identity number when the family sheet
//!   gave them ([`super::identity`]), else the applicant on the record (the sheet's
//!   masked name) and [`NO_ID_NUMBER`]; the move-in notice prints the number masked;
//!   phone: the record's, masked;
//! - deposit: the record's; bureau, term, key pick-up and enquiry phone: the config;
//! - dates: the gateway's clock in the batch's local time (UTC+8 for China): the term
//!   starts on the first day of the month after the contract is signed and lasts
//!   `term_years`; the move-in date is the term's start.

use std::sync::Arc;

use axum::http::StatusCode;
use tokio::sync::Semaphore;
use xuanfang_allocator::SigningView;
use xuanfang_documents::{Date, LeaseData, NoticeData, Pdf, UnitInfo};
use xuanfang_hub::signing::Identity;
use xuanfang_hub::{Batch, ErrorCode, FamilyId, Millis};

use super::err;
use crate::config::SigningConfig;
use crate::http_error::ApiError;

/// What the identity number reads on the documents when the family sheet gave none.
pub const NO_ID_NUMBER: &str = "——";

/// Bounds the renders: each takes a core for a few hundred milliseconds, so past
/// `permits` at once a request is answered 503 (retry) instead of queueing unbounded.
pub struct Renderer {
    permits: Arc<Semaphore>,
}

impl Renderer {
    pub fn new(concurrency: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Runs `render` on the blocking pool, or answers 503 at once when every permit is
    /// taken.
    pub async fn run(
        &self,
        render: impl FnOnce() -> Result<Pdf, xuanfang_documents::DocError> + Send + 'static,
    ) -> Result<Pdf, ApiError> {
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            err(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
                .detail("busy rendering documents; retry in a moment")
        })?;
        let out = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            render()
        })
        .await
        .map_err(|_| err(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal))?;
        out.map_err(|e| {
            tracing::error!("document render failed: {e}");
            err(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal).detail("render failed")
        })
    }
}

/// The names the files download as.
pub struct FileNames {
    pub lease: String,
    pub contract: String,
    pub notice: String,
}

pub fn file_names(family: &FamilyId) -> FileNames {
    let f = sanitise(&family.0);
    FileNames {
        lease: format!("租赁合同-{f}-待签.pdf"),
        contract: format!("租赁合同-{f}.pdf"),
        notice: format!("入住通知书-{f}.pdf"),
    }
}

/// Keeps `[A-Za-z0-9_-]`, the rest as `_`: document numbers and file names.
fn sanitise(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The contract number: stable for a batch and family (`<batch>-<family>`).
pub fn contract_no(batch: &Batch, family: &FamilyId) -> String {
    format!("{}-{}", sanitise(&batch.id.0), sanitise(&family.0))
}

/// The notice number: the contract's with `-RZ` (入住).
pub fn notice_no(batch: &Batch, family: &FamilyId) -> String {
    format!("{}-RZ", contract_no(batch, family))
}

/// `at` as a calendar date `offset_minutes` east of UTC.
pub fn local_date(at: Millis, offset_minutes: i32) -> Date {
    let secs = at.0.div_euclid(1000) + i64::from(offset_minutes) * 60;
    let d = time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date();
    of_time(d)
}

fn of_time(d: time::Date) -> Date {
    Date::new(d.year().clamp(0, 9999) as u16, d.month() as u8, d.day())
}

/// The lease term for a contract signed on `signed`: from the first day of the next
/// month, `years` long (the day before the same date `years` later).
pub fn term(signed: Date, years: u16) -> (Date, Date) {
    let (y, m) = if signed.month == 12 {
        (i32::from(signed.year) + 1, 1)
    } else {
        (i32::from(signed.year), signed.month + 1)
    };
    let first = |y: i32, m: u8| {
        time::Date::from_calendar_date(
            y,
            time::Month::try_from(m).unwrap_or(time::Month::January),
            1,
        )
        .unwrap_or(time::Date::MIN)
    };
    let start = first(y, m);
    let end = first(y + i32::from(years), m)
        .previous_day()
        .unwrap_or(start);
    (of_time(start), of_time(end))
}

fn unit_info(view: &SigningView, batch: &Batch, terms: &SigningConfig) -> UnitInfo {
    let sheet = batch.units.iter().find(|u| u.id == view.lease.unit);
    UnitInfo {
        project: if terms.project.trim().is_empty() {
            batch.name.clone()
        } else {
            terms.project.clone()
        },
        building: view.lease.building.clone(),
        number: view.lease.number.clone(),
        floor: sheet.map(|u| u.floor).unwrap_or_default(),
        layout: view.lease.layout.to_string(),
        area_m2: view.lease.area,
        orientation: sheet.map(|u| u.orientation.clone()).unwrap_or_default(),
    }
}

/// The tenant's name on the documents: the full name, else the record's (masked).
pub fn tenant_name(view: &SigningView, identity: Option<&Identity>) -> String {
    identity
        .and_then(|i| i.full_name.clone())
        .unwrap_or_else(|| view.applicant.clone())
}

/// The lease of `view` as signed on `signed`, for the tenant of `identity` (the
/// family's own document: the full name and number).
pub fn lease_data(
    view: &SigningView,
    batch: &Batch,
    terms: &SigningConfig,
    signed: Date,
    identity: Option<&Identity>,
) -> LeaseData {
    let (term_start, term_end) = term(signed, terms.term_years);
    LeaseData {
        contract_no: contract_no(batch, &view.family),
        bureau: terms.bureau.clone(),
        tenant: tenant_name(view, identity),
        tenant_id: identity
            .and_then(|i| i.id_number.as_ref())
            .map_or_else(|| NO_ID_NUMBER.to_owned(), |n| n.as_str().to_owned()),
        phone: view.phone_masked.clone().unwrap_or_default(),
        unit: unit_info(view, batch, terms),
        rent_fen: view.lease.rent_fen,
        deposit_fen: view.deposit_fen,
        term_start,
        term_end,
        signed_on: signed,
    }
}

/// The move-in notice of `view`, whose contract was signed on `signed`, issued on
/// `issued`.
pub fn notice_data(
    view: &SigningView,
    batch: &Batch,
    terms: &SigningConfig,
    signed: Date,
    issued: Date,
    identity: Option<&Identity>,
) -> NoticeData {
    let (term_start, term_end) = term(signed, terms.term_years);
    NoticeData {
        notice_no: notice_no(batch, &view.family),
        bureau: terms.bureau.clone(),
        tenant: tenant_name(view, identity),
        tenant_id: identity
            .and_then(|i| i.id_number.as_ref())
            .map_or_else(|| NO_ID_NUMBER.to_owned(), |n| n.masked()),
        unit: unit_info(view, batch, terms),
        term_start,
        term_end,
        key_place: terms.key_place.clone(),
        key_time: terms.key_time.clone(),
        move_in: term_start,
        contact: terms.contact.clone(),
        issued_on: issued,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_term_starts_the_first_of_next_month() {
        assert_eq!(
            term(Date::new(2026, 12, 1), 3),
            (Date::new(2027, 1, 1), Date::new(2029, 12, 31))
        );
        assert_eq!(
            term(Date::new(2026, 1, 31), 3),
            (Date::new(2026, 2, 1), Date::new(2029, 1, 31))
        );
    }

    #[test]
    fn dates_are_the_bureaus_local_ones() {
        // 2026-11-30 16:30 UTC is 2026-12-01 00:30 in Shenzhen.
        let at = Millis(1_796_056_200_000);
        assert_eq!(local_date(at, 0), Date::new(2026, 11, 30));
        assert_eq!(local_date(at, 480), Date::new(2026, 12, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn renders_past_the_bound_are_refused_at_once_not_queued() {
        let renderer = Arc::new(Renderer::new(1));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let r = renderer.clone();
        let first = tokio::spawn(async move {
            r.run(move || {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                Err(xuanfang_documents::DocError::BadSignature)
            })
            .await
        });
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        let busy = renderer
            .run(|| Err(xuanfang_documents::DocError::BadSignature))
            .await
            .unwrap_err();
        assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.code, ErrorCode::Unavailable);
        release_tx.send(()).unwrap();
        let failed = first.await.unwrap().unwrap_err();
        assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
        // The permit is back: the next render runs.
        let again = renderer
            .run(|| Err(xuanfang_documents::DocError::BadSignature))
            .await
            .unwrap_err();
        assert_eq!(again.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn numbers_and_names_are_safe() {
        assert_eq!(sanitise("b/1 x"), "b_1_x");
        assert_eq!(
            file_names(&FamilyId::from("F1")).contract,
            "租赁合同-F1.pdf"
        );
    }
}
