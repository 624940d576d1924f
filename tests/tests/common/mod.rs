//! Test harness: real gateways on free ports over a real engine, and WebSocket clients.
#![allow(dead_code)]

pub mod signing;
pub mod vendor;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use xuanfang_allocator::redis_engine::{RedisEngine, RedisOptions};
use xuanfang_allocator::testing::{unique_namespace, RedisServer};
use xuanfang_allocator::Allocator;
use xuanfang_gateway::app::{App, WsConfig};
use xuanfang_gateway::auth::{Auth, Role};
use xuanfang_gateway::limits::{LimitConfig, Limits};
use xuanfang_hub::protocol::{ClientMsg, Encoding, ServerMsg};
use xuanfang_hub::{
    Batch, BatchId, Clock, Family, FamilyId, Layout, ManualClock, Millis, Session, SessionId,
    SessionKind, Unit, UnitId,
};

pub const SECRET: &[u8] = b"test-secret-of-at-least-32-bytes";

pub fn auth() -> Auth {
    Auth::hs256(SECRET).expect("a secret of 32 bytes or more")
}

pub fn family_token(f: &str) -> String {
    auth().mint(f, Role::Family, 3600).unwrap()
}

pub fn operator_token() -> String {
    auth().mint("op", Role::Operator, 3600).unwrap()
}

/// A Redis engine in its own namespace on the shared test server.
pub async fn redis_engine(namespace: &str) -> Arc<dyn Allocator> {
    let server = RedisServer::shared();
    Arc::new(
        RedisEngine::connect(
            server.client(),
            RedisOptions {
                namespace: namespace.to_owned(),
                ..RedisOptions::default()
            },
        )
        .await
        .expect("redis engine"),
    )
}

pub fn namespace() -> String {
    unique_namespace()
}

/// A running gateway.
pub struct Gateway {
    pub addr: SocketAddr,
    pub app: Arc<App>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.app.shutdown.cancel();
    }
}

pub async fn start_gateway(alloc: Arc<dyn Allocator>, batch: &BatchId) -> Gateway {
    start_gateway_with(alloc, batch, LimitConfig::default()).await
}

pub async fn start_gateway_with(
    alloc: Arc<dyn Allocator>,
    batch: &BatchId,
    limits: LimitConfig,
) -> Gateway {
    let app = App::new(
        alloc,
        auth(),
        Limits::new(limits),
        WsConfig::default(),
        None,
    );
    app.serve_batch(batch.clone()).await.expect("serve batch");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(xuanfang_gateway::server::serve(app.clone(), listener));
    Gateway { addr, app }
}

/// A gateway on an injected `clock` (a `ManualClock` the test moves), not serving yet:
/// signing can still be enabled before [`serve_on_free_port`].
pub fn app_on_clock(
    alloc: Arc<dyn Allocator>,
    clock: Arc<dyn Clock>,
    limits: LimitConfig,
) -> Arc<App> {
    App::with_clock(
        alloc,
        auth(),
        Limits::new(limits),
        WsConfig::default(),
        None,
        clock,
    )
}

/// Serves `batch` on `app` and starts its server on a free port; the address.
pub async fn serve_on_free_port(app: &Arc<App>, batch: &BatchId) -> SocketAddr {
    app.serve_batch(batch.clone()).await.expect("serve batch");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(xuanfang_gateway::server::serve(app.clone(), listener));
    addr
}

/// A gateway on `clock` over `alloc`, with the default limits, serving `batch`.
pub async fn gateway_on_clock(
    alloc: Arc<dyn Allocator>,
    clock: Arc<dyn Clock>,
    batch: &Batch,
) -> (Arc<App>, SocketAddr) {
    let app = app_on_clock(alloc, clock, LimitConfig::default());
    let addr = serve_on_free_port(&app, &batch.id).await;
    (app, addr)
}

