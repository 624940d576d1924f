//! 网上签约 over HTTP: the family's steps (`/api/me/signing…`), the operators' review
//! (`/api/ops/signing…`), the payment provider's notification
//! (`/api/providers/payment/notify`) and the sandbox providers' pages (`/sandbox/…`).
//!
//! Each route's extractors are its actor: `FamilyTarget` → `Actor::Family`, `Operator`
//! → `Actor::Operator`, a notification whose signature verifies → `Actor::PaymentProvider`,
//! a verdict the gateway fetched itself from the face provider → `Actor::FaceProvider`.
//! Every write carries an `Idempotency-Key` header: the engine's `req_id`.
//!
//! Signing opens lazily: the family's first signing request opens its record when its
//! selection outcome is `Selected` (`open_signing` checks that atomically and is
//! idempotent), so no hook is needed in the confirm or deadline paths of either engine.

use std::io::Cursor;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Multipart, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde::{Deserialize, Serialize};
use xuanfang_allocator::{AllocError, SigningFilter, SigningStore, SigningView};
use xuanfang_hub::blob::BlobRef;
use xuanfang_hub::signing::{Actor, CardNumber, FaceState, Phone, Step};
use xuanfang_hub::{
    BatchId, ErrorCode, FamilyId, Millis, Outcome, Rejection, SigningAction, SigningRecord,
};

use crate::app::App;
use crate::blobs::BlobStore;
use crate::caller::{FamilyTarget, Operator, Target};
use crate::http_error::ApiError;
use crate::providers::face::{FaceStart, FaceVerdict, FaceVerifier, SandboxFace};
use crate::providers::payment::{OrderRequest, PaymentProvider, SandboxPayment};

/// Largest image part (card photo, signature) accepted.
pub const MAX_IMAGE_BYTES: usize = 8 * 1024 * 1024;
/// Largest width and height of an accepted image.
pub const MAX_IMAGE_SIDE: u32 = 4096;
/// The body limit of the details upload: two photos and the form.
pub const MAX_DETAILS_BODY: usize = 2 * MAX_IMAGE_BYTES + 64 * 1024;
/// The provider sees the order expire this long before the hub does, so every payment
/// it accepts is notified while the order is still live here.
pub const PROVIDER_EXPIRY_MARGIN_MS: i64 = 60_000;

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
        }
    }
}

fn err(status: StatusCode, code: ErrorCode) -> ApiError {
    ApiError::new(status, code)
}

fn signing_of(app: &App) -> Result<&Signing, ApiError> {
    app.signing().ok_or_else(|| {
        err(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
            .detail("signing is not enabled on this gateway (no data key)")
    })
}

fn alloc_err(e: AllocError) -> ApiError {
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

fn provider_down(e: impl std::fmt::Display) -> ApiError {
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
#[derive(Debug, Serialize)]
pub struct StepState {
    pub step: Step,
    /// `done`, `open` (can be done now) or `locked` (needs an earlier step).
    pub state: &'static str,
}

/// What `GET /api/me/signing` and the operator's record answer.
#[derive(Debug, Serialize)]
pub struct SigningPage {
    #[serde(flatten)]
    pub view: SigningView,
    pub steps: Vec<StepState>,
}

pub fn page_of(view: SigningView) -> SigningPage {
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
    SigningPage { view, steps }
}

/// The family's record, opened on its first signing request when it selected a unit.
async fn ensure_open(
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

fn answer(r: Result<Result<SigningView, Rejection>, AllocError>) -> Result<SigningView, ApiError> {
    r.map_err(alloc_err)?.map_err(rejected)
}

// ---- family routes ----

pub async fn my_signing(
    State(app): State<Arc<App>>,
    t: FamilyTarget,
) -> Result<Json<SigningPage>, ApiError> {
    let sg = signing_of(&app)?;
    let view = ensure_open(&app, sg, &t.hub.batch, &t.family).await?;
    Ok(Json(page_of(view)))
}

/// The `details` part of the details upload.
#[derive(Debug, Deserialize)]
pub struct DetailsForm {
    pub phone: String,
    pub bank: String,
    pub card_number: String,
    #[serde(default)]
    pub luhn_confirmed: bool,
}

/// A checked image: its media type and the re-encoded bytes (metadata such as EXIF
/// dropped).
pub struct CheckedImage {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// Decodes `bytes` as a PNG or JPEG of at most [`MAX_IMAGE_SIDE`] square and re-encodes
/// it in the same format: what is stored is pixels only. `png_only` for signatures.
pub fn check_image(bytes: &[u8], png_only: bool) -> Result<CheckedImage, ApiError> {
    use image::ImageFormat;
    let bad =
        |d: &str| err(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::BadFrame).detail(d.to_owned());
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(err(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::FrameTooLarge));
    }
    let format = image::guess_format(bytes).map_err(|_| bad("not a PNG or JPEG image"))?;
    let (format, content_type) = match format {
        ImageFormat::Png => (ImageFormat::Png, "image/png"),
        ImageFormat::Jpeg if !png_only => (ImageFormat::Jpeg, "image/jpeg"),
        _ => {
            return Err(bad(if png_only {
                "not a PNG image"
            } else {
                "not a PNG or JPEG image"
            }))
        }
    };
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(u64::from(MAX_IMAGE_SIDE) * u64::from(MAX_IMAGE_SIDE) * 4 + 1024);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => {
            err(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::FrameTooLarge)
                .detail(format!("at most {MAX_IMAGE_SIDE}×{MAX_IMAGE_SIDE} pixels"))
        }
        _ => bad("the image does not decode"),
    })?;
    let mut out = Vec::new();
    let written = match format {
        ImageFormat::Jpeg => image::DynamicImage::ImageRgb8(img.to_rgb8())
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Jpeg),
        _ => img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png),
    };
    written.map_err(|_| bad("the image cannot be re-encoded"))?;
    Ok(CheckedImage {
        content_type,
        bytes: out,
    })
}

