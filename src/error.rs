//! The one error type of the domain layer and its single mapping to HTTP.
//!
//! Variants name outcomes, not causes. Internal details are logged here and never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

/// Result alias used from stores up to handlers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The workspace is locked; carries the holder's lock JSON exactly as it was sent.
    #[error("state is locked")]
    Locked(Bytes),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// A well-formed request whose fields are refused: one message per field, all answered.
    #[error("{}", .0.join("; "))]
    Unprocessable(Vec<String>),
    #[error("request body is larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("authentication required")]
    Unauthenticated,
    #[error("the token does not grant this action")]
    Forbidden,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Too many attempts; carries the seconds until the next one may succeed.
    #[error("too many attempts; retry later")]
    TooManyRequests(u64),
    /// An OAuth token-endpoint refusal (RFC 6749 §5.2 `error` code and description).
    #[error("{1}")]
    OAuth(&'static str, &'static str),
    /// A dependency (database, blob store) is unreachable; clients should retry.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    pub fn conflict(msg: impl Into<String>) -> Self {
        Error::Conflict(msg.into())
    }

    /// A unique-key violation from the database becomes 409 with `message`; anything else
    /// passes unchanged.
    pub fn or_conflict(self, message: impl FnOnce() -> String) -> Error {
        match &self {
            Error::Internal(e)
                if e.downcast_ref::<sqlx::Error>().is_some_and(
                    |e| matches!(e, sqlx::Error::Database(db) if db.is_unique_violation()),
                ) =>
            {
                Error::Conflict(message())
            }
            _ => self,
        }
    }

    /// Whether the database may have applied the change although this error came back: the
    /// connection failed, possibly while a commit was in flight. Whatever a committed row would
    /// refer to (a freshly stored blob above all) must then be kept; `terrace sweep` removes it
    /// if no row came to refer to it.
    pub fn may_have_committed(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Internal(_))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            // Terraform treats 409 and 423 alike and reads the body as the holder's lock info.
            Error::Locked(_) => StatusCode::LOCKED,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Unauthenticated => StatusCode::UNAUTHORIZED,
            Error::Forbidden => StatusCode::FORBIDDEN,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::OAuth(_, _) => StatusCode::BAD_REQUEST,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match err {
            // Connection-level failures did not change anything: tell the client to retry.
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Error::Unavailable(err.into()),
            sqlx::Error::Database(ref db) if is_transient(db.as_ref()) => {
                Error::Unavailable(anyhow::Error::new(err).context("database"))
            }
            other => Error::Internal(anyhow::Error::new(other).context("database")),
        }
    }
}

/// Database errors that say the server, not the request, is at fault and nothing was
/// changed. PostgreSQL SQLSTATEs: connection exceptions (08), insufficient resources (53, e.g.
/// too many connections), operator intervention (57: shutdown, restart, "starting up"), and
/// serialization failures and deadlocks (40001, 40P01), which a retry resolves. SQLite: busy
/// or locked (primary codes 5 and 6) after the busy timeout, the same kind of contention.
fn is_transient(err: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(code) = err.code() else { return false };
    if err
        .try_downcast_ref::<sqlx::sqlite::SqliteError>()
        .is_some()
    {
        return code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6));
    }
    ["08", "53", "57"]
        .iter()
        .any(|class| code.starts_with(class))
        || matches!(code.as_ref(), "40001" | "40P01")
}

impl From<object_store::Error> for Error {
    fn from(err: object_store::Error) -> Self {
        Error::Unavailable(anyhow::Error::new(err).context("blob store"))
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Error::Internal(e) => tracing::error!(error = format!("{e:#}"), "request failed"),
            Error::Unavailable(e) => {
                tracing::warn!(error = format!("{e:#}"), "dependency unavailable")
            }
            _ => {}
        }
        let retry_after = match &self {
            Error::TooManyRequests(secs) => Some(*secs),
            Error::Unavailable(_) => Some(2),
            _ => None,
        };
        let mut response = match self {
            Error::Locked(holder) => {
                (status, [(header::CONTENT_TYPE, "application/json")], holder).into_response()
            }
            Error::OAuth(code, description) => {
                let body = serde_json::json!({
                    "error": code,
                    "error_description": description,
                    "errors": [description],
                });
                (status, axum::Json(body)).into_response()
            }
            Error::Unprocessable(messages) => (
                status,
                axum::Json(serde_json::json!({ "errors": messages })),
            )
                .into_response(),
            other => {
                let body = serde_json::json!({ "errors": [other.to_string()] });
                (status, axum::Json(body)).into_response()
            }
        };
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"terrace\", Bearer realm=\"terrace\""),
            );
        }
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}
