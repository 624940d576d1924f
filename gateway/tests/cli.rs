//! The `xuanfang` binary: it refuses to start with a weak HS256 secret, and writes its
//! logs as text or, with `--log-format json`, as JSON lines.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use xuanfang_allocator::testing::RedisServer;

/// `xuanfang <args>` with none of its settings taken from this environment.
fn xuanfang(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xuanfang"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("XUANFANG_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs it to its end; a process still running after a minute (a server that started)
/// is killed and fails the test.
fn run(mut cmd: Command) -> Output {
    let mut child = cmd.spawn().expect("run xuanfang");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "xuanfang kept running: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn assert_refused_as_weak(out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exited 0; stderr: {stderr}");
    assert!(stderr.contains("at least 32"), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "printed {:?}", out.stdout);
}

const STRONG: &str = "a-secret-of-thirty-two-bytes-000";

#[test]
fn token_refuses_a_secret_shorter_than_32_bytes() {
    let out = run(xuanfang(&[
        "token",
        "--operator",
        "ops",
        "--jwt-secret",
        "a",
    ]));
    assert_refused_as_weak(&out);
    let mut empty = xuanfang(&["token", "--operator", "ops"]);
    empty.env("XUANFANG_JWT_SECRET", "");
    let out = run(empty);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "printed {:?}", out.stdout);
}

#[test]
fn token_with_a_32_byte_secret_prints_a_token() {
    assert_eq!(STRONG.len(), 32);
    let out = run(xuanfang(&[
        "token",
        "--operator",
        "ops",
        "--jwt-secret",
        STRONG,
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    assert_eq!(token.trim().split('.').count(), 3, "{token}");
}

#[test]
fn serve_refuses_a_secret_shorter_than_32_bytes() {
    let redis = RedisServer::start();
    let url = redis.url();
    let serve = |secret: Option<&str>| {
        let mut cmd = xuanfang(&["serve", "--listen", "127.0.0.1:0", "--redis", &url]);
        match secret {
            Some(s) => cmd.arg(format!("--jwt-secret={s}")),
            None => cmd.env("XUANFANG_JWT_SECRET", ""),
        };
        run(cmd)
    };
    assert_refused_as_weak(&serve(Some("a")));
    assert_refused_as_weak(&serve(Some(&STRONG[1..])));
    // An empty secret from the environment starts nothing either.
    let out = serve(None);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `serve --data-dir` on an empty directory (it warns that no batch is loaded),
/// reads its output lines until `found` accepts one or a minute passes, then kills it.
/// Returns the line, or every line read when none was accepted.
fn first_log_line(
    configure: impl FnOnce(&mut Command),
    found: impl Fn(&str) -> bool,
) -> Result<String, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = xuanfang(&["serve", "--listen", "127.0.0.1:0", "--jwt-secret", STRONG]);
    cmd.arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "warn");
    configure(&mut cmd);
    let mut child = cmd.spawn().expect("run xuanfang");
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let readers = [
        Box::new(out) as Box<dyn std::io::Read + Send>,
        Box::new(err),
    ]
    .map(|r| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(r)) {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        })
    });
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let result = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if found(&line) => break Ok(line),
            Ok(line) => seen.push(line),
            // Timed out, or the process ended and both pipes closed.
            Err(_) => break Err(seen),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    for r in readers {
        let _ = r.join();
    }
    result
}

/// A line that is a JSON log event: its level and its message.
fn json_event(line: &str) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some((
        v["level"].as_str()?.to_owned(),
        v["fields"]["message"].as_str()?.to_owned(),
    ))
}

