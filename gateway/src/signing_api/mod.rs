//! 网上签约 over HTTP: the family's steps (`/api/me/signing…`), the operators' review
//! (`/api/ops/signing…`), the payment provider's notification
//! (`/api/providers/payment/notify`) and the sandbox providers' pages (`/sandbox/…`).
//!
//! One file per step: [`details`] (tenant details and card photos), [`face`], [`contract`]
//! (the lease to read, the signature, the signed PDF), [`deposit`] (order and QR code),
//! [`review`] (the operators' queue and decisions), [`materials`] (the move-in notice and
//! the PDFs of 材料管理), [`notify`] (the payment provider's notification) and
//! [`sandbox`] (the sandbox providers' pages). [`documents`] fills and renders the PDFs.
//!
//! Each route's extractors are its actor: `FamilyTarget` → `Actor::Family`, `Operator`
//! → `Actor::Operator`, a notification whose signature verifies → `Actor::PaymentProvider`,
//! a verdict the gateway fetched itself from the face provider → `Actor::FaceProvider`.
//! Every write carries an `Idempotency-Key` header: the engine's `req_id`.
//!
//! Signing opens lazily: the family's first signing request opens its record when its
//! selection outcome is `Selected` (`open_signing` checks that atomically and is
//! idempotent), so no hook is needed in the confirm or deadline paths of either engine.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use parking_lot::Mutex;
use serde::Serialize;
use xuanfang_allocator::{AllocError, SigningStore, SigningView};
use xuanfang_hub::blob::BlobRef;
use xuanfang_hub::signing::{Step, BANKS};
use xuanfang_hub::{BatchId, ErrorCode, FamilyId, Millis, Outcome, Rejection};

use crate::app::App;
use crate::blobs::BlobStore;
use crate::caller::FamilyTarget;
use crate::config::SigningConfig;
use crate::http_error::ApiError;
use crate::providers::face::{FaceVerifier, SandboxFace};
use crate::providers::payment::{PaymentProvider, SandboxPayment};

pub mod contract;
pub mod deposit;
pub mod details;
pub mod documents;
pub mod face;
pub mod fresh;
pub mod identity;
pub mod materials;
pub mod notify;
pub mod review;
pub mod sandbox;
pub mod term;

pub use contract::{
    lease_pdf, my_contract_pdf, ops_contract_pdf, sign_contract, MAX_SIGNATURE_BODY,
};
pub use deposit::{order_deposit, qr_svg, DepositOrdered};
pub use details::{
    check_image, check_image_off_runtime, fill_details, my_card_back, my_card_front, ops_card_back,
    ops_card_front, CheckedImage, DetailsForm, Photo,
};
pub use face::{finish_face, settle_face, start_face, FaceFinished, FaceStarted};
pub use materials::{issue_notice, my_notice_pdf, ops_notice_pdf};
pub use notify::{payment_notify, NotifyAnswer};
pub use review::{
    approve, queue, record, refunds, reject, unlock_face, QueueParams, QueueRow, RefundParams,
    RejectBody,
};
pub use sandbox::{
    sandbox_face_page, sandbox_face_result, sandbox_pay, sandbox_pay_page, FaceForm,
};

/// Largest image part (card photo, signature) accepted.
pub const MAX_IMAGE_BYTES: usize = 8 * 1024 * 1024;
/// Largest width and height of an accepted image.
pub const MAX_IMAGE_SIDE: u32 = 4096;
/// The body limit of the details upload: two photos and the form.
pub const MAX_DETAILS_BODY: usize = 2 * MAX_IMAGE_BYTES + 64 * 1024;
/// The provider sees the order expire this long before the hub does, so every payment
/// it accepts is notified while the order is still live here (hub's rule: a new order
/// may replace one from then on).
pub const PROVIDER_EXPIRY_MARGIN_MS: i64 = xuanfang_hub::signing::PROVIDER_STOP_MS;

/// How the deposit of a newly opened record is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepositRule {
    /// A fixed amount in fen (`--deposit-fen`).
    Fixed(u64),
    /// This many months of the unit's rent (`--deposit-months`, default 2).
    MonthsOfRent(u32),
}

impl Default for DepositRule {
    fn default() -> Self {
        DepositRule::MonthsOfRent(2)
    }
}

