//! The `xuanfang` binary refuses to start with a weak HS256 secret.

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
