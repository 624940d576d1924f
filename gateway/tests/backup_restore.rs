//! `xuanfang export` / `xuanfang restore`, for both engines, with real processes: a
//! session with real confirms and signing, exported while the gateway serves, restored
//! into a fresh data directory / a fresh `redis-server`; a gateway started on the copy
//! answers the same board, results, event log and signing, and exports the same
//! entries. A target that holds data is refused unless forced; a truncated or changed
//! file, or another engine's, is refused with a clear error and changes nothing.

use crate::common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use serde_json::Value;
use xuanfang_gateway::auth::Role;
use xuanfang_hub::Event;
use xuanfang_tests::history::History;

const BATCH: &str = "backup";
const FAMILIES: usize = 6;
/// Families whose signing is opened (they got a unit).
const SIGNING: [&str; 2] = ["F01", "F02"];

fn xuanfang(args: &[OsString]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_xuanfang"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run xuanfang")
}

fn os(parts: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    parts.iter().map(|p| p.as_ref().to_owned()).collect()
}

fn ok(out: Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

fn refused(out: Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "accepted: {err}");
    err
}

fn key_file(dir: &Path) -> PathBuf {
    let path = dir.join("data.key");
    std::fs::write(
        &path,
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    )
    .unwrap();
    path
}

/// A session with real confirms through the socket, then signing opened for two
/// families, on `serve`.
async fn session(serve: &Serve) {
    let start = server_time(&serve.base).await + 1_000;
    upload(&serve.base, BATCH, 2 * FAMILIES, FAMILIES, start, 600).await;
    until_server_time(&serve.base, start).await;
    let history = History::new();
    for i in 1..=FAMILIES {
        let (f, units) = plan(i, FAMILIES);
        let units: Vec<&str> = units.iter().map(String::as_str).collect();
        let mut p = Player::new(&f, &[serve.port]);
        let units = p.enter(&units, &history).await;
        p.confirm_first(&units, &history).await;
    }
    let log = events(&serve.base, BATCH).await;
    let summary = history.check(&log).unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(summary.taken, FAMILIES, "{summary:?}");
    for f in SIGNING {
        let (status, page) = get(
            format!("{}/api/me/signing?batch={BATCH}", serve.base),
            Some(&token(f, Role::Family)),
        )
        .await;
        assert_eq!(status, 200, "{page}");
    }
}

/// What a restore must reproduce, as a gateway answers it.
#[derive(Debug, PartialEq)]
struct State {
    board: Value,
    results: String,
    events: Vec<Event>,
    signing: Vec<Value>,
}

