//! The main applicant's full name and 身份证号 through the batch upload: a bad number
//! refuses the upload on its row and loads nothing; a good sheet keeps them sealed in
//! the blob store; the family's own lease prints them whole, the operator's review
//! record shows them whole, the family's page masked; the public board, catalog,
//! exports and the stored files never hold them in clear.

use crate::common;

use std::sync::Arc;

use common::*;
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use xuanfang_allocator::embedded::EmbeddedEngine;
use xuanfang_allocator::testing::{test_signing_options, TEST_DATA_KEY};
use xuanfang_allocator::Allocator;
use xuanfang_gateway::app::{App, WsConfig};
use xuanfang_gateway::blobs::DirBlobs;
use xuanfang_gateway::limits::{LimitConfig, Limits};
use xuanfang_gateway::signing_api::{DepositRule, Signing};
use xuanfang_hub::{BatchId, Clock, ManualClock, Millis};

const PAY_KEY: [u8; 32] = *b"sandbox-payment-key-for-tests!!!";
const T0: Millis = Millis(1_796_056_200_000);
const FULL_NAME: &str = "欧阳明月";

/// An identity number with its check character (GB 11643), birth date 1949-12-31.
fn id_number(seq: u32) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let body = format!("11010519491231{seq:03}");
    let sum: u32 = (body.bytes().zip(W))
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    format!("{body}{}", b"10X98765432"[(sum % 11) as usize] as char)
}

struct Setup {
    addr: std::net::SocketAddr,
    engine: Arc<EmbeddedEngine>,
    clock: Arc<ManualClock>,
    blob_dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Setup {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        (self.http.get(self.url(path)).bearer_auth(token))
            .send()
            .await
            .unwrap()
    }
    async fn upload(&self, families_csv: &str) -> reqwest::Response {
        let units = "房源编号,楼栋,房号,楼层,户型,面积,朝向,租金\n\
                     U01,1栋,101,1,一房一厅,45.5,南,1200\n\
                     U02,1栋,102,1,一房一厅,45.5,南,1200\n";
        let file = |name: &str, text: &str| {
            Part::bytes(text.as_bytes().to_vec())
                .file_name(name.to_owned())
                .mime_str("text/csv")
                .unwrap()
        };
        let form = Form::new()
            .part("units", file("units.csv", units))
            .part("families", file("families.csv", families_csv))
            .text("batch_id", "idb")
            .text("preselect_start", (T0.0 - 60_000).to_string())
            .text("first_session_start", (T0.0 + 600_000).to_string())
            .text("window_seconds", "180");
        (self.http.post(self.url("/api/ops/batches")))
            .bearer_auth(operator_token())
            .multipart(form)
            .send()
            .await
            .unwrap()
    }
    async fn details(&self, f: &str) {
        let photo = || {
            Part::bytes(png())
                .file_name("card.png")
                .mime_str("image/png")
                .unwrap()
        };
        let details =
            json!({"phone": "13812345678", "bank": "ICBC", "card_number": "4111111111111111"});
        let form = Form::new()
            .text("details", details.to_string())
            .part("card_front", photo())
            .part("card_back", photo());
        let r = (self.http.post(self.url("/api/me/signing/details")))
            .bearer_auth(family_token(f))
            .header("Idempotency-Key", "d1")
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    /// Every stored file's bytes.
    fn stored_files(&self) -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut dirs = vec![self.blob_dir.path().to_path_buf()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    out.push((p.clone(), std::fs::read(&p).unwrap()));
                }
            }
        }
        out
    }
}

