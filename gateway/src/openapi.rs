//! The OpenAPI 3 document of the HTTP API, served at `GET /api/openapi.json`.
//!
//! Generated, not written: every operation comes from [`routes`], the router's own list,
//! so a route cannot be missing from the document nor the document name a route that
//! is gone. From each route's [`Access`] comes its security; from its path, its path
//! parameters and its answer's media type; bodies and answers that the gateway defines
//! are `utoipa::ToSchema` types. `tests/tests/openapi.rs` walks `routes()` against the
//! served document.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    Components, ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi,
    OpenApiBuilder, Paths, Ref, RefOr, Required, Schema, Type,
};
use utoipa::ToSchema;

use crate::server::{routes, Access, Group, Route};

/// The extension every operation carries with its route's [`Access`], in the words of
/// the route list (`public`, `family`, `operator`, `demo`, `provider`).
pub const ACCESS_EXTENSION: &str = "x-access";

/// `GET /api/openapi.json`: the document, built once.
pub async fn serve() -> Response {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON.get_or_init(|| document().to_json().unwrap_or_else(|_| "{}".to_owned()));
    ([(header::CONTENT_TYPE, "application/json")], json.as_str()).into_response()
}

/// The whole document.
pub fn document() -> OpenApi {
    let mut paths = Paths::new();
    for route in routes() {
        paths.add_path_operation(
            openapi_path(route.path),
            vec![method(route.method)],
            operation(&route),
        );
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("xuanfang 选房 HTTP API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "网上选房与签约的 HTTP 接口 / The HTTP API of online selection and \
                     signing. The WebSocket protocol of `/ws` is in docs/protocol.md.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components()))
        .build()
}

/// A route's path in OpenAPI's templating: axum's catch-all `{*path}` is `{path}`.
pub fn openapi_path(axum_path: &str) -> String {
    axum_path.replace("{*", "{")
}

/// The [`ACCESS_EXTENSION`] value of an access rule.
pub fn access_name(access: Access) -> &'static str {
    match access {
        Access::Public => "public",
        Access::Family => "family",
        Access::Operator => "operator",
        Access::Demo => "demo",
        Access::Provider => "provider",
    }
}

fn method(m: &str) -> HttpMethod {
    match m {
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "DELETE" => HttpMethod::Delete,
        "PATCH" => HttpMethod::Patch,
        _ => HttpMethod::Get,
    }
}

fn operation(route: &Route) -> Operation {
    let mut op = OperationBuilder::new()
        .operation_id(Some(operation_id(route)))
        .tag(tag(route))
        .description(Some(access_text(route.access)))
        .extensions(Some(
            ExtensionsBuilder::new()
                .add(ACCESS_EXTENSION, access_name(route.access))
                .build(),
        ));
    // An empty list says "no credentials" (rather than "inherit the default").
    op = match security_scheme(route.access) {
        Some(name) => op.security(SecurityRequirement::new(name, Vec::<String>::new())),
        None => op.securities(Some(Vec::new())),
    };
    for name in path_params(route.path) {
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(string_schema())),
        );
    }
    if takes_batch(route) {
        op = op.parameter(
            ParameterBuilder::new()
                .name("batch")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(
                    "选房批次 id; absent: the live batch (a family: its newest batch)",
                ))
                .schema(Some(string_schema())),
        );
    }
    if route.path == "/ws" {
        for (name, why) in WS_QUERY {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some(why))
                    .schema(Some(string_schema())),
            );
        }
    }
    if let Some((media, schema)) = request_body(route) {
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(media, ContentBuilder::new().schema(schema).build())
                .build(),
        ));
    }
    let (status, media, schema) = answer(route);
    let ok = ResponseBuilder::new().description(status_text(status));
    let ok = match media {
        Some(media) => ok.content(media, ContentBuilder::new().schema(schema).build()),
        None => ok,
    };
    op = op.response(status, ok.build());
    if route.group == Group::Api {
        for (status, why) in error_statuses(route.access) {
            op = op.response(
                status,
                ResponseBuilder::new()
                    .description(why)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(schema_ref::<crate::http_error::ErrorBody>()))
                            .build(),
                    )
                    .build(),
            );
        }
    }
    op.build()
}

/// `GET /api/ops/signing/{family}/approve` → `post_api_ops_signing_family_approve`.
fn operation_id(route: &Route) -> String {
    let words: Vec<String> = route
        .path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    let path = if words.is_empty() {
        "root".to_owned()
    } else {
        words.join("_")
    };
    format!("{}_{path}", route.method.to_ascii_lowercase())
}

