//! `xuanfang-loadtest stall`: slow consumers. K board watchers complete the WebSocket
//! upgrade and then never read again, as a phone whose app froze or a hall screen behind
//! a dead link. Run beside a `watch` or `mixed` run against the same hub: the others'
//! broadcast latency shows whether the stalled ones hold anyone up, and at the end this
//! reports how many the hub let go (it closes a socket whose send stays blocked for its
//! send timeout, 4009) and how many it still holds.
//!
//! Each socket's receive buffer is set small before connecting, so the hub's sends block
//! after a few kilobytes instead of after the kernel's autotuned megabytes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::ws;

/// Options of `stall`.
#[derive(Clone, Debug, Args)]
pub struct StallArgs {
    /// Gateway base URL; repeat for several gateways (sockets are spread round-robin).
    #[arg(long = "url", default_value = "http://127.0.0.1:8080")]
    pub urls: Vec<String>,
    /// Stalled watchers.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Seconds the watchers stay stalled once all are connected.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Receive buffer of each socket, bytes (the kernel may round it up).
    #[arg(long, default_value_t = 4096)]
    pub recv_buffer: u32,
    /// Spread connections over 127.0.0.2..127.0.0.(N+1) (loopback targets; 0: kernel picks).
    #[arg(long, default_value_t = 8)]
    pub source_addrs: usize,
    /// JSON frames (`xuanfang.v1.json`) instead of MessagePack.
    #[arg(long)]
    pub json: bool,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// Why the stalled watchers could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StallError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Ws(#[from] ws::WsError),
    #[error("bad --url {0}")]
    Url(String),
    #[error("writing the report: {0}")]
    Report(#[from] serde_json::Error),
}

/// What became of the stalled watchers.
#[derive(Debug, Default, Serialize)]
pub struct StallReport {
    pub clients: usize,
    /// Upgrades the hub answered `101`.
    pub upgraded: usize,
    /// Connects or upgrades that failed (the hub's connection limits, for example).
    pub refused: usize,
    /// Sockets the hub ended while they were stalled (a close frame or the TCP end
    /// seen once reading resumes, or a reset).
    pub closed_by_hub: usize,
    /// Sockets still open at the end: the hub still holds them.
    pub still_open: usize,
    /// Seconds they were stalled.
    pub stalled_secs: f64,
}

/// `ws://host:port/ws` for a gateway's base URL.
fn ws_url(base: &str) -> Result<(String, std::net::SocketAddr), StallError> {
    let hostport = base
        .strip_prefix("http://")
        .map(|r| r.trim_end_matches('/'))
        .ok_or_else(|| StallError::Url(base.to_owned()))?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .map_err(|_| StallError::Url(base.to_owned()))?
        .next()
        .ok_or_else(|| StallError::Url(base.to_owned()))?;
    Ok((format!("ws://{hostport}/ws"), addr))
}

async fn connect(
    url: &str,
    addr: std::net::SocketAddr,
    source: Option<std::net::IpAddr>,
    recv_buffer: u32,
    subprotocol: &str,
) -> Result<TcpStream, StallError> {
    let sock = TcpSocket::new_v4()?;
    sock.set_recv_buffer_size(recv_buffer)?;
    if let Some(ip) = source {
        sock.bind(std::net::SocketAddr::new(ip, 0))?;
    }
    let mut s = sock.connect(addr).await?;
    let (req, key) = ws::upgrade_request(url, subprotocol)?;
    s.write_all(&req).await?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        buf.extend_from_slice(&chunk[..n]);
        // Whatever followed the headers (the snapshot's first bytes) is left unread.
        if ws::upgrade_response(&buf, &key)?.is_some() {
            return Ok(s);
        }
    }
}

/// Whether the hub has ended `s`: drains what is buffered and looks for the end.
async fn ended(s: &mut TcpStream) -> bool {
    let mut chunk = vec![0u8; 64 * 1024];
    // Generous: a socket the hub still holds keeps sending, so a read never ends; one it
    // closed ends after its buffered bytes.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) if Instant::now() < deadline => continue,
            _ => return false,
        }
    }
}

/// Runs the stalled watchers and prints (and writes) the report.
pub async fn main(a: StallArgs) -> Result<StallReport, StallError> {
    let subprotocol = if a.json {
        xuanfang_hub::protocol::SUBPROTOCOL_JSON
    } else {
        xuanfang_hub::protocol::SUBPROTOCOL_MSGPACK
    };
    let targets = a
        .urls
        .iter()
        .map(|u| ws_url(u))
        .collect::<Result<Vec<_>, _>>()?;
    let mut report = StallReport {
        clients: a.clients,
        ..Default::default()
    };
    let mut socks = Vec::new();
    for i in 0..a.clients {
        let (url, addr) = &targets[i % targets.len()];
        let source = (a.source_addrs > 0 && addr.ip().is_loopback())
            .then(|| std::net::IpAddr::from([127, 0, 0, 2 + (i % a.source_addrs) as u8]));
        match connect(url, *addr, source, a.recv_buffer, subprotocol).await {
            Ok(s) => socks.push(s),
            Err(e) => {
                report.refused += 1;
                if report.refused <= 3 {
                    eprintln!("stall: connect {i}: {e}");
                }
            }
        }
    }
    report.upgraded = socks.len();
    eprintln!(
        "stall: {} watchers connected and stalled for {} s",
        report.upgraded, a.duration
    );
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    report.stalled_secs = started.elapsed().as_secs_f64();
    let mut checks = tokio::task::JoinSet::new();
    for mut s in socks {
        checks.spawn(async move { ended(&mut s).await });
    }
    while let Some(closed) = checks.join_next().await {
        if closed.unwrap_or(false) {
            report.closed_by_hub += 1;
        } else {
            report.still_open += 1;
        }
    }
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(p) = &a.report {
        std::fs::write(p, &text)?;
    }
    Ok(report)
}
