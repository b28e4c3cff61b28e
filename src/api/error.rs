//! The one error type at the HTTP edge, and extractors whose rejections speak
//! its schema: `{"error": {"code", "message", "param"}}`.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

/// Every error a handler answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not what the endpoint reads (400).
    #[error("{0}")]
    BadRequest(String),
    /// A field is missing, unknown or out of range (422).
    #[error("{message}")]
    Validation {
        /// What is wrong.
        message: String,
        /// The field at fault (dotted path), if one.
        param: Option<String>,
        /// Row errors of a dataset upload.
        details: Option<serde_json::Value>,
    },
    /// Missing or wrong API key (401).
    #[error("missing or invalid API key: send `Authorization: Bearer <key>`")]
    Unauthorized,
    /// No such resource (404).
    #[error("{what} `{id}` not found")]
    NotFound {
        /// What was looked for, as the message names it (`job`, `dataset`, `route`, …).
        what: &'static str,
        /// The id the client asked for, as given.
        id: String,
    },
    /// The resource's state forbids the action (409).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than allowed (413).
    #[error("the request body is too large for this endpoint (limits: --max-json-bytes, --max-dataset-bytes)")]
    TooLarge,
    /// No route takes this method on this path (405; the `Allow` header
    /// lists those that do).
    #[error(
        "method `{method}` is not allowed on `{path}` (the Allow header lists those that are)"
    )]
    MethodNotAllowed {
        /// The request's method, cut to 32 bytes.
        method: String,
        /// The request's path, without its query.
        path: String,
    },
    /// The URI is longer than the service reads (414).
    #[error("the URI is longer than {limit} bytes")]
    UriTooLong {
        /// The longest URI taken, in bytes.
        limit: usize,
    },
    /// Too much work already waiting (429, with `Retry-After`).
    #[error("{0}")]
    Overloaded(String),
    /// An upstream service (the Hugging Face Hub) failed or is out of reach (502).
    #[error("{0}")]
    BadGateway(String),
    /// Not ready to answer, or the database is out of reach (503, with
    /// `Retry-After`).
    #[error("{0}")]
    Unavailable(String),
    /// The disk the data folder (or the database) lives on is full (507).
    #[error("{0}")]
    InsufficientStorage(String),
    /// Anything else (500): its cause is logged with its whole chain of
    /// sources (by [`crate::api::middleware::log_server_errors`]), never shown.
    #[error("internal error")]
    Internal(#[source] Cause),
    /// An error answered below the handlers (axum's rejections, the request
    /// timeout), given this body by [`crate::api::middleware::json_errors`].
    #[error("{message}")]
    Http {
        /// The status answered (a 4xx or 5xx), kept as it was.
        status: StatusCode,
        /// What went wrong, as the client reads it (for an answer that had no body, the
        /// status's reason in lower case).
        message: String,
    },
}

/// What made a 500: the error itself, its sources intact for the log.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// The error an [`ApiError`] response was made from, kept in the
/// response's extensions for the layer that logs server errors.
#[derive(Debug, Clone)]
pub(crate) struct AnsweredError(pub std::sync::Arc<ApiError>);

/// Seconds a client told 429 should wait before trying again.
const RETRY_AFTER_SECS: &str = "1";
/// Seconds a client told 503 should wait: about what the database takes to
/// come back from a restart.
const RETRY_UNAVAILABLE_SECS: &str = "5";

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// What every error answer's `error` holds.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable machine-readable code.
    code: &'static str,
    /// What went wrong, for people.
    message: String,
    /// The request field at fault, if one.
    param: Option<String>,
    /// A dataset upload's row errors, in line order (present only then).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::data::RowError>>)]
    details: Option<serde_json::Value>,
}

