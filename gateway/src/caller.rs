//! Who calls, and which batch they mean, as axum extractors: a handler's signature says
//! who may reach it (`Operator`, `FamilyCaller`) and for which batch (`Target`,
//! `FamilyTarget`), so the router's route list is also the list of authorization rules.
//!
//! Batches are named by the `batch` query parameter. Without it, public and operator
//! requests mean the live batch (the newest loaded) and a family's request means the
//! newest batch that family belongs to.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::Deserialize;
use xuanfang_allocator::AllocError;
use xuanfang_hub::{BatchId, ErrorCode, FamilyId};

use crate::app::App;
use crate::auth::{self, Identity};
use crate::fanout::BatchHub;
use crate::http_error::ApiError;

/// The `batch` query parameter.
#[derive(Debug, Default, Deserialize)]
pub struct BatchParam {
    pub batch: Option<String>,
}

impl BatchParam {
    fn of(parts: &Parts) -> Result<Option<BatchId>, ApiError> {
        let Query(q) = Query::<BatchParam>::try_from_uri(&parts.uri).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadFrame).detail(e.body_text())
        })?;
        Ok(q.batch.filter(|b| !b.is_empty()).map(BatchId))
    }
}

/// The caller's verified identity from `Authorization: Bearer`.
pub async fn identity(app: &App, parts: &Parts) -> Result<Identity, ApiError> {
    let token = auth::bearer(&parts.headers)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized))?;
    app.auth
        .verify(token)
        .await
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.code()))
}

/// The client's address for per-address limits: the TCP peer, or behind a trusted
/// proxy the address it forwarded for ([`crate::client_ip`]).
pub struct ClientIp {
    pub ip: IpAddr,
    /// The TCP peer.
    pub peer: IpAddr,
}

impl FromRequestParts<Arc<App>> for ClientIp {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let ConnectInfo(peer) = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .copied()
            .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal))?;
        Ok(ClientIp {
            ip: app.limits.proxies.client(peer.ip(), &parts.headers),
            peer: peer.ip(),
        })
    }
}

/// An operator token's holder.
pub struct Operator(pub String);

impl FromRequestParts<Arc<App>> for Operator {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        match identity(app, parts).await? {
            Identity::Operator(who) => Ok(Operator(who)),
            Identity::Family(_) => Err(ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden)),
        }
    }
}

/// A family token's family id (the person's `sub`; the same in every batch).
pub struct FamilyCaller(pub FamilyId);

impl FromRequestParts<Arc<App>> for FamilyCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        match identity(app, parts).await? {
            Identity::Family(f) => Ok(FamilyCaller(f)),
            Identity::Operator(_) => {
                Err(ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden))
            }
        }
    }
}

/// The batch a public or operator request is about: `?batch=`, else the live one.
pub struct Target(pub Arc<BatchHub>);

impl FromRequestParts<Arc<App>> for Target {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let batch = BatchParam::of(parts)?;
        public_hub(app, batch.as_ref()).await.map(Target)
    }
}

/// A family and the batch its request is about: `?batch=` (which must be one of its
/// batches), else its newest batch.
pub struct FamilyTarget {
    pub family: FamilyId,
    pub hub: Arc<BatchHub>,
}

impl FromRequestParts<Arc<App>> for FamilyTarget {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let FamilyCaller(family) = FamilyCaller::from_request_parts(parts, app).await?;
        let batch = BatchParam::of(parts)?;
        let hub = family_hub(app, &family, batch.as_ref()).await?;
        Ok(FamilyTarget { family, hub })
    }
}

/// The hub of a named batch, or the live one.
pub async fn public_hub(
    app: &Arc<App>,
    batch: Option<&BatchId>,
) -> Result<Arc<BatchHub>, ApiError> {
    match batch {
        Some(b) => app.hub(b).await.map_err(not_found),
        None => app
            .live()
            .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::UnknownBatch)),
    }
}

/// The hub of a family's batch: the one named (it must belong to it), else its newest.
pub async fn family_hub(
    app: &Arc<App>,
    family: &FamilyId,
    batch: Option<&BatchId>,
) -> Result<Arc<BatchHub>, ApiError> {
    let unknown = || ApiError::new(StatusCode::FORBIDDEN, ErrorCode::UnknownFamily);
    match batch {
        Some(b) => {
            let hub = app.hub(b).await.map_err(not_found)?;
            if hub.has_family(family) {
                Ok(hub)
            } else {
                Err(unknown())
            }
        }
        None => app
            .batches_of(family)
            .into_iter()
            .next()
            .ok_or_else(unknown),
    }
}

fn not_found(e: AllocError) -> ApiError {
    ApiError::from(e)
}
