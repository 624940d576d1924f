//! 网上签约 over HTTP: the steps every signing test walks (a family's details, the sandbox
//! face check, the contract's signature) and the day they are walked on (a batch on a
//! manual clock whose families have selected their units).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use xuanfang_allocator::embedded::EmbeddedEngine;
use xuanfang_allocator::testing::test_signing_options;
use xuanfang_allocator::Allocator;
use xuanfang_gateway::limits::LimitConfig;
use xuanfang_hub::{Batch, ManualClock, Millis};

use super::{batch_at, confirm_direct, family_token, preselect_direct};

/// 2026-12-01 00:30 in Shenzhen (2026-11-30 16:30 UTC): a lease signed then is dated
/// 2026年12月1日 though the UTC date is still November.
pub const DAY: Millis = Millis(1_796_056_200_000);

/// HTTP rates are not what the signing tests are about (and must not depend on their speed).
pub fn unthrottled() -> LimitConfig {
    LimitConfig {
        http_per_sec_per_ip: 100_000,
        static_per_sec_per_ip: 100_000,
        ..Default::default()
    }
}

/// An image of `w`×`h` in `format`.
pub fn encoded(w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 40]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), format)
        .unwrap();
    out
}

pub fn png(w: u32, h: u32) -> Vec<u8> {
    encoded(w, h, image::ImageFormat::Png)
}

/// A 32×20 PNG as a multipart file.
pub fn png_part(file_name: &str) -> Part {
    Part::bytes(png(32, 20))
        .file_name(file_name.to_owned())
        .mime_str("image/png")
        .unwrap()
}

/// The day of signing, on the embedded engine with signing.
pub struct SigningDay {
    pub clock: Arc<ManualClock>,
    pub engine: Arc<EmbeddedEngine>,
    pub batch: Batch,
}

/// [`signing_day_with`] with the batch as it is.
pub async fn signing_day(id: &str, selected: &[(&str, &str)]) -> SigningDay {
    signing_day_with(id, selected, |_| {}).await
}

/// A batch `id` ([`batch_at`] an hour before [`DAY`], session S1 ten minutes later),
/// changed by `edit` and loaded; each `(family, unit)` of `selected` pre-selects the unit
/// and confirms it in S1; then the clock stands at [`DAY`].
pub async fn signing_day_with(
    id: &str,
    selected: &[(&str, &str)],
    edit: impl FnOnce(&mut Batch),
) -> SigningDay {
    let clock = Arc::new(ManualClock::new(DAY.plus_ms(-3_600_000)));
    let engine =
        Arc::new(EmbeddedEngine::in_memory(clock.clone()).with_signing(&test_signing_options()));
    let batch = selected_on(&*engine, &clock, id, selected, edit).await;
    SigningDay {
        clock,
        engine,
        batch,
    }
}

/// The day of [`signing_day_with`] on `alloc`, any engine with signing whose time is
/// `clock` (a Redis engine of several gateways): the batch loaded and selected, the
/// clock at [`DAY`].
pub async fn selected_on(
    alloc: &dyn Allocator,
    clock: &ManualClock,
    id: &str,
    selected: &[(&str, &str)],
    edit: impl FnOnce(&mut Batch),
) -> Batch {
    let t0 = DAY.plus_ms(-3_600_000);
    clock.set(t0);
    let mut batch = batch_at(t0, id, Duration::from_secs(600));
    edit(&mut batch);
    alloc.load_batch(batch.clone()).await.unwrap();
    for (f, u) in selected {
        preselect_direct(alloc, &batch.id, f, &[u]).await;
    }
    clock.set(batch.sessions[0].start);
    for (f, u) in selected {
        confirm_direct(alloc, &batch.id, f, u).await;
    }
    clock.set(DAY);
    batch
}

/// A family's signing steps against a gateway, over one HTTP client.
pub struct Journey {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
}

impl Journey {
    pub fn new(addr: SocketAddr) -> Self {
        Journey {
            addr,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        (self.http.get(self.url(path)).bearer_auth(token))
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, token: &str, path: &str, key: &str) -> reqwest::Response {
        (self.http.post(self.url(path)).bearer_auth(token))
            .header("Idempotency-Key", key)
            .send()
            .await
            .unwrap()
    }

    /// `GET /api/me/signing` as family `f`.
    pub async fn view(&self, f: &str) -> Value {
        let r = self.get(&family_token(f), "/api/me/signing").await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Posts the details step: phone, bank, `card` and the two card photos.
    pub async fn upload_details(
        &self,
        f: &str,
        key: &str,
        card: &str,
        front: Part,
        back: Part,
    ) -> reqwest::Response {
        let details = json!({"phone": "13812345678", "bank": "ICBC", "card_number": card});
        let form = Form::new()
            .text("details", details.to_string())
            .part("card_front", front)
            .part("card_back", back);
        // An upload refused before its body is read (413) ends its connection: a pooled
        // one reused by the next request would fail mid-flight, so uploads use their own.
        (self.http.post(self.url("/api/me/signing/details")))
            .bearer_auth(family_token(f))
            .header("Idempotency-Key", key)
            .header("Connection", "close")
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// The details step with a valid card and photos, accepted.
    pub async fn details(&self, f: &str) {
        let r = (self.upload_details(
            f,
            "d1",
            "4111111111111111",
            png_part("card.png"),
            png_part("card.png"),
        ))
        .await;
        assert_eq!(r.status(), 200);
    }

    /// The face check with the sandbox provider, passed.
    pub async fn face(&self, f: &str) {
        let a: Value = (self.post(&family_token(f), "/api/me/signing/face/start", "fs1"))
            .await
            .json()
            .await
            .unwrap();
        let session = a["provider_session"].as_str().unwrap();
        let r = (self.http)
            .post(self.url(&format!("/sandbox/face/{session}/result")))
            .form(&[("passed", "true")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// Posts `bytes` as the contract's signature.
    pub async fn sign(&self, f: &str, key: &str, bytes: Vec<u8>, mime: &str) -> reqwest::Response {
        let part = Part::bytes(bytes)
            .file_name("signature.png")
            .mime_str(mime)
            .unwrap();
        (self.http.post(self.url("/api/me/signing/contract")))
            .bearer_auth(family_token(f))
            .header("Idempotency-Key", key)
            .header("Connection", "close")
            .multipart(Form::new().part("signature", part))
            .send()
            .await
            .unwrap()
    }

    /// The deposit ordered and paid with the sandbox provider's pay button.
    pub async fn deposit_paid_at_sandbox(&self, f: &str) {
        let o: Value = (self.post(&family_token(f), "/api/me/signing/deposit", "dp1"))
            .await
            .json()
            .await
            .unwrap();
        let no = o["out_trade_no"].as_str().unwrap();
        let r = (self.http)
            .post(self.url(&format!("/sandbox/pay/{no}/pay")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// Details, face (sandbox) and contract: the deposit is the step left.
    pub async fn up_to_deposit(&self, f: &str) {
        self.details(f).await;
        self.face(f).await;
        let r = self.sign(f, "c1", png(32, 20), "image/png").await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
}

/// The steps of a signing document: `done` of a view's status.
pub fn done(v: &Value) -> Vec<&str> {
    (v["done"].as_array().unwrap().iter())
        .map(|s| s.as_str().unwrap())
        .collect()
}