/// [`check_image`] on the blocking pool: decoding a large picture must not hold up a
/// runtime thread that serves sockets.
pub async fn check_image_off_runtime(
    bytes: Vec<u8>,
    png_only: bool,
) -> Result<CheckedImage, ApiError> {
    tokio::task::spawn_blocking(move || check_image(&bytes, png_only))
        .await
        .map_err(|_| err(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal))?
}

/// Reads one multipart part, refusing more than `cap` bytes with 413.
async fn read_part(
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

pub async fn fill_details(
    State(app): State<Arc<App>>,
    t: FamilyTarget,
    IdempotencyKey(req_id): IdempotencyKey,
    mut form: Multipart,
) -> Result<Json<SigningPage>, ApiError> {
    let sg = signing_of(&app)?;
    ensure_open(&app, sg, &t.hub.batch, &t.family).await?;
    let (mut details, mut front, mut back) = (None, None, None);
    loop {
        let mut field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                let status = e.status();
                return Err(err(status, ErrorCode::BadRequest).detail(e.body_text()));
            }
        };
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "details" => {
                let raw = read_part(&mut field, 16 * 1024).await?;
                let d: DetailsForm = serde_json::from_slice(&raw).map_err(|e| {
                    err(StatusCode::BAD_REQUEST, ErrorCode::BadRequest).detail(e.to_string())
                })?;
                details = Some(d);
            }
            "card_front" => {
                front = Some(
                    check_image_off_runtime(read_part(&mut field, MAX_IMAGE_BYTES).await?, false)
                        .await?,
                )
            }
            "card_back" => {
                back = Some(
                    check_image_off_runtime(read_part(&mut field, MAX_IMAGE_BYTES).await?, false)
                        .await?,
                )
            }
            _ => {
                return Err(err(StatusCode::BAD_REQUEST, ErrorCode::BadRequest)
                    .detail(format!("unexpected part {name:?}")))
            }
        }
    }
    let missing = |p: &str| {
        err(StatusCode::BAD_REQUEST, ErrorCode::BadRequest).detail(format!("part {p} required"))
    };
    let d = details.ok_or_else(|| missing("details"))?;
    let front = front.ok_or_else(|| missing("card_front"))?;
    let back = back.ok_or_else(|| missing("card_back"))?;
    // The hub decides; these checks only keep a refused form from leaving photos behind.
    let (phone, card) = (Phone::new(d.phone), CardNumber::new(d.card_number));
    if !phone.is_valid() {
        return Err(rejected(ErrorCode::InvalidPhone.into()));
    }
    if !card.is_well_formed() || xuanfang_hub::signing::bank(&d.bank).is_none() {
        return Err(rejected(ErrorCode::InvalidCard.into()));
    }
    if !card.passes_luhn() && !d.luhn_confirmed {
        return Err(rejected(ErrorCode::LuhnUnconfirmed.into()));
    }
    let store = |img: &CheckedImage| {
        sg.blobs.put(&img.bytes, img.content_type).map_err(|e| {
            tracing::warn!("blob store: {e}");
            err(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Internal)
        })
    };
    let (card_front, card_back) = (store(&front)?, store(&back)?);
    let action = SigningAction::FillDetails {
        phone,
        bank: d.bank,
        card_number: card,
        card_front,
        card_back,
        luhn_confirmed: d.luhn_confirmed,
    };
    let actor = Actor::Family(t.family.clone());
    let view = answer(
        sg.store
            .sign(&t.hub.batch, &t.family, &actor, &req_id, action)
            .await,
    )?;
    Ok(Json(page_of(view)))
}

