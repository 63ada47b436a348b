//! The one error type of the HTTP API: a stable `code`, a message for people, and a status.
//!
//! Details of internal failures go to the log, never to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::auth::AuthError;
pub use crate::wire::errors::{ErrorBody, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    #[error("{0}")]
    Forbidden(String),
    #[error("{code}: {message}")]
    ForbiddenCode { code: ErrorCode, message: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    BadRequest { code: ErrorCode, message: String },
    /// A 400 about a document's fields, each named in the body.
    #[error("{message}")]
    BadFields {
        code: ErrorCode,
        message: String,
        fields: Vec<crate::wire::errors::FieldProblem>,
    },
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String },
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    /// A refusal with its own status and code (archive rules).
    #[error("{message}")]
    Refused {
        status: StatusCode,
        code: ErrorCode,
        message: String,
    },
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }
    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::ForbiddenCode { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest { .. } | ApiError::BadFields { .. } => StatusCode::BAD_REQUEST,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Refused { status, .. } => *status,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::ForbiddenCode { code, .. } => *code,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::BadRequest { code, .. }
            | ApiError::BadFields { code, .. }
            | ApiError::Conflict { code, .. } => *code,
            ApiError::TooLarge(_) => ErrorCode::TooLarge,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::Refused { code, .. } => *code,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(anyhow::Error::new(e).context("database"))
    }
}

impl From<policy::review::Refusal> for ApiError {
    fn from(r: policy::review::Refusal) -> Self {
        use policy::review::Refusal as R;
        let message = r.to_string();
        match r {
            R::OwnApplication | R::ConflictOfInterest | R::OwnOpinion | R::ConflictedOpinion => {
                ApiError::ForbiddenCode {
                    code: ErrorCode::SeparationOfDuties,
                    message,
                }
            }
            R::NotRequester { .. } => ApiError::ForbiddenCode {
                code: ErrorCode::NotRequester,
                message,
            },
            R::AlreadyVoted { .. } => ApiError::conflict(ErrorCode::AlreadyVoted, message),
            R::NotOpen { .. } | R::WrongState { .. } | R::NothingToComplete { .. } => {
                ApiError::conflict(ErrorCode::WrongState, message)
            }
        }
    }
}

/// The engine's troubles: one that is away or misconfigured is a 503 the client can act on,
/// told without the paths of the gateway's host (its engine's socket) that the log keeps;
/// anything else is the gateway's own failure.
fn engine(e: sandbox_runner::Error) -> ApiError {
    match e {
        sandbox_runner::Error::Unavailable(_) | sandbox_runner::Error::Timeout(_) => {
            tracing::warn!(error = %e, "a request needed the container engine");
            ApiError::Refused {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: ErrorCode::EngineUnavailable,
                message: format!(
                    "{}; the rest of the gateway keeps serving",
                    sandbox_runner::without_paths(&e.to_string())
                ),
            }
        }
        sandbox_runner::Error::Misconfigured(_) => {
            tracing::warn!(error = %e, "a request needed the container engine");
            ApiError::Refused {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: ErrorCode::EngineMisconfigured,
                message: sandbox_runner::without_paths(&e.to_string()),
            }
        }
        other => ApiError::Internal(anyhow::anyhow!("container engine: {other}")),
    }
}

impl From<crate::service::Error> for ApiError {
    fn from(e: crate::service::Error) -> Self {
        use crate::service::Error as E;
        match e {
            E::NotFound(what) => ApiError::NotFound(what),
            E::Denied(d) => ApiError::Forbidden(d.to_string()),
            E::Forbidden { code, message } => ApiError::ForbiddenCode { code, message },
            E::Invalid { code, message } => ApiError::BadRequest { code, message },
            E::InvalidFields {
                code,
                message,
                fields,
            } => ApiError::BadFields {
                code,
                message,
                fields,
            },
            E::Conflict { code, message } => ApiError::Conflict { code, message },
            E::TooLarge(message) => ApiError::TooLarge(message),
            E::TooMany { code, message } => ApiError::Refused {
                status: StatusCode::TOO_MANY_REQUESTS,
                code,
                message,
            },
            E::Unsupported { code, message } => ApiError::Refused {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code,
                message,
            },
            E::Refused { code, message } => ApiError::Refused {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code,
                message,
            },
            E::Archive {
                code,
                message,
                size_limit,
            } => ApiError::Refused {
                status: if size_limit {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                },
                code,
                message,
            },
            E::Review(r) => r.into(),
            E::Engine(e) => engine(e),
            E::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "request failed");
                "internal error; the gateway's log has the details".to_owned()
            }
            other => other.to_string(),
        };
        let fields = match &self {
            ApiError::BadFields { fields, .. } => Some(fields.clone()),
            _ => None,
        };
        let mut resp = (
            status,
            Json(ErrorBody {
                code: self.code(),
                message,
                fields,
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
