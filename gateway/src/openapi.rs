//! The OpenAPI 3 document of the HTTP API, served at `GET /api/openapi.json`.
//!
//! Generated, not written: every operation comes from [`routes`], the router's own list,
//! so a route cannot be missing from the document nor the document name a route that
//! is gone. From each route's [`Access`] comes its security; from its path, its path
//! parameters; from the [`Payload`]s its entry declares, its body and its answer. JSON
//! payloads are `utoipa::ToSchema` types (the hub's and the engines' with their `openapi`
//! feature, the gateway's own), whose schemas follow their serde attributes, so
//! `components.schemas` is the wire form. `tests/tests/openapi.rs` walks `routes()`
//! against the served document and validates real answers against it.

use std::collections::BTreeMap;
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

/// Named schemas, as `ToSchema::schemas` collects them.
type Named = Vec<(String, RefOr<Schema>)>;

/// What a route takes or answers, as its entry in [`routes`] declares it: a media type
/// and a schema (for an answer, its status too), and the named schemas that schema
/// references, which go into `components.schemas`.
#[derive(Clone, Copy)]
pub struct Payload {
    status: &'static str,
    /// `None`: no body (a redirect, the WebSocket upgrade).
    media: Option<&'static str>,
    schema: fn() -> RefOr<Schema>,
    named: fn(&mut Named),
    description: Option<&'static str>,
}

impl Payload {
    fn new(media: &'static str, schema: fn() -> RefOr<Schema>, named: fn(&mut Named)) -> Self {
        Payload {
            status: "200",
            media: Some(media),
            schema,
            named,
            description: None,
        }
    }

    /// JSON of `T`.
    pub fn json<T: ToSchema>() -> Self {
        Self::new("application/json", schema_ref::<T>, named::<T>)
    }

    /// A JSON array of `T`.
    pub fn list<T: ToSchema>() -> Self {
        Self::new("application/json", array_of::<T>, named::<T>)
    }

    /// A multipart form whose parts are the fields of `T` (files as binary strings).
    pub fn form<T: ToSchema>() -> Self {
        Self::new("multipart/form-data", schema_ref::<T>, named::<T>)
    }

    /// An HTML form (`application/x-www-form-urlencoded`) of the fields of `T`.
    pub fn urlencoded<T: ToSchema>() -> Self {
        Self::new(
            "application/x-www-form-urlencoded",
            schema_ref::<T>,
            named::<T>,
        )
    }

    /// A file of `media` (a PDF, a spreadsheet, a photo).
    pub fn file(media: &'static str) -> Self {
        Self::new(media, binary, no_names)
    }

    /// Text of `media` (a page, the metrics).
    pub fn text(media: &'static str) -> Self {
        Self::new(media, string_schema, no_names)
    }

    /// A provider's callback body, verified by its signature over the exact bytes. Not a
    /// type of ours: its shape is the configured adapter's (the sandbox's JSON, WeChat
    /// Pay's encrypted resource, Alipay's form), chosen at start, not by the route.
    pub fn signed_by_provider() -> Self {
        Payload {
            description: Some(
                "外部服务的通知原文 / The provider's notification as it signed it: the \
                 configured adapter's format (sandbox and WeChat Pay: JSON; Alipay: a form)",
            ),
            ..Self::new("*/*", binary, no_names)
        }
    }

    /// `303 See Other`, back to a page.
    pub fn redirect() -> Self {
        Payload {
            status: "303",
            media: None,
            ..Self::text("text/html")
        }
    }

    /// This document: OpenAPI's own schema is not repeated here.
    pub fn document() -> Self {
        Self::new("application/json", document_schema, no_names)
    }

    /// The same answered with `201 Created`.
    pub fn created(self) -> Self {
        Payload {
            status: "201",
            ..self
        }
    }

    /// The same with a description.
    pub fn about(self, description: &'static str) -> Self {
        Payload {
            description: Some(description),
            ..self
        }
    }

