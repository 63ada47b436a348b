//! Health, metrics, identity, the gateway's public keys and the audit log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiJson, ApiQuery};
use crate::audit::StoredEvent;
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::service::system as svc;
use crate::state::AppState;

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: String,
    pub database: String,
}

/// Liveness and readiness; public, for load balancers.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let (code, status, database) = match state.db.ping().await {
        Ok(_) => (StatusCode::OK, "ok", "ok".to_owned()),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "degraded",
                "unavailable".to_owned(),
            )
        }
    };
    (
        code,
        ApiJson(Health {
            status: status.into(),
            database,
        }),
    )
}

/// Prometheus metrics; operators, admins and auditors.
#[utoipa::path(get, path = "/metrics", tag = "system", security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<impl IntoResponse> {
    Ok((
        [("content-type", "text/plain; version=0.0.4")],
        svc::metrics(&state, &caller).await?,
    ))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub sub: String,
    pub roles: Vec<String>,
}

/// Who the token says you are.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "system", security(("bearer" = [])),
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
pub async fn whoami(caller: Caller) -> ApiJson<WhoAmI> {
    ApiJson(WhoAmI {
        sub: caller.sub.to_string(),
        roles: caller.roles.iter().map(|r| r.as_str().to_owned()).collect(),
    })
}

/// The gateway's token-signing key as a JWKS (public halves only, made at start).
pub async fn jwks(State(state): State<AppState>) -> ApiJson<serde_json::Value> {
    ApiJson(state.jwks.clone())
}

#[derive(Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Only events after this sequence number.
    pub after: Option<i64>,
    /// At most this many events (default 100, at most 1000).
    pub limit: Option<i64>,
    /// Only events about this subject (an application or project id).
    pub subject: Option<String>,
}

/// Reads the audit log, oldest first; auditors and admins.
#[utoipa::path(get, path = "/api/v1/audit", tag = "system", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = Vec<StoredEvent>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn audit_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<ApiJson<Vec<StoredEvent>>> {
    let events = svc::audit_events(&state, &caller, q.after, q.subject.as_deref(), q.limit).await?;
    Ok(ApiJson(events))
}
