//! `GET /api/openapi.json` against the router's own list: every route (method + path)
//! is an operation, no operation is anything else, each says the security of its
//! route's access rule, and the document holds together as OpenAPI 3. Its schemas are
//! the wire form: real answers of a running gateway (a family that selected, signs and
//! is approved) validate against the schema their route's operation names, and no
//! JSON answer is a bare object.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::signing::{png, png_part, Journey};
use common::*;
use serde_json::{json, Value};
use xuanfang_gateway::blobs::MemoryBlobs;
use xuanfang_gateway::openapi::{access_name, openapi_path, ACCESS_EXTENSION};
use xuanfang_gateway::server::{routes, Access};
use xuanfang_gateway::signing_api::{DepositRule, Signing};

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
    // Every JSON answer of a route is described: a named schema, a list of them, an
    // object with its properties; never a bare `{type: object}`.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, resp) in op["responses"].as_object().unwrap() {
                let schema = &resp["content"]["application/json"]["schema"];
                if status.starts_with('2') && !schema.is_null() {
                    assert!(
                        described(&doc, schema),
                        "{method} {path} {status}: {schema}"
                    );
                }
            }
        }
    }
    // Each named schema is a JSON Schema 2020-12 schema (OpenAPI 3.1's dialect).
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        if let Err(e) = jsonschema::meta::validate(schema) {
            panic!("{name} is no 2020-12 schema: {e}: {schema}");
        }
    }
    // The shared error body names its fields.
    let error = &doc["components"]["schemas"]["ErrorBody"]["properties"];
    for field in ["code", "message", "detail"] {
        assert!(error[field].is_object(), "ErrorBody.{field}: {error}");
    }
}

