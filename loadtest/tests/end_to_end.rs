//! The tool end to end against a real `xuanfang demo` process.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "loadtest-e2e-secret-of-32-bytes!";

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The `xuanfang` binary: `XUANFANG_BIN` when set (the test command points it at the one
/// `cargo test --workspace` builds for the gateway's own tests), else built here. Building
/// here resolves the gateway's features alone, which recompiles much of the dependency tree.
fn xuanfang_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("XUANFANG_BIN") {
        return PathBuf::from(bin);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "xuanfang-gateway", "--bin", "xuanfang"])
        .current_dir(workspace_root())
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building the xuanfang binary failed");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"));
    target.join("debug").join("xuanfang")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A demo hub that is killed when the test ends.
struct Demo {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo(extra: &[&str]) -> Demo {
    let bin = xuanfang_bin();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(bin)
        .args([
            "demo",
            "--listen",
            &listen,
            "--jwt-secret",
            SECRET,
            "--data-dir",
        ])
        .arg(dir.path())
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start xuanfang demo");
    let url = format!("http://{listen}");
    let demo = Demo {
        child,
        url,
        _dir: dir,
    };
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(&listen) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200") {
                return demo;
            }
        }
        assert!(Instant::now() < end, "demo not ready in 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_tool(args: &[&str], report: &std::path::Path) -> (i32, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xuanfang-loadtest"))
        .args(args)
        .args(["--jwt-secret", SECRET, "--quiet", "--report"])
        .arg(report)
        .output()
        .expect("run xuanfang-loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = std::fs::read(report)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        format!("{stdout}\n{stderr}"),
    )
}

