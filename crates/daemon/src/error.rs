//! The one place where an error kind becomes an HTTP status, with Docker's body shape.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_api::{Error, ErrorKind};

pub type ApiResult<T> = std::result::Result<T, ApiError>;

#[derive(Debug)]
pub struct ApiError(pub Error);

pub fn http_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotModified => StatusCode::NOT_MODIFIED,
        ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = http_status(self.0.kind);
        if status == StatusCode::NOT_MODIFIED {
            // A 304 carries no body.
            return status.into_response();
        }
        if status.is_server_error() {
            tracing::warn!(error = %self.0.message, "request failed");
        }
        (
            status,
            axum::Json(serde_json::json!({ "message": self.0.message })),
        )
            .into_response()
    }
}

impl<E: Into<Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}
