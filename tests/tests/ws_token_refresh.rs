//! A token that expires while its WebSocket is open: the socket is told `token_expiring`
//! a lead time before `exp`, takes a new token of the same family with `refresh`, and
//! without one is closed with 4001 once the token has expired. Token time is a
//! `ManualClock` shared by the engine, the gateway and the `Auth` that verifies and
//! mints, so nothing here sleeps on a margin: the test moves time and waits (up to
//! tens of seconds) for what that time asks.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use xuanfang_allocator::Allocator;
use xuanfang_gateway::app::{App, WsConfig};
use xuanfang_gateway::auth::{Auth, Role, TokenRules};
use xuanfang_gateway::connection::close_code;
use xuanfang_gateway::limits::{LimitConfig, Limits};
use xuanfang_hub::protocol::{ClientMsg, Encoding, ServerMsg};
use xuanfang_hub::{Batch, ErrorCode, ManualClock, Millis, Stage};

/// Generous: the expiry keeper looks at the clock at least once a second.
const T: Duration = Duration::from_secs(30);
/// Server and token time at the start (2030-03-18).
const T0: Millis = Millis(1_900_000_000_000);
/// `token_expiring` goes out this long before `exp`.
const LEAD: Duration = Duration::from_secs(60);
const ISSUER: &str = "https://idp.example.gd.gov.cn";
const AUDIENCE: &str = "xuanfang";

const ENCODINGS: [Encoding; 2] = [Encoding::Json, Encoding::MsgPack];

/// The platform's rules: issuer and audience required, no leeway (so `exp` is exact).
fn rules() -> TokenRules {
    TokenRules {
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
        leeway_secs: 0,
    }
}

/// The gateway's `Auth` on the test's clock (minted tokens carry `iss` and `aud`).
fn auth_on(clock: &Arc<ManualClock>) -> Auth {
    auth().with_rules(rules()).with_clock(clock.clone())
}

