//! Demo mode is not an open door: it listens on loopback only, mints no tokens for a
//! secret it was given, says DEMO on its pages, and on its data directory continues
//! its batch instead of switching families to a new one.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn demo(dir: &Path, listen: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xuanfang"));
    c.args(["demo", "--listen", listen, "--data-dir"])
        .arg(dir)
        .args(["--families", "8", "--units", "20", "--session-size", "4"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("XUANFANG_") {
            c.env_remove(key);
        }
    }
    c
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start(dir: &Path, extra: &[&str]) -> (Running, String) {
    let port = free_port();
    let running = Running(
        demo(dir, &format!("127.0.0.1:{port}"), extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/healthz")).await {
            if r.status().is_success() {
                return (running, base);
            }
        }
        assert!(Instant::now() < end, "demo did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn json(url: String) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

#[test]
fn demo_refuses_a_non_loopback_listen_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = demo(dir.path(), &format!("0.0.0.0:{}", free_port()), &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("demo kept running on 0.0.0.0");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("--allow-remote"), "{err}");
    // Nothing was written: no journal, no batch.
    let journals = std::fs::read_dir(dir.path()).map_or(0, |d| d.count());
    assert_eq!(journals, 0, "the refused demo wrote to its data directory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_with_a_given_secret_hands_out_no_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "a-given-secret-of-at-least-32-bytes-long";
    let (_demo, base) = start(dir.path(), &["--jwt-secret", secret]).await;
    let logins = json(format!("{base}/api/demo/logins")).await;
    assert_eq!(
        logins["families"].as_array().map(Vec::len),
        Some(0),
        "{logins}"
    );
    assert!(
        !logins["operator_url"].as_str().unwrap().contains("token"),
        "{logins}"
    );
    // Every page says it is a demo.
    for page in ["/app", "/hall", "/console"] {
        let html = reqwest::get(format!("{base}{page}"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains("演示模式"), "{page} has no demo banner");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_demo_on_its_data_directory_continues_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let (_demo, base) = start(dir.path(), &[]).await;
        let logins = json(format!("{base}/api/demo/logins")).await;
        assert!(
            !logins["families"].as_array().unwrap().is_empty(),
            "its own logins"
        );
        json(format!("{base}/api/catalog")).await["batch"].clone()
    };
    let (again, base) = start(dir.path(), &[]).await;
    assert_eq!(json(format!("{base}/api/catalog")).await["batch"], first);
    drop(again);
    let (_fresh, base) = start(dir.path(), &["--fresh"]).await;
    let listed = json(format!("{base}/api/batches")).await;
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert_ne!(listed[0]["batch"], first, "--fresh loads a new live batch");
    assert_eq!(listed[1]["batch"], first, "and keeps serving the old one");
}
