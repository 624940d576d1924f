//! SIGTERM: every open socket gets the documented close frame 1001, including sockets
//! opened a moment before the signal (they used to end with 1006 when the process exited
//! before their connection task had sent anything).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a socket and reads it to its end: the close code, 1006 when it ended without a
/// close frame, 0 when it never opened.
async fn close_code(url: String) -> u16 {
    let Ok((ws, _)) = tokio_tungstenite::connect_async(url).await else {
        return 0;
    };
    read_to_close(ws).await
}

async fn read_to_close(mut ws: Ws) -> u16 {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Close(f)))) => return f.map_or(1005, |f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => return 1006,
            Err(_) => return 0,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_socket_with_1001_even_those_just_opened() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xuanfang"));
    cmd.args([
        "demo",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(dir.path())
    // A large board: greeting a socket (snapshot parts) takes a while, which is when
    // an exiting process used to drop it without a close frame.
    .args(["--families", "600", "--units", "2000", "--bots", "0"])
    .env("RUST_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let demo = Running(cmd.spawn().unwrap());
    let base = format!("http://127.0.0.1:{port}");
    let end = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(format!("{base}/readyz"))
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < end, "demo did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = format!("ws://127.0.0.1:{port}/ws");
    // Sockets settled before the signal (open and greeted: their first frame came) ...
    let mut settled = Vec::new();
    for _ in 0..20 {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.clone()).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(30), ws.next()).await;
        assert!(
            matches!(first, Ok(Some(Ok(Message::Text(_) | Message::Binary(_))))),
            "{first:?}"
        );
        settled.push(tokio::spawn(read_to_close(ws)));
    }
    // ... and a burst opened right as it comes.
    let burst: Vec<_> = (0..400)
        .map(|_| tokio::spawn(close_code(url.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let pid = demo.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut codes = std::collections::BTreeMap::<u16, usize>::new();
    for t in settled.into_iter().chain(burst) {
        *codes.entry(t.await.unwrap()).or_default() += 1;
    }
    eprintln!("close codes: {codes:?}");
    // 0: refused before the upgrade (the listener had already stopped) — not a socket.
    let opened: usize = codes.iter().filter(|(c, _)| **c != 0).map(|(_, n)| n).sum();
    assert!(opened >= 20, "the settled sockets at least: {codes:?}");
    assert_eq!(
        codes
            .iter()
            .filter(|(c, _)| **c != 0 && **c != 1001)
            .count(),
        0,
        "every opened socket closed with 1001: {codes:?}"
    );
}
