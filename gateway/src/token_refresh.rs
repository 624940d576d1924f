//! Where a page gets a new token before its socket's runs out, and where it sends a family
//! to log in again.
//!
//! Tokens reach the pages in the address (`/app?token=`, from the identity platform's
//! login redirect). A socket is told `token_expiring` before its token's `exp`; the page
//! then asks the **refresh endpoint** for a new token and sends it over the socket
//! (`refresh`). The endpoint is the identity platform's (`--token-refresh-url`): the
//! page `POST`s to it with `Authorization: Bearer <current token>` and the platform's
//! session cookie (`credentials: include`), and takes `{"token": "<JWT>"}` from a `200`.
//! In demo mode the gateway is its own platform: `POST /api/demo/refresh` mints a fresh
//! token for a still-valid one. Pages learn both addresses from `GET /api/auth/config`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use xuanfang_hub::{ErrorCode, Millis};

use crate::app::App;
use crate::auth::{self, Identity, Role};
use crate::http_error::ApiError;

/// The deployment's refresh and login addresses (`--token-refresh-url`, `--login-url`).
#[derive(Clone, Debug, Default)]
pub struct RefreshConfig {
    /// The identity platform's refresh endpoint; `None`: the demo's own, or none.
    pub refresh_url: Option<String>,
    /// Where 重新登录 leads (the platform's login page); `None`: `/app`, which says how
    /// to log in.
    pub login_url: Option<String>,
    /// Where the console's 重新登录 leads an operator (`--operator-login-url`); `None`:
    /// `/console`, which says how to log in.
    pub operator_login_url: Option<String>,
}

impl RefreshConfig {
    /// Checks the addresses: absolute `http(s)` URLs or paths of this gateway.
    pub fn new(refresh_url: Option<String>, login_url: Option<String>) -> Result<Self, String> {
        Self::new_with_operator(refresh_url, login_url, None)
    }

    /// Like [`RefreshConfig::new`], with the operators' login page too.
    pub fn new_with_operator(
        refresh_url: Option<String>,
        login_url: Option<String>,
        operator_login_url: Option<String>,
    ) -> Result<Self, String> {
        for (flag, u) in [
            ("--token-refresh-url", &refresh_url),
            ("--login-url", &login_url),
            ("--operator-login-url", &operator_login_url),
        ] {
            if let Some(u) = u {
                if !(u.starts_with('/') || origin_of(u).is_some()) {
                    return Err(format!(
                        "{flag} {u}: not an http(s) URL or a path starting with /"
                    ));
                }
            }
        }
        Ok(Self {
            refresh_url,
            login_url,
            operator_login_url,
        })
    }

    /// The pages' Content-Security-Policy: the fixed one, with the refresh endpoint's
    /// origin added to `connect-src` when it is on another origin (the page fetches it).
    pub fn csp(&self) -> HeaderValue {
        let extra = self.refresh_url.as_deref().and_then(origin_of);
        let csp = match extra {
            None => crate::server::CSP.to_owned(),
            Some(o) => crate::server::CSP.replacen(
                "connect-src 'self' ws: wss:",
                &format!("connect-src 'self' ws: wss: {o}"),
                1,
            ),
        };
        HeaderValue::from_str(&csp).unwrap_or(HeaderValue::from_static(crate::server::CSP))
    }
}

/// `scheme://host[:port]` of an absolute http(s) URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    let ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    ok.then(|| format!("{scheme}://{host}"))
}

/// What `GET /api/auth/config` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuthConfig {
    /// Where the page gets a new token (`POST`, Bearer: the current token); `null`: no
    /// refresh path, the family logs in again when the token expires.
    pub refresh_url: Option<String>,
    /// Where 重新登录 leads.
    pub login_url: String,
    /// Where the console's 重新登录 leads an operator.
    pub operator_login_url: String,
    /// Seconds before `exp` a socket is sent `token_expiring`.
    pub refresh_lead_secs: u64,
}