/// An axum router on a free port: a vendor's or an identity platform's stand-in.
pub async fn serve_router(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// [`small_batch`] pinned to a manual clock at `t0` (it is relative to the wall clock):
/// pre-selection opened a minute before `t0`, session S1 `start_in` after `t0`, windows
/// of three minutes.
pub fn batch_at(t0: Millis, id: &str, start_in: Duration) -> Batch {
    let mut batch = small_batch(id, start_in, Duration::from_secs(180));
    let shift = t0.0 - batch.preselect_start.0 - 60_000;
    batch.preselect_start = batch.preselect_start.plus_ms(shift);
    for s in &mut batch.sessions {
        s.start = s.start.plus_ms(shift);
    }
    batch
}

/// A small batch around `now`: pre-selection open, session S1 starting in `start_in`
/// with `window`, session S2 right after. Units U01..U10 all 一房一厅; families
/// F1..F4 in S1 (ranks 1..4), F5..F6 in S2.
pub fn small_batch(id: &str, start_in: Duration, window: Duration) -> Batch {
    let now = Millis::now();
    let layout = Layout::from("一房一厅");
    let units = (1..=10)
        .map(|i| Unit {
            id: UnitId(format!("U{i:02}")),
            building: "1栋".into(),
            number: format!("{}01", i + 1),
            floor: i + 1,
            layout: layout.clone(),
            area: 45.0,
            orientation: "南".into(),
            rent: 1200.0,
        })
        .collect();
    let s1 = now.plus_ms(start_in.as_millis() as i64);
    let w = window.as_millis() as i64;
    let fam = |i: u32, s: &str| Family {
        id: FamilyId(format!("F{i}")),
        name: format!("张*{i}"),
        rank: i,
        session: SessionId::from(s),
        eligible_layouts: vec![layout.clone()],
    };
    Batch {
        id: BatchId::from(id),
        name: "测试批次".into(),
        preselect_start: now.plus_ms(-60_000),
        preselect_end: None,
        utc_offset_minutes: 480,
        units,
        families: vec![
            fam(1, "S1"),
            fam(2, "S1"),
            fam(3, "S1"),
            fam(4, "S1"),
            fam(5, "S2"),
            fam(6, "S2"),
        ],
        sessions: vec![
            Session {
                id: SessionId::from("S1"),
                kind: SessionKind::Formal,
                start: s1,
                window_ms: w,
                families: ["F1", "F2", "F3", "F4"].map(FamilyId::from).to_vec(),
            },
            Session {
                id: SessionId::from("S2"),
                kind: SessionKind::Formal,
                start: s1.plus_ms(w + 60_000),
                window_ms: w,
                families: ["F5", "F6"].map(FamilyId::from).to_vec(),
            },
        ],
    }
}

/// Sleeps until the engine-independent wall clock reaches `t` (+ a small margin).
pub async fn sleep_until(t: Millis) {
    let now = Millis::now();
    if t > now {
        tokio::time::sleep(Duration::from_millis((t.0 - now.0) as u64 + 20)).await;
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A protocol client over a real WebSocket.
pub struct Client {
    pub ws: Ws,
    pub enc: Encoding,
    n: u64,
    /// Frames read but not yet asked for.
    pub seen: Vec<ServerMsg>,
}

pub async fn connect(addr: SocketAddr, token: Option<&str>, enc: Encoding) -> Client {
    try_connect(addr, token, enc).await.expect("ws connect")
}

pub async fn try_connect(
    addr: SocketAddr,
    token: Option<&str>,
    enc: Encoding,
) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    let url = match token {
        Some(t) => format!("ws://{addr}/ws?token={t}"),
        None => format!("ws://{addr}/ws"),
    };
    let mut req = url.into_client_request()?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(enc.subprotocol()),
    );
    let (ws, resp) = tokio_tungstenite::connect_async(req).await?;
    assert_eq!(
        resp.headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok()),
        Some(enc.subprotocol()),
        "server picks the requested subprotocol"
    );
    Ok(Client {
        ws,
        enc,
        n: 0,
        seen: Vec::new(),
    })
}

impl Client {
    pub async fn send(&mut self, msg: &ClientMsg) {
        let bytes = self.enc.encode(msg).unwrap();
        let frame = match self.enc {
            Encoding::Json => Message::Text(String::from_utf8(bytes).unwrap().into()),
            Encoding::MsgPack => Message::Binary(bytes.into()),
        };
        self.ws.send(frame).await.unwrap();
    }

    pub async fn send_raw(&mut self, frame: Message) {
        self.ws.send(frame).await.unwrap();
    }

    /// The next protocol message, or `None` on timeout / close.
    pub async fn next(&mut self, timeout: Duration) -> Option<ServerMsg> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??
                .ok()?;
            let bytes = match frame {
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Binary(b) => b.to_vec(),
                Message::Close(_) => return None,
                _ => continue,
            };
            return Some(self.enc.decode(&bytes).expect("server frames decode"));
        }
    }

    /// Reads until a message matches, keeping the others in `seen`.
    pub async fn until<T>(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(&ServerMsg) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.next(left).await?;
            if let Some(t) = f(&m) {
                return Some(t);
            }
            self.seen.push(m);
        }
    }

    pub fn req_id(&mut self) -> String {
        self.n += 1;
        format!("r{}", self.n)
    }

    /// Sends a request and waits for its reply (ok or error).
    pub async fn request(&mut self, make: impl FnOnce(String) -> ClientMsg) -> ServerMsg {
        let id = self.req_id();
        self.send(&make(id.clone())).await;
        self.until(Duration::from_secs(30), |m| match m {
            ServerMsg::Ok { req_id, .. } if *req_id == id => Some(m.clone()),
            ServerMsg::Error {
                req_id: Some(req_id),
                ..
            } if *req_id == id => Some(m.clone()),
            _ => None,
        })
        .await
        .expect("a reply (within 30 s)")
    }
}

pub fn is_ok(m: &ServerMsg) -> bool {
    matches!(m, ServerMsg::Ok { .. })
}

