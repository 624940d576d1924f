//! Step 1, tenant details (完善承租信息): phone, bank, card number and the card's photos;
//! and the photos back for the family and the reviewer.

use std::io::Cursor;
use std::sync::Arc;

use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use xuanfang_hub::blob::BlobRef;
use xuanfang_hub::signing::{Actor, CardNumber, Phone};
use xuanfang_hub::{ErrorCode, FamilyId, SigningAction, SigningRecord};

use super::{
    alloc_err, answer, blob_response, ensure_open, err, fresh, page_of, read_part, rejected,
    signing_of, store_blob, IdempotencyKey, Signing, SigningPage, Viewer, MAX_IMAGE_BYTES,
    MAX_IMAGE_SIDE,
};
use crate::app::App;
use crate::caller::{FamilyTarget, Operator, Target};
use crate::http_error::ApiError;

/// The `details` part of the details upload.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DetailsForm {
    pub phone: String,
    pub bank: String,
    pub card_number: String,
    #[serde(default)]
    pub luhn_confirmed: bool,
}

/// The details upload as `/api/openapi.json` shows it; [`read_details`] reads it part by
/// part.
#[derive(utoipa::ToSchema)]
pub struct DetailsUpload {
    /// JSON of the form.
    pub details: DetailsForm,
    /// The identity card's front: PNG or JPEG, at most 8 MiB and 4096 pixels a side.
    #[schema(value_type = String, format = Binary)]
    pub card_front: Vec<u8>,
    /// The back, likewise.
    #[schema(value_type = String, format = Binary)]
    pub card_back: Vec<u8>,
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
    check_image_within(bytes, png_only, MAX_IMAGE_BYTES, MAX_IMAGE_SIDE)
}

/// [`check_image`] with other caps: at most `max_bytes`, `max_side` pixels each way.
pub fn check_image_within(
    bytes: &[u8],
    png_only: bool,
    max_bytes: usize,
    max_side: u32,
) -> Result<CheckedImage, ApiError> {
    use image::ImageFormat;
    let bad =
        |d: &str| err(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::BadFrame).detail(d.to_owned());
    if bytes.len() > max_bytes {
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
    limits.max_image_width = Some(max_side);
    limits.max_image_height = Some(max_side);
    limits.max_alloc = Some(u64::from(max_side) * u64::from(max_side) * 4 + 1024);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => {
            err(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::FrameTooLarge)
                .detail(format!("at most {max_side}×{max_side} pixels"))
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

/// The parts of the details upload: the form and both photos, each checked
/// ([`check_image`]). The fuzz target `upload_details` calls this.
pub async fn read_details(
    mut form: Multipart,
) -> Result<(DetailsForm, CheckedImage, CheckedImage), ApiError> {
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
    Ok((d, front, back))
}

pub async fn fill_details(
    State(app): State<Arc<App>>,
    t: FamilyTarget,
    IdempotencyKey(req_id): IdempotencyKey,
    form: Multipart,
) -> Result<Json<SigningPage>, ApiError> {
    let sg = signing_of(&app)?;
    ensure_open(&app, sg, &t.hub.batch, &t.family).await?;
    let (d, front, back) = read_details(form).await?;
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
    let card_front = store_blob(sg, &front.bytes, front.content_type).await?;
    let card_back = match store_blob(sg, &back.bytes, back.content_type).await {
        Ok(b) => b,
        Err(e) => {
            fresh::drop_all(sg, std::slice::from_ref(&card_front)).await;
            return Err(e);
        }
    };
    let stored = [card_front.clone(), card_back.clone()];
    let action = SigningAction::FillDetails {
        phone,
        bank: d.bank,
        card_number: card,
        card_front,
        card_back,
        luhn_confirmed: d.luhn_confirmed,
    };
    let actor = Actor::Family(t.family.clone());
    let answered = (sg.store)
        .sign(&t.hub.batch, &t.family, &actor, &req_id, action)
        .await;
    // A refusal, or a replay of an earlier form, keeps none of these photos.
    fresh::settle(sg, &t.hub.batch, &t.family, &stored, &answered).await;
    let view = answer(answered)?;
    Ok(Json(page_of(sg, view, Viewer::Family)))
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
    let ext = if blob.content_type == "image/png" {
        "png"
    } else {
        "jpg"
    };
    blob_response(sg, blob, &format!("{name}.{ext}")).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

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
}