fn png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(32, 20, |x, y| image::Rgb([x as u8, y as u8, 40]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// The text of a PDF by poppler's `pdftotext`, spaces and line breaks removed.
fn pdf_text(pdf: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("pdftotext")
        .args(["-layout", "-", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("pdftotext (poppler-utils) is installed by scripts/test");
    child.stdin.take().unwrap().write_all(pdf).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .replace([' ', '\n'], "")
}

async fn setup() -> Setup {
    let clock = Arc::new(ManualClock::new(T0));
    let engine =
        Arc::new(EmbeddedEngine::in_memory(clock.clone()).with_signing(&test_signing_options()));
    let alloc: Arc<dyn Allocator> = engine.clone();
    let limits = LimitConfig {
        http_per_sec_per_ip: 100_000,
        static_per_sec_per_ip: 100_000,
        ..Default::default()
    };
    let app = App::with_clock(
        alloc,
        auth(),
        Limits::new(limits),
        WsConfig::default(),
        None,
        clock.clone(),
    );
    let blob_dir = tempfile::tempdir().unwrap();
    let blobs = Arc::new(DirBlobs::open(blob_dir.path()).unwrap());
    let signing = Signing::sandbox(engine.clone(), blobs, PAY_KEY, DepositRule::default())
        .with_data_key(&xuanfang_allocator::SigningOptions::new(TEST_DATA_KEY));
    assert!(app.enable_signing(signing));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(xuanfang_gateway::server::serve(app, listener));
    Setup {
        addr,
        engine,
        clock,
        blob_dir,
        http: reqwest::Client::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_from_the_sheet_reach_the_lease_and_the_review_only() {
    let s = setup().await;
    let id = id_number(1);

    // A bad number on row 3: refused on its row, nothing loaded, nothing stored.
    let bad = format!(
        "家庭编号,姓名,排位,可选户型,申请人全名,身份证号\n\
         F1,欧阳明月,1,一房一厅,{FULL_NAME},{id}\n\
         F2,李四,2,一房一厅,李四,110105194912310021\n"
    );
    let r = s.upload(&bad).await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "invalid_batch");
    assert_eq!(
        (
            &body["errors"][0]["file"],
            &body["errors"][0]["row"],
            &body["errors"][0]["code"]
        ),
        (&json!("families"), &json!(3), &json!("bad_id_number"))
    );
    assert_eq!(
        body["errors"][0]["reason"]["zh"],
        "第 3 行：身份证号校验位不符（GB 11643）"
    );
    assert!(!body.to_string().contains("110105194912310021"), "{body}");
    assert!(s.engine.batch(&BatchId::from("idb")).await.is_err());
    assert!(s.stored_files().is_empty(), "nothing stored");

    // The sheet fixed (F2 without identity columns filled): loaded, one identity kept.
    let good = format!(
        "家庭编号,姓名,排位,可选户型,申请人全名,身份证号\n\
         F1,欧阳明月,1,一房一厅,{FULL_NAME},{id}\n\
         F2,李四,2,一房一厅,,\n"
    );
    let r = s.upload(&good).await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"batch": "idb", "identities": 1})
    );
    let batch = BatchId::from("idb");
    preselect_direct(&*s.engine, &batch, "F1", &["U01"]).await;
    preselect_direct(&*s.engine, &batch, "F2", &["U02"]).await;
    s.clock.set(Millis(T0.0 + 600_000));
    confirm_direct(&*s.engine, &batch, "F1", "U01").await;
    confirm_direct(&*s.engine, &batch, "F2", "U02").await;
    s.clock.set(Millis(s.clock.now().0 + 3_600_000));

    // The family's page: masked.
    let r = s.get(&family_token("F1"), "/api/me/signing").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["applicant"], "欧**月");
    let masked_id = format!("110105********{}", &id[14..]);
    assert_eq!(
        v["identity"],
        json!({"full_name": "欧**月", "id_number": masked_id, "whole": false})
    );
    assert!(!v.to_string().contains(&id) && !v.to_string().contains(FULL_NAME));
    // A family whose row gave none has none.
    let v: Value = (s.get(&family_token("F2"), "/api/me/signing").await)
        .json()
        .await
        .unwrap();
    assert!(v.get("identity").is_none(), "{v}");

    // The family's own lease: whole.
    s.details("F1").await;
    let r = s
        .get(&family_token("F1"), "/api/me/signing/lease.pdf")
        .await;
    assert_eq!(r.status(), 200);
    let text = pdf_text(&r.bytes().await.unwrap());
    assert!(text.contains(FULL_NAME) && text.contains(&id), "{text}");
    assert!(!text.contains("——"), "{text}");
    // F2's lease keeps the sheet's name and no number.
    s.details("F2").await;
    let r = s
        .get(&family_token("F2"), "/api/me/signing/lease.pdf")
        .await;
    let text = pdf_text(&r.bytes().await.unwrap());
    assert!(text.contains("李*") && text.contains("——"), "{text}");

    // The operator's review record: whole. The queue: not there.
    let r = s
        .get(&operator_token(), "/api/ops/signing/F1?batch=idb")
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["identity"],
        json!({"full_name": FULL_NAME, "id_number": id, "whole": true})
    );

    // Nothing public, no export and no queue holds them; neither does any stored file.
    for (token, path) in [
        (None, "/api/catalog?batch=idb"),
        (None, "/api/board?batch=idb"),
        (None, "/api/batches"),
        (Some(operator_token()), "/api/ops/batch?batch=idb"),
        (Some(operator_token()), "/api/ops/results.csv?batch=idb"),
        (Some(operator_token()), "/api/ops/events.jsonl?batch=idb"),
        (
            Some(operator_token()),
            "/api/ops/signing?batch=idb&status=all",
        ),
        (Some(family_token("F1")), "/api/me?batch=idb"),
    ] {
        let req = s.http.get(s.url(path));
        let req = match &token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let r = req.send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {body}");
        assert!(
            !body.contains(&id) && !body.contains(FULL_NAME),
            "{path} shows the identity: {body}"
        );
    }
    let stored = s.stored_files();
    assert!(stored.len() >= 5, "photos and the identities: {stored:?}");
    for (path, bytes) in &stored {
        let hay = String::from_utf8_lossy(bytes);
        assert!(
            !hay.contains(&id) && !hay.contains(FULL_NAME),
            "{path:?} holds the identity in clear"
        );
    }
    // The batch the engine keeps holds only the masked name.
    let statics = serde_json::to_string(&s.engine.batch(&batch).await.unwrap()).unwrap();
    assert!(!statics.contains(&id) && !statics.contains(FULL_NAME));
}
