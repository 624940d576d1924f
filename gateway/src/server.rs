//! The HTTP router (every route, with who may call it, which limits apply and what it
//! takes and answers) and the serve loop with graceful shutdown ([`crate::listen`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use xuanfang_allocator::BoardState;
use xuanfang_hub::protocol::{Catalog, FamilyView, SessionInfo};
use xuanfang_hub::{Batch, ErrorCode, Event};

use crate::app::App;
use crate::http_error::ApiError;
use crate::openapi::Payload;
use crate::refunds::RefundEntry;
use crate::{
    api, connection, demo, import_api, openapi, ops, signing_api as sg, templates, token_refresh,
    web,
};

/// Uploads (unit and family sheets) may be a few MB.
const MAX_UPLOAD: usize = 16 * 1024 * 1024;

/// Who may call a route. The extractors in a handler's signature enforce it
/// (`caller.rs`); this list states it, so one test can walk every route and check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no token needed.
    Public,
    /// A family token (`role: family`).
    Family,
    /// An operator token (`role: operator`).
    Operator,
    /// Demo mode only; 404 otherwise.
    Demo,
    /// An outside provider's callback: authenticated by the signature over its body,
    /// never by a token (an unsigned or forged body is 401 whatever token comes with it).
    Provider,
}

/// The limits and headers layered on a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// The HTTP API and `/metrics`: `http_per_sec_per_ip`.
    Api,
    /// The web client's pages and assets: `static_per_sec_per_ip`, and the security
    /// headers (CSP and friends).
    Web,
    /// `/ws`: its own limits at the upgrade (connects per second and open sockets per
    /// address, the origin policy), then per-connection and per-family frame limits.
    Ws,
    /// The load balancer's health probes: never limited.
    Probe,
}

/// One route: method, path, who may call it, its handler, and what it takes and answers.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    /// The limits layered on it, all per client address ([`crate::client_ip`]).
    pub group: Group,
    handler: fn() -> MethodRouter<Arc<App>>,
    /// Its request body, for `/api/openapi.json`.
    pub body: Option<Payload>,
    /// Its success answer, for `/api/openapi.json`; `None`: its group's (a page, a probe's
    /// text, the socket's upgrade).
    pub answer: Option<Payload>,
}

impl Route {
    /// Declares the body: what the handler's body extractor reads.
    fn takes(self, body: Payload) -> Self {
        Route {
            body: Some(body),
            ..self
        }
    }

    /// Declares the success answer: what the handler returns. Said here, beside the
    /// handler, since a handler's type does not say it (files and cached bytes are
    /// `Response`s); `tests/tests/openapi.rs` validates real answers against it.
    fn answers(self, answer: Payload) -> Self {
        Route {
            answer: Some(answer),
            ..self
        }
    }
}