impl DepositRule {
    pub fn amount_fen(self, rent_fen: u64) -> u64 {
        match self {
            DepositRule::Fixed(f) => f,
            DepositRule::MonthsOfRent(m) => rent_fen.saturating_mul(u64::from(m)),
        }
    }
}

/// Everything signing needs in the gateway.
pub struct Signing {
    pub store: Arc<dyn SigningStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub face: Option<Arc<dyn FaceVerifier>>,
    pub payment: Option<Arc<dyn PaymentProvider>>,
    pub deposit: DepositRule,
    /// The sandbox adapters, when they are the providers (their pages are served).
    pub sandbox_face: Option<Arc<SandboxFace>>,
    pub sandbox_payment: Option<Arc<SandboxPayment>>,
    /// The bureau's terms the documents print (`[signing]` of the config file).
    pub terms: SigningConfig,
    /// Renders in progress are bounded by this ([`documents::Renderer`]).
    pub renderer: documents::Renderer,
    /// Refunds of payments the hub did not take, in the deployment's refund ledger.
    pub refunds: Arc<crate::refunds::Refunds>,
    /// The applicants' full names and identity numbers, sealed with the data key
    /// ([`Signing::with_data_key`]); unset: the sheets' identity columns are not kept.
    pub identities: Option<identity::Identities>,
    /// When signed contracts were signed (the lease term on the page).
    signed_at: term::SignedAt,
    /// QR payloads of live orders, so a page view does not call the provider again.
    qr_payloads: Mutex<HashMap<String, (String, Millis)>>,
}

impl Signing {
    /// Signing with the sandbox providers (demo, tests, rehearsals); `pay_key` signs the
    /// sandbox's payment notifications.
    pub fn sandbox(
        store: Arc<dyn SigningStore>,
        blobs: Arc<dyn BlobStore>,
        pay_key: [u8; 32],
        deposit: DepositRule,
    ) -> Self {
        let face = Arc::new(SandboxFace::default());
        let pay = Arc::new(SandboxPayment::new(pay_key));
        Self {
            store,
            blobs,
            face: Some(face.clone()),
            payment: Some(pay.clone()),
            deposit,
            sandbox_face: Some(face),
            sandbox_payment: Some(pay),
            terms: SigningConfig::default(),
            renderer: documents::Renderer::new(SigningConfig::default().render_concurrency),
            refunds: Arc::new(crate::refunds::Refunds::in_memory()),
            identities: None,
            signed_at: term::SignedAt::default(),
            qr_payloads: Mutex::new(HashMap::new()),
        }
    }

    /// Signing without providers: details and review work; face and deposit answer 503.
    pub fn without_providers(
        store: Arc<dyn SigningStore>,
        blobs: Arc<dyn BlobStore>,
        deposit: DepositRule,
    ) -> Self {
        Self {
            store,
            blobs,
            face: None,
            payment: None,
            deposit,
            sandbox_face: None,
            sandbox_payment: None,
            terms: SigningConfig::default(),
            renderer: documents::Renderer::new(SigningConfig::default().render_concurrency),
            refunds: Arc::new(crate::refunds::Refunds::in_memory()),
            identities: None,
            signed_at: term::SignedAt::default(),
            qr_payloads: Mutex::new(HashMap::new()),
        }
    }

    /// Signing with real vendors' adapters (or any mix): no sandbox pages are served.
    pub fn with_providers(
        store: Arc<dyn SigningStore>,
        blobs: Arc<dyn BlobStore>,
        face: Option<Arc<dyn FaceVerifier>>,
        payment: Option<Arc<dyn PaymentProvider>>,
        deposit: DepositRule,
    ) -> Self {
        Self {
            face,
            payment,
            ..Self::without_providers(store, blobs, deposit)
        }
    }

    /// The same with a lasting refund ledger (the journal file, or the deployment's
    /// Redis), so a restart does not refund again.
    pub fn with_refunds(mut self, refunds: Arc<crate::refunds::Refunds>) -> Self {
        self.refunds = refunds;
        self
    }

    /// The same keeping the applicants' identities of imported sheets, sealed with
    /// `data_key` (the engine's signing key: one secret to keep).
    pub fn with_data_key(mut self, options: &xuanfang_allocator::SigningOptions) -> Self {
        self.identities = Some(identity::Identities::new(options));
        self
    }