pub fn error_code(m: &ServerMsg) -> Option<xuanfang_hub::ErrorCode> {
    match m {
        ServerMsg::Error { code, .. } => Some(*code),
        _ => None,
    }
}

/// A token that expired an hour ago, signed with the right secret.
pub fn expired_token(f: &str) -> String {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let claims = xuanfang_gateway::auth::Claims {
        sub: f.to_owned(),
        role: Role::Family,
        exp: (Millis::now().0 / 1000) as u64 - 3600,
        iat: 0,
    };
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

/// Connects to `host:port/path?query` with a subprotocol.
pub async fn connect_path(addr_and_path: &str, enc: Encoding) -> Client {
    let mut req = format!("ws://{addr_and_path}")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(enc.subprotocol()),
    );
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    Client {
        ws,
        enc,
        n: 0,
        seen: Vec::new(),
    }
}

/// A family declares pre-selection and fills its cart, straight through the engine.
pub async fn preselect_direct(alloc: &dyn Allocator, batch: &BatchId, f: &str, units: &[&str]) {
    use xuanfang_hub::{Action, Edit, ListKind, Stage};
    let f = FamilyId::from(f);
    let mut steps = vec![Action::Declare {
        stage: Stage::Preselection,
    }];
    steps.extend(units.iter().map(|u| Action::Edit {
        list: ListKind::Cart,
        edit: Edit::Add,
        unit: UnitId::from(*u),
    }));
    for (i, a) in steps.into_iter().enumerate() {
        let r = alloc.act(batch, &f, &format!("pre{i}"), a).await.unwrap();
        assert!(r.is_ok(), "{r:?}");
    }
}

/// Over its socket, a family declares pre-selection and adds `units` to its cart, each
/// answered `ok`.
pub async fn preselect(c: &mut Client, units: &[&str]) {
    use xuanfang_hub::{Edit, ListKind, Stage};
    let r = c
        .request(|req_id| ClientMsg::Declare {
            req_id,
            stage: Stage::Preselection,
        })
        .await;
    assert!(is_ok(&r), "declare preselection: {r:?}");
    for u in units {
        let r = c
            .request(|req_id| ClientMsg::Edit {
                req_id,
                list: ListKind::Cart,
                edit: Edit::Add,
                unit: UnitId::from(*u),
            })
            .await;
        assert!(is_ok(&r), "add {u}: {r:?}");
    }
}

/// In its formal window, a family declares, syncs its cart and confirms `unit`,
/// straight through the engine.
pub async fn confirm_direct(alloc: &dyn Allocator, batch: &BatchId, f: &str, unit: &str) {
    use xuanfang_hub::{Action, Stage};
    let f = FamilyId::from(f);
    let steps = [
        Action::Declare {
            stage: Stage::Formal,
        },
        Action::Sync,
        Action::Confirm {
            unit: UnitId::from(unit),
        },
    ];
    for (i, a) in steps.into_iter().enumerate() {
        let r = alloc
            .act(batch, &f, &format!("formal{i}"), a)
            .await
            .unwrap();
        assert!(r.is_ok(), "{r:?}");
    }
}

// Time the test moves: a slow machine can only delay these tests, never change them.

/// A manual clock at the wall clock's now, so `small_batch` (relative to the wall clock)
/// fits it; windows open when the test moves it, not when a slow machine gets there.
pub fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Millis::now()))
}

/// A Redis engine in `ns` whose scripts read `clock` instead of Redis `TIME`.
pub async fn clocked_redis_engine(ns: &str, clock: &Arc<ManualClock>) -> Arc<dyn Allocator> {
    let options = RedisOptions {
        namespace: ns.to_owned(),
        clock: Some(clock.clone()),
        ..RedisOptions::default()
    };
    Arc::new(
        RedisEngine::connect(RedisServer::shared().client(), options)
            .await
            .expect("redis engine"),
    )
}

/// A gateway on `clock` (its deadline keeper and window pushes follow it).
pub async fn clocked_gateway(
    alloc: Arc<dyn Allocator>,
    clock: &Arc<ManualClock>,
    batch: &BatchId,
) -> Gateway {
    let app = App::with_clock(
        alloc,
        auth(),
        Limits::new(LimitConfig::default()),
        WsConfig::default(),
        None,
        clock.clone(),
    );
    app.serve_batch(batch.clone()).await.expect("serve batch");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(xuanfang_gateway::server::serve(app.clone(), listener));
    Gateway { addr, app }
}

/// Sends a ping and returns what arrived before its pong: a positive marker for
/// "nothing else came", instead of waiting some milliseconds for nothing.
pub async fn before_pong(c: &mut Client) -> Vec<ServerMsg> {
    let t0 = 4242.5;
    c.send(&ClientMsg::Ping { t0 }).await;
    let mut before = Vec::new();
    loop {
        match c.next(Duration::from_secs(30)).await.expect("pong") {
            ServerMsg::Pong { t0: t, .. } if t == t0 => return before,
            m => before.push(m),
        }
    }
}