fn tag(route: &Route) -> &'static str {
    let p = route.path;
    match route.group {
        Group::Ws => "websocket",
        Group::Probe => "probes",
        Group::Web if p.starts_with("/sandbox/") => "sandbox",
        Group::Web => "web",
        Group::Api if p.starts_with("/api/me/signing") || p.starts_with("/api/ops/signing") => {
            "signing"
        }
        Group::Api if p.starts_with("/api/providers/") => "providers",
        Group::Api if p.starts_with("/api/ops/") => "operations",
        Group::Api if p == "/metrics" || p == "/api/openapi.json" => "operations",
        Group::Api => "selection",
    }
}

fn access_text(access: Access) -> &'static str {
    match access {
        Access::Public => "公开 / Public: no token.",
        Access::Family => "家庭 / A family token (`role: family`); it acts for that family only.",
        Access::Operator => "操作员 / An operator token (`role: operator`).",
        Access::Demo => "演示 / Demo mode only, no token; 404 on any other gateway.",
        Access::Provider => {
            "外部服务 / An outside provider's callback, authenticated by its signature over \
             the raw body; a token opens nothing here (unsigned: 401)."
        }
    }
}

fn security_scheme(access: Access) -> Option<&'static str> {
    match access {
        Access::Family => Some("family"),
        Access::Operator => Some("operator"),
        Access::Provider => Some("provider"),
        Access::Public | Access::Demo => None,
    }
}

fn components() -> Components {
    let bearer = |who: &str| {
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(format!(
                    "The identity platform's JWT with `role: {who}` (also accepted as \
                     `?token=` on `/ws`)."
                )))
                .build(),
        )
    };
    ComponentsBuilder::new()
        .security_scheme("family", bearer("family"))
        .security_scheme("operator", bearer("operator"))
        .security_scheme(
            "provider",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                crate::providers::payment::SANDBOX_SIGNATURE_HEADER,
                "The payment provider's signature over the raw body (the sandbox adapter's \
                 header; a production adapter names its own).",
            ))),
        )
        .schema_from::<crate::http_error::ErrorBody>()
        .schema_from::<crate::api::BatchSummary>()
        .schema_from::<crate::api::MyBatch>()
        .schema_from::<crate::api::ServerTime>()
        .schema_from::<crate::token_refresh::AuthConfig>()
        .schema_from::<crate::token_refresh::Refreshed>()
        .schema_from::<crate::ops::PublishRequest>()
        .schema_from::<crate::signing_api::review::RejectBody>()
        .build()
}

fn schema_ref<T: ToSchema>() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

fn array_of<T: ToSchema>() -> RefOr<Schema> {
    RefOr::T(Schema::Array(utoipa::openapi::schema::Array::new(
        schema_ref::<T>(),
    )))
}

fn string_schema() -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new().schema_type(Type::String).build(),
    ))
}

fn any_object() -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new().schema_type(Type::Object).build(),
    ))
}

fn binary() -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Binary,
            )))
            .build(),
    ))
}

/// `{family}` and `{*path}` → `family`, `path`.
fn path_params(path: &str) -> Vec<String> {
    path.split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(name, _)| name))
        .map(|name| name.trim_start_matches('*').to_owned())
        .collect()
}

/// The socket's own query parameters besides `batch` (docs/protocol.md, "Connecting").
const WS_QUERY: [(&str, &str); 3] = [
    (
        "token",
        "A family token (or `Authorization: Bearer`); without one the socket watches",
    ),
    ("epoch", "Resume: the epoch of the last seen board"),
    ("seq", "Resume: the seq of the last seen board"),
];

/// Routes about one batch take `?batch=` (docs/protocol.md, "Batches"); the lists of
/// batches, the sheet templates and the import itself are about none.
fn takes_batch(route: &Route) -> bool {
    let p = route.path;
    let none = [
        "/api/batches",
        "/api/me/batches",
        "/api/ops/batches",
        "/api/time",
        "/api/demo/logins",
        "/api/demo/refresh",
        "/api/auth/config",
        "/api/openapi.json",
    ];
    if none.contains(&p) || p.starts_with("/api/ops/templates/") {
        return false;
    }
    p == "/ws"
        || p == "/api/catalog"
        || p == "/api/board"
        || p.starts_with("/api/me")
        || p.starts_with("/api/ops/")
}

/// The routes with a body: multipart uploads, and JSON of a gateway type.
fn request_body(route: &Route) -> Option<(&'static str, Option<RefOr<Schema>>)> {
    if route.method != "POST" {
        return None;
    }
    match route.path {
        "/api/ops/batches" | "/api/me/signing/details" | "/api/me/signing/contract" => {
            Some(("multipart/form-data", Some(any_object())))
        }
        "/api/ops/supplementary" => Some((
            "application/json",
            Some(schema_ref::<crate::ops::PublishRequest>()),
        )),
        "/api/ops/signing/{family}/reject" => Some((
            "application/json",
            Some(schema_ref::<crate::signing_api::review::RejectBody>()),
        )),
        "/sandbox/face/{session}/result" => {
            Some(("application/x-www-form-urlencoded", Some(any_object())))
        }
        // Signed as sent: the signature covers these exact bytes.
        "/api/providers/payment/notify" => Some(("application/json", Some(any_object()))),
        _ => None,
    }
}

