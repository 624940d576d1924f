//! Every route of the router × every kind of caller: a route refuses whoever its access
//! rule excludes, and a refused request changes nothing. The routes come from the router's
//! own list (`server::routes()`), so a new route cannot be missed.

use crate::common;

use std::time::Duration;

use common::*;
use xuanfang_gateway::server::{routes, Access};

/// The callers every route is tried with.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    Nobody,
    Expired,
    BadSignature,
    AlgNone,
    Family,
    Operator,
}

const CALLERS: [Caller; 6] = [
    Caller::Nobody,
    Caller::Expired,
    Caller::BadSignature,
    Caller::AlgNone,
    Caller::Family,
    Caller::Operator,
];

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn token_of(c: Caller) -> Option<String> {
    let exp = xuanfang_hub::Millis::now().0 / 1000 + 3600;
    match c {
        Caller::Nobody => None,
        Caller::Expired => Some(expired_token("F1")),
        Caller::BadSignature => {
            let other =
                xuanfang_gateway::auth::Auth::hs256(b"another-secret-of-at-least-32-bytes!")
                    .unwrap();
            Some(
                other
                    .mint("op", xuanfang_gateway::auth::Role::Operator, 3600)
                    .unwrap(),
            )
        }
        // An unsigned operator token: must never be accepted.
        Caller::AlgNone => Some(format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(format!(r#"{{"sub":"op","role":"operator","exp":{exp}}}"#).as_bytes())
        )),
        Caller::Family => Some(family_token("F1")),
        Caller::Operator => Some(operator_token()),
    }
}

/// Whether `access` lets `caller` through.
fn allowed(access: Access, caller: Caller) -> bool {
    match access {
        Access::Public => true,
        Access::Family => caller == Caller::Family,
        Access::Operator => caller == Caller::Operator,
        Access::Demo | Access::Provider => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_the_callers_its_access_excludes_and_changes_nothing() {
    let alloc = redis_engine(&namespace()).await;
    let batch = small_batch("routes", Duration::from_secs(600), Duration::from_secs(60));
    alloc.load_batch(batch.clone()).await.unwrap();
    // The per-IP HTTP limit is not what this test is about.
    let limits = xuanfang_gateway::limits::LimitConfig {
        http_per_sec_per_ip: 100_000,
        ..Default::default()
    };
    let gw = start_gateway_with(alloc.clone(), &batch.id, limits).await;
    let http = reqwest::Client::new();
    let seq_before = alloc.board(&batch.id).await.unwrap().seq;
    let list = routes();
    assert!(list.len() >= 20, "the router's list: {}", list.len());
    let mut checked = 0;
    for route in &list {
        let path = route.path.replace("{*path}", "shared/base.css");
        let url = format!("http://{}{path}", gw.addr);
        for caller in CALLERS {
            let mut req = match route.method {
                "GET" => http.get(&url),
                "POST" => http.post(&url).body("{}"),
                m => panic!("untested method {m} on {}", route.path),
            };
            if let Some(t) = token_of(caller) {
                req = req.bearer_auth(t);
            }
            let status = req.send().await.unwrap().status().as_u16();
            let what = format!("{} {} as {caller:?}: {status}", route.method, route.path);
            if route.access == Access::Demo {
                assert_eq!(status, 404, "{what} (not a demo gateway)");
            } else if route.access == Access::Provider {
                // Authenticated by the body's signature: no token opens it.
                assert_eq!(status, 401, "{what}: an unsigned provider callback");
            } else if allowed(route.access, caller) {
                assert!(
                    status != 401 && status != 403,
                    "{what} should be let through"
                );
            } else if matches!(caller, Caller::Family | Caller::Operator) {
                assert_eq!(status, 403, "{what}: a valid token of the wrong role");
            } else {
                assert_eq!(status, 401, "{what}: no valid token");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, list.len() * CALLERS.len());
    // Nothing any refused (or bodiless) request did reached the log.
    assert_eq!(alloc.board(&batch.id).await.unwrap().seq, seq_before);
    assert_eq!(alloc.batches().await.unwrap(), vec![batch.id]);
}