    /// The identity of a family of `batch`, if its sheet row gave one.
    pub async fn identity_of(
        &self,
        batch: &BatchId,
        family: &FamilyId,
    ) -> Result<Option<xuanfang_hub::signing::Identity>, ApiError> {
        let Some(ids) = &self.identities else {
            return Ok(None);
        };
        ids.of(self.blobs.as_ref(), batch, family)
            .await
            .map_err(|e| {
                tracing::error!("identities: {e}");
                err(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Internal)
            })
    }

    /// The same with the bureau's terms of the config file.
    pub fn with_terms(mut self, terms: SigningConfig) -> Self {
        self.renderer = documents::Renderer::new(terms.render_concurrency);
        self.terms = terms;
        self
    }

    /// Remembers the QR payload of a live order (until it expires).
    fn remember_qr(&self, out_trade_no: &str, payload: &str, expires_at: Millis, now: Millis) {
        let mut held = self.qr_payloads.lock();
        held.retain(|_, (_, until)| *until > now);
        held.insert(out_trade_no.to_owned(), (payload.to_owned(), expires_at));
    }

    fn qr_of(&self, out_trade_no: &str) -> Option<String> {
        self.qr_payloads
            .lock()
            .get(out_trade_no)
            .map(|(p, _)| p.clone())
    }
}

pub(crate) fn err(status: StatusCode, code: ErrorCode) -> ApiError {
    ApiError::new(status, code)
}

pub(crate) fn signing_of(app: &App) -> Result<&Signing, ApiError> {
    app.signing().ok_or_else(|| {
        err(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
            .detail("signing is not enabled on this gateway (no data key)")
    })
}

pub(crate) fn alloc_err(e: AllocError) -> ApiError {
    match e {
        AllocError::SigningDisabled => err(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
            .detail("signing is not enabled on this engine (no data key)"),
        other => ApiError::from(other),
    }
}

/// The status a rule's refusal is answered with.
pub fn rejected(r: Rejection) -> ApiError {
    use ErrorCode as E;
    let status = match r.code {
        E::Forbidden => StatusCode::FORBIDDEN,
        E::UnknownFamily | E::UnknownBatch | E::NotSelected => StatusCode::NOT_FOUND,
        E::StepLocked | E::StepDone | E::OrderPending | E::NotInReview | E::Conflict => {
            StatusCode::CONFLICT
        }
        E::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ApiError::new(status, r.code)
}

pub(crate) fn provider_down(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!("provider call failed: {e}");
    err(StatusCode::BAD_GATEWAY, ErrorCode::Unavailable).detail("provider unavailable")
}

/// The `Idempotency-Key` header, required on every signing write: the engine's `req_id`.
pub struct IdempotencyKey(pub String);

impl FromRequestParts<Arc<App>> for IdempotencyKey {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &Arc<App>) -> Result<Self, ApiError> {
        let v = parts
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic()));
        match v {
            Some(k) => Ok(IdempotencyKey(k.to_owned())),
            None => Err(err(StatusCode::BAD_REQUEST, ErrorCode::BadRequest)
                .detail("Idempotency-Key header required (1–64 visible ASCII)")),
        }
    }
}

/// A step as the family's screen shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StepState {
    pub step: Step,
    /// `done`, `open` (can be done now) or `locked` (needs an earlier step).
    pub state: &'static str,
}

/// A bank the details form offers (hub's `BANKS`: what the server accepts).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BankInfo {
    pub code: &'static str,
    pub zh: &'static str,
    pub en: &'static str,
}

/// A file of the record the page links to (材料管理 and the reviewer's view).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Material {
    /// `contract` or `notice`.
    pub kind: &'static str,
    /// Where the caller fetches it (with `?batch=` added like every call).
    pub url: String,
    /// The name it downloads as.
    pub file_name: String,
    /// SHA-256 of the file, 64 hex digits (the one in the signing log).
    pub sha256: String,
    pub bytes: u64,
    /// `false` for a contract a reviewer returned: the family signs again.
    pub current: bool,
}

/// Something about the documents a reviewer should see, beside the hub's `flags`.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DocFlag {
    /// `name_outside_font`: the tenant's name has characters the PDF font lacks (they
    /// print as blank boxes); the reviewer checks the printed name.
    pub flag: &'static str,
    /// The characters concerned.
    pub chars: String,
}

/// Who looks at a page: the family itself, or an operator (its files' URLs differ).
#[derive(Clone, Copy, Debug)]
pub enum Viewer {
    Family,
    Operator,
}