/// The success status, its media type and schema.
fn answer(route: &Route) -> (&'static str, Option<&'static str>, Option<RefOr<Schema>>) {
    let p = route.path;
    let file = |media| ("200", Some(media), Some(binary()));
    match (route.group, p) {
        (Group::Ws, _) => ("101", None, None),
        (Group::Probe, _) => ("200", Some("text/plain"), Some(string_schema())),
        (_, "/metrics") => (
            "200",
            Some(crate::metrics::CONTENT_TYPE),
            Some(string_schema()),
        ),
        (_, "/api/batches") => (
            "200",
            Some("application/json"),
            Some(array_of::<crate::api::BatchSummary>()),
        ),
        (_, "/api/me/batches") => (
            "200",
            Some("application/json"),
            Some(array_of::<crate::api::MyBatch>()),
        ),
        (_, "/api/time") => (
            "200",
            Some("application/json"),
            Some(schema_ref::<crate::api::ServerTime>()),
        ),
        (_, "/api/auth/config") => (
            "200",
            Some("application/json"),
            Some(schema_ref::<crate::token_refresh::AuthConfig>()),
        ),
        (_, "/api/demo/refresh") => (
            "200",
            Some("application/json"),
            Some(schema_ref::<crate::token_refresh::Refreshed>()),
        ),
        (_, "/api/ops/supplementary") | (_, "/api/ops/batches") => {
            ("201", Some("application/json"), Some(any_object()))
        }
        (_, p) if p.ends_with(".pdf") => file("application/pdf"),
        (_, p) if p.ends_with(".csv") => file("text/csv"),
        (_, p) if p.ends_with(".xlsx") => {
            file("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        }
        (_, p) if p.ends_with(".jsonl") => file("application/x-ndjson"),
        (_, p) if p.ends_with("/card_front") || p.ends_with("/card_back") => file("image/*"),
        (Group::Web, "/web/{*path}") => file("*/*"),
        (Group::Web, _) => ("200", Some("text/html"), Some(string_schema())),
        (Group::Api, _) => ("200", Some("application/json"), Some(any_object())),
    }
}

fn status_text(status: &str) -> &'static str {
    match status {
        "101" => "Switching Protocols: the WebSocket (docs/protocol.md)",
        "201" => "Created",
        _ => "OK",
    }
}

/// The refusals an API route answers with the error body, by access rule.
fn error_statuses(access: Access) -> Vec<(&'static str, &'static str)> {
    let mut out = vec![
        ("4XX", "Refused: the error code says why (nothing changed)"),
        ("5XX", "The engine or a provider is unavailable; retry"),
    ];
    match access {
        Access::Family | Access::Operator => {
            out.push(("401", "No valid token (`unauthorized`, `token_expired`)"));
            out.push(("403", "A valid token of another role (`forbidden`)"));
        }
        Access::Provider => out.push(("401", "Unsigned or forged body")),
        Access::Demo => out.push(("404", "Not a demo gateway")),
        Access::Public => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The few tables above name routes by path: each must still be a route.
    #[test]
    fn every_path_the_tables_name_is_a_route() {
        let list = routes();
        let known = |p: &str| list.iter().any(|r| r.path == p);
        for p in [
            "/api/ops/batches",
            "/api/me/signing/details",
            "/api/me/signing/contract",
            "/api/ops/supplementary",
            "/api/ops/signing/{family}/reject",
            "/api/providers/payment/notify",
            "/sandbox/face/{session}/result",
            "/ws",
            "/api/batches",
            "/api/me/batches",
            "/api/time",
            "/api/demo/logins",
            "/api/demo/refresh",
            "/api/auth/config",
            "/api/openapi.json",
            "/metrics",
            "/web/{*path}",
        ] {
            assert!(known(p), "{p} is not a route any more");
        }
    }

    #[test]
    fn path_parameters_come_from_the_template() {
        assert_eq!(
            path_params("/api/ops/signing/{family}/notice.pdf"),
            vec!["family"]
        );
        assert_eq!(path_params("/web/{*path}"), vec!["path"]);
        assert_eq!(openapi_path("/web/{*path}"), "/web/{path}");
        assert!(path_params("/api/board").is_empty());
    }
}
