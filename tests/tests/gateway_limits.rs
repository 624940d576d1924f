//! Limits at the edge, over real sockets: the header timeout, the connection cap, client
//! addresses behind trusted proxies, rate limits on every public route, the pages'
//! security headers and the `/ws` origin policy.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Error as WsError;
use xuanfang_gateway::limits::LimitConfig;
use xuanfang_hub::protocol::{ClientMsg, Encoding, ServerMsg};

/// How long a test waits for what should happen (generous: the timeouts under test are 1 s).
const WAIT: Duration = Duration::from_secs(20);

async fn gateway(limits: LimitConfig) -> Gateway {
    let alloc = redis_engine(&namespace()).await;
    let batch = small_batch("edge", Duration::from_secs(600), Duration::from_secs(60));
    alloc.load_batch(batch.clone()).await.unwrap();
    start_gateway_with(alloc, &batch.id, limits).await
}

/// Whether the server closes the connection (EOF or reset) within [`WAIT`].
async fn closed_by_server(s: &mut (impl AsyncRead + Unpin)) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A response read off a raw connection.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

/// `GET path` on an open connection (kept alive), and its response.
async fn get_on(s: &mut TcpStream, path: &str) -> Raw {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    tokio::time::timeout(WAIT, read_response(s))
        .await
        .expect("a response")
}

async fn read_response(s: &mut TcpStream) -> Raw {
    try_read_response(s)
        .await
        .expect("closed before a whole response head")
}

/// The response, or `None` if the connection closed before its head.
async fn try_read_response(s: &mut TcpStream) -> Option<Raw> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head[9..12].parse().unwrap();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .expect("content-length");
    while buf.len() < end + len {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the whole body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[end..end + len]).into_owned();
    Some(Raw { status, head, body })
}

/// A new connection on which `GET /healthz` was answered 200. Under a header timeout of
/// `timeout`, a machine that stalls between connecting and sending may see the server
/// close it first: allowed only once `timeout` has passed since the connect (earlier
/// fails the test), and then a fresh connection is tried.
async fn answered_connection(gw: &Gateway, timeout: Duration) -> TcpStream {
    let end = Instant::now() + 3 * WAIT;
    loop {
        let t = Instant::now();
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        let sent = s
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .is_ok();
        let reply = if sent {
            tokio::time::timeout(WAIT, try_read_response(&mut s))
                .await
                .expect("a response or a close")
        } else {
            None
        };
        if let Some(r) = reply {
            assert_eq!(r.status, 200, "{}", r.head);
            return s;
        }
        assert!(
            t.elapsed() >= timeout,
            "closed {:?} after connecting, before the header timeout",
            t.elapsed()
        );
        assert!(Instant::now() < end, "no request got through in time");
    }
}