/// What `GET /api/me/signing`, every family step and the operator's record answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SigningPage {
    #[serde(flatten)]
    pub view: SigningView,
    pub steps: Vec<StepState>,
    /// The banks the details form offers.
    pub banks: Vec<BankInfo>,
    /// The signed contract (once signed) and the move-in notice (once issued).
    pub materials: Vec<Material>,
    pub doc_flags: Vec<DocFlag>,
    /// The payment QR code of the live order as an inline SVG, to scan from another
    /// device (long-press recognition does not work); absent without a live order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr_svg: Option<String>,
    /// When the provider stops taking payment of the live order (a minute before
    /// `live_order.expires_at`): the phone counts down to it, and may order again after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_expires_at: Option<Millis>,
    /// The lease term (`GET /api/me/signing` only): from the contract once signed,
    /// projected from today before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub term: Option<term::LeaseTerm>,
    /// The main applicant's full name and identity number from the family sheet
    /// (`GET /api/me/signing`: masked; the operator's record: whole); absent when the
    /// sheet gave none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<identity::IdentityShown>,
    /// The refunds of this family's payments (the operator's record only; absent when
    /// none): amount, reason, status, time, why it failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refunds: Vec<crate::refunds::RefundEntry>,
}

/// The flags of the documents for `tenant`.
pub fn doc_flags(tenant: &str) -> Vec<DocFlag> {
    let missing = xuanfang_documents::uncovered(tenant);
    if missing.is_empty() {
        return Vec::new();
    }
    vec![DocFlag {
        flag: "name_outside_font",
        chars: missing.into_iter().collect(),
    }]
}

pub fn page_of(sg: &Signing, view: SigningView, viewer: Viewer) -> SigningPage {
    let steps = Step::ALL
        .into_iter()
        .map(|s| {
            let state = if view.done.contains(&s) {
                "done"
            } else if s.needs().iter().all(|n| view.done.contains(n)) {
                "open"
            } else {
                "locked"
            };
            StepState { step: s, state }
        })
        .collect();
    let banks = BANKS
        .iter()
        .map(|b| BankInfo {
            code: b.code,
            zh: b.zh,
            en: b.en,
        })
        .collect();
    let base = match viewer {
        Viewer::Family => "/api/me/signing".to_owned(),
        Viewer::Operator => format!("/api/ops/signing/{}", view.family),
    };
    let mut materials = Vec::new();
    let names = documents::file_names(&view.family);
    if let Some(c) = &view.contract {
        materials.push(Material {
            kind: "contract",
            url: format!("{base}/contract.pdf"),
            file_name: names.contract,
            sha256: c.pdf.sha256.to_string(),
            bytes: c.pdf.bytes,
            current: view.done.contains(&Step::Contract),
        });
    }
    if let Some(n) = &view.notice {
        materials.push(Material {
            kind: "notice",
            url: format!("{base}/notice.pdf"),
            file_name: names.notice,
            sha256: n.pdf.sha256.to_string(),
            bytes: n.pdf.bytes,
            current: true,
        });
    }
    let qr_svg = (view.live_order.as_ref())
        .and_then(|o| sg.qr_of(&o.out_trade_no))
        .map(|payload| qr_svg(&payload));
    let provider_expires_at =
        (view.live_order.as_ref()).map(|o| o.expires_at.plus_ms(-PROVIDER_EXPIRY_MARGIN_MS));
    SigningPage {
        provider_expires_at,
        term: None,
        identity: None,
        refunds: Vec::new(),
        doc_flags: doc_flags(&view.applicant),
        view,
        steps,
        banks,
        materials,
        qr_svg,
    }
}

/// Stores `bytes` a request brought or rendered; a store that fails answers 503.
pub(crate) async fn store_blob(
    sg: &Signing,
    bytes: &[u8],
    content_type: &str,
) -> Result<BlobRef, ApiError> {
    sg.blobs.put(bytes, content_type).await.map_err(|e| {
        tracing::warn!("blob store: {e}");
        err(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Internal)
    })
}

