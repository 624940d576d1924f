//! `GET /api/openapi.json` against the router's own list: every route (method + path)
//! is an operation, no operation is anything else, each says the security of its
//! route's access rule, and the document holds together as OpenAPI 3.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::Value;
use xuanfang_gateway::openapi::{access_name, openapi_path, ACCESS_EXTENSION};
use xuanfang_gateway::server::{routes, Access};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn served_document() -> Value {
    let alloc = redis_engine(&namespace()).await;
    let batch = small_batch("openapi", Duration::from_secs(600), Duration::from_secs(60));
    alloc.load_batch(batch.clone()).await.unwrap();
    let gw = start_gateway(alloc, &batch.id).await;
    // Public: no token.
    let resp = reqwest::get(format!("http://{}/api/openapi.json", gw.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    resp.json().await.expect("the document is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_has_every_route_and_nothing_else_with_its_security() {
    let doc = served_document().await;
    let paths = doc["paths"].as_object().expect("paths");
    let mut in_doc = BTreeSet::new();
    for (path, item) in paths {
        for (method, _) in item.as_object().unwrap() {
            if METHODS.contains(&method.as_str()) {
                in_doc.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let list = routes();
    let in_router: BTreeSet<(String, String)> = list
        .iter()
        .map(|r| (r.method.to_owned(), openapi_path(r.path)))
        .collect();
    assert_eq!(in_router.len(), list.len(), "a route listed twice");
    let missing: Vec<_> = in_router.difference(&in_doc).collect();
    let extra: Vec<_> = in_doc.difference(&in_router).collect();
    assert!(
        missing.is_empty(),
        "routes not in the document: {missing:?}"
    );
    assert!(extra.is_empty(), "operations that are no route: {extra:?}");
    assert!(in_router.contains(&("GET".to_owned(), "/api/openapi.json".to_owned())));

    for r in &list {
        let op = &doc["paths"][openapi_path(r.path)][r.method.to_lowercase()];
        let what = format!("{} {}", r.method, r.path);
        assert_eq!(
            op[ACCESS_EXTENSION].as_str(),
            Some(access_name(r.access)),
            "{what}"
        );
        let security = op["security"]
            .as_array()
            .expect("every operation states its security");
        let schemes: Vec<&str> = security
            .iter()
            .flat_map(|req| req.as_object().unwrap().keys().map(String::as_str))
            .collect();
        let want: &[&str] = match r.access {
            Access::Family => &["family"],
            Access::Operator => &["operator"],
            Access::Provider => &["provider"],
            Access::Public | Access::Demo => &[],
        };
        assert_eq!(schemes, want, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_well_formed_openapi_3() {
    let doc = served_document().await;
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "{version}");
    assert!(doc["info"]["title"].is_string());
    assert!(doc["info"]["version"].is_string());
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    for name in ["family", "operator", "provider"] {
        let s = &schemes[name];
        assert!(
            ["http", "apiKey"].contains(&s["type"].as_str().unwrap_or("")),
            "{name}: {s}"
        );
    }
    assert_eq!(schemes["family"]["scheme"], "bearer");
    assert!(schemes["provider"]["name"].is_string() && schemes["provider"]["in"] == "header");

    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(path.starts_with('/'), "{path}");
        let templated: BTreeSet<String> = path
            .split('{')
            .skip(1)
            .filter_map(|s| s.split_once('}').map(|(n, _)| n.to_owned()))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            assert!(METHODS.contains(&method.as_str()), "{path}: {method}");
            let what = format!("{method} {path}");
            let id = op["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_owned()), "{what}: operationId {id} twice");
            // Every templated segment is a required path parameter, and only those.
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let in_path: BTreeSet<String> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(p["required"], true, "{what}: {p}");
                    p["name"].as_str().unwrap().to_owned()
                })
                .collect();
            assert_eq!(in_path, templated, "{what}");
            for p in &params {
                assert!(
                    ["path", "query", "header", "cookie"].contains(&p["in"].as_str().unwrap_or("")),
                    "{what}: {p}"
                );
            }
            let responses = op["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{what}");
            for (status, resp) in responses {
                let ok = status == "default"
                    || (status.len() == 3
                        && status
                            .chars()
                            .next()
                            .is_some_and(|c| ('1'..='5').contains(&c))
                        && (status[1..].chars().all(|c| c.is_ascii_digit())
                            || &status[1..] == "XX"));
                assert!(ok, "{what}: status {status}");
                assert!(resp["description"].is_string(), "{what} {status}");
            }
            for req in op["security"].as_array().unwrap() {
                for name in req.as_object().unwrap().keys() {
                    assert!(schemes.contains_key(name), "{what}: scheme {name}");
                }
            }
        }
    }
    // Every reference resolves inside the document.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
    }
    // The shared error body names its fields.
    let error = &doc["components"]["schemas"]["ErrorBody"]["properties"];
    for field in ["code", "message", "detail"] {
        assert!(error[field].is_object(), "ErrorBody.{field}: {error}");
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    out.push(x.as_str().unwrap_or_default().to_owned());
                } else {
                    collect_refs(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}