/// A gateway's state once its board has caught up with its log: a gateway follows its
/// engine's log asynchronously (a delta at most every 50 ms), so an `/api/board` read
/// right after the last confirm, or right after start, can be a few events behind. Waits
/// (generously) until the board's position is the log's last public event.
async fn settled(base: &str) -> State {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let now = state(base).await;
        let last_public = now
            .events
            .iter()
            .rev()
            .find(|e| e.event.is_public())
            .map_or(0, |e| e.seq);
        if now.board["seq"] == last_public || std::time::Instant::now() > end {
            return now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn state(base: &str) -> State {
    let (status, board) = get(format!("{base}/api/board?batch={BATCH}"), None).await;
    assert_eq!(status, 200);
    let results = reqwest::Client::new()
        .get(format!("{base}/api/ops/results.csv?batch={BATCH}"))
        .bearer_auth(op_token())
        .send()
        .await
        .unwrap();
    assert_eq!(results.status(), 200);
    let mut signing = Vec::new();
    for f in SIGNING {
        let (status, page) = get(
            format!("{base}/api/ops/signing/{f}?batch={BATCH}"),
            Some(&op_token()),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let mut page = page;
        // The server's clock at the answer: not state.
        page.as_object_mut().unwrap().remove("now");
        signing.push(page);
    }
    State {
        board,
        results: results.text().await.unwrap(),
        events: events(base, BATCH).await,
        signing,
    }
}

/// The manifest of a backup file: its second line.
fn manifest(file: &Path) -> Value {
    let bytes = std::fs::read(file).unwrap();
    let line = bytes.split(|&b| b == b'\n').nth(1).unwrap();
    serde_json::from_slice(line).unwrap()
}

/// Two backups hold the same batches and the very same entries.
fn same_contents(a: &Path, b: &Path) {
    let (a, b) = (manifest(a), manifest(b));
    assert_eq!(a["batches"], b["batches"]);
    assert_eq!(a["entries"], b["entries"]);
}

/// Two backups hold the same batches and the same keys, of the same sizes. (A large
/// Redis hash's `DUMP` lists its fields in hash-table order, which depends on each
/// server's random hash seed: the bytes differ between servers, the contents do not.)
fn same_keys(a: &Path, b: &Path) {
    let (a, b) = (manifest(a), manifest(b));
    assert_eq!(a["batches"], b["batches"]);
    let keys = |m: &Value| -> Vec<(Value, Value)> {
        let entries = m["entries"].as_array().unwrap();
        entries
            .iter()
            .map(|e| (e["name"].clone(), e["len"].clone()))
            .collect()
    };
    assert_eq!(keys(&a), keys(&b));
}

/// A truncated copy and a copy with one byte changed (in the manifest, and in the data).
fn damaged(file: &Path, dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let bytes = std::fs::read(file).unwrap();
    let cut = dir.join("truncated.xfb");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let manifest_at = bytes.iter().position(|&b| b == b'\n').unwrap() + 10;
    let mut in_manifest = bytes.clone();
    in_manifest[manifest_at] ^= 0x20;
    let changed_manifest = dir.join("changed-manifest.xfb");
    std::fs::write(&changed_manifest, in_manifest).unwrap();
    let mut in_data = bytes.clone();
    let data_at = bytes.len() - 200;
    in_data[data_at] ^= 0x01;
    let changed_data = dir.join("changed-data.xfb");
    std::fs::write(&changed_data, in_data).unwrap();
    vec![
        (cut, "truncated"),
        (changed_manifest, "checksum does not match"),
        (changed_data, "checksum does not match"),
    ]
}

/// Every file under `dir` with its bytes.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_restored_from_an_export_serves_the_same_results_and_signing() {
    let tmp = tempfile::tempdir().unwrap();
    let key = key_file(tmp.path());
    let (data1, data2) = (tmp.path().join("data1"), tmp.path().join("data2"));
    let engine = |d: &Path| os(&[&"--data-dir", &d, &"--data-key-file", &key]);
    let serve1 = Serve::start(&engine(&data1), tmp.path()).await;
    session(&serve1).await;
    let before = settled(&serve1.base).await;

    // Exported while serve1 runs.
    let b1 = tmp.path().join("b1.xfb");
    let said = ok(xuanfang(&os(&[
        &"export",
        &"--data-dir",
        &data1,
        &"--out",
        &b1,
    ])));
    assert!(said.contains(&format!("exported batch {BATCH}")), "{said}");
    let m = manifest(&b1);
    assert_eq!(m["engine"], "embedded");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&b1).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only its owner reads a backup");
    assert_eq!(m["batches"][0]["seq"], before.events.last().unwrap().seq);
    assert_eq!(m["batches"][0]["signing_seq"], SIGNING.len() as u64);

    // Another engine's target is refused before anything happens.
    let err = refused(xuanfang(&os(&[
        &"restore",
        &"--redis",
        &"redis://127.0.0.1:1",
        &b1,
    ])));
    assert!(err.contains("restores only into that engine"), "{err}");

    ok(xuanfang(&os(&[&"restore", &"--data-dir", &data2, &b1])));
    let mut serve2 = Serve::start(&engine(&data2), tmp.path()).await;
    assert_eq!(settled(&serve2.base).await, before);

    // Restoring over a directory in use, or one that holds data, is refused.
    let err = refused(xuanfang(&os(&[&"restore", &"--data-dir", &data2, &b1])));
    assert!(err.contains("already holds data"), "{err}");
    serve2.kill9();
    let held = tree(&data2);
    let err = refused(xuanfang(&os(&[&"restore", &"--data-dir", &data2, &b1])));
    assert!(
        err.contains("already holds data") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(tree(&data2), held, "a refused restore changes nothing");

    // The copy exports the very same entries.
    let b2 = tmp.path().join("b2.xfb");
    ok(xuanfang(&os(&[
        &"export",
        &"--data-dir",
        &data2,
        &"--out",
        &b2,
    ])));
    same_contents(&b1, &b2);

    // Forced, it replaces the data and keeps the old aside.
    let said = ok(xuanfang(&os(&[
        &"restore",
        &"--force",
        &"--data-dir",
        &data2,
        &b1,
    ])));
    assert!(said.contains("replaced-"), "{said}");
    serve2.restart().await;
    assert_eq!(settled(&serve2.base).await, before);

    // Damaged files are refused, and nothing is created or written.
    for (file, why) in damaged(&b1, tmp.path()) {
        let data3 = tmp.path().join("data3");
        let err = refused(xuanfang(&os(&[&"restore", &"--data-dir", &data3, &file])));
        assert!(
            err.contains(why) && err.contains("nothing was restored"),
            "{why}: {err}"
        );
        assert!(!data3.exists(), "{why}: the target was not touched");
    }
}

async fn dbsize(url: &str) -> u64 {
    let mut c = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("DBSIZE").query_async(&mut c).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_redis_restored_from_an_export_serves_the_same_results_and_signing() {
    let tmp = tempfile::tempdir().unwrap();
    let key = key_file(tmp.path());
    let blobs = tmp.path().join("blobs");
    for d in ["r1", "r2", "r3"] {
        std::fs::create_dir(tmp.path().join(d)).unwrap();
    }
    let redis1 = Redis::start(&tmp.path().join("r1"));
    let redis2 = Redis::start(&tmp.path().join("r2"));
    let redis3 = Redis::start(&tmp.path().join("r3"));
    let engine = |url: String| {
        os(&[
            &"--redis",
            &url,
            &"--data-key-file",
            &key,
            &"--blob-dir",
            &blobs,
        ])
    };
    let serve1 = Serve::start(&engine(redis1.url()), tmp.path()).await;
    session(&serve1).await;
    let before = settled(&serve1.base).await;

    let b1 = tmp.path().join("b1.xfb");
    ok(xuanfang(&os(&[
        &"export",
        &"--redis",
        &redis1.url(),
        &"--out",
        &b1,
    ])));
    let m = manifest(&b1);
    assert_eq!(m["engine"], "redis");
    assert_eq!(m["batches"][0]["seq"], before.events.last().unwrap().seq);
    assert_eq!(m["batches"][0]["signing_seq"], SIGNING.len() as u64);

    ok(xuanfang(&os(&[&"restore", &"--redis", &redis2.url(), &b1])));
    let serve2 = Serve::start(&engine(redis2.url()), tmp.path()).await;
    assert_eq!(settled(&serve2.base).await, before);
    drop(serve2);

    let b2 = tmp.path().join("b2.xfb");
    ok(xuanfang(&os(&[
        &"export",
        &"--redis",
        &redis2.url(),
        &"--out",
        &b2,
    ])));
    same_keys(&b1, &b2);

    // A Redis that holds the batch is refused unless forced.
    let keys = dbsize(&redis2.url()).await;
    let err = refused(xuanfang(&os(&[&"restore", &"--redis", &redis2.url(), &b1])));
    assert!(
        err.contains("already holds data") && err.contains(BATCH),
        "{err}"
    );
    assert_eq!(dbsize(&redis2.url()).await, keys);
    ok(xuanfang(&os(&[
        &"restore",
        &"--force",
        &"--redis",
        &redis2.url(),
        &b1,
    ])));
    let b3 = tmp.path().join("b3.xfb");
    ok(xuanfang(&os(&[
        &"export",
        &"--redis",
        &redis2.url(),
        &"--out",
        &b3,
    ])));
    same_keys(&b1, &b3);
    let serve2 = Serve::start(&engine(redis2.url()), tmp.path()).await;
    assert_eq!(settled(&serve2.base).await, before);
    drop(serve2);

    // Damaged files, and a data directory's backup, change nothing.
    let data = tmp.path().join("data");
    let dir_backup = tmp.path().join("dir.xfb");
    std::fs::create_dir(&data).unwrap();
    ok(xuanfang(&os(&[
        &"export",
        &"--data-dir",
        &data,
        &"--out",
        &dir_backup,
    ])));
    let mut bad = damaged(&b1, tmp.path());
    bad.push((dir_backup, "restores only into that engine"));
    for (file, why) in bad {
        let err = refused(xuanfang(&os(&[
            &"restore",
            &"--redis",
            &redis3.url(),
            &file,
        ])));
        assert!(err.contains(why), "{why}: {err}");
        assert_eq!(dbsize(&redis3.url()).await, 0, "{why}: nothing written");
    }
}