/// A stored file as a download: its media type, `inline` with an RFC 6266 name, never
/// cached (personal data), never sniffed.
pub(crate) async fn blob_response(
    sg: &Signing,
    blob: &BlobRef,
    file_name: &str,
) -> Result<Response, ApiError> {
    let bytes = sg
        .blobs
        .get(blob)
        .await
        .map_err(|e| {
            tracing::warn!("blob store: {e}");
            err(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Internal)
        })?
        .ok_or_else(|| err(StatusCode::NOT_FOUND, ErrorCode::Internal).detail("blob missing"))?;
    Ok(file_response(bytes, &blob.content_type, file_name))
}

/// Bytes as an inline file (see [`blob_response`]).
pub(crate) fn file_response(bytes: Vec<u8>, content_type: &str, file_name: &str) -> Response {
    let mut res = Bytes::from(bytes).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    // The ops exports' encoding (any name is a valid header), shown in the browser.
    let disposition =
        crate::ops::content_disposition(file_name).replacen("attachment", "inline", 1);
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

/// The family's record, opened on its first signing request when it selected a unit.
pub(crate) async fn ensure_open(
    app: &App,
    sg: &Signing,
    batch: &BatchId,
    family: &FamilyId,
) -> Result<SigningView, ApiError> {
    if let Some(v) = sg
        .store
        .signing_view(batch, family)
        .await
        .map_err(alloc_err)?
    {
        return Ok(v);
    }
    let fv = app.alloc.family(batch, family).await.map_err(alloc_err)?;
    let Some(Outcome::Selected { unit, .. }) = fv.outcome else {
        return Err(rejected(ErrorCode::NotSelected.into()));
    };
    let statics = app.alloc.batch(batch).await.map_err(alloc_err)?;
    let rent = statics
        .units
        .iter()
        .find(|u| u.id == unit)
        .map(|u| xuanfang_hub::signing::yuan_to_fen(u.rent))
        .unwrap_or(0);
    let applicant = statics
        .families
        .iter()
        .find(|f| &f.id == family)
        .map(|f| f.name.clone())
        .unwrap_or_default();
    let deposit = sg.deposit.amount_fen(rent);
    sg.store
        .open_signing(batch, family, &applicant, deposit)
        .await
        .map_err(alloc_err)?
        .map_err(rejected)
}

pub(crate) fn answer(
    r: Result<Result<SigningView, Rejection>, AllocError>,
) -> Result<SigningView, ApiError> {
    r.map_err(alloc_err)?.map_err(rejected)
}

// ---- family routes ----

pub async fn my_signing(
    State(app): State<Arc<App>>,
    t: FamilyTarget,
) -> Result<Json<SigningPage>, ApiError> {
    let sg = signing_of(&app)?;
    let view = ensure_open(&app, sg, &t.hub.batch, &t.family).await?;
    deposit::recall_qr(sg, &t.hub.batch, &view, app.now()).await;
    let offset = t.hub.statics().utc_offset_minutes;
    let lease_term = term::lease_term(sg, &t.hub.batch, &view, offset).await;
    let identity = sg.identity_of(&t.hub.batch, &t.family).await?;
    let mut page = page_of(sg, view, Viewer::Family);
    page.term = lease_term;
    if let Some(name) = identity.as_ref().and_then(|i| i.full_name.as_deref()) {
        page.doc_flags = doc_flags(name);
    }
    page.identity = identity.as_ref().map(identity::IdentityShown::masked);
    Ok(Json(page))
}

/// Reads one multipart part, refusing more than `cap` bytes with 413.
pub(crate) async fn read_part(
    field: &mut axum::extract::multipart::Field<'_>,
    cap: usize,
) -> Result<Vec<u8>, ApiError> {
    let mut buf = Vec::new();
    loop {
        match field.chunk().await {
            Ok(Some(c)) => {
                if buf.len() + c.len() > cap {
                    return Err(err(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::FrameTooLarge)
                        .detail(format!("a part is at most {cap} bytes")));
                }
                buf.extend_from_slice(&c);
            }
            Ok(None) => return Ok(buf),
            Err(e) => {
                let status = e.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    ErrorCode::FrameTooLarge
                } else {
                    ErrorCode::BadRequest
                };
                return Err(err(status, code).detail(e.body_text()));
            }
        }
    }
}

pub(crate) fn no_provider() -> ApiError {
    err(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
        .detail("no provider configured for this step")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deposit_is_two_months_of_rent_by_default() {
        assert_eq!(DepositRule::default().amount_fen(120_000), 240_000);
        assert_eq!(DepositRule::Fixed(5).amount_fen(120_000), 5);
    }
}