    fn switching() -> Self {
        Payload {
            status: "101",
            media: None,
            ..Self::text("text/plain")
        }
    }

    fn undeclared() -> Self {
        Payload {
            media: None,
            ..Self::text("text/plain")
        }
    }
}

fn named<T: ToSchema>(out: &mut Named) {
    out.push((T::name().into_owned(), T::schema()));
    T::schemas(out);
}

fn no_names(_: &mut Named) {}

fn document_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("An OpenAPI 3.1 document (this one)"))
        .property("openapi", string_schema())
        .property("info", any_object())
        .property("paths", any_object())
        .property("components", any_object())
        .required("openapi")
        .required("info")
        .required("paths")
        .into()
}

/// Every named schema the routes' payloads (and the error body) reference, by name, and
/// the names given to two different schemas (the first is kept; the unit test below
/// wants none, since the second would be described wrongly).
fn schemas() -> (BTreeMap<String, RefOr<Schema>>, Vec<String>) {
    let mut all = Named::new();
    named::<crate::http_error::ErrorBody>(&mut all);
    for route in routes() {
        for p in route.body.iter().chain(route.answer.iter()) {
            (p.named)(&mut all);
        }
    }
    let (mut out, mut twice) = (BTreeMap::new(), Vec::new());
    for (name, schema) in all {
        match out.get(&name) {
            Some(seen) if seen != &schema => twice.push(name),
            Some(_) => {}
            None => {
                out.insert(name, schema);
            }
        }
    }
    (out, twice)
}

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
    if let Some(body) = &route.body {
        let mut content = RequestBodyBuilder::new()
            .required(Some(Required::True))
            .description(body.description);
        if let Some(media) = body.media {
            content = content.content(
                media,
                ContentBuilder::new().schema(Some((body.schema)())).build(),
            );
        }
        op = op.request_body(Some(content.build()));
    }
    let answer = answer(route);
    let ok = ResponseBuilder::new()
        .description(answer.description.unwrap_or(status_text(answer.status)));
    let ok = match answer.media {
        Some(media) => ok.content(
            media,
            ContentBuilder::new()
                .schema(Some((answer.schema)()))
                .build(),
        ),
        None => ok,
    };
    op = op.response(answer.status, ok.build());
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
        .schemas_from_iter(schemas().0)
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

/// The route's declared answer; pages, probes and the socket answer alike, so their
/// group says it.
fn answer(route: &Route) -> Payload {
    route.answer.unwrap_or_else(|| match route.group {
        Group::Ws => Payload::switching(),
        Group::Probe => Payload::text("text/plain"),
        Group::Web => Payload::text("text/html"),
        // Every API route declares its answer (the unit test below).
        Group::Api => Payload::undeclared(),
    })
}

fn status_text(status: &str) -> &'static str {
    match status {
        "101" => "Switching Protocols: the WebSocket (docs/protocol.md)",
        "201" => "Created",
        "303" => "See Other: back to the page",
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

    /// The table of `takes_batch` names routes by path: each must still be a route.
    #[test]
    fn every_path_the_tables_name_is_a_route() {
        let list = routes();
        let known = |p: &str| list.iter().any(|r| r.path == p);
        for p in [
            "/ws",
            "/api/catalog",
            "/api/board",
            "/api/batches",
            "/api/me/batches",
            "/api/ops/batches",
            "/api/time",
            "/api/demo/logins",
            "/api/demo/refresh",
            "/api/auth/config",
            "/api/openapi.json",
        ] {
            assert!(known(p), "{p} is not a route any more");
        }
    }

    #[test]
    fn every_api_route_declares_its_answer() {
        for r in routes().iter().filter(|r| r.group == Group::Api) {
            assert!(r.answer.is_some(), "{} {} answers what?", r.method, r.path);
        }
    }

    #[test]
    fn no_two_schemas_share_a_name() {
        let (named, twice) = schemas();
        assert!(twice.is_empty(), "named twice: {twice:?}");
        assert!(named.contains_key("FamilyView") && named.contains_key("SigningPage"));
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