/// A token with these exact claims, signed with the right secret.
fn token_with(claims: serde_json::Value) -> String {
    use jsonwebtoken::{encode, EncodingKey, Header};
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

/// A gateway whose engine, server time and token time are one manual clock.
struct Day {
    clock: Arc<ManualClock>,
    alloc: Arc<dyn Allocator>,
    app: Arc<App>,
    addr: std::net::SocketAddr,
    batch: Batch,
}

impl Day {
    async fn start(id: &str) -> Day {
        let clock = Arc::new(ManualClock::new(T0));
        let alloc = xuanfang_allocator::testing::redis_engine(clock.clone()).await;
        // Pre-selection open all along; S1 starts in two hours.
        let mut batch = small_batch(id, Duration::from_secs(7200), Duration::from_secs(180));
        let shift = T0.0 - batch.preselect_start.0 - 60_000;
        batch.preselect_start = batch.preselect_start.plus_ms(shift);
        for s in &mut batch.sessions {
            s.start = s.start.plus_ms(shift);
        }
        alloc.load_batch(batch.clone()).await.unwrap();
        let ws = WsConfig {
            token_refresh_lead: LEAD,
            ..WsConfig::default()
        };
        let app = App::with_clock(
            alloc.clone(),
            auth_on(&clock),
            Limits::new(LimitConfig::default()),
            ws,
            None,
            clock.clone(),
        );
        app.serve_batch(batch.id.clone()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(xuanfang_gateway::server::serve(app.clone(), listener));
        Day {
            clock,
            alloc,
            app,
            addr,
            batch,
        }
    }

    /// A family token valid for `ttl` from now on the test's clock, and its `exp`.
    fn token(&self, family: &str, ttl: u64) -> (String, u64) {
        let t = auth_on(&self.clock)
            .mint(family, Role::Family, ttl)
            .unwrap();
        let exp = (self.clock_secs()) + ttl;
        (t, exp)
    }

    fn clock_secs(&self) -> u64 {
        use xuanfang_hub::Clock;
        (self.clock.now().0 / 1000) as u64
    }

    /// A family socket, greeted (welcome, the whole snapshot, its own view).
    async fn socket(&self, token: &str, enc: Encoding) -> Client {
        let mut c = connect(self.addr, Some(token), enc).await;
        c.until(T, |m| matches!(m, ServerMsg::Family { .. }).then_some(()))
            .await
            .expect("greeted with the family's view");
        c
    }

    /// The socket's pending `token_expiring` (or a new one within `T`).
    async fn warned(&self, c: &mut Client) -> Millis {
        if let Some(i) = (c.seen.iter()).position(|m| matches!(m, ServerMsg::TokenExpiring { .. }))
        {
            if let ServerMsg::TokenExpiring { expires } = c.seen.remove(i) {
                return expires;
            }
        }
        c.until(T, |m| match m {
            ServerMsg::TokenExpiring { expires } => Some(*expires),
            _ => None,
        })
        .await
        .expect("token_expiring within 30 s")
    }
}

/// Sends `refresh` and returns its answer (`refreshed` or `error`).
async fn refresh(c: &mut Client, req_id: &str, token: &str) -> ServerMsg {
    c.send(&ClientMsg::Refresh {
        req_id: req_id.into(),
        token: token.into(),
    })
    .await;
    c.until(T, |m| match m {
        ServerMsg::Refreshed { req_id: r, .. } if r == req_id => Some(m.clone()),
        ServerMsg::Error {
            req_id: Some(r), ..
        } if r == req_id => Some(m.clone()),
        _ => None,
    })
    .await
    .expect("an answer to refresh")
}

/// Everything up to the pong of a ping: whatever the socket was sent before it.
async fn drain(c: &mut Client) -> Vec<ServerMsg> {
    c.send(&ClientMsg::Ping { t0: 42.5 }).await;
    c.until(T, |m| matches!(m, ServerMsg::Pong { .. }).then_some(()))
        .await
        .expect("pong");
    std::mem::take(&mut c.seen)
}

/// Reads until the server closes; its close code.
async fn close_code_of(c: &mut Client) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let frame = tokio::time::timeout_at(deadline, c.ws.next())
            .await
            .ok()??;
        match frame {
            Ok(Message::Close(f)) => return f.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

fn declare(req_id: &str) -> ClientMsg {
    ClientMsg::Declare {
        req_id: req_id.into(),
        stage: Stage::Preselection,
    }
}

/// Sends `m` and waits for its `ok` / `error`.
async fn act(c: &mut Client, m: &ClientMsg, req_id: &str) -> ServerMsg {
    c.send(m).await;
    c.until(T, |r| match r {
        ServerMsg::Ok { req_id: id, .. } if id == req_id => Some(r.clone()),
        ServerMsg::Error {
            req_id: Some(id), ..
        } if id == req_id => Some(r.clone()),
        _ => None,
    })
    .await
    .expect("an answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_refreshed_before_expiry_keeps_acting_past_its_first_token() {
    for enc in ENCODINGS {
        let day = Day::start(&format!("refresh-{enc:?}")).await;
        let (first, exp1) = day.token("F1", 600);
        let mut c = day.socket(&first, enc).await;
        // Before the lead time nothing is said (the clock has not moved; nothing could).
        assert!(
            !drain(&mut c)
                .await
                .iter()
                .any(|m| matches!(m, ServerMsg::TokenExpiring { .. })),
            "{enc:?}: warned too early"
        );

        // The lead time before `exp`: the socket is told when its token expires.
        day.clock
            .set(Millis(exp1 as i64 * 1000).plus_ms(-(LEAD.as_millis() as i64)));
        assert_eq!(
            day.warned(&mut c).await,
            Millis(exp1 as i64 * 1000),
            "{enc:?}"
        );

        // A new token of the same family is taken and acknowledged with its expiry.
        let (second, exp2) = day.token("F1", 1800);
        let r = refresh(&mut c, "rf1", &second).await;
        assert!(
            matches!(r, ServerMsg::Refreshed { expires, .. } if expires == Millis(exp2 as i64 * 1000)),
            "{enc:?}: {r:?}"
        );

        // Past the first token's expiry the socket still acts (the first token alone
        // would be refused `token_expired`, and the socket closed).
        day.clock.set(Millis((exp1 as i64 + 5) * 1000));
        let r = act(&mut c, &declare("d1"), "d1").await;
        assert!(is_ok(&r), "{enc:?}: {r:?}");
        let seen = drain(&mut c).await;
        assert!(
            !seen
                .iter()
                .any(|m| matches!(m, ServerMsg::TokenExpiring { .. })),
            "{enc:?}: the first token's alarms went with it: {seen:?}"
        );
        let f1 = day.alloc.family(&day.batch.id, &"F1".into()).await.unwrap();
        assert!(f1.preselect_declared_at.is_some());

        // The new token is watched in turn.
        day.clock
            .set(Millis(exp2 as i64 * 1000).plus_ms(-(LEAD.as_millis() as i64)));
        assert_eq!(
            day.warned(&mut c).await,
            Millis(exp2 as i64 * 1000),
            "{enc:?}"
        );
        day.app.shutdown.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_with_another_familys_or_a_worse_token_is_refused_and_changes_nothing() {
    for enc in ENCODINGS {
        let day = Day::start(&format!("refused-{enc:?}")).await;
        let (token, exp) = day.token("F1", 600);
        let mut c = day.socket(&token, enc).await;
        let now = day.clock_secs();
        let platform = |sub: &str, role: &str, exp: u64| {
            token_with(serde_json::json!({
                "sub": sub, "role": role, "exp": exp, "iss": ISSUER, "aud": AUDIENCE,
            }))
        };
        let cases: Vec<(&str, String, ErrorCode)> = vec![
            (
                "another family",
                day.token("F2", 1800).0,
                ErrorCode::TokenMismatch,
            ),
            (
                "the same id as an operator",
                platform("F1", "operator", now + 1800),
                ErrorCode::TokenMismatch,
            ),
            (
                "expiring before the current token",
                day.token("F1", 300).0,
                ErrorCode::TokenMismatch,
            ),
            (
                "expired",
                platform("F1", "family", now - 10),
                ErrorCode::TokenExpired,
            ),
            (
                "signed with another secret",
                Auth::hs256(b"another-secret-of-at-least-32-bytes!")
                    .unwrap()
                    .with_rules(rules())
                    .with_clock(day.clock.clone())
                    .mint("F1", Role::Family, 1800)
                    .unwrap(),
                ErrorCode::Unauthorized,
            ),
            (
                "another issuer",
                token_with(serde_json::json!({
                    "sub": "F1", "role": "family", "exp": now + 1800,
                    "iss": "https://elsewhere.example", "aud": AUDIENCE,
                })),
                ErrorCode::Unauthorized,
            ),
            (
                "no audience",
                token_with(serde_json::json!({
                    "sub": "F1", "role": "family", "exp": now + 1800, "iss": ISSUER,
                })),
                ErrorCode::Unauthorized,
            ),
            (
                "no exp",
                token_with(serde_json::json!({
                    "sub": "F1", "role": "family", "iss": ISSUER, "aud": AUDIENCE,
                })),
                ErrorCode::Unauthorized,
            ),
            ("garbage", "not.a.jwt".into(), ErrorCode::Unauthorized),
            ("empty", String::new(), ErrorCode::Unauthorized),
        ];
        let before = day.alloc.family(&day.batch.id, &"F1".into()).await.unwrap();
        for (i, (what, bad, code)) in cases.iter().enumerate() {
            let r = refresh(&mut c, &format!("bad{i}"), bad).await;
            assert_eq!(error_code(&r), Some(*code), "{enc:?} {what}: {r:?}");
        }
        // A request id the protocol does not accept: refused before the token is read.
        let r = refresh(&mut c, "", &day.token("F1", 1800).0).await;
        assert_eq!(error_code(&r), Some(ErrorCode::BadFrame), "{enc:?}: {r:?}");
        let mut after = day.alloc.family(&day.batch.id, &"F1".into()).await.unwrap();
        after.server_time = before.server_time;
        assert_eq!(
            after, before,
            "{enc:?}: a refused refresh changed the family"
        );

        // The socket is still on its first token: warned for, and closed at, its `exp`.
        day.clock
            .set(Millis(exp as i64 * 1000).plus_ms(-(LEAD.as_millis() as i64)));
        assert_eq!(
            day.warned(&mut c).await,
            Millis(exp as i64 * 1000),
            "{enc:?}"
        );
        day.clock.set(Millis((exp as i64 + 1) * 1000));
        assert_eq!(
            close_code_of(&mut c).await,
            Some(close_code::TOKEN_EXPIRED),
            "{enc:?}: none of the refused tokens extended the socket"
        );
        day.app.shutdown.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_refresh_the_socket_closes_with_4001_and_a_new_login_acts() {
    for enc in ENCODINGS {
        let day = Day::start(&format!("expiry-{enc:?}")).await;
        let (token, exp) = day.token("F1", 600);
        let mut c = day.socket(&token, enc).await;
        let seq = day.alloc.board(&day.batch.id).await.unwrap().seq;

        // One second short of expiry (no leeway) the socket is open and acts...
        day.clock.set(Millis(exp as i64 * 1000));
        assert_eq!(day.warned(&mut c).await, Millis(exp as i64 * 1000));
        let r = act(
            &mut c,
            &ClientMsg::Sync {
                req_id: "s0".into(),
            },
            "s0",
        )
        .await;
        assert_eq!(
            error_code(&r),
            Some(ErrorCode::WindowClosed),
            "{enc:?}: {r:?}"
        );

        // ...and once `exp` has passed it is closed with 4001, having changed nothing.
        day.clock.set(Millis((exp as i64 + 1) * 1000));
        assert_eq!(
            close_code_of(&mut c).await,
            Some(close_code::TOKEN_EXPIRED),
            "{enc:?}"
        );
        assert_eq!(day.alloc.board(&day.batch.id).await.unwrap().seq, seq);
        let f1 = day.alloc.family(&day.batch.id, &"F1".into()).await.unwrap();
        assert!(f1.preselect_declared_at.is_none());

        // The same token cannot open another socket.
        match try_connect(day.addr, Some(&token), enc).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status(), 401, "{enc:?}");
                let body = String::from_utf8_lossy(r.body().as_deref().unwrap_or_default());
                assert!(body.contains("token_expired"), "{enc:?}: {body}");
            }
            other => panic!("{enc:?}: the expired token was let in: {:?}", other.is_ok()),
        }
        // After a new login the family acts.
        let (fresh, _) = day.token("F1", 600);
        let mut again = day.socket(&fresh, enc).await;
        let r = act(&mut again, &declare("d1"), "d1").await;
        assert!(is_ok(&r), "{enc:?}: {r:?}");
        day.app.shutdown.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_shorter_than_the_lead_is_warned_at_once_and_watchers_never_are() {
    let day = Day::start("short").await;
    let (token, exp) = day.token("F1", 30);
    let mut f = day.socket(&token, Encoding::Json).await;
    assert_eq!(day.warned(&mut f).await, Millis(exp as i64 * 1000));
    // Watchers have no token to expire: not warned, not closed, and cannot refresh.
    let mut hall = connect(day.addr, None, Encoding::Json).await;
    day.clock.set(Millis((exp as i64 + 3600) * 1000));
    assert_eq!(close_code_of(&mut f).await, Some(close_code::TOKEN_EXPIRED));
    let r = refresh(&mut hall, "w1", &day.token("F1", 600).0).await;
    assert_eq!(error_code(&r), Some(ErrorCode::Unauthorized), "{r:?}");
    let seen = drain(&mut hall).await;
    assert!(
        !seen
            .iter()
            .any(|m| matches!(m, ServerMsg::TokenExpiring { .. })),
        "{seen:?}"
    );
    day.app.shutdown.cancel();
}

/// A gateway in demo mode (its own secret) on the manual clock; its address.
async fn demo_gateway(clock: &Arc<ManualClock>, ttl: u64) -> (Arc<App>, std::net::SocketAddr) {
    let alloc = xuanfang_allocator::testing::redis_engine(clock.clone()).await;
    let demo = xuanfang_gateway::demo::DemoInfo {
        operator_url: String::new(),
        hall_url: String::new(),
        families: Vec::new(),
        mints: true,
        token_ttl_secs: ttl,
    };
    let app = App::with_clock(
        alloc,
        auth_on(clock),
        Limits::new(LimitConfig::default()),
        WsConfig::default(),
        Some(demo),
        clock.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(xuanfang_gateway::server::serve(app.clone(), listener));
    (app, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_mints_a_fresh_token_for_a_still_valid_one_only() {
    let clock = Arc::new(ManualClock::new(T0));
    let (app, addr) = demo_gateway(&clock, 900).await;
    let http = reqwest::Client::new();
    let cfg: serde_json::Value = http
        .get(format!("http://{addr}/api/auth/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cfg["refresh_url"], "/api/demo/refresh", "{cfg}");
    assert_eq!(cfg["login_url"], "/app", "{cfg}");
    assert_eq!(cfg["operator_login_url"], "/console", "{cfg}");
    assert_eq!(cfg["refresh_lead_secs"], 120, "{cfg}");

    let url = format!("http://{addr}/api/demo/refresh");
    let old = auth_on(&clock).mint("F1", Role::Family, 60).unwrap();
    clock.advance(30_000);
    let r = http.post(&url).bearer_auth(&old).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let fresh = body["token"].as_str().unwrap();
    let (who, exp) = auth_on(&clock).verify_until(fresh).await.unwrap();
    assert_eq!(
        who,
        xuanfang_gateway::auth::Identity::Family("F1".into()),
        "same person, same role"
    );
    use xuanfang_hub::Clock;
    assert_eq!(exp, (clock.now().0 / 1000) as u64 + 900);
    assert_eq!(body["expires"], exp * 1000);

    // Expired, forged, missing: refused as the platform would, nothing minted.
    clock.advance(60_000);
    for (what, token, code) in [
        ("expired", Some(old.as_str()), "token_expired"),
        ("garbage", Some("not.a.jwt"), "unauthorized"),
        ("none", None, "unauthorized"),
    ] {
        let mut req = http.post(&url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{what}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], code, "{what}: {body}");
    }
    app.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_refresh_endpoint_is_given_to_the_page_and_allowed_by_its_csp() {
    let clock = Arc::new(ManualClock::new(T0));
    let alloc = xuanfang_allocator::testing::redis_engine(clock.clone()).await;
    let app = App::with_clock(
        alloc,
        auth_on(&clock),
        Limits::new(LimitConfig::default()),
        WsConfig::default(),
        None,
        clock.clone(),
    );
    let cfg = xuanfang_gateway::token_refresh::RefreshConfig::new_with_operator(
        Some("https://idp.example.gd.gov.cn/oauth/refresh".into()),
        Some("https://idp.example.gd.gov.cn/login?client=xuanfang".into()),
        Some("https://idp.example.gd.gov.cn/login?client=xuanfang-staff".into()),
    )
    .unwrap();
    assert!(app.set_token_refresh(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(xuanfang_gateway::server::serve(app.clone(), listener));
    let http = reqwest::Client::new();
    let cfg: serde_json::Value = http
        .get(format!("http://{addr}/api/auth/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        cfg["refresh_url"], "https://idp.example.gd.gov.cn/oauth/refresh",
        "{cfg}"
    );
    assert_eq!(
        cfg["login_url"], "https://idp.example.gd.gov.cn/login?client=xuanfang",
        "{cfg}"
    );
    assert_eq!(
        cfg["operator_login_url"], "https://idp.example.gd.gov.cn/login?client=xuanfang-staff",
        "{cfg}"
    );
    let page = http.get(format!("http://{addr}/app")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("connect-src 'self' ws: wss: https://idp.example.gd.gov.cn;"),
        "{csp}"
    );
    // Not a demo: no refresh of its own.
    let r = http
        .post(format!("http://{addr}/api/demo/refresh"))
        .bearer_auth(auth_on(&clock).mint("F1", Role::Family, 60).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    app.shutdown.cancel();
}
