//! Tokens of an identity platform that rotates its keys: a real gateway verifying against a
//! key set (JWKS) served over HTTP by the test, which rotates and revokes keys while the
//! gateway runs. Keys are the test-only fixtures in `fixtures/jwks/` (make_keys.py).

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use xuanfang_allocator::embedded::EmbeddedEngine;
use xuanfang_allocator::Allocator;
use xuanfang_gateway::app::{App, WsConfig};
use xuanfang_gateway::auth::{Auth, JwksSource, JwksTiming, KeySet, TokenRules};
use xuanfang_gateway::limits::{LimitConfig, Limits};
use xuanfang_hub::{BatchId, Millis, SystemClock};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwks");
const HOUR: Duration = Duration::from_secs(3600);

fn private_pem(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}.pem")).expect("fixture key")
}

fn public_jwk(name: &str) -> Value {
    let all: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/public.json")).unwrap())
            .unwrap();
    all[name].clone()
}

/// The platform's key endpoint: serves whatever set the test puts in, counts fetches.
#[derive(Clone, Default)]
struct Platform {
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

impl Platform {
    fn publish(&self, names: &[&str]) {
        *self.keys.lock().unwrap() = names.iter().map(|n| public_jwk(n)).collect();
    }
    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn jwks(State(p): State<Platform>) -> axum::Json<Value> {
    p.fetches.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({ "keys": *p.keys.lock().unwrap() }))
}

async fn start_platform(p: &Platform) -> String {
    let app = axum::Router::new()
        .route("/jwks.json", get(jwks))
        .with_state(p.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A gateway over one small batch whose tokens are checked against `set` with `rules`.
async fn gateway(set: Arc<KeySet>, rules: TokenRules) -> (String, Arc<App>) {
    let alloc: Arc<dyn Allocator> = Arc::new(EmbeddedEngine::in_memory(Arc::new(SystemClock)));
    let batch = common::small_batch("jwks", HOUR, Duration::from_secs(180));
    alloc.load_batch(batch).await.unwrap();
    let app = App::new(
        alloc,
        Auth::key_set(set).with_rules(rules),
        Limits::new(LimitConfig::default()),
        WsConfig::default(),
        None,
    );
    app.serve_batch(BatchId::new("jwks")).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(xuanfang_gateway::server::serve(app.clone(), listener));
    (base, app)
}

fn now_secs() -> i64 {
    Millis::now().0 / 1000
}

/// A family token for F1 signed with fixture key `key`, header `alg` and `kid`.
fn token(key: &str, alg: Algorithm, kid: Option<&str>, extra: Value) -> String {
    let mut claims = json!({ "sub": "F1", "role": "family", "exp": now_secs() + 600 });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    let pem = private_pem(key);
    let encoding = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        other => panic!("{other:?}"),
    }
    .unwrap();
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, &encoding).unwrap()
}

/// `GET /api/me` with `token`: the status and the error code, if any.
async fn me(base: &str, token: &str) -> (u16, Option<String>) {
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().map(str::to_owned))
}

fn timing(refresh_every: Duration) -> JwksTiming {
    JwksTiming {
        refresh_every,
        unknown_kid_interval: HOUR,
    }
}

#[tokio::test]
async fn a_rotated_key_is_fetched_on_its_first_token_and_the_revoked_one_refused() {
    let platform = Platform::default();
    platform.publish(&["rsa-a"]);
    let url = start_platform(&platform).await;
    let set = KeySet::load(JwksSource::Url(url), timing(HOUR))
        .await
        .unwrap();
    let (base, _app) = gateway(set, TokenRules::default()).await;
    assert_eq!(platform.fetches(), 1);

    let old = token("rsa-a", Algorithm::RS256, Some("rsa-a"), json!({}));
    assert_eq!(me(&base, &old).await.0, 200);

    // The platform rotates: b is published, a revoked. No restart, no waiting.
    platform.publish(&["rsa-b"]);
    let new = token("rsa-b", Algorithm::RS256, Some("rsa-b"), json!({}));
    assert_eq!(me(&base, &new).await.0, 200);
    assert_eq!(platform.fetches(), 2, "one fetch for the unknown kid");
    assert_eq!(me(&base, &old).await, (401, Some("unauthorized".into())));

    // Made-up kids do not turn into fetches on the platform.
    for i in 0..20 {
        let t = token(
            "rsa-b",
            Algorithm::RS256,
            Some(&format!("forged-{i}")),
            json!({}),
        );
        assert_eq!(me(&base, &t).await.0, 401);
    }
    assert_eq!(platform.fetches(), 2);
    assert_eq!(me(&base, &new).await.0, 200);
}