#[test]
fn serve_with_log_format_json_writes_each_log_event_as_a_json_line() {
    let by_flag = |c: &mut Command| {
        c.args(["--log-format", "json"]);
    };
    let by_env = |c: &mut Command| {
        c.env("XUANFANG_LOG_FORMAT", "json");
    };
    for (how, configure) in [
        ("--log-format json", &by_flag as &dyn Fn(&mut Command)),
        ("XUANFANG_LOG_FORMAT=json", &by_env),
    ] {
        // Other warnings may come first (signing disabled without a data key).
        let line = first_log_line(configure, |l| {
            json_event(l).is_some_and(|(_, m)| m.contains("no batch loaded"))
        })
        .unwrap_or_else(|seen| panic!("{how}: no JSON log line in {seen:#?}"));
        let (level, message) = json_event(&line).unwrap();
        assert_eq!(level, "WARN", "{how}: {line}");
        assert!(message.contains("no batch loaded"), "{how}: {line}");
    }
}

#[test]
fn serve_logs_text_by_default() {
    let line = first_log_line(|_| {}, |l| l.contains("no batch loaded"))
        .unwrap_or_else(|seen| panic!("no warning in {seen:#?}"));
    assert!(json_event(&line).is_none(), "a text line: {line}");
    assert!(line.contains("WARN"), "{line}");
}

#[test]
fn an_unknown_log_format_is_refused() {
    let out = run(xuanfang(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        "unused",
        "--jwt-secret",
        STRONG,
        "--log-format",
        "xml",
    ]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("text") && stderr.contains("json"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_to_start_without_a_usable_key_set() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-jwks.json");
    let data = dir.path().join("data");
    let out = run(xuanfang(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--jwt-jwks-file",
        missing.to_str().unwrap(),
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exited 0; stderr: {stderr}");
    assert!(stderr.contains("no-such-jwks.json"), "stderr: {stderr}");

    let symmetric = dir.path().join("oct.json");
    std::fs::write(
        &symmetric,
        r#"{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}"#,
    )
    .unwrap();
    let out = run(xuanfang(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--jwt-jwks-file",
        symmetric.to_str().unwrap(),
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exited 0; stderr: {stderr}");
    assert!(stderr.contains("no usable signing key"), "stderr: {stderr}");
}

#[test]
fn serve_refuses_bad_sentinel_settings_clearly() {
    let serve = |extra: &[&str]| {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--jwt-secret", STRONG];
        args.extend_from_slice(extra);
        let out = run(xuanfang(&args));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "{extra:?} exited 0; stderr: {stderr}"
        );
        stderr
    };
    let stderr = serve(&["--redis", "redis+sentinel://127.0.0.1:26379"]);
    assert!(stderr.contains("lacks the master name"), "{stderr}");
    let stderr = serve(&["--redis", "redis+sentinel://127.0.0.1:notaport/xf"]);
    assert!(stderr.contains("bad Sentinel address"), "{stderr}");
    // The wait is for a Sentinel-managed primary's replica only.
    let stderr = serve(&[
        "--redis",
        "redis://127.0.0.1:1",
        "--redis-replica-wait-ms",
        "100",
    ]);
    assert!(stderr.contains("needs --redis redis+sentinel"), "{stderr}");
    // No Sentinel answers on port 1: refused at start-up, not at the first request.
    let stderr = serve(&["--redis", "redis+sentinel://127.0.0.1:1/xf"]);
    assert!(
        stderr.contains("no primary found through the Sentinels") && stderr.contains(":1"),
        "{stderr}"
    );
}

#[test]
fn serve_takes_one_blob_store_and_only_an_s3_url_for_the_bucket() {
    let out = run(xuanfang(&[
        "serve",
        "--redis",
        "redis://127.0.0.1:1",
        "--blob-dir",
        "/tmp/blobs",
        "--blob-url",
        "s3://photos/hub",
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "stderr: {stderr}");
    assert!(stderr.contains("cannot be used with"), "stderr: {stderr}");

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = run(xuanfang(&[
        "serve",
        "--data-dir",
        data,
        "--jwt-secret",
        STRONG,
        "--listen",
        "127.0.0.1:0",
        "--blob-url",
        "/srv/blobs",
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "stderr: {stderr}");
    assert!(stderr.contains("expected s3://bucket"), "stderr: {stderr}");
}
