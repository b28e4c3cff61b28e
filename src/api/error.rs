//! The one error type at the HTTP edge, and extractors whose rejections speak
//! its schema: `{"error": {"code", "message", "param"}}`.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
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
        /// The kind of resource.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The resource's state forbids the action (409).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than allowed (413).
    #[error("the request body is too large for this endpoint (limits: --max-json-bytes, --max-dataset-bytes)")]
    TooLarge,
    /// Too much work already waiting (429).
    #[error("{0}")]
    Overloaded(String),
    /// An upstream service (the Hugging Face Hub) failed or is out of reach (502).
    #[error("{0}")]
    BadGateway(String),
    /// Not ready to answer (503).
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (500): logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// The error schema.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable machine-readable code.
    code: &'static str,
    /// What went wrong, for people.
    message: String,
    /// The request field at fault, if one.
    param: Option<String>,
    /// Extra details (for example, a dataset's row errors).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
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

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::Validation { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "validation_error"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::Overloaded(_) => (StatusCode::TOO_MANY_REQUESTS, "overloaded"),
            Self::BadGateway(_) => (StatusCode::BAD_GATEWAY, "bad_gateway"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            Self::Internal(detail) => {
                tracing::error!("internal error: {detail}");
                "internal server error".to_string()
            }
            other => other.to_string(),
        };
        let (param, details) = match self {
            Self::Validation { param, details, .. } => (param, details),
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
        (status, axum::Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, id } => Self::NotFound { what, id },
            StoreError::Conflict(message) => Self::Conflict(message),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// `axum::Json` whose rejections are [`ApiError`]s: malformed JSON → 400,
/// a wrong, missing or unknown field → 422 naming it, too large → 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::TooLarge;
    }
    match rejection {
        JsonRejection::JsonDataError(e) => {
            let text = e.body_text();
            let detail = text
                .strip_prefix("Failed to deserialize the JSON body into the target type: ")
                .unwrap_or(&text)
                .to_string();
            ApiError::Validation {
                param: param_of(&detail),
                message: detail,
                details: None,
            }
        }
        JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest(format!(
            "malformed JSON: {}",
            e.body_text()
                .strip_prefix("Failed to parse the request body as JSON: ")
                .unwrap_or(&e.body_text())
        )),
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::BadRequest("expected `Content-Type: application/json`".into())
        }
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// The field a serde message is about: `path: unknown field `x`` gives
/// `path.x`; `path: invalid value …` gives `path`; `missing field `x`` gives `x`.
fn param_of(detail: &str) -> Option<String> {
    let backticked = |s: &str| {
        let start = s.find('`')? + 1;
        let len = s[start..].find('`')?;
        Some(s[start..start + len].to_string())
    };
    let (path, rest) = match detail.split_once(": ") {
        Some((p, r)) if !p.contains(' ') => (Some(p.to_string()), r),
        _ => (None, detail),
    };
    let path = path.filter(|p| p != ".");
    if rest.starts_with("unknown field") {
        // serde_path_to_error's path already ends with the unknown field.
        return path.or_else(|| backticked(rest));
    }
    let missing = rest
        .starts_with("missing field")
        .then(|| backticked(rest))
        .flatten();
    match (path, missing) {
        (Some(p), Some(f)) => Some(format!("{p}.{f}")),
        (Some(p), None) => Some(p),
        (None, f) => f,
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

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e: QueryRejection| ApiError::Validation {
                message: e.body_text(),
                param: None,
                details: None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::param_of;

    #[test]
    fn params_from_serde_messages() {
        let p = param_of("hyperparameters.epochz: unknown field `epochz`, expected one of `epochs` at line 1 column 9");
        assert_eq!(p.as_deref(), Some("hyperparameters.epochz"));
        let p = param_of("missing field `base_model` at line 1 column 2");
        assert_eq!(p.as_deref(), Some("base_model"));
        let p = param_of("hyperparameters.epochs: invalid type: string \"x\", expected usize");
        assert_eq!(p.as_deref(), Some("hyperparameters.epochs"));
    }
}