#[tokio::test]
async fn the_periodic_refresh_drops_a_revoked_key() {
    let platform = Platform::default();
    platform.publish(&["rsa-a", "rsa-b"]);
    let url = start_platform(&platform).await;
    let set = KeySet::load(JwksSource::Url(url), timing(Duration::from_millis(200)))
        .await
        .unwrap();
    let (base, _app) = gateway(set, TokenRules::default()).await;
    let a = token("rsa-a", Algorithm::RS256, Some("rsa-a"), json!({}));
    assert_eq!(me(&base, &a).await.0, 200);

    platform.publish(&["rsa-b"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while me(&base, &a).await.0 == 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revoked key is still accepted after 30 s of 200 ms refreshes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = token("rsa-b", Algorithm::RS256, Some("rsa-b"), json!({}));
    assert_eq!(me(&base, &b).await.0, 200);
}

#[tokio::test]
async fn es256_and_eddsa_keys_verify_and_the_key_decides_the_algorithm() {
    let platform = Platform::default();
    platform.publish(&["ec-p256", "ed25519", "rsa-a"]);
    let url = start_platform(&platform).await;
    let set = KeySet::load(JwksSource::Url(url), timing(HOUR))
        .await
        .unwrap();
    let (base, _app) = gateway(set, TokenRules::default()).await;

    let es = token("ec-p256", Algorithm::ES256, Some("ec-p256"), json!({}));
    assert_eq!(me(&base, &es).await.0, 200);
    let ed = token("ed25519", Algorithm::EdDSA, Some("ed25519"), json!({}));
    assert_eq!(me(&base, &ed).await.0, 200);

    // An RSA signature under the EC key's kid, and an RSA-signed token naming no kid in a
    // set of several, are refused.
    let wrong_key = token("rsa-a", Algorithm::RS256, Some("ec-p256"), json!({}));
    assert_eq!(me(&base, &wrong_key).await.0, 401);
    let no_kid = token("rsa-a", Algorithm::RS256, None, json!({}));
    assert_eq!(me(&base, &no_kid).await.0, 401);
    // HS256 "signed" with the RSA key's public modulus as the secret: alg confusion.
    let n = public_jwk("rsa-a")["n"].as_str().unwrap().to_owned();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-a".into());
    let claims = json!({ "sub": "F1", "role": "family", "exp": now_secs() + 600 });
    let confused =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(n.as_bytes())).unwrap();
    assert_eq!(me(&base, &confused).await.0, 401);
    // alg none.
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "rsa-a"})),
        b64(&claims)
    );
    assert_eq!(me(&base, &none).await.0, 401);
}

#[tokio::test]
async fn issuer_audience_and_clock_leeway_are_checked_when_configured() {
    let platform = Platform::default();
    platform.publish(&["rsa-a"]);
    let url = start_platform(&platform).await;
    let set = KeySet::load(JwksSource::Url(url), timing(HOUR))
        .await
        .unwrap();
    let rules = TokenRules {
        issuer: Some("https://idp.example.gd.gov.cn".into()),
        audience: Some("xuanfang".into()),
        leeway_secs: 30,
    };
    let (base, _app) = gateway(set, rules).await;
    let t = |extra: Value| token("rsa-a", Algorithm::RS256, Some("rsa-a"), extra);
    let good = json!({ "iss": "https://idp.example.gd.gov.cn", "aud": "xuanfang" });

    assert_eq!(me(&base, &t(good.clone())).await.0, 200);
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        t(c)
    };
    assert_eq!(
        me(&base, &with("iss", "https://evil.example".into()))
            .await
            .0,
        401
    );
    assert_eq!(me(&base, &with("aud", "another-app".into())).await.0, 401);
    assert_eq!(
        me(&base, &with("aud", json!(["another-app", "xuanfang"])))
            .await
            .0,
        200,
        "one of several audiences is ours"
    );
    assert_eq!(
        me(&base, &t(json!({ "aud": "xuanfang" }))).await.0,
        401,
        "no iss"
    );
    assert_eq!(
        me(&base, &t(json!({ "iss": "https://idp.example.gd.gov.cn" })))
            .await
            .0,
        401,
        "no aud"
    );
    // Ten seconds late is within the leeway; two minutes is expired.
    assert_eq!(
        me(&base, &with("exp", (now_secs() - 10).into())).await.0,
        200
    );
    assert_eq!(
        me(&base, &with("exp", (now_secs() - 120).into())).await,
        (401, Some("token_expired".into()))
    );
}

