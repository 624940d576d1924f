//! `xuanfang serve --data-dir`: the embedded engine in production. Killed with SIGKILL in
//! the middle of a session and restarted, it serves the same batch with the same epoch,
//! seq and results, and still keeps the session's deadline; a second process on the same
//! directory is refused.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use xuanfang_gateway::auth::{Auth, Role};

const SECRET: &str = "serve-data-dir-test-secret-0123456789abcdef";
const BATCH: &str = "kill9";

fn auth() -> Auth {
    Auth::hs256(SECRET.as_bytes()).unwrap()
}

fn token(sub: &str, role: Role) -> String {
    auth().mint(sub, role, 3600).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

struct Serve {
    child: Child,
    base: String,
    port: u16,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_cmd(dir: &Path, port: u16) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xuanfang"));
    c.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--jwt-secret", SECRET, "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn");
    c
}

async fn start(dir: &Path) -> Serve {
    let port = free_port();
    let child = serve_cmd(dir, port)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start xuanfang serve");
    let s = Serve {
        child,
        base: format!("http://127.0.0.1:{port}"),
        port,
    };
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/healthz", s.base)).await {
            if r.status().is_success() {
                return s;
            }
        }
        assert!(Instant::now() < end, "serve did not come up in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(url: String, token: Option<&str>) -> (u16, Value) {
    let mut r = reqwest::Client::new().get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

async fn server_time(base: &str) -> i64 {
    get(format!("{base}/api/time"), None).await.1["server_time"]
        .as_i64()
        .unwrap()
}

async fn upload(base: &str, batch: &str, first_start: i64, window: u32) {
    let units = "房源编号,楼栋,房号,楼层,户型,面积,朝向,租金\n\
                 A-1,1栋,101,1,一房一厅,45.5,南,1200\n\
                 A-2,1栋,102,1,一房一厅,45.5,南,1200\n\
                 A-3,1栋,103,1,一房一厅,45.5,南,1200\n";
    let families = "家庭编号,姓名,排位,场次,可选户型\nF1,张*一,1,,一房一厅\nF2,李*二,2,,一房一厅\n";
    let form = reqwest::multipart::Form::new()
        .part(
            "units",
            reqwest::multipart::Part::bytes(units.as_bytes().to_vec()).file_name("units.csv"),
        )
        .part(
            "families",
            reqwest::multipart::Part::bytes(families.as_bytes().to_vec()).file_name("families.csv"),
        )
        .text("batch_id", batch.to_owned())
        .text("name", "断电测试批次")
        .text("session_size", "10")
        .text("first_session_start", first_start.to_string())
        .text("window_seconds", window.to_string());
    let r = reqwest::Client::new()
        .post(format!("{base}/api/ops/batches"))
        .bearer_auth(token("op", Role::Operator))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

/// The machine was too slow for the session's window (see [`WINDOWS`]).
#[derive(Debug)]
struct Late;

/// Windows (seconds) tried in turn: `serve` keeps real time (it has no test clock), so
/// the families must act, and the process be killed, before the deadline. A machine too
/// slow for one gets a fresh batch with a longer one; a wrong answer still fails at once.
const WINDOWS: [u32; 3] = [20, 80, 320];

/// Plays one family's requests in `batch` over a real WebSocket; each must be answered
/// `ok`, or [`Late`]: refused as too late once the server's clock is past `deadline`.
async fn act(
    base: &str,
    port: u16,
    (batch, deadline): (&str, i64),
    family: &str,
    requests: &[Value],
) -> Result<(), Late> {
    let url = format!(
        "ws://127.0.0.1:{port}/ws?batch={batch}&token={}",
        token(family, Role::Family)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    for (i, r) in requests.iter().enumerate() {
        let id = format!("{family}-{i}");
        let mut msg = r.clone();
        msg["req_id"] = json!(id);
        ws.send(Message::Text(msg.to_string().into()))
            .await
            .unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Text(t) = m {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["req_id"] == json!(id) {
                        return v;
                    }
                }
            }
            panic!("socket closed before the reply to {id}");
        })
        .await
        .expect("reply within 10 s");
        // After the deadline: `window_closed`, or `already_has_unit` once the deadline
        // gave the family a unit from its intentions.
        if reply["code"] == "window_closed" || reply["code"] == "already_has_unit" {
            let now = server_time(base).await;
            assert!(
                now >= deadline,
                "{family} {r}: {reply} at {now}, before {deadline}"
            );
            return Err(Late);
        }
        assert_eq!(reply["type"], "ok", "{family} {r}: {reply}");
    }
    Ok(())
}

async fn me(base: &str, batch: &str, family: &str) -> (u16, Value) {
    let t = token(family, Role::Family);
    get(format!("{base}/api/me?batch={batch}"), Some(&t)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_a_data_dir_survives_sigkill_and_refuses_a_second_process() {
    let dir = tempfile::tempdir().unwrap();
    for (n, window) in WINDOWS.into_iter().enumerate() {
        match attempt(dir.path(), &format!("{BATCH}-{n}"), window).await {
            Ok(()) => return,
            Err(Late) => {
                assert!(n + 1 < WINDOWS.len(), "even {window} s was too short");
                eprintln!("a {window} s window was too short for this machine");
            }
        }
    }
}

/// The whole story on a fresh batch with a `window`-second session.
async fn attempt(dir: &Path, batch: &str, window: u32) -> Result<(), Late> {
    let mut first = start(dir).await;
    let start_at = server_time(&first.base).await + 1_000;
    let deadline = start_at + i64::from(window) * 1_000;
    upload(&first.base, batch, start_at, window).await;
    let end = Instant::now() + Duration::from_secs(30);
    while server_time(&first.base).await < start_at {
        assert!(Instant::now() < end, "the session never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let at = (batch, deadline);
    let declare = json!({"type": "declare", "stage": "formal"});
    let add = |u: &str| json!({"type": "edit", "list": "intentions", "edit": "add", "unit": u});
    act(
        &first.base,
        first.port,
        at,
        "F1",
        &[
            declare.clone(),
            add("A-1"),
            json!({"type": "confirm", "unit": "A-1"}),
        ],
    )
    .await?;
    // F2 enters and stays idle: the deadline must assign it A-2.
    act(&first.base, first.port, at, "F2", &[declare, add("A-2")]).await?;
    let (_, board) = get(format!("{}/api/board?batch={batch}", first.base), None).await;
    let (epoch, seq) = (board["epoch"].clone(), board["seq"].as_u64().unwrap());

    // A second process on the same directory is refused, naming the lock.
    let mut second = serve_cmd(dir, free_port())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = second.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > end {
            let _ = second.kill();
            panic!("a second serve on the same data directory kept running");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("xuanfang.lock"), "{err}");

    // SIGKILL mid-session (before the deadline, or the story is not the one told), then
    // restart on the same directory.
    let killed_at = server_time(&first.base).await;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    if killed_at >= deadline {
        return Err(Late);
    }
    let again = start(dir).await;
    let (_, batches) = get(format!("{}/api/batches", again.base), None).await;
    assert!(
        batches
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["batch"] == batch),
        "{batches}"
    );
    let (_, board) = get(format!("{}/api/board?batch={batch}", again.base), None).await;
    assert_eq!(board["epoch"], epoch);
    assert!(board["seq"].as_u64().unwrap() >= seq, "{board}");
    let (_, f1) = me(&again.base, batch, "F1").await;
    assert_eq!(f1["outcome"]["unit"], "A-1", "{f1}");
    assert_eq!(f1["outcome"]["how"], "confirmed");

    // The deadline passes after the restart and is still kept.
    let end = Instant::now() + Duration::from_secs(90 + u64::from(window));
    let f2 = loop {
        let (_, f2) = me(&again.base, batch, "F2").await;
        if !f2["outcome"].is_null() {
            break f2;
        }
        assert!(
            Instant::now() < end,
            "the deadline was not kept after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(f2["outcome"]["unit"], "A-2", "{f2}");
    assert_eq!(f2["outcome"]["how"], "automatic");
    let (_, events) = get(
        format!("{}/api/ops/events?batch={batch}", again.base),
        Some(&token("op", Role::Operator)),
    )
    .await;
    let selected_f2 = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["kind"] == "selected" && e["event"]["family"] == "F2")
        .count();
    assert_eq!(selected_f2, 1, "decided exactly once");
    Ok(())
}
