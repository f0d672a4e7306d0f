//! Serve's errors. [`ServeError`] is what goes wrong inside the server (a
//! catalog read, a store, a run that cannot start); [`ApiError`] *is* the HTTP
//! answer: a status and `{"error": "one line"}`, with every registered secret
//! masked. Handlers return `Result<_, ApiError>` and never build an error
//! response by hand.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use thiserror::Error;

use crate::catalog::CatalogError;
use crate::config::ConfigError;
use crate::error::{EXIT_USAGE, Error};
use crate::scan::ScanError;
use crate::store::StoreError;

/// What went wrong inside the server.
#[derive(Debug, Error)]
pub enum ServeError {
    /// A library call (session, scan, fill, run) failed.
    #[error(transparent)]
    Work(#[from] Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error("serve: cannot use listen address {addr:?}: {message}")]
    ListenAddress { addr: String, message: String },
    #[error("serve: cannot listen on {addr}: {message}")]
    Bind { addr: String, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("a background task failed: {0}")]
    Task(String),
    #[error("the server is stopping")]
    Stopping,
}

impl ServeError {
    /// A store or catalog that may answer later: the caller should retry.
    fn is_transient(&self) -> bool {
        match self {
            ServeError::Store(e) => !e.is_configuration(),
            ServeError::Scan(ScanError::Read { .. }) => true,
            ServeError::Scan(ScanError::Store(e)) => !e.is_configuration(),
            ServeError::Work(Error::Store(e)) => !e.is_configuration(),
            ServeError::Catalog(CatalogError::Sql(_)) => true,
            ServeError::Report(crate::report::ReportError::Catalog(CatalogError::Sql(_))) => true,
            ServeError::Stopping => true,
            _ => false,
        }
    }
}

/// The entry point reports serve's failures like every command's: usage
/// mistakes exit 2, the rest 1.
impl From<ServeError> for Error {
    fn from(e: ServeError) -> Self {
        match e {
            ServeError::Work(e) => e,
            ServeError::Config(e) => Error::Config(e),
            ServeError::Catalog(e) => Error::Catalog(e),
            ServeError::Store(e) => Error::Store(e),
            ServeError::Report(e) => Error::from(e),
            ServeError::Scan(e) => Error::from(e),
            e @ (ServeError::ListenAddress { .. } | ServeError::Usage(_)) => {
                Error::Usage(e.to_string())
            }
            e => Error::Runtime(e.to_string()),
        }
    }
}

/// An HTTP error answer.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or wrong API token (send Authorization: Bearer <token>)")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The dataset has a run in progress (here or in another process).
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than 1 MiB")]
    TooLarge,
    /// The store or catalog cannot be read now; the sender should retry.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn unknown_dataset(name: &str) -> ApiError {
        ApiError::NotFound(format!("unknown dataset {name:?}"))
    }

    /// The answer for an error status that some layer produced without a
    /// body of ours (a rejected extractor, a body over the limit).
    pub fn for_status(status: StatusCode, detail: &str) -> ApiError {
        let detail = detail.trim();
        let or = |default: &str| {
            if detail.is_empty() {
                default.to_string()
            } else {
                detail.to_string()
            }
        };
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge,
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized,
            StatusCode::NOT_FOUND => ApiError::NotFound(or("no such path")),
            StatusCode::METHOD_NOT_ALLOWED => {
                ApiError::MethodNotAllowed(or("method not allowed on this path"))
            }
            StatusCode::CONFLICT => ApiError::Conflict(or("conflict")),
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(or("unavailable")),
            s if s.is_server_error() => ApiError::Internal(or("internal error")),
            _ => ApiError::BadRequest(or("bad request")),
        }
    }
}

impl From<ServeError> for ApiError {
    fn from(e: ServeError) -> Self {
        let message = e.to_string();
        if e.is_transient() {
            return ApiError::Unavailable(message);
        }
        match e {
            ServeError::Catalog(CatalogError::UnknownDataset(_)) => ApiError::NotFound(message),
            ServeError::Work(Error::Catalog(CatalogError::UnknownDataset(_))) => {
                ApiError::NotFound(message)
            }
            ServeError::Work(ref w) if w.exit_code() == EXIT_USAGE => ApiError::BadRequest(message),
            ServeError::Usage(_) => ApiError::BadRequest(message),
            _ => ApiError::Internal(message),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::from(ServeError::from(e))
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        ApiError::from(ServeError::from(e))
    }
}

/// Marks a response whose error body is already ours (the message, for the
/// HTML page a browser gets instead).
#[derive(Debug, Clone)]
pub struct ErrorMessage(pub String);

/// The body of every error answer.
#[derive(Serialize)]
pub struct ErrorBody {
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: crate::redact::one_line(&self.to_string()),
        };
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %body.error, "request failed");
        }
        let message = ErrorMessage(body.error.clone());
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(message);
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"slotfill\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_ask_the_sender_to_retry() {
        let store = ServeError::Store(StoreError::Unreachable {
            location: "s3://b/p".into(),
            message: "connection refused".into(),
        });
        assert_eq!(
            ApiError::from(store).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let denied = ServeError::Store(StoreError::Denied {
            location: "s3://b/p".into(),
            code: "AccessDenied".into(),
        });
        assert_eq!(
            ApiError::from(denied).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let unknown = ServeError::Catalog(CatalogError::UnknownDataset("x".into()));
        assert_eq!(ApiError::from(unknown).status(), StatusCode::NOT_FOUND);
        let usage = ServeError::Work(Error::Usage("bad window".into()));
        assert_eq!(ApiError::from(usage).status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            Error::from(ServeError::ListenAddress {
                addr: "x".into(),
                message: "y".into()
            })
            .exit_code(),
            EXIT_USAGE
        );
    }
}