fn check(report: &serde_json::Value, name: &str) -> bool {
    report["audit"]["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["name"] == name && c["passed"] == true)
}

#[test]
fn mixed_run_on_a_demo_passes_the_audit_with_every_client_accounted_for() {
    // One session of 50 families starting in 7 s with a 5 s window: the tool's families
    // pre-select, confirm or idle, and the idle ones are auto-confirmed at the deadline.
    let demo = start_demo(&[
        "--units",
        "120",
        "--families",
        "50",
        "--session-size",
        "50",
        "--first-session-in",
        "7",
        "--window",
        "5",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let html = dir.path().join("report.html");
    let (code, r, out) = run_tool(
        &[
            "mixed",
            "--report-html",
            html.to_str().unwrap(),
            "--url",
            &demo.url,
            "--clients",
            "200",
            "--families",
            "50",
            "--workers",
            "2",
            "--current-batch",
            "--ramp",
            "2",
            "--duration",
            "1",
            "--idle-share",
            "0.2",
            "--race-share",
            "0.3",
            "--threshold",
            "errors<1",
            "--threshold",
            "connect_p99<2s",
        ],
        &report,
    );
    assert_eq!(code, 0, "run failed:\n{out}");
    assert_eq!(r["passed"], true);
    assert_eq!(r["watchers"], 200);
    assert_eq!(r["families"], 50);
    assert_eq!(r["counts"]["connects_ok"], 250, "{out}");
    assert_eq!(r["peak_open"], 250);
    let played = &r["audit"]["played"];
    let decided = ["confirmed", "automatic", "no_unit"]
        .iter()
        .map(|k| played[k].as_u64().unwrap_or(0))
        .sum::<u64>();
    assert_eq!(decided, 50, "every played family has a result: {played}");
    assert_eq!(played["pending"], 0);
    assert!(
        played["automatic"].as_u64().unwrap_or(0) >= 1,
        "idle families auto-confirmed: {played}"
    );
    assert!(r["counts"]["confirms_ok"].as_u64().unwrap_or(0) >= 1);
    for c in [
        "event log replays",
        "no unit twice",
        "no family twice",
        "auto-confirm took the first free intention, in rank order",
        "every ok a family saw matches the final result",
        "results export matches the log",
        "every connection saw every seq",
    ] {
        assert!(check(&r, c), "check {c:?} missing or failed:\n{out}");
    }
    assert!(r["latency_ms"]["broadcast"]["count"].as_u64().unwrap_or(0) > 0);
    assert!(r["latency_ms"]["confirm"]["count"].as_u64().unwrap_or(0) >= 1);
    // The tool's own CPU: the parent and both workers, the workers per thread.
    let tool = &r["tool_cpu"];
    let procs = tool["processes"].as_array().cloned().unwrap_or_default();
    let roles: Vec<&str> = procs.iter().filter_map(|p| p["role"].as_str()).collect();
    assert_eq!(roles, ["parent", "worker 0", "worker 1"], "{tool}");
    for p in &procs[1..] {
        assert!(p["user_s"].as_f64().unwrap_or(0.0) + p["sys_s"].as_f64().unwrap_or(0.0) > 0.0);
        assert!(
            !p["threads"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .is_empty(),
            "{p}"
        );
    }
    assert_eq!(tool["phase"], "delivery span", "{tool}");
    assert!(tool["saturated"].is_boolean());
    assert!(out.contains("tool CPU"), "{out}");
    check_html(
        &std::fs::read_to_string(&html).expect("--report-html written"),
        &r,
    );
}

/// The HTML report is one well-formed page, fetches nothing, and carries this run's
/// numbers; its timeline adds up to the whole-run histograms.
fn check_html(page: &str, r: &serde_json::Value) {
    assert!(
        page.starts_with("<!DOCTYPE html>"),
        "{}",
        &page[..page.len().min(200)]
    );
    assert_well_formed(page);
    for external in ["<script", "<link", " src=", "@import", "url("] {
        assert!(!page.contains(external), "not self-contained: {external}");
    }
    assert!(
        page.contains("一致性审计 · audit: 通过 passed"),
        "audit verdict"
    );
    assert!(page.contains("运行结果 · run: 通过 PASS"));
    let deliveries = r["counts"]["deliveries"].as_u64().unwrap();
    assert!(deliveries > 0);
    assert!(
        page.contains(&format!("<b>{deliveries}</b>")),
        "deliveries tile"
    );
    let p99 = r["latency_ms"]["broadcast"]["p99"].as_f64().unwrap();
    assert!(
        page.contains(&format!("<b>{p99:.2} ms</b>")),
        "broadcast p99 tile"
    );
    let confirms = r["latency_ms"]["confirm"]["count"].as_u64().unwrap();
    assert!(page.contains(&format!("<tr><td>confirm</td><td>{confirms}</td>")));
    for chart in [
        "广播延迟 · broadcast latency",
        "确认延迟 · confirm latency",
        "每秒送达 · deliveries per second",
        "CPU 占用 · CPU use",
    ] {
        assert!(page.contains(&format!("<title>{chart}")), "chart {chart}");
    }
    assert!(page.matches("<polyline").count() >= 3, "charts have lines");
    // Per-second counts add up to the run's, for broadcast and confirm.
    let seconds = r["timeline"]["seconds"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let sum = |h: &str| -> u64 {
        seconds
            .iter()
            .map(|s| s["latency_ms"][h]["count"].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!(sum("broadcast"), deliveries);
    assert_eq!(sum("confirm"), confirms);
    assert!(!r["timeline"]["tool_cpu"].as_array().unwrap().is_empty());
}

/// Every tag closed in order (void elements self-closed), every `&` an entity.
fn assert_well_formed(page: &str) {
    let body = page.trim_start_matches("<!DOCTYPE html>");
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find('<') {
        let text = &rest[..i];
        for (j, _) in text.match_indices('&') {
            let ent = &text[j..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                    .iter()
                    .any(|e| ent.starts_with(e)),
                "bare & in {:?}",
                &ent[..ent.len().min(30)]
            );
        }
        let end = rest[i..].find('>').expect("unclosed tag") + i;
        let tag = &rest[i + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name.trim()), "closing </{name}>");
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap_or_default();
            stack.push(name);
        }
        rest = &rest[end + 1..];
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

#[test]
fn select_creates_its_own_batch_and_storm_resumes_without_a_gap() {
    let demo = start_demo(&["--units", "40", "--families", "20"]);
    let dir = tempfile::tempdir().unwrap();
    // select: the tool uploads its own batch (1-minute window); nobody idles, so every
    // family confirms well before the deadline.
    let report = dir.path().join("select.json");
    let (code, r, out) = run_tool(
        &[
            "select",
            "--url",
            &demo.url,
            "--families",
            "30",
            "--workers",
            "2",
            "--ramp",
            "1",
            "--duration",
            "0",
            "--preselect-secs",
            "2",
            "--idle-share",
            "0",
            "--race-share",
            "0.5",
            "--window-minutes",
            "1",
        ],
        &report,
    );
    assert_eq!(code, 0, "select failed:\n{out}");
    assert!(r["batch"].as_str().unwrap_or_default().starts_with("lt-"));
    assert_eq!(r["audit"]["played"]["confirmed"], 30, "{out}");
    assert_eq!(r["counts"]["confirms_ok"], 30);

    // storm on the batch just created: 100 watchers and 10 families' phones drop at once.
    let report = dir.path().join("storm.json");
    let (code, r, out) = run_tool(
        &[
            "storm",
            "--url",
            &demo.url,
            "--clients",
            "100",
            "--workers",
            "2",
            "--ramp",
            "1",
            "--duration",
            "1",
            "--storm-after",
            "0.5",
        ],
        &report,
    );
    assert_eq!(code, 0, "storm failed:\n{out}");
    assert_eq!(r["counts"]["reconnects"], 100, "{out}");
    assert_eq!(
        r["latency_ms"]["storm"]["count"], 100,
        "every client came back: {out}"
    );
    assert!(check(&r, "every connection saw every seq"), "{out}");
}

#[test]
fn a_missed_threshold_fails_the_run() {
    let demo = start_demo(&["--units", "40", "--families", "20"]);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let (code, r, out) = run_tool(
        &[
            "watch",
            "--url",
            &demo.url,
            "--clients",
            "10",
            "--ramp",
            "0.5",
            "--duration",
            "0",
            "--threshold",
            "connect_max<1us",
        ],
        &report,
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(r["passed"], false);
    assert_eq!(r["audit"]["passed"], true, "the audit itself passed");
    assert_eq!(r["thresholds"][0]["passed"], false);
}