#[tokio::test]
async fn a_key_set_file_is_read_and_a_set_without_usable_keys_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(
        &path,
        json!({ "keys": [public_jwk("ed25519")] }).to_string(),
    )
    .unwrap();
    let set = KeySet::load(JwksSource::File(path.clone()), timing(HOUR))
        .await
        .unwrap();
    assert_eq!(set.kids(), ["ed25519"]);

    let secret = json!({ "keys": [{ "kty": "oct", "kid": "s", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0" }] });
    std::fs::write(&path, secret.to_string()).unwrap();
    let refused = KeySet::load(JwksSource::File(path), timing(HOUR)).await;
    let e = refused.unwrap_err().to_string();
    assert!(e.contains("no usable signing key"), "{e}");

    let unreachable = KeySet::load(
        JwksSource::Url("http://127.0.0.1:9/jwks.json".into()),
        timing(HOUR),
    )
    .await;
    assert!(unreachable.is_err());
}

/// A socket's `refresh` is checked like its upgrade, key set included: a token signed
/// with a key the platform rotated in since (an unknown `kid`, fetched once) is taken; one
/// with a made-up `kid` or the wrong key is refused and the socket keeps its token.
#[tokio::test]
async fn a_socket_refreshes_with_a_token_of_a_key_rotated_in_since_it_opened() {
    use xuanfang_hub::protocol::Encoding;
    let platform = Platform::default();
    platform.publish(&["rsa-a"]);
    let url = start_platform(&platform).await;
    let set = KeySet::load(JwksSource::Url(url), timing(HOUR))
        .await
        .unwrap();
    let (base, _app) = gateway(set, TokenRules::default()).await;
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let old = token("rsa-a", Algorithm::RS256, Some("rsa-a"), json!({}));
    let mut c = common::connect(addr, Some(&old), Encoding::Json).await;

    platform.publish(&["rsa-a", "rsa-b"]);
    let later = json!({ "exp": now_secs() + 1800 });
    use xuanfang_hub::ErrorCode;
    let rotated = token("rsa-b", Algorithm::RS256, Some("rsa-b"), later.clone());
    assert_eq!(refresh(&mut c, "r1", rotated).await, None, "refreshed");
    assert_eq!(platform.fetches(), 2, "one fetch for the rotated kid");
    let forged = token("rsa-b", Algorithm::RS256, Some("forged"), later.clone());
    assert_eq!(
        refresh(&mut c, "r2", forged).await,
        Some(ErrorCode::Unauthorized)
    );
    let wrong_key = token("rsa-a", Algorithm::RS256, Some("rsa-b"), later);
    assert_eq!(
        refresh(&mut c, "r3", wrong_key).await,
        Some(ErrorCode::Unauthorized)
    );
    assert_eq!(platform.fetches(), 2, "made-up kids fetch nothing");
}

/// Sends `refresh`: `None` when refreshed, else the refusal's code.
async fn refresh(
    c: &mut common::Client,
    req_id: &str,
    token: String,
) -> Option<xuanfang_hub::ErrorCode> {
    use xuanfang_hub::protocol::{ClientMsg, ServerMsg};
    c.send(&ClientMsg::Refresh {
        req_id: req_id.into(),
        token,
    })
    .await;
    c.until(Duration::from_secs(30), |m| match m {
        ServerMsg::Refreshed { req_id: r, .. } if r == req_id => Some(None),
        ServerMsg::Error {
            req_id: Some(r),
            code,
            ..
        } if r == req_id => Some(Some(*code)),
        _ => None,
    })
    .await
    .expect("an answer")
}