/// Every route of the gateway: the router is built from this list.
pub fn routes() -> Vec<Route> {
    use Access::*;
    use Group::*;
    let r = |method, path, access, group, handler| Route {
        method,
        path,
        access,
        group,
        handler,
        body: None,
        answer: None,
    };
    const PDF: &str = "application/pdf";
    const CSV: &str = "text/csv";
    const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
    // A photo as it was checked and stored: PNG or JPEG.
    const PHOTO: &str = "image/*";
    vec![
        r("GET", "/api/catalog", Public, Api, || get(api::catalog))
            .answers(Payload::json::<Catalog>()),
        r("GET", "/api/board", Public, Api, || get(api::board))
            .answers(Payload::json::<BoardState>()),
        r("GET", "/api/time", Public, Api, || get(api::time))
            .answers(Payload::json::<api::ServerTime>()),
        r("GET", "/api/batches", Public, Api, || get(api::batches))
            .answers(Payload::list::<api::BatchSummary>()),
        r("GET", "/api/openapi.json", Public, Api, || {
            get(openapi::serve)
        })
        .answers(Payload::document()),
        r("GET", "/api/me", Family, Api, || get(api::me)).answers(Payload::json::<FamilyView>()),
        r("GET", "/api/me/batches", Family, Api, || {
            get(api::my_batches)
        })
        .answers(Payload::list::<api::MyBatch>()),
        r("GET", "/api/demo/logins", Demo, Api, || get(demo_logins))
            .answers(Payload::json::<demo::DemoInfo>()),
        // The demo as its own identity platform: a fresh token for a still-valid one.
        r("POST", "/api/demo/refresh", Demo, Api, || {
            post(token_refresh::demo_refresh)
        })
        .answers(Payload::json::<token_refresh::Refreshed>()),
        // Where the page gets a new token and sends a family to log in again.
        r("GET", "/api/auth/config", Public, Api, || {
            get(token_refresh::config)
        })
        .answers(Payload::json::<token_refresh::AuthConfig>()),
        r("GET", "/api/ops/progress", Operator, Api, || {
            get(ops::progress)
        })
        .answers(Payload::json::<ops::Progress>()),
        r("GET", "/api/ops/applications", Operator, Api, || {
            get(ops::applications)
        })
        .answers(Payload::list::<ops::Application>()),
        r("POST", "/api/ops/supplementary", Operator, Api, || {
            post(ops::publish_supplementary)
        })
        .takes(Payload::json::<ops::PublishRequest>())
        .answers(Payload::json::<SessionInfo>().created()),
        r("GET", "/api/ops/results.csv", Operator, Api, || {
            get(ops::results_csv)
        })
        .answers(Payload::file(CSV)),
        r("GET", "/api/ops/results.xlsx", Operator, Api, || {
            get(ops::results_xlsx)
        })
        .answers(Payload::file(XLSX)),
        r("GET", "/api/ops/events", Operator, Api, || get(ops::events))
            .answers(Payload::list::<Event>()),
        r("GET", "/api/ops/events.jsonl", Operator, Api, || {
            get(ops::events_jsonl)
        })
        .answers(Payload::file("application/x-ndjson")),
        r("GET", "/api/ops/batch", Operator, Api, || get(ops::batch))
            .answers(Payload::json::<Batch>()),
        r("GET", "/api/ops/templates/units.csv", Operator, Api, || {
            get(templates::units_csv)
        })
        .answers(Payload::file(CSV)),
        r(
            "GET",
            "/api/ops/templates/units.xlsx",
            Operator,
            Api,
            || get(templates::units_xlsx),
        )
        .answers(Payload::file(XLSX)),
        r(
            "GET",
            "/api/ops/templates/families.csv",
            Operator,
            Api,
            || get(templates::families_csv),
        )
        .answers(Payload::file(CSV)),
        r(
            "GET",
            "/api/ops/templates/families.xlsx",
            Operator,
            Api,
            || get(templates::families_xlsx),
        )
        .answers(Payload::file(XLSX)),
        r("POST", "/api/ops/batches", Operator, Api, || {
            post(import_api::create_batch).layer(DefaultBodyLimit::max(MAX_UPLOAD))
        })
        .takes(Payload::form::<import_api::BatchUpload>())
        .answers(Payload::json::<import_api::BatchCreated>().created()),
        r("GET", "/api/me/signing", Family, Api, || {
            get(sg::my_signing)
        })
        .answers(Payload::json::<sg::SigningPage>()),
        r("POST", "/api/me/signing/details", Family, Api, || {
            post(sg::fill_details).layer(DefaultBodyLimit::max(sg::MAX_DETAILS_BODY))
        })
        .takes(Payload::form::<sg::details::DetailsUpload>())
        .answers(Payload::json::<sg::SigningPage>()),
        r("POST", "/api/me/signing/face/start", Family, Api, || {
            post(sg::start_face)
        })
        .answers(Payload::json::<sg::FaceStarted>()),
        r("POST", "/api/me/signing/face/finish", Family, Api, || {
            post(sg::finish_face)
        })
        .answers(Payload::json::<sg::FaceFinished>()),
        r("POST", "/api/me/signing/deposit", Family, Api, || {
            post(sg::order_deposit)
        })
        .answers(Payload::json::<sg::DepositOrdered>()),
        r("GET", "/api/me/signing/card_front", Family, Api, || {
            get(sg::my_card_front)
        })
        .answers(Payload::file(PHOTO)),
        r("GET", "/api/me/signing/card_back", Family, Api, || {
            get(sg::my_card_back)
        })
        .answers(Payload::file(PHOTO)),
        r("GET", "/api/me/signing/lease.pdf", Family, Api, || {
            get(sg::lease_pdf)
        })
        .answers(Payload::file(PDF)),
        r("POST", "/api/me/signing/contract", Family, Api, || {
            post(sg::sign_contract).layer(DefaultBodyLimit::max(sg::MAX_SIGNATURE_BODY))
        })
        .takes(Payload::form::<sg::contract::SignatureUpload>())
        .answers(Payload::json::<sg::SigningPage>()),
        r("GET", "/api/me/signing/contract.pdf", Family, Api, || {
            get(sg::my_contract_pdf)
        })
        .answers(Payload::file(PDF)),
        r("GET", "/api/me/signing/notice.pdf", Family, Api, || {
            get(sg::my_notice_pdf)
        })
        .answers(Payload::file(PDF)),
        r("GET", "/api/ops/signing", Operator, Api, || get(sg::queue))
            .answers(Payload::list::<sg::QueueRow>()),
        r("GET", "/api/ops/refunds", Operator, Api, || {
            get(sg::refunds)
        })
        .answers(Payload::list::<RefundEntry>()),
        r("GET", "/api/ops/signing/{family}", Operator, Api, || {
            get(sg::record)
        })
        .answers(Payload::json::<sg::SigningPage>()),
        r(
            "POST",
            "/api/ops/signing/{family}/approve",
            Operator,
            Api,
            || post(sg::approve),
        )
        .answers(Payload::json::<sg::SigningPage>()),
        r(
            "POST",
            "/api/ops/signing/{family}/reject",
            Operator,
            Api,
            || post(sg::reject),
        )
        .takes(Payload::json::<sg::RejectBody>())
        .answers(Payload::json::<sg::SigningPage>()),
        r(
            "POST",
            "/api/ops/signing/{family}/unlock_face",
            Operator,
            Api,
            || post(sg::unlock_face),
        )
        .answers(Payload::json::<sg::SigningPage>()),
        r(
            "GET",
            "/api/ops/signing/{family}/card_front",
            Operator,
            Api,
            || get(sg::ops_card_front),
        )
        .answers(Payload::file(PHOTO)),
        r(
            "GET",
            "/api/ops/signing/{family}/card_back",
            Operator,
            Api,
            || get(sg::ops_card_back),
        )
        .answers(Payload::file(PHOTO)),
        r(
            "GET",
            "/api/ops/signing/{family}/contract.pdf",
            Operator,
            Api,
            || get(sg::ops_contract_pdf),
        )
        .answers(Payload::file(PDF)),
        r(
            "GET",
            "/api/ops/signing/{family}/notice.pdf",
            Operator,
            Api,
            || get(sg::ops_notice_pdf),
        )
        .answers(Payload::file(PDF)),
        r(
            "POST",
            "/api/ops/signing/{family}/notice",
            Operator,
            Api,
            || post(sg::issue_notice),
        )
        .answers(Payload::json::<sg::SigningPage>()),
        r(
            "POST",
            "/api/providers/payment/notify",
            Provider,
            Api,
            || post(sg::payment_notify).layer(DefaultBodyLimit::max(64 * 1024)),
        )
        .takes(Payload::signed_by_provider())
        .answers(
            Payload::json::<sg::NotifyAnswer>()
                .about("Received (Alipay's adapter answers its bare word `success` instead)"),
        ),
        r("GET", "/sandbox/face/{session}", Public, Web, || {
            get(sg::sandbox_face_page)
        }),
        r(
            "POST",
            "/sandbox/face/{session}/result",
            Public,
            Web,
            || post(sg::sandbox_face_result),
        )
        .takes(Payload::urlencoded::<sg::FaceForm>())
        .answers(Payload::redirect()),
        r("GET", "/sandbox/pay/{order}", Public, Web, || {
            get(sg::sandbox_pay_page)
        }),
        r("POST", "/sandbox/pay/{order}/pay", Public, Web, || {
            post(sg::sandbox_pay)
        })
        .answers(Payload::redirect()),
        // A family token acts; without one the socket watches the public board.
        r("GET", "/ws", Public, Ws, || get(connection::upgrade)),
        r("GET", "/healthz", Public, Probe, || get(api::healthz)),
        r("GET", "/readyz", Public, Probe, || get(api::readyz)),
        r("GET", "/metrics", Public, Api, || get(api::metrics))
            .answers(Payload::text(crate::metrics::CONTENT_TYPE)),
        r("GET", "/", Public, Web, || get(web::index)),
        r("GET", "/app", Public, Web, || get(web::app_page)),
        r("GET", "/hall", Public, Web, || get(web::hall_page)),
        r("GET", "/console", Public, Web, || get(web::console_page)),
        r("GET", "/web/{*path}", Public, Web, || get(web::asset)).answers(Payload::file("*/*")),
    ]
}

