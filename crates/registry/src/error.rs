//! Distribution's error codes and the `{"errors":[...]}` body, mapped to HTTP in one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// The error codes of the distribution spec (plus distribution's extras).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    TagInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    RangeInvalid,
    PaginationNumberInvalid,
    Unknown,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::TagInvalid => "TAG_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::RangeInvalid => "RANGE_INVALID",
            Code::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            Code::Unknown => "UNKNOWN",
        }
    }

    /// distribution's registry/api/errcode messages.
    pub fn message(self) -> &'static str {
        match self {
            Code::BlobUnknown => "blob unknown to registry",
            Code::BlobUploadInvalid => "blob upload invalid",
            Code::BlobUploadUnknown => "blob upload unknown to registry",
            Code::DigestInvalid => "provided digest did not match uploaded content",
            Code::ManifestBlobUnknown => "blob unknown to registry",
            Code::ManifestInvalid => "manifest invalid",
            Code::ManifestUnknown => "manifest unknown",
            Code::NameInvalid => "invalid repository name",
            Code::NameUnknown => "repository name not known to registry",
            Code::SizeInvalid => "provided length did not match content length",
            Code::TagInvalid => "manifest tag did not match URI",
            Code::Unauthorized => "authentication required",
            Code::Denied => "requested access to the resource is denied",
            Code::Unsupported => "The operation is unsupported.",
            Code::RangeInvalid => "invalid content range",
            Code::PaginationNumberInvalid => "invalid number of results requested",
            Code::Unknown => "unknown error",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::BlobUnknown
            | Code::BlobUploadUnknown
            | Code::ManifestUnknown
            | Code::NameUnknown => StatusCode::NOT_FOUND,
            Code::BlobUploadInvalid
            | Code::DigestInvalid
            | Code::ManifestBlobUnknown
            | Code::ManifestInvalid
            | Code::NameInvalid
            | Code::SizeInvalid
            | Code::TagInvalid
            | Code::PaginationNumberInvalid => StatusCode::BAD_REQUEST,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Denied => StatusCode::FORBIDDEN,
            Code::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Code::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// One registry error: a code, an optional message override, a JSON detail and an optional
/// status override (413 for oversized manifests, as the OCI spec asks).
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", code.as_str(), message.as_deref().unwrap_or(code.message()))]
pub struct RegistryError {
    pub code: Code,
    pub message: Option<String>,
    pub detail: serde_json::Value,
    pub status: Option<StatusCode>,
    /// Extra response headers (WWW-Authenticate, Content-Range on 416).
    pub headers: Vec<(&'static str, String)>,
}

impl RegistryError {
    pub fn new(code: Code) -> RegistryError {
        RegistryError {
            code,
            message: None,
            detail: serde_json::Value::Null,
            status: None,
            headers: Vec::new(),
        }
    }
    pub fn detail(mut self, d: impl Into<serde_json::Value>) -> Self {
        self.detail = d.into();
        self
    }
    pub fn message(mut self, m: impl Into<String>) -> Self {
        self.message = Some(m.into());
        self
    }
    pub fn status(mut self, s: StatusCode) -> Self {
        self.status = Some(s);
        self
    }
    pub fn header(mut self, k: &'static str, v: String) -> Self {
        self.headers.push((k, v));
        self
    }
    /// Storage failures: logged, reported as UNKNOWN/500 without leaking paths.
    pub fn internal(e: impl std::fmt::Display) -> RegistryError {
        tracing::error!("internal error: {e}");
        RegistryError::new(Code::Unknown)
    }
}

impl From<std::io::Error> for RegistryError {
    fn from(e: std::io::Error) -> Self {
        RegistryError::internal(e)
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let status = self.status.unwrap_or(self.code.status());
        // A struct, not json!(), to keep distribution's field order (code, message, detail).
        #[derive(serde::Serialize)]
        struct Item<'a> {
            code: &'a str,
            message: &'a str,
            detail: &'a serde_json::Value,
        }
        #[derive(serde::Serialize)]
        struct Body<'a> {
            errors: [Item<'a>; 1],
        }
        let body = serde_json::to_string(&Body {
            errors: [Item {
                code: self.code.as_str(),
                message: self.message.as_deref().unwrap_or(self.code.message()),
                detail: &self.detail,
            }],
        })
        .unwrap_or_default();
        let mut resp = (
            status,
            [("content-type", "application/json; charset=utf-8")],
            body,
        )
            .into_response();
        for (k, v) in self.headers {
            if let Ok(v) = v.parse() {
                resp.headers_mut().insert(k, v);
            }
        }
        resp
    }
}

pub type Result<T> = std::result::Result<T, RegistryError>;
