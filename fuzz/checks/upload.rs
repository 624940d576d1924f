//! What the upload fuzz targets check on any bytes, in both the fuzzer and the corpus
//! replay (`gateway/tests/fuzz_corpus.rs` includes this file).
//!
//! Each body goes through the functions the handlers call, after the same multipart
//! extractor: the details form with the card photos, the contract's signature, the sheet
//! upload (both sheets and the form fields, then the batch), and an image alone through
//! the checks that decode and re-encode it. Nothing may panic, and an image that passes
//! comes out as a PNG or JPEG that passes again.

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;
use xuanfang_gateway::import_api::read_upload;
use xuanfang_gateway::signing_api::contract::{
    read_signature, MAX_SIGNATURE_BYTES, MAX_SIGNATURE_SIDE,
};
use xuanfang_gateway::signing_api::details::{check_image, check_image_within, read_details};
use xuanfang_gateway::signing_api::CheckedImage;
use xuanfang_hub::import::build_batch;
use xuanfang_hub::Millis;

use super::runtime::block_on;

/// The boundary every fuzzed body is framed with (the seeds use it).
pub const BOUNDARY: &str = "xuanfang-fuzz";

fn request(body: &[u8]) -> Request {
    Request::builder()
        .method("POST")
        .header(
            CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(body.to_vec()))
        .expect("a request")
}

async fn multipart(body: &[u8]) -> Multipart {
    Multipart::from_request(request(body), &())
        .await
        .expect("the content type is multipart")
}

/// An image that passed is one that passes again, as the same kind.
fn stable(img: &CheckedImage, png_only: bool) {
    let again = match check_image(&img.bytes, png_only) {
        Ok(again) => again,
        Err(e) => panic!("a re-encoded {} is refused: {e:?}", img.content_type),
    };
    assert_eq!(again.content_type, img.content_type);
}

/// `POST /api/me/signing/details`. Returns whether the form and photos were accepted.
pub fn details(data: &[u8]) -> bool {
    block_on(async {
        let Ok((_form, front, back)) = read_details(multipart(data).await).await else {
            return false;
        };
        stable(&front, false);
        stable(&back, false);
        true
    })
}

/// `POST /api/me/signing/contract`. Returns whether the signature was accepted.
pub fn signature(data: &[u8]) -> bool {
    block_on(async {
        match read_signature(multipart(data).await).await {
            Ok(raw) => image_as_signature(&raw),
            Err(_) => false,
        }
    })
}

/// `POST /api/ops/batches`. Returns whether a batch was built.
pub fn batch(data: &[u8]) -> bool {
    block_on(async {
        let Ok(form) = read_upload(request(data)).await else {
            return false;
        };
        let Ok((units, families, _identities)) = form.sheets() else {
            return false;
        };
        let Ok((meta, plan)) = form.plan(Millis(1_767_225_600_000)) else {
            return false;
        };
        build_batch(meta, units, families, &plan).is_ok()
    })
}

/// One image as a card photo and as a signature. Returns whether it passed as a photo.
pub fn image(data: &[u8]) -> bool {
    image_as_signature(data);
    let Ok(img) = check_image(data, false) else {
        return false;
    };
    stable(&img, false);
    true
}

/// Whether `data` passed as a signature.
fn image_as_signature(data: &[u8]) -> bool {
    let Ok(png) = check_image_within(data, true, MAX_SIGNATURE_BYTES, MAX_SIGNATURE_SIDE) else {
        return false;
    };
    assert_eq!(png.content_type, "image/png");
    stable(&png, true);
    true
}