/// `GET /api/auth/config`: the page's refresh and login addresses.
pub async fn config(State(app): State<Arc<App>>) -> Json<AuthConfig> {
    let cfg = app.token_refresh();
    let demo_refresh = app.demo.as_ref().is_some_and(|d| d.mints);
    let refresh_url = cfg
        .refresh_url
        .clone()
        .or_else(|| demo_refresh.then(|| "/api/demo/refresh".to_owned()));
    Json(AuthConfig {
        refresh_url,
        login_url: cfg.login_url.clone().unwrap_or_else(|| "/app".to_owned()),
        operator_login_url: cfg
            .operator_login_url
            .clone()
            .unwrap_or_else(|| "/console".to_owned()),
        refresh_lead_secs: app.ws.token_refresh_lead.as_secs(),
    })
}

/// A new token, as a refresh endpoint answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Refreshed {
    pub token: String,
    /// Its `exp`, in ms.
    pub expires: Millis,
}

/// `POST /api/demo/refresh` (demo mode, with its own secret): a fresh token for the
/// same person and role as the still-valid Bearer token. An expired, forged or missing
/// token gets `401`, as the identity platform would answer.
pub async fn demo_refresh(State(app): State<Arc<App>>, headers: axum::http::HeaderMap) -> Response {
    let Some(demo) = app.demo.as_ref().filter(|d| d.mints) else {
        return ApiError::new(StatusCode::NOT_FOUND, ErrorCode::Forbidden)
            .detail("demo mode only")
            .into_response();
    };
    let Some(token) = auth::bearer(&headers) else {
        return ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized).into_response();
    };
    let (sub, role) = match app.auth.verify(token).await {
        Ok(Identity::Family(f)) => (f.0, Role::Family),
        Ok(Identity::Operator(o)) => (o, Role::Operator),
        Err(e) => return ApiError::new(StatusCode::UNAUTHORIZED, e.code()).into_response(),
    };
    let minted = match app.auth.mint(&sub, role, demo.token_ttl_secs) {
        Ok(t) => app.auth.verify_until(&t).await.map(|(_, exp)| (exp, t)),
        Err(e) => Err(e),
    };
    match minted {
        Ok((exp, token)) => Json(Refreshed {
            token,
            expires: Millis(i64::try_from(exp.saturating_mul(1000)).unwrap_or(i64::MAX)),
        })
        .into_response(),
        Err(e) => {
            tracing::warn!("demo refresh failed: {e}");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cross_origin_refresh_endpoint_is_added_to_connect_src_only() {
        let same = RefreshConfig::new(Some("/idp/refresh".into()), None).unwrap();
        assert_eq!(same.csp(), crate::server::CSP);
        let other = RefreshConfig::new(
            Some("https://idp.gd.gov.cn:8443/oauth/refresh?x=1".into()),
            None,
        )
        .unwrap();
        let csp = other.csp();
        let csp = csp.to_str().unwrap();
        assert!(
            csp.contains("connect-src 'self' ws: wss: https://idp.gd.gov.cn:8443;"),
            "{csp}"
        );
        assert!(csp.contains("default-src 'self';"), "{csp}");
    }

    #[test]
    fn addresses_that_are_not_urls_or_paths_are_refused() {
        for bad in [
            "idp.example/refresh",
            "javascript:alert(1)",
            "ftp://x/y",
            "https://",
        ] {
            assert!(RefreshConfig::new(Some(bad.into()), None).is_err(), "{bad}");
            assert!(RefreshConfig::new(None, Some(bad.into())).is_err(), "{bad}");
            assert!(
                RefreshConfig::new_with_operator(None, None, Some(bad.into())).is_err(),
                "{bad}"
            );
        }
        assert!(
            RefreshConfig::new(Some("http://127.0.0.1:9/r".into()), Some("/app".into())).is_ok()
        );
    }
}