/// A board-watching WebSocket with extra request headers.
async fn ws_with(gw: &Gateway, headers: &[(&'static str, &str)]) -> Result<Ws, WsError> {
    let mut req = format!("ws://{}/ws", gw.addr).into_client_request()?;
    for (k, v) in headers {
        req.headers_mut()
            .insert(*k, HeaderValue::from_str(v).unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// The HTTP status and body of a refused WebSocket handshake.
fn refused(r: Result<Ws, WsError>) -> (u16, String) {
    match r {
        Err(WsError::Http(resp)) => (
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(e) => panic!("refused without an HTTP answer: {e}"),
        Ok(_) => panic!("upgraded"),
    }
}

/// Statuses of `GET path` with `headers` until the first 429, at most `n` requests.
async fn until_limited(
    http: &reqwest::Client,
    url: &str,
    n: usize,
    headers: impl Fn(usize) -> Vec<(&'static str, String)>,
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..n {
        let mut req = http.get(url);
        for (k, v) in headers(i) {
            req = req.header(k, v);
        }
        let s = req.send().await.unwrap().status().as_u16();
        statuses.push(s);
        if s == 429 {
            break;
        }
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_dripping_idle_and_kept_alive_connections_are_closed_after_the_header_timeout() {
    let gw = gateway(LimitConfig {
        header_read_timeout_secs: 1,
        ..LimitConfig::default()
    })
    .await;
    // Slowloris: half a header, then nothing.
    let mut half = TcpStream::connect(gw.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
        .await
        .unwrap();
    // A connection that never sends anything.
    let mut idle = TcpStream::connect(gw.addr).await.unwrap();
    // A header dripped a byte at a time and never finished.
    let (mut drip_r, mut drip_w) = TcpStream::connect(gw.addr).await.unwrap().into_split();
    let dripping = tokio::spawn(async move {
        let _ = drip_w.write_all(b"GET /healthz HTTP/1.1\r\nX-Drip: ").await;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if drip_w.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    // A keep-alive connection, idle after one answered request.
    let mut kept = answered_connection(&gw, Duration::from_secs(1)).await;

    assert!(closed_by_server(&mut half).await, "half-open still open");
    assert!(closed_by_server(&mut idle).await, "idle still open");
    assert!(closed_by_server(&mut drip_r).await, "dripping still open");
    assert!(closed_by_server(&mut kept).await, "kept-alive still open");
    dripping.abort();
    // The server itself is fine.
    answered_connection(&gw, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_connection_cap_new_connections_get_503_and_open_ones_still_answer() {
    let gw = gateway(LimitConfig {
        max_connections: 3,
        // Nothing here may time out by itself.
        header_read_timeout_secs: 600,
        ..LimitConfig::default()
    })
    .await;
    // Three connections of three kinds: kept-alive HTTP, a WebSocket, a silent one.
    let mut http = TcpStream::connect(gw.addr).await.unwrap();
    assert_eq!(get_on(&mut http, "/healthz").await.status, 200);
    let mut ws = connect(gw.addr, None, Encoding::Json).await;
    ws.until(WAIT, |m| {
        matches!(m, ServerMsg::Snapshot { .. }).then_some(())
    })
    .await
    .expect("a snapshot");
    let silent = TcpStream::connect(gw.addr).await.unwrap();

    // The fourth (accepted after the silent one: the kernel queues connections in
    // order) is answered 503 `unavailable` and closed.
    let mut fourth = TcpStream::connect(gw.addr).await.unwrap();
    let r = get_on(&mut fourth, "/healthz").await;
    assert_eq!(r.status, 503, "{}", r.head);
    assert!(r.body.contains("\"unavailable\""), "{}", r.body);
    assert!(
        closed_by_server(&mut fourth).await,
        "a refused connection is closed"
    );
    // A WebSocket over the cap: HTTP 503 `unavailable`, no upgrade.
    let (status, body) = refused(ws_with(&gw, &[]).await);
    assert_eq!(status, 503);
    assert!(body.contains("\"unavailable\""), "{body}");

    // The open ones still answer.
    assert_eq!(get_on(&mut http, "/healthz").await.status, 200);
    ws.send(&ClientMsg::Ping { t0: 1.0 }).await;
    let pong = ws
        .until(WAIT, |m| matches!(m, ServerMsg::Pong { .. }).then_some(()))
        .await;
    assert!(pong.is_some(), "the open WebSocket still answers");

    // A connection that ends gives its place back: the WebSocket's too.
    drop(silent);
    let _ = ws.ws.close(None).await;
    drop(ws);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut answered = Vec::new();
    while answered.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "places did not come back"
        );
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        match get_on(&mut s, "/healthz").await.status {
            // Keep the connection: the second place must come back as well.
            200 => answered.push(s),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_buckets() {
    let gw = gateway(LimitConfig {
        trusted_proxies: vec!["127.0.0.1".into(), "10.0.0.0/8".into()],
        http_per_sec_per_ip: 1,
        max_conns_per_ip: 1,
        ..LimitConfig::default()
    })
    .await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/api/time", gw.addr);
    let xff = |v: &'static str| move |_| vec![("X-Forwarded-For", v.to_owned())];

    // Client A, through the proxy: a burst, then 429.
    let a = until_limited(&http, &url, 20, xff("203.0.113.1")).await;
    assert_eq!(a.last(), Some(&429), "{a:?}");
    assert!(a.len() > 1, "a burst first: {a:?}");
    // Client B, through the same proxy, has its own bucket.
    let b = until_limited(&http, &url, 1, xff("203.0.113.2")).await;
    assert_eq!(b, [200], "a second client behind the proxy");
    // The client is the right-most address that is not a trusted proxy: what the client
    // wrote to the left (A's exhausted address, then any address) does not count.
    let c = until_limited(&http, &url, 1, xff("203.0.113.1, 203.0.113.3, 10.1.2.3")).await;
    assert_eq!(c, [200], "203.0.113.3 has its own bucket");
    let spoofed = until_limited(&http, &url, 20, |i| {
        vec![("X-Forwarded-For", format!("192.0.2.{i}, 203.0.113.3"))]
    })
    .await;
    assert_eq!(spoofed.last(), Some(&429), "{spoofed:?}");
    // `Forwarded: for=` names the client as well.
    let fwd = |v: &'static str| move |_| vec![("Forwarded", format!("for={v};proto=https"))];
    let d = until_limited(&http, &url, 20, fwd("\"[2001:db8::7]:4711\"")).await;
    assert_eq!(d.last(), Some(&429), "{d:?}");
    let e = until_limited(&http, &url, 1, fwd("198.51.100.9")).await;
    assert_eq!(e, [200], "another Forwarded client");

    // WebSockets: one open socket per client address.
    let first = ws_with(&gw, &[("X-Forwarded-For", "198.51.100.1")])
        .await
        .expect("a first socket");
    let (status, body) = refused(ws_with(&gw, &[("X-Forwarded-For", "198.51.100.1")]).await);
    assert_eq!(status, 429, "{body}");
    let other = ws_with(&gw, &[("X-Forwarded-For", "198.51.100.2")]).await;
    assert!(other.is_ok(), "another client's socket");
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peers_forwarded_headers_are_ignored_and_every_public_route_is_limited() {
    let gw = gateway(LimitConfig {
        // The test's peer, 127.0.0.1, is not one of these.
        trusted_proxies: vec!["10.0.0.0/8".into()],
        http_per_sec_per_ip: 1,
        static_per_sec_per_ip: 1,
        max_conns_per_ip: 1,
        ..LimitConfig::default()
    })
    .await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", gw.addr);
    // A new forged address on every request does not escape the limit.
    let forged = |i: usize| {
        vec![
            ("X-Forwarded-For", format!("203.0.113.{i}")),
            ("Forwarded", format!("for=198.51.100.{i}")),
        ]
    };
    let api = until_limited(&http, &format!("{base}/api/time"), 20, forged).await;
    assert_eq!(api.last(), Some(&429), "{api:?}");
    // `/metrics`, the pages and their assets are limited too.
    for path in [
        "/metrics",
        "/app",
        "/hall",
        "/console",
        "/web/shared/base.css",
    ] {
        let s = until_limited(&http, &format!("{base}{path}"), 20, forged).await;
        assert_eq!(s.last(), Some(&429), "{path}: {s:?}");
    }
    // Health probes (the load balancer's) are not.
    for path in ["/healthz", "/readyz"] {
        let s = until_limited(&http, &format!("{base}{path}"), 20, forged).await;
        assert!(s.iter().all(|s| *s == 200), "{path}: {s:?}");
    }
    // WebSockets: one open socket per address, whatever the header says.
    let _first = ws_with(&gw, &[("X-Forwarded-For", "198.51.100.1")])
        .await
        .expect("a first socket");
    let (status, _) = refused(ws_with(&gw, &[("X-Forwarded-For", "198.51.100.2")]).await);
    assert_eq!(status, 429);
}

const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; \
                   style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; object-src 'none'; \
                   base-uri 'none'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_assets_carry_the_security_headers() {
    let gw = gateway(LimitConfig::default()).await;
    let http = reqwest::Client::new();
    for path in [
        "/app",
        "/hall",
        "/console",
        "/web/shared/base.css",
        "/web/shared/proto.js",
        "/web/app/app.js",
        "/web/hall/hall.css",
        "/web/console/console.js",
    ] {
        let r = http
            .get(format!("http://{}{path}", gw.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(h("content-security-policy").as_deref(), Some(CSP), "{path}");
        assert_eq!(h("x-content-type-options").as_deref(), Some("nosniff"));
        assert_eq!(h("referrer-policy").as_deref(), Some("no-referrer"));
        assert_eq!(h("x-frame-options").as_deref(), Some("DENY"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_from_an_origin_not_allowed_is_refused_before_the_upgrade() {
    let gw = gateway(LimitConfig {
        allowed_origins: vec!["https://xuanfang.example".into()],
        ..LimitConfig::default()
    })
    .await;
    for origin in ["https://evil.example", "http://xuanfang.example", "null"] {
        let (status, body) = refused(ws_with(&gw, &[("Origin", origin)]).await);
        assert_eq!(status, 403, "{origin}");
        assert!(body.contains("\"forbidden\""), "{body}");
    }
    let mut listed = ws_with(&gw, &[("Origin", "https://xuanfang.example")])
        .await
        .expect("the listed origin");
    assert!(listed.next().await.is_some(), "a welcome");
    // Native clients (the load tool, apps) send no Origin.
    let mut native = ws_with(&gw, &[]).await.expect("no Origin");
    assert!(native.next().await.is_some(), "a welcome");

    // The default list is empty: any origin may connect.
    let open = gateway(LimitConfig::default()).await;
    assert!(ws_with(&open, &[("Origin", "https://evil.example")])
        .await
        .is_ok());
}
