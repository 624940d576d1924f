//! The sandbox providers' pages (沙箱): a face check with pass and fail buttons, a pay
//! page with a pay button. Unauthenticated, labelled on every page, served only when the
//! sandbox adapters are the providers.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde::Deserialize;
use xuanfang_hub::ErrorCode;

use super::err;
use super::face::settle_face;
use super::notify::receive_payment;
use crate::app::App;
use crate::http_error::ApiError;
use crate::providers::face::FaceVerdict;

const SANDBOX_STYLE: &str =
    "body{font-family:sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem}\
 .sandbox{background:#fde68a;border:2px dashed #b45309;padding:.5rem;font-weight:bold}\
 button{font-size:1.2rem;margin:.5rem .5rem 0 0;padding:.5rem 1rem}";

fn sandbox_page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>沙箱 sandbox — {title}</title>\
         <style>{SANDBOX_STYLE}</style></head><body>\
         <p class=\"sandbox\">沙箱环境（测试用，非真实服务） SANDBOX — not a real provider</p>\
         <h1>{title}</h1>{body}</body></html>"
    ))
}

fn sandbox_404() -> Response {
    err(StatusCode::NOT_FOUND, ErrorCode::Forbidden)
        .detail("no such sandbox session")
        .into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub async fn sandbox_face_page(
    State(app): State<Arc<App>>,
    Path(session): Path<String>,
) -> Response {
    let Some(face) = app.signing().and_then(|s| s.sandbox_face.clone()) else {
        return sandbox_404();
    };
    let Some(s) = face.session(&session) else {
        return sandbox_404();
    };
    let done = match s.verdict {
        Some(v) => format!(
            "<p>已提交：{}</p>",
            if v.passed {
                "通过 passed"
            } else {
                "未通过 failed"
            }
        ),
        None => format!(
            "<form method=\"post\" action=\"/sandbox/face/{id}/result\">\
             <button name=\"passed\" value=\"true\">通过 pass</button>\
             <button name=\"passed\" value=\"false\">不通过 fail</button></form>",
            id = escape(&session)
        ),
    };
    sandbox_page(
        "人脸识别 face verification",
        &format!(
            "<p>申请人 applicant: {}</p>{done}<p><a href=\"/app\">返回 back</a></p>",
            escape(&s.applicant)
        ),
    )
    .into_response()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct FaceForm {
    pub passed: bool,
}

/// The sandbox records the verdict; then, as a vendor's notify would, the gateway is
/// told the session finished and fetches the verdict itself ([`settle_face`]).
pub async fn sandbox_face_result(
    State(app): State<Arc<App>>,
    Path(session): Path<String>,
    Form(f): Form<FaceForm>,
) -> Response {
    let Some(sg) = app.signing() else {
        return sandbox_404();
    };
    let Some(face) = sg.sandbox_face.clone() else {
        return sandbox_404();
    };
    let Some(s) = face.session(&session) else {
        return sandbox_404();
    };
    if face.decide(
        &session,
        FaceVerdict {
            passed: f.passed,
            score: Some(if f.passed { 95 } else { 20 }),
        },
    ) != Some(true)
    {
        return ApiError::new(StatusCode::CONFLICT, ErrorCode::FaceSessionMismatch).into_response();
    }
    match settle_face(sg, &s.batch, &session).await {
        Ok(_) => Redirect::to(&format!("/sandbox/face/{session}")).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn sandbox_pay_page(State(app): State<Arc<App>>, Path(order): Path<String>) -> Response {
    let Some(pay) = app.signing().and_then(|s| s.sandbox_payment.clone()) else {
        return sandbox_404();
    };
    let Some(o) = pay.order(&order) else {
        return sandbox_404();
    };
    let state = if o.paid.is_some() {
        "<p>已支付 paid</p>".to_owned()
    } else {
        format!(
            "<form method=\"post\" action=\"/sandbox/pay/{id}/pay\"><button>模拟支付 pay</button></form>",
            id = escape(&order)
        )
    };
    sandbox_page(
        "支付 payment",
        &format!(
            "<p>订单 order: {}</p><p>金额 amount: ¥{}.{:02}</p>{state}",
            escape(&order),
            o.amount_fen / 100,
            o.amount_fen % 100
        ),
    )
    .into_response()
}

/// The pay button: the sandbox sends its signed notification, through the same
/// verification as any notification.
pub async fn sandbox_pay(State(app): State<Arc<App>>, Path(order): Path<String>) -> Response {
    let Some(sg) = app.signing() else {
        return sandbox_404();
    };
    let Some(pay) = sg.sandbox_payment.clone() else {
        return sandbox_404();
    };
    let Some((body, sig)) = pay.pay(&order, app.now()) else {
        return ApiError::new(StatusCode::CONFLICT, ErrorCode::OrderExpired).into_response();
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&sig) {
        headers.insert(crate::providers::payment::SANDBOX_SIGNATURE_HEADER, v);
    }
    let n = match sg
        .payment
        .as_ref()
        .map(|p| p.verify_notification(&headers, &body, app.now()))
    {
        Some(Ok(n)) => n,
        _ => {
            return ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized).into_response()
        }
    };
    match receive_payment(sg, n, app.now()).await {
        Ok(Json(a)) if a.accepted => Redirect::to(&format!("/sandbox/pay/{order}")).into_response(),
        Ok(Json(a)) => (StatusCode::CONFLICT, Json(a)).into_response(),
        Err(e) => e.into_response(),
    }
}