#[derive(Debug, Serialize)]
pub struct FaceStarted {
    pub provider_session: String,
    /// Where to send the applicant.
    pub url: String,
    pub signing: SigningPage,
}

pub async fn start_face(
    State(app): State<Arc<App>>,
    t: FamilyTarget,
    IdempotencyKey(req_id): IdempotencyKey,
) -> Result<Json<FaceStarted>, ApiError> {
    let sg = signing_of(&app)?;
    let face = sg.face.as_ref().ok_or_else(no_provider)?;
    let view = ensure_open(&app, sg, &t.hub.batch, &t.family).await?;
    let started = face
        .start(FaceStart {
            batch: t.hub.batch.clone(),
            family: t.family.clone(),
            applicant: view.applicant.clone(),
        })
        .await
        .map_err(provider_down)?;
    let actor = Actor::Family(t.family.clone());
    let action = SigningAction::StartFace {
        provider_session: started.session.clone(),
    };
    let view = answer(
        sg.store
            .sign(&t.hub.batch, &t.family, &actor, &req_id, action)
            .await,
    )?;
    // A repeated request answers the session its first try started.
    let session = pending_session(sg, &t.hub.batch, &t.family)
        .await?
        .unwrap_or(started.session);
    Ok(Json(FaceStarted {
        url: face.url_of(&session),
        provider_session: session,
        signing: page_of(view),
    }))
}

async fn pending_session(
    sg: &Signing,
    batch: &BatchId,
    family: &FamilyId,
) -> Result<Option<String>, ApiError> {
    let rec = sg.store.signing(batch, family).await.map_err(alloc_err)?;
    Ok(rec.and_then(|r| match &r.face().state {
        FaceState::Pending { provider_session } => Some(provider_session.clone()),
        _ => None,
    }))
}

