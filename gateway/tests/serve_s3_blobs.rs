//! `xuanfang serve --blob-url s3://…` as a real process against a real S3 server (s3s-fs,
//! signed requests, on a loopback port): a gateway with a wrong secret refuses to start
//! and says why; with the right one it keeps a family's card photos in the bucket (none in
//! its data directory) and serves them to the operator, also after a restart.

use crate::common;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use reqwest::multipart::{Form, Part};
use serde_json::json;
use xuanfang_gateway::auth::Role;
use xuanfang_tests::history::History;
use xuanfang_tests::s3::{files, S3Server, ACCESS_KEY, BUCKET, SECRET_KEY};

const BATCH: &str = "s3-blobs";
fn args(parts: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    parts.iter().map(|p| p.as_ref().to_owned()).collect()
}

fn png() -> Vec<u8> {
    let img = image::RgbImage::from_pixel(64, 40, image::Rgb([30, 90, 160]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn card_front(base: &str) -> (u16, Vec<u8>) {
    let r = reqwest::Client::new()
        .get(format!(
            "{base}/api/ops/signing/F01/card_front?batch={BATCH}"
        ))
        .bearer_auth(op_token())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_the_card_photos_in_the_bucket_and_refuses_a_wrong_secret_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::start().await;
    let data: PathBuf = tmp.path().join("data");
    let key = tmp.path().join("data.key");
    std::fs::write(&key, hex::encode([0x5a; 32])).unwrap();
    let endpoint = s3.endpoint();
    let engine = args(&[
        &"--data-dir",
        &data,
        &"--data-key-file",
        &key,
        &"--blob-url",
        &format!("s3://{BUCKET}/gw"),
        &"--blob-s3-endpoint",
        &endpoint,
        &"--blob-s3-region",
        &"us-east-1",
    ]);

    // A wrong secret: the start-time write is refused by the server's signature check.
    let mut child = Serve::command(&engine, free_port())
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            child.kill().unwrap();
            panic!("serve started with a wrong S3 secret");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("--blob-url") && said.contains("refused"),
        "{said}"
    );

    let env = [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ];
    let mut serve = Serve::start_with_env(&engine, &env, tmp.path()).await;
    let bucket = s3.dir("gw");
    assert_eq!(files(&bucket.join("named")), ["startup-check"]);

    // F01 gets a unit and gives its details with the card's photos.
    let start = server_time(&serve.base).await + 1_000;
    upload(&serve.base, BATCH, 4, 2, start, 600).await;
    until_server_time(&serve.base, start).await;
    let history = History::new();
    let (f, units) = plan(1, 2);
    assert_eq!(f, "F01");
    let units: Vec<&str> = units.iter().map(String::as_str).collect();
    let mut p = Player::new(&f, &[serve.port]);
    let units = p.enter(&units, &history).await;
    p.confirm_first(&units, &history).await;
    let part = || {
        Part::bytes(png())
            .file_name("card.png")
            .mime_str("image/png")
            .unwrap()
    };
    let details =
        json!({"phone": "13812345678", "bank": "ICBC", "card_number": "4111111111111111"});
    let form = Form::new()
        .text("details", details.to_string())
        .part("card_front", part())
        .part("card_back", part());
    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/me/signing/details?batch={BATCH}",
            serve.base
        ))
        .bearer_auth(token("F01", Role::Family))
        .header("Idempotency-Key", "d1")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // Both photos are objects of the bucket, none a file of the data directory.
    assert_eq!(files(&bucket).len(), 2, "{:?}", files(&bucket));
    assert!(files(&data.join("blobs")).is_empty());
    let (status, front) = card_front(&serve.base).await;
    assert_eq!(status, 200);
    assert!(image::load_from_memory(&front).is_ok());
    assert!(files(&bucket)
        .iter()
        .any(|name| std::fs::read(bucket.join(name)).unwrap() == front));

    // Restarted: served from the bucket again.
    serve.kill9();
    serve.restart().await;
    assert_eq!(card_front(&serve.base).await, (200, front));
}
