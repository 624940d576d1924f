//! Rotating the data key, with real `xuanfang serve --data-dir` processes: a family's
//! card number and phone sealed under key A are still read after the gateway restarts
//! with key B and A kept as `--old-data-key-file`; details given after the rotation are
//! sealed under B alone; a gateway given B without A refuses to start and names the
//! missing key, instead of serving records it cannot read.

use crate::common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use xuanfang_allocator::sealing::KeyId;
use xuanfang_gateway::auth::Role;
use xuanfang_tests::history::History;

const BATCH: &str = "rotation";
const KEY_A: [u8; 32] = [0xa1; 32];
const KEY_B: [u8; 32] = [0xb2; 32];

fn key_file(dir: &Path, name: &str, key: &[u8; 32]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, hex::encode(key)).unwrap();
    path
}

fn args(parts: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    parts.iter().map(|p| p.as_ref().to_owned()).collect()
}

fn png() -> Vec<u8> {
    let img = image::RgbImage::from_pixel(64, 40, image::Rgb([30, 90, 160]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// The details step for `family` with `card` and `phone`, as the phone page posts it.
async fn details(base: &str, family: &str, key: &str, card: &str, phone: &str) -> Value {
    let part = || {
        Part::bytes(png())
            .file_name("card.png")
            .mime_str("image/png")
            .unwrap()
    };
    let form = Form::new()
        .text(
            "details",
            json!({"phone": phone, "bank": "ICBC", "card_number": card}).to_string(),
        )
        .part("card_front", part())
        .part("card_back", part());
    let r = reqwest::Client::new()
        .post(format!("{base}/api/me/signing/details?batch={BATCH}"))
        .bearer_auth(token(family, Role::Family))
        .header("Idempotency-Key", key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// What an operator's review shows of a family's details.
async fn shown(base: &str, family: &str) -> (Value, Value) {
    let (status, page) = get(
        format!("{base}/api/ops/signing/{family}?batch={BATCH}"),
        Some(&op_token()),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    (page["card_masked"].clone(), page["phone_masked"].clone())
}

/// Every sealed value written to the data directory's signing journals (MessagePack:
/// a string's bytes stand as they are, after a header byte that is never ASCII).
fn sealed_values(dir: &Path) -> Vec<String> {
    let sealed_char = |c: &u8| c.is_ascii_alphanumeric() || b"+/=:".contains(c);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "signing") {
            let bytes = std::fs::read(&path).unwrap();
            let mut i = 0;
            while i + 5 <= bytes.len() {
                if &bytes[i..i + 3] == b"aes" && bytes[i + 4] == b':' {
                    let len = bytes[i..].iter().take_while(|c| sealed_char(c)).count();
                    out.push(String::from_utf8_lossy(&bytes[i..i + len]).into_owned());
                    i += len;
                } else {
                    i += 1;
                }
            }
        }
    }
    out
}

/// The data directory's journals (selection and signing), as text.
fn journals_text(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn details_sealed_before_a_rotation_are_read_after_it_and_a_missing_old_key_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let a = key_file(tmp.path(), "a.key", &KEY_A);
    let b = key_file(tmp.path(), "b.key", &KEY_B);
    let (id_a, id_b) = (KeyId::of(&KEY_A).to_string(), KeyId::of(&KEY_B).to_string());

    // Under key A: two families get a unit, one gives its details.
    let mut serve = Serve::start(
        &args(&[&"--data-dir", &data, &"--data-key-file", &a]),
        tmp.path(),
    )
    .await;
    let start = server_time(&serve.base).await + 1_000;
    upload(&serve.base, BATCH, 4, 2, start, 600).await;
    until_server_time(&serve.base, start).await;
    let history = History::new();
    for i in 1..=2 {
        let (f, units) = plan(i, 2);
        let units: Vec<&str> = units.iter().map(String::as_str).collect();
        let mut p = Player::new(&f, &[serve.port]);
        let units = p.enter(&units, &history).await;
        p.confirm_first(&units, &history).await;
    }
    for f in ["F01", "F02"] {
        let (status, page) = get(
            format!("{}/api/me/signing?batch={BATCH}", serve.base),
            Some(&token(f, Role::Family)),
        )
        .await;
        assert_eq!(status, 200, "{page}");
    }
    details(&serve.base, "F01", "a1", "4012888888881881", "13812345678").await;
    let before = shown(&serve.base, "F01").await;
    let card = before.0.as_str().unwrap_or_default().to_owned();
    assert!(
        card.starts_with("401288") && card.ends_with("1881") && !card.contains("888888"),
        "{before:?}"
    );
    let sealed = sealed_values(&data);
    assert_eq!(sealed.len(), 2, "phone and card: {sealed:?}");
    assert!(
        sealed
            .iter()
            .all(|v| v.starts_with(&format!("aes2:{id_a}:"))),
        "{sealed:?}"
    );
    serve.kill9();

    // Rotated: B is the key, A is kept to open what it sealed.
    let mut serve = Serve::start(
        &args(&[
            &"--data-dir",
            &data,
            &"--data-key-file",
            &b,
            &"--old-data-key-file",
            &a,
        ]),
        tmp.path(),
    )
    .await;
    assert_eq!(
        shown(&serve.base, "F01").await,
        before,
        "read with the old key"
    );
    details(&serve.base, "F02", "b1", "5555555555554444", "13987654321").await;
    let (card2, _) = shown(&serve.base, "F02").await;
    assert!(
        card2.as_str().is_some_and(|c| c.ends_with("4444")),
        "{card2}"
    );
    let sealed = sealed_values(&data);
    assert_eq!(sealed.len(), 4, "{sealed:?}");
    assert_eq!(
        sealed
            .iter()
            .filter(|v| v.starts_with(&format!("aes2:{id_b}:")))
            .count(),
        2,
        "new details are sealed with the new key: {sealed:?}"
    );
    let journals = journals_text(&data);
    assert!(
        journals.contains("DetailsFilled") || journals.contains("details"),
        "journals read"
    );
    for clear in [
        "4012888888881881",
        "13812345678",
        "5555555555554444",
        "13987654321",
    ] {
        assert!(!journals.contains(clear), "{clear} in clear");
    }
    serve.kill9();

    // B without A: refused at start, naming the key it lacks; the data is untouched.
    let journal_before = sealed_values(&data);
    let mut child = Serve::command(
        &args(&[&"--data-dir", &data, &"--data-key-file", &b]),
        free_port(),
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > end {
            child.kill().unwrap();
            panic!("serve started without the key that sealed its records");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(
        err.contains(&id_a) && err.contains("--old-data-key-file"),
        "{err}"
    );
    assert_eq!(sealed_values(&data), journal_before);

    // A wrong old-key file is refused before anything is opened.
    let bad = tmp.path().join("bad.key");
    std::fs::write(&bad, "not a key").unwrap();
    let out = Serve::command(
        &args(&[
            &"--data-dir",
            &data,
            &"--data-key-file",
            &b,
            &"--old-data-key-file",
            &bad,
        ]),
        free_port(),
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.key") && err.contains("32-byte key"),
        "{err}"
    );
}