impl ApiError {
    /// A 422 naming `param`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation {
            message: message.into(),
            param: Some(param.into()),
            details: None,
        }
    }

    /// A 500 caused by `cause`.
    pub fn internal(cause: impl Into<Cause>) -> Self {
        Self::Internal(cause.into())
    }

    /// A 500 caused by `cause`, met while doing `what` ("reading an upload").
    pub fn internal_while<E>(what: &'static str, cause: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Self::internal(anyhow::Error::new(cause).context(what))
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::Validation { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "validation_error"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::UriTooLong { .. } => (StatusCode::URI_TOO_LONG, "uri_too_long"),
            Self::Overloaded(_) => (StatusCode::TOO_MANY_REQUESTS, "overloaded"),
            Self::BadGateway(_) => (StatusCode::BAD_GATEWAY, "bad_gateway"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::InsufficientStorage(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
            }
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
            Self::Http { status, .. } => (*status, code_of(*status)),
        }
    }
}

/// The code of an error status the handlers do not make themselves.
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation_error",
        StatusCode::TOO_MANY_REQUESTS => "overloaded",
        StatusCode::BAD_GATEWAY => "bad_gateway",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::INSUFFICIENT_STORAGE => "insufficient_storage",
        s if s.is_server_error() => "internal_error",
        _ => "invalid_request",
    }
}

/// The JSON error body and its status (and `Retry-After` or
/// `WWW-Authenticate` where they apply); the error itself goes into the
/// response's extensions ([`AnsweredError`]), where the logging layer finds
/// it: answering logs nothing.
impl IntoResponse for ApiError {
    fn into_response(mut self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            Self::Internal(_) => "internal server error".to_string(),
            other => other.to_string(),
        };
        let (param, details) = match &mut self {
            Self::Validation { param, details, .. } => (param.take(), details.take()),
            _ => (None, None),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                param,
                details,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        let extra = match status {
            StatusCode::TOO_MANY_REQUESTS => Some((RETRY_AFTER, RETRY_AFTER_SECS)),
            StatusCode::SERVICE_UNAVAILABLE => Some((RETRY_AFTER, RETRY_UNAVAILABLE_SECS)),
            StatusCode::UNAUTHORIZED => Some((WWW_AUTHENTICATE, "Bearer")),
            _ => None,
        };
        if let Some((name, value)) = extra {
            let value = HeaderValue::from_static(value);
            response.headers_mut().insert(name, value);
        }
        (response.extensions_mut()).insert(AnsweredError(std::sync::Arc::new(self)));
        response
    }
}

/// A file operation that failed while serving a request: 507 when the disk
/// is full, saying how much was left (not where: the data folder's location
/// is the server's), otherwise 500 (logged with the path).
impl From<crate::atomic::IoError> for ApiError {
    fn from(e: crate::atomic::IoError) -> Self {
        match crate::fault::is_disk_full(&e.source) {
            true => Self::InsufficientStorage(format!(
                "no space left on the data folder's disk{}; free space and try again",
                e.note()
            )),
            false => Self::internal(e),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::internal_while("running a blocking task", e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, id } => Self::NotFound { what, id },
            StoreError::Conflict(message) => Self::Conflict(message),
            e if e.is_disk_full() => Self::InsufficientStorage(format!(
                "the database's disk is full; free space and try again ({e})"
            )),
            e if e.is_unreachable() => Self::Unavailable(format!(
                "the database is out of reach; try again shortly ({e})"
            )),
            other => Self::internal(other),
        }
    }
}

/// A JSON body whose problems are [`ApiError`]s: not JSON → 400, a wrong,
/// missing or unknown field → 422 naming it (`hyperparameters.epochs`,
/// `inputs[1]`), too large → 413, another content type → 400.
///
/// The field comes from the deserializer's path (`serde_path_to_error`), not
/// from the error's text; only a *missing* field's name exists nowhere else
/// than in serde's message for it (see [`missing_field`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            })
            .is_some_and(|m| m == "application/json" || m.ends_with("+json"));
        if !json_type {
            return Err(ApiError::BadRequest(
                "expected `Content-Type: application/json`".into(),
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge,
                _ => ApiError::BadRequest(rejection.body_text()),
            })?;
        parse_json(&bytes).map(Self)
    }
}