pub fn router(app: Arc<App>) -> Router {
    let (mut api, mut web, mut rest) = (Router::new(), Router::new(), Router::new());
    for route in routes() {
        let handler = (route.handler)();
        match route.group {
            Group::Api => api = api.route(route.path, handler),
            Group::Web => web = web.route(route.path, handler),
            Group::Ws | Group::Probe => rest = rest.route(route.path, handler),
        }
    }
    let api = api
        .layer(middleware::map_response(close_after_refused_upload))
        .layer(middleware::from_fn_with_state(app.clone(), api_rate_limit));
    let web = web
        .layer(middleware::map_response_with_state(
            app.clone(),
            security_headers,
        ))
        .layer(middleware::from_fn_with_state(app.clone(), web_rate_limit));
    Router::new()
        .merge(api)
        .merge(web)
        .merge(rest)
        .with_state(app)
}

/// The pages' Content-Security-Policy. `style-src` allows inline styles because the
/// client renders a few `style="…"` attributes in HTML strings (board rows, the
/// console's timeline); scripts stay `'self'` only.
pub const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; \
                       style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; object-src 'none'; \
                       base-uri 'none'";

/// An upload refused as too large leaves its body unread, so hyper closes the connection
/// after the answer. Saying so keeps a client from sending its next request on a
/// connection that is going away (reqwest's pool did, and that request failed).
async fn close_after_refused_upload(mut res: Response) -> Response {
    if res.status() == StatusCode::PAYLOAD_TOO_LARGE {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// The CSP of `CSP`, with a cross-origin refresh endpoint added to `connect-src`
/// ([`crate::token_refresh::RefreshConfig::csp`]).
async fn security_headers(State(app): State<Arc<App>>, mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, app.csp().clone());
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

async fn demo_logins(State(app): State<Arc<App>>) -> Response {
    match &app.demo {
        Some(info) => Json(info.clone()).into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, ErrorCode::Forbidden)
            .detail("demo mode only")
            .into_response(),
    }
}

async fn api_rate_limit(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    rate_limited(&app, req, next, |ip| app.limits.http_request(ip)).await
}

async fn web_rate_limit(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    rate_limited(&app, req, next, |ip| app.limits.static_request(ip)).await
}

async fn rate_limited(
    app: &App,
    req: Request,
    next: Next,
    allow: impl Fn(std::net::IpAddr) -> bool,
) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(peer) = peer {
        if !allow(app.limits.proxies.client(peer, req.headers())) {
            app.limits.hint_untrusted_proxy(peer, req.headers());
            return ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited)
                .into_response();
        }
    }
    next.run(req).await
}

/// Serves until the app's shutdown token is cancelled: then open sockets get a close
/// frame (1001) and in-flight requests drain.
pub async fn serve(app: Arc<App>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    tokio::spawn(app.clone().upkeep());
    let sockets = app.sockets.clone();
    crate::listen::serve(app.clone(), router(app), listener).await?;
    // Upgraded sockets are counted from their handler on: a shutdown that came between
    // the upgrade and the connection's start still waits for its 1001.
    sockets.close();
    if tokio::time::timeout(SOCKETS_DRAIN, sockets.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = sockets.len(),
            "sockets still open after the drain period"
        );
    }
    Ok(())
}

/// How long shutdown waits for open sockets to close (each sends 1001 at once and waits
/// at most a second for the client's reply).
const SOCKETS_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);