fn no_provider() -> ApiError {
    err(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
        .detail("no provider configured for this step")
}

/// Fetches a session's verdict from the face provider (server to server) and gives it
/// to the engine as the face provider's callback. `Ok(None)`: no verdict yet.
pub async fn settle_face(
    sg: &Signing,
    batch: &BatchId,
    session: &str,
) -> Result<Option<SigningView>, ApiError> {
    let face = sg.face.as_ref().ok_or_else(no_provider)?;
    let Some(FaceVerdict { passed, score }) =
        face.fetch_result(session).await.map_err(provider_down)?
    else {
        return Ok(None);
    };
    let action = SigningAction::FaceResult {
        provider_session: session.to_owned(),
        passed,
        score,
    };
    let req_id = format!("face:{session}");
    let (_, view) = sg
        .store
        .signing_callback(batch, &Actor::FaceProvider, &req_id, action)
        .await
        .map_err(alloc_err)?
        .map_err(rejected)?;
    Ok(Some(view))
}

#[derive(Debug, Serialize)]
pub struct FaceFinished {
    /// The provider has no verdict yet.
    pub pending: bool,
    pub signing: SigningPage,
}

/// The applicant is back from the provider's page: the gateway fetches the verdict of
/// the pending session itself.
pub async fn finish_face(
    State(app): State<Arc<App>>,
    t: FamilyTarget,
    IdempotencyKey(_req_id): IdempotencyKey,
) -> Result<Json<FaceFinished>, ApiError> {
    let sg = signing_of(&app)?;
    let view = ensure_open(&app, sg, &t.hub.batch, &t.family).await?;
    let Some(session) = pending_session(sg, &t.hub.batch, &t.family).await? else {
        return Ok(Json(FaceFinished {
            pending: false,
            signing: page_of(view),
        }));
    };
    match settle_face(sg, &t.hub.batch, &session).await? {
        Some(v) => Ok(Json(FaceFinished {
            pending: false,
            signing: page_of(v),
        })),
        None => Ok(Json(FaceFinished {
            pending: true,
            signing: page_of(view),
        })),
    }
}

#[derive(Debug, Serialize)]
pub struct DepositOrdered {
    pub out_trade_no: String,
    pub amount_fen: u64,
    /// The hub's expiry of the order.
    pub expires_at: Millis,
    /// What the QR code encodes, and the provider's page for it.
    pub qr_payload: String,
    pub pay_url: String,
    /// The provider's (earlier) expiry.
    pub provider_expires_at: Millis,
    pub signing: SigningPage,
}

pub async fn order_deposit(
    State(app): State<Arc<App>>,
    t: FamilyTarget,
    IdempotencyKey(req_id): IdempotencyKey,
) -> Result<Json<DepositOrdered>, ApiError> {
    let sg = signing_of(&app)?;
    let pay = sg.payment.as_ref().ok_or_else(no_provider)?;
    ensure_open(&app, sg, &t.hub.batch, &t.family).await?;
    let actor = Actor::Family(t.family.clone());
    let action = SigningAction::OrderDeposit {
        out_trade_no: crate::providers::random_ref("D"),
    };
    let r = sg
        .store
        .sign(&t.hub.batch, &t.family, &actor, &req_id, action)
        .await
        .map_err(alloc_err)?;
    let view = match r {
        Ok(v) => v,
        // The family lost its QR code: show the live order's again.
        Err(rej) if rej.code == ErrorCode::OrderPending => {
            match sg
                .store
                .signing_view(&t.hub.batch, &t.family)
                .await
                .map_err(alloc_err)?
            {
                Some(v) if v.live_order.is_some() => v,
                _ => return Err(rejected(rej)),
            }
        }
        Err(rej) => return Err(rejected(rej)),
    };
    // The order in the record (a repeated request answers its first order).
    let order = view
        .live_order
        .clone()
        .ok_or_else(|| rejected(ErrorCode::OrderExpired.into()))?;
    let provider_expires_at = order.expires_at.plus_ms(-PROVIDER_EXPIRY_MARGIN_MS);
    let qr = pay
        .create_order(OrderRequest {
            batch: t.hub.batch.clone(),
            out_trade_no: order.out_trade_no.clone(),
            amount_fen: order.amount_fen,
            expires_at: provider_expires_at,
            description: format!("租赁保证金 {} {}", view.lease.building, view.lease.number),
        })
        .await
        .map_err(provider_down)?;
    Ok(Json(DepositOrdered {
        out_trade_no: order.out_trade_no,
        amount_fen: order.amount_fen,
        expires_at: order.expires_at,
        qr_payload: qr.qr_payload,
        pay_url: qr.pay_url,
        provider_expires_at: qr.expires_at,
        signing: page_of(view),
    }))
}

/// Which photo of the details.
#[derive(Clone, Copy, Debug)]
pub enum Photo {
    CardFront,
    CardBack,
}

async fn photo_response(
    sg: &Signing,
    rec: Option<SigningRecord>,
    which: Photo,
) -> Result<Response, ApiError> {
    let none = || err(StatusCode::NOT_FOUND, ErrorCode::NotSelected);
    let rec = rec.ok_or_else(none)?;
    let d = rec.details().latest().ok_or_else(none)?;
    let (blob, name): (&BlobRef, &str) = match which {
        Photo::CardFront => (&d.card_front, "card_front"),
        Photo::CardBack => (&d.card_back, "card_back"),
    };
    let bytes = sg
        .blobs
        .get(blob)
        .map_err(|e| {
            tracing::warn!("blob store: {e}");
            err(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Internal)
        })?
        .ok_or_else(|| err(StatusCode::NOT_FOUND, ErrorCode::Internal).detail("blob missing"))?;
    let ext = if blob.content_type == "image/png" {
        "png"
    } else {
        "jpg"
    };
    let mut res = Bytes::from(bytes).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&blob.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{name}.{ext}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(res)
}

async fn my_photo(app: &App, t: &FamilyTarget, which: Photo) -> Result<Response, ApiError> {
    let sg = signing_of(app)?;
    let rec = sg
        .store
        .signing(&t.hub.batch, &t.family)
        .await
        .map_err(alloc_err)?;
    photo_response(sg, rec, which).await
}

pub async fn my_card_front(
    State(app): State<Arc<App>>,
    t: FamilyTarget,
) -> Result<Response, ApiError> {
    my_photo(&app, &t, Photo::CardFront).await
}

pub async fn my_card_back(
    State(app): State<Arc<App>>,
    t: FamilyTarget,
) -> Result<Response, ApiError> {
    my_photo(&app, &t, Photo::CardBack).await
}

// ---- operator routes ----

#[derive(Debug, Deserialize)]
pub struct QueueParams {
    pub status: Option<SigningFilter>,
}

pub async fn queue(
    State(app): State<Arc<App>>,
    _op: Operator,
    Target(hub): Target,
    Query(q): Query<QueueParams>,
) -> Result<Json<Vec<SigningView>>, ApiError> {
    let sg = signing_of(&app)?;
    let filter = q.status.unwrap_or(SigningFilter::InReview);
    let recs = sg
        .store
        .signing_queue(&hub.batch, filter)
        .await
        .map_err(alloc_err)?;
    let now = app.now();
    Ok(Json(recs.iter().map(|r| SigningView::of(r, now)).collect()))
}

pub async fn record(
    State(app): State<Arc<App>>,
    _op: Operator,
    Target(hub): Target,
    Path(family): Path<String>,
) -> Result<Json<SigningPage>, ApiError> {
    let sg = signing_of(&app)?;
    let view = sg
        .store
        .signing_view(&hub.batch, &FamilyId(family))
        .await
        .map_err(alloc_err)?
        .ok_or_else(|| err(StatusCode::NOT_FOUND, ErrorCode::NotSelected))?;
    Ok(Json(page_of(view)))
}

async fn operate(
    app: &App,
    who: String,
    batch: &BatchId,
    family: String,
    req_id: &str,
    action: SigningAction,
) -> Result<Json<SigningPage>, ApiError> {
    let sg = signing_of(app)?;
    let actor = Actor::Operator(xuanfang_hub::OperatorId(who));
    let view = answer(
        sg.store
            .sign(batch, &FamilyId(family), &actor, req_id, action)
            .await,
    )?;
    Ok(Json(page_of(view)))
}

pub async fn approve(
    State(app): State<Arc<App>>,
    Operator(who): Operator,
    Target(hub): Target,
    IdempotencyKey(req_id): IdempotencyKey,
    Path(family): Path<String>,
) -> Result<Json<SigningPage>, ApiError> {
    operate(
        &app,
        who,
        &hub.batch,
        family,
        &req_id,
        SigningAction::Approve,
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct RejectBody {
    pub step: Step,
    pub reason: String,
}

pub async fn reject(
    State(app): State<Arc<App>>,
    Operator(who): Operator,
    Target(hub): Target,
    IdempotencyKey(req_id): IdempotencyKey,
    Path(family): Path<String>,
    body: Result<Json<RejectBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SigningPage>, ApiError> {
    let Json(b) = body
        .map_err(|e| err(StatusCode::BAD_REQUEST, ErrorCode::BadRequest).detail(e.body_text()))?;
    let action = SigningAction::Reject {
        step: b.step,
        reason: b.reason,
    };
    operate(&app, who, &hub.batch, family, &req_id, action).await
}

pub async fn unlock_face(
    State(app): State<Arc<App>>,
    Operator(who): Operator,
    Target(hub): Target,
    IdempotencyKey(req_id): IdempotencyKey,
    Path(family): Path<String>,
) -> Result<Json<SigningPage>, ApiError> {
    operate(
        &app,
        who,
        &hub.batch,
        family,
        &req_id,
        SigningAction::UnlockFace,
    )
    .await
}

async fn ops_photo(
    app: &App,
    hub: &crate::fanout::BatchHub,
    family: String,
    which: Photo,
) -> Result<Response, ApiError> {
    let sg = signing_of(app)?;
    let rec = sg
        .store
        .signing(&hub.batch, &FamilyId(family))
        .await
        .map_err(alloc_err)?;
    photo_response(sg, rec, which).await
}

pub async fn ops_card_front(
    State(app): State<Arc<App>>,
    _op: Operator,
    Target(hub): Target,
    Path(family): Path<String>,
) -> Result<Response, ApiError> {
    ops_photo(&app, &hub, family, Photo::CardFront).await
}

pub async fn ops_card_back(
    State(app): State<Arc<App>>,
    _op: Operator,
    Target(hub): Target,
    Path(family): Path<String>,
) -> Result<Response, ApiError> {
    ops_photo(&app, &hub, family, Photo::CardBack).await
}

// ---- the payment provider's notification ----

/// What the notification route answers a verified notification.
#[derive(Debug, Serialize)]
pub struct NotifyAnswer {
    /// Taken: the deposit is paid (or was already).
    pub accepted: bool,
    /// Not taken: the money must go back (the refund is not automated yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<ErrorCode>,
}

/// Verifies, then gives the payment to the engine as the payment provider's callback.
pub async fn payment_notify(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<NotifyAnswer>, ApiError> {
    let unsigned = || err(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized);
    let sg = app.signing().ok_or_else(unsigned)?;
    let pay = sg.payment.as_ref().ok_or_else(unsigned)?;
    let n = pay.verify_notification(&headers, &body).map_err(|e| {
        tracing::warn!("payment notification refused: {e}");
        unsigned().detail(e.to_string())
    })?;
    receive_payment(sg, n).await
}

async fn receive_payment(
    sg: &Signing,
    n: crate::providers::payment::PaymentNotification,
) -> Result<Json<NotifyAnswer>, ApiError> {
    let action = SigningAction::DepositPaid {
        out_trade_no: n.out_trade_no.clone(),
        provider_txn_id: n.provider_txn_id.clone(),
        amount_fen: n.amount_fen,
    };
    let req_id = format!("pay:{}", n.event_id);
    let r = sg
        .store
        .signing_callback(&n.batch, &Actor::PaymentProvider, &req_id, action)
        .await
        .map_err(alloc_err)?;
    match r {
        Ok(_) => Ok(Json(NotifyAnswer {
            accepted: true,
            refused: None,
        })),
        Err(rej) => {
            tracing::warn!(
                batch = %n.batch, order = %n.out_trade_no, txn = %n.provider_txn_id,
                amount_fen = n.amount_fen, code = ?rej.code,
                "payment not taken: it must be refunded"
            );
            Ok(Json(NotifyAnswer {
                accepted: false,
                refused: Some(rej.code),
            }))
        }
    }
}

// ---- sandbox pages (沙箱) ----

const SANDBOX_STYLE: &str =
    "body{font-family:sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem}\
 .sandbox{background:#fde68a;border:2px dashed #b45309;padding:.5rem;font-weight:bold}\
 button{font-size:1.2rem;margin:.5rem .5rem 0 0;padding:.5rem 1rem}";

fn sandbox_page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>沙箱 sandbox — {title}</title>\
         <style>{SANDBOX_STYLE}</style></head><body>\
         <p class=\"sandbox\">沙箱环境（测试用，非真实服务） SANDBOX — not a real provider</p>\
         <h1>{title}</h1>{body}</body></html>"
    ))
}

fn sandbox_404() -> Response {
    err(StatusCode::NOT_FOUND, ErrorCode::Forbidden)
        .detail("no such sandbox session")
        .into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub async fn sandbox_face_page(
    State(app): State<Arc<App>>,
    Path(session): Path<String>,
) -> Response {
    let Some(face) = app.signing().and_then(|s| s.sandbox_face.clone()) else {
        return sandbox_404();
    };
    let Some(s) = face.session(&session) else {
        return sandbox_404();
    };
    let done = match s.verdict {
        Some(v) => format!(
            "<p>已提交：{}</p>",
            if v.passed {
                "通过 passed"
            } else {
                "未通过 failed"
            }
        ),
        None => format!(
            "<form method=\"post\" action=\"/sandbox/face/{id}/result\">\
             <button name=\"passed\" value=\"true\">通过 pass</button>\
             <button name=\"passed\" value=\"false\">不通过 fail</button></form>",
            id = escape(&session)
        ),
    };
    sandbox_page(
        "人脸识别 face verification",
        &format!(
            "<p>申请人 applicant: {}</p>{done}<p><a href=\"/app\">返回 back</a></p>",
            escape(&s.applicant)
        ),
    )
    .into_response()
}

#[derive(Debug, Deserialize)]
pub struct FaceForm {
    pub passed: bool,
}

/// The sandbox records the verdict; then, as a vendor's notify would, the gateway is
/// told the session finished and fetches the verdict itself ([`settle_face`]).
pub async fn sandbox_face_result(
    State(app): State<Arc<App>>,
    Path(session): Path<String>,
    Form(f): Form<FaceForm>,
) -> Response {
    let Some(sg) = app.signing() else {
        return sandbox_404();
    };
    let Some(face) = sg.sandbox_face.clone() else {
        return sandbox_404();
    };
    let Some(s) = face.session(&session) else {
        return sandbox_404();
    };
    if face.decide(
        &session,
        FaceVerdict {
            passed: f.passed,
            score: Some(if f.passed { 95 } else { 20 }),
        },
    ) != Some(true)
    {
        return ApiError::new(StatusCode::CONFLICT, ErrorCode::FaceSessionMismatch).into_response();
    }
    match settle_face(sg, &s.batch, &session).await {
        Ok(_) => Redirect::to(&format!("/sandbox/face/{session}")).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn sandbox_pay_page(State(app): State<Arc<App>>, Path(order): Path<String>) -> Response {
    let Some(pay) = app.signing().and_then(|s| s.sandbox_payment.clone()) else {
        return sandbox_404();
    };
    let Some(o) = pay.order(&order) else {
        return sandbox_404();
    };
    let state = if o.paid.is_some() {
        "<p>已支付 paid</p>".to_owned()
    } else {
        format!(
            "<form method=\"post\" action=\"/sandbox/pay/{id}/pay\"><button>模拟支付 pay</button></form>",
            id = escape(&order)
        )
    };
    sandbox_page(
        "支付 payment",
        &format!(
            "<p>订单 order: {}</p><p>金额 amount: ¥{}.{:02}</p>{state}",
            escape(&order),
            o.amount_fen / 100,
            o.amount_fen % 100
        ),
    )
    .into_response()
}

/// The pay button: the sandbox sends its signed notification, through the same
/// verification as any notification.
pub async fn sandbox_pay(State(app): State<Arc<App>>, Path(order): Path<String>) -> Response {
    let Some(sg) = app.signing() else {
        return sandbox_404();
    };
    let Some(pay) = sg.sandbox_payment.clone() else {
        return sandbox_404();
    };
    let Some((body, sig)) = pay.pay(&order, app.now()) else {
        return ApiError::new(StatusCode::CONFLICT, ErrorCode::OrderExpired).into_response();
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&sig) {
        headers.insert(crate::providers::payment::SANDBOX_SIGNATURE_HEADER, v);
    }
    let n = match sg
        .payment
        .as_ref()
        .map(|p| p.verify_notification(&headers, &body))
    {
        Some(Ok(n)) => n,
        _ => {
            return ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized).into_response()
        }
    };
    match receive_payment(sg, n).await {
        Ok(Json(a)) if a.accepted => Redirect::to(&format!("/sandbox/pay/{order}")).into_response(),
        Ok(Json(a)) => (StatusCode::CONFLICT, Json(a)).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([200, 10, 10]));
        let mut out = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut out), format)
            .unwrap();
        out
    }

    #[test]
    fn png_and_jpeg_are_re_encoded_anything_else_is_refused() {
        let png = check_image(&encoded(8, 8, image::ImageFormat::Png), false).unwrap();
        assert_eq!(png.content_type, "image/png");
        let mut jpeg = encoded(8, 8, image::ImageFormat::Jpeg);
        // An APP1 (EXIF) segment after SOI: gone after re-encoding.
        let exif = b"\xFF\xE1\x00\x10Exif\x00\x00GPS-secret";
        jpeg.splice(2..2, exif.iter().copied());
        let out = check_image(&jpeg, false).unwrap();
        assert_eq!(out.content_type, "image/jpeg");
        assert!(!out.bytes.windows(10).any(|w| w == b"GPS-secret"));
        assert!(check_image(&jpeg, true).is_err(), "signatures are PNG only");
        assert!(check_image(b"GIF89a not really", false).is_err());
        let mut truncated = encoded(8, 8, image::ImageFormat::Png);
        truncated.truncate(30);
        assert!(check_image(&truncated, false).is_err());
    }

    #[test]
    fn an_image_over_the_side_limit_is_413() {
        let wide = encoded(MAX_IMAGE_SIDE + 1, 1, image::ImageFormat::Png);
        let e = check_image(&wide, false).err().unwrap();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn deposit_is_two_months_of_rent_by_default() {
        assert_eq!(DepositRule::default().amount_fen(120_000), 240_000);
        assert_eq!(DepositRule::Fixed(5).amount_fen(120_000), 5);
    }
}