/// Deserializes `bytes` as a whole JSON document into `T`.
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.classify() != serde_json::error::Category::Data {
            return ApiError::BadRequest(format!("malformed JSON: {inner}"));
        }
        let path = e.path().to_string();
        let message = match path.as_str() {
            "." => inner.to_string(),
            _ => format!("{path}: {inner}"),
        };
        let parent = (path != ".").then_some(path);
        let param = match (parent, missing_field(inner)) {
            (Some(p), Some(f)) => Some(format!("{p}.{f}")),
            (p, f) => f.or(p),
        };
        ApiError::Validation {
            message,
            param,
            details: None,
        }
    })?;
    de.end()
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// The field a "missing field" error is about. serde writes no structured
/// trace of it, only `missing field `name`` (its `Error::missing_field`);
/// a test pins that form.
fn missing_field(e: &serde_json::Error) -> Option<String> {
    let text = e.to_string();
    let rest = text.strip_prefix("missing field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` whose rejections are 422 [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(Self)
    }
}

/// Deserializes a query string into `T`; a 422 names the parameter at fault.
fn parse_query<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let param = match path.as_str() {
            "." => named_field(&inner.to_string()),
            _ => Some(path.clone()),
        };
        let message = match path.as_str() {
            "." => format!("invalid query string: {inner}"),
            _ => format!("invalid query parameter `{path}`: {inner}"),
        };
        ApiError::Validation {
            message,
            param,
            details: None,
        }
    })
}

/// The field serde's "missing field `x`" or "unknown field `x`" is about
/// (serde writes no structured trace of it, only the text).
fn named_field(text: &str) -> Option<String> {
    let rest = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| text.strip_prefix(prefix))?;
    Some(rest[..rest.find('`')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Option<Inner>,
        list: Option<Vec<u32>>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        epochs: u32,
    }

    fn param(body: &str) -> (Option<String>, String) {
        match parse_json::<Outer>(body.as_bytes()).unwrap_err() {
            ApiError::Validation { param, message, .. } => (param, message),
            other => panic!("not a 422: {other:?}"),
        }
    }

    #[test]
    fn fields_at_fault_come_from_the_path() {
        let (p, m) = param(r#"{"name": "a", "inner": {"epochz": 1}}"#);
        assert_eq!(p.as_deref(), Some("inner.epochz"), "{m}");
        let (p, _) = param(r#"{"name": "a", "inner": {"epochs": "x"}}"#);
        assert_eq!(p.as_deref(), Some("inner.epochs"));
        let (p, _) = param(r#"{"name": "a", "list": [1, "x"]}"#);
        assert_eq!(p.as_deref(), Some("list[1]"));
        let (p, m) = param(r#"{"inner": {"epochs": 1}}"#);
        assert_eq!(p.as_deref(), Some("name"), "{m}");
        let (p, _) = param(r#"{"name": "a", "inner": {}}"#);
        assert_eq!(
            p.as_deref(),
            Some("inner.epochs"),
            "serde's missing-field message"
        );
        assert!(matches!(
            parse_json::<Outer>(b"{\"name\": "),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_json::<Outer>(b"{\"name\": \"a\"} x"),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Page {
        limit: Option<i64>,
        after: Option<String>,
    }

    fn query_param(query: &str) -> Option<String> {
        match parse_query::<Page>(query).unwrap_err() {
            ApiError::Validation { param, .. } => param,
            other => panic!("not a 422: {other:?}"),
        }
    }

    #[test]
    fn query_errors_name_the_parameter() {
        assert_eq!(
            query_param("limit=9223372036854775808").as_deref(),
            Some("limit")
        );
        assert_eq!(query_param("limit=x&after=a").as_deref(), Some("limit"));
        assert_eq!(query_param("after=a&colour=red").as_deref(), Some("colour"));
        let page = parse_query::<Page>("limit=5&after=job-1").unwrap();
        assert_eq!(
            (page.limit, page.after.as_deref()),
            (Some(5), Some("job-1"))
        );
    }
}