/// Whether `schema` says what the JSON is: a named schema that does, an array of such,
/// an object with properties or a map's values, a choice or an enum.
fn described(doc: &Value, schema: &Value) -> bool {
    if let Some(r) = schema["$ref"].as_str() {
        let target = doc.pointer(r.trim_start_matches('#'));
        return target.is_some_and(|t| described(doc, t));
    }
    if schema["type"] == "array" {
        return described(doc, &schema["items"]);
    }
    [
        "properties",
        "allOf",
        "oneOf",
        "anyOf",
        "enum",
        "additionalProperties",
    ]
    .iter()
    .any(|k| schema.get(k).is_some())
        || schema["type"].as_str().is_some_and(|t| t != "object")
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

/// The sandbox payment's key of the answers' gateway (it signs the replayed notification).
const PAY_KEY: [u8; 32] = *b"sandbox-payment-key-for-openapi!";

/// The document's schemas as one JSON Schema 2020-12 resource (OpenAPI 3.1's schema
/// objects are 2020-12's): `components.schemas` become `$defs`, references follow. Every
/// object schema is closed (`unevaluatedProperties: false`), so an answer with a field
/// the document does not name fails too: utoipa leaves objects open.
struct Answers {
    doc: Value,
    defs: Value,
    /// (method, path) of every answer validated.
    checked: BTreeSet<(String, String)>,
}

impl Answers {
    fn new(doc: Value) -> Self {
        let schemas = rewrite_refs(&doc["components"]["schemas"]);
        let mut members = BTreeSet::new();
        all_of_members(&schemas, &mut members);
        let mut defs = serde_json::Map::new();
        for (name, schema) in schemas.as_object().expect("components.schemas") {
            let mut schema = schema.clone();
            close(&mut schema, members.contains(name));
            defs.insert(name.clone(), schema);
        }
        Answers {
            doc,
            defs: Value::Object(defs),
            checked: BTreeSet::new(),
        }
    }

    /// The schema of `method path`'s JSON answer with `status`, as the document gives it.
    fn schema_of(&self, method: &str, path: &str, status: &str) -> Value {
        let op = &self.doc["paths"][path][method.to_lowercase()];
        let schema = &op["responses"][status]["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path}: no JSON schema for {status}"
        );
        schema.clone()
    }

    /// A validator of `schema` (a route's), with every named schema beside it.
    fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let mut root = rewrite_refs(schema);
        close(&mut root, false);
        root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        root["$defs"] = self.defs.clone();
        jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("{e}: {schema}"))
    }

    /// Every way `instance` fails `method path`'s schema for `status` (none: it is valid).
    fn errors(&self, method: &str, path: &str, status: &str, instance: &Value) -> Vec<String> {
        let v = self.validator(&self.schema_of(method, path, status));
        v.iter_errors(instance)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    /// Reads a JSON answer of `method path` (the route's template) and validates it
    /// against the document; the answer.
    async fn check(&mut self, method: &str, path: &str, resp: reqwest::Response) -> Value {
        let status = resp.status();
        let media = (resp.headers().get("content-type"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {status} is not JSON ({media}): {e}"));
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        assert!(
            media.starts_with("application/json"),
            "{method} {path}: {media}"
        );
        let errors = self.errors(method, path, status.as_str(), &body);
        assert!(
            errors.is_empty(),
            "{method} {path}: the answer does not match the document: {errors:#?}\n{body:#}"
        );
        self.checked.insert((method.to_owned(), path.to_owned()));
        body
    }
}

/// `#/components/schemas/X` → `#/$defs/X`.
fn rewrite_refs(v: &Value) -> Value {
    let text = v
        .to_string()
        .replace("\"#/components/schemas/", "\"#/$defs/");
    serde_json::from_str(&text).unwrap()
}

/// Names of the schemas referenced as members of an `allOf` (a flattened struct, an
/// internally tagged newtype variant): the holder closes the object, not the member,
/// which sees only its own fields.
fn all_of_members(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for member in m
                .get("allOf")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(r) = member["$ref"].as_str() {
                    out.insert(r.trim_start_matches("#/$defs/").to_owned());
                }
            }
            m.values().for_each(|x| all_of_members(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| all_of_members(x, out)),
        _ => {}
    }
}

/// Closes every object schema under `v` but the members of an `allOf` (`member`: `v` is one).
fn close(v: &mut Value, member: bool) {
    match v {
        Value::Object(m) => {
            let object = m.contains_key("properties") || m.contains_key("allOf");
            if object && !member {
                m.insert("unevaluatedProperties".to_owned(), json!(false));
            }
            for (k, x) in m.iter_mut() {
                match (k.as_str(), x) {
                    ("allOf", Value::Array(members)) => {
                        members.iter_mut().for_each(|x| close(x, true))
                    }
                    (_, x) => close(x, false),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| close(x, false)),
        _ => {}
    }
}

/// A family that selected U01 signs (details, face, contract, deposit) and is approved,
/// with its notice issued; every JSON answer on the way, the public reads and the
/// operators' reads validate against the document. A field the schema does not name, a
/// missing required one or a value of another type fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_validate_against_the_documents_schemas() {
    let day = signing::signing_day("openapi-answers", &[("F1", "U01")]).await;
    let app = app_on_clock(
        day.engine.clone(),
        day.clock.clone(),
        signing::unthrottled(),
    );
    let signing = Signing::sandbox(
        day.engine.clone(),
        Arc::new(MemoryBlobs::default()),
        PAY_KEY,
        DepositRule::default(),
    );
    assert!(app.enable_signing(signing));
    let addr = serve_on_free_port(&app, &day.batch.id).await;
    let j = Journey::new(addr);
    let doc: Value = (j.http.get(j.url("/api/openapi.json")).send().await.unwrap())
        .json()
        .await
        .unwrap();
    let mut a = Answers::new(doc);
    let (f1, op) = (family_token("F1"), operator_token());

    for path in [
        "/api/board",
        "/api/catalog",
        "/api/batches",
        "/api/time",
        "/api/auth/config",
    ] {
        let r = j.http.get(j.url(path)).send().await.unwrap();
        a.check("GET", path, r).await;
    }
    let me = a.check("GET", "/api/me", j.get(&f1, "/api/me").await).await;
    assert_eq!(me["outcome"]["result"], "selected", "{me}");
    let r = j.get(&f1, "/api/me/batches").await;
    let mine = a.check("GET", "/api/me/batches", r).await;
    assert_eq!(mine[0]["outcome"]["unit"], "U01", "{mine}");

    // The checks can fail: a required field missing, a field the schema does not name
    // (also in a flattened answer), a value outside an enum.
    let fails = |a: &Answers, path: &str, bad: Value| {
        assert!(
            !a.errors("GET", path, "200", &bad).is_empty(),
            "GET {path}: accepted {bad}"
        )
    };
    let mut bad = me.clone();
    bad.as_object_mut().unwrap().remove("rank");
    fails(&a, "/api/me", bad);
    let mut bad = me.clone();
    bad["bogus"] = json!(1);
    fails(&a, "/api/me", bad);
    let mut bad = me.clone();
    bad["outcome"]["how"] = json!("bribed");
    fails(&a, "/api/me", bad);
    let mut bad = me.clone();
    bad["session"]["closed"] = json!("no");
    fails(&a, "/api/me", bad);

    // Signing, step by step.
    let r = j.get(&f1, "/api/me/signing").await;
    let page = a.check("GET", "/api/me/signing", r).await;
    let mut bad = page.clone();
    bad["bogus"] = json!(true);
    fails(&a, "/api/me/signing", bad);
    let mut bad = page.clone();
    bad["deposit"]["deposit"] = json!("stolen");
    fails(&a, "/api/me/signing", bad);

    let card = "4111111111111111";
    let r = (j.upload_details("F1", "d1", card, png_part("a.png"), png_part("b.png"))).await;
    a.check("POST", "/api/me/signing/details", r).await;
    let r = j.post(&f1, "/api/me/signing/face/start", "fs1").await;
    let started = a.check("POST", "/api/me/signing/face/start", r).await;
    let session = started["provider_session"].as_str().unwrap();
    let r = (j
        .http
        .post(j.url(&format!("/sandbox/face/{session}/result"))))
    .form(&[("passed", "true")])
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = j.post(&f1, "/api/me/signing/face/finish", "ff1").await;
    a.check("POST", "/api/me/signing/face/finish", r).await;
    let r = j.sign("F1", "c1", png(32, 20), "image/png").await;
    a.check("POST", "/api/me/signing/contract", r).await;
    let r = j.post(&f1, "/api/me/signing/deposit", "dp1").await;
    let order = a.check("POST", "/api/me/signing/deposit", r).await;
    let no = order["out_trade_no"].as_str().unwrap();
    let r = (j.http.post(j.url(&format!("/sandbox/pay/{no}/pay"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The provider's notification again: received, already taken.
    let sb = app.signing().unwrap().sandbox_payment.clone().unwrap();
    let sent = serde_json::to_vec(&sb.order(no).unwrap().paid.unwrap()).unwrap();
    let r = (j.http.post(j.url("/api/providers/payment/notify")))
        .header(
            xuanfang_gateway::providers::payment::SANDBOX_SIGNATURE_HEADER,
            sb.sign(&sent),
        )
        .body(sent)
        .send()
        .await
        .unwrap();
    let got = a.check("POST", "/api/providers/payment/notify", r).await;
    assert_eq!(got["accepted"], true, "{got}");

    // The operators' side.
    let r = j.get(&op, "/api/ops/signing").await;
    let queue = a.check("GET", "/api/ops/signing", r).await;
    assert_eq!(queue.as_array().map(Vec::len), Some(1), "{queue}");
    let r = j.post(&op, "/api/ops/signing/F1/approve", "ap1").await;
    a.check("POST", "/api/ops/signing/{family}/approve", r)
        .await;
    let r = j.post(&op, "/api/ops/signing/F1/notice", "no1").await;
    a.check("POST", "/api/ops/signing/{family}/notice", r).await;
    let r = j.get(&op, "/api/ops/signing/F1").await;
    let record = a.check("GET", "/api/ops/signing/{family}", r).await;
    assert_eq!(record["status"]["status"], "completed", "{record}");
    let r = j.get(&f1, "/api/me/signing").await;
    let page = a.check("GET", "/api/me/signing", r).await;
    assert_eq!(
        page["materials"].as_array().map(Vec::len),
        Some(2),
        "{page}"
    );
    for path in [
        "/api/ops/refunds",
        "/api/ops/progress",
        "/api/ops/applications",
        "/api/ops/events",
        "/api/ops/batch",
    ] {
        a.check("GET", path, j.get(&op, path).await).await;
    }

    let want = [
        ("GET", "/api/board"),
        ("GET", "/api/catalog"),
        ("GET", "/api/batches"),
        ("GET", "/api/time"),
        ("GET", "/api/me"),
        ("GET", "/api/me/batches"),
        ("GET", "/api/me/signing"),
        ("GET", "/api/ops/signing/{family}"),
        ("GET", "/api/ops/progress"),
    ];
    for (m, p) in want {
        assert!(a.checked.contains(&(m.to_owned(), p.to_owned())), "{m} {p}");
    }
}
