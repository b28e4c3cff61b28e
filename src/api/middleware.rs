//! Request middleware: bearer-token auth, the URI length limit, the body
//! encodings taken (gzip or none), the JSON error body for errors answered
//! below the handlers (405, 408, axum's plain-text rejections), so that every
//! error has the same shape, and the log line of every server error (with
//! its cause chain, which the client never sees).

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::AnsweredError;
use super::ApiError;

/// Longest URI (path and query) the service reads; longer ones are 414.
pub const MAX_URI_BYTES: usize = 8 << 10;

/// Longest plain-text error body kept as the JSON error's message.
const MAX_MESSAGE_BYTES: usize = 1024;

/// The configured API key, kept only as its SHA-256 digest, computed once:
/// hashing it per request would take longer for longer keys.
#[derive(Debug, Clone, Copy)]
pub struct ApiKey(Option<[u8; 32]>);

impl ApiKey {
    /// `None`: no key is required.
    pub fn new(key: Option<&str>) -> Self {
        Self(key.map(|k| Sha256::digest(k.as_bytes()).into()))
    }
}

/// Requires `Authorization: Bearer <key>` when an API key is configured.
pub async fn require_api_key(State(key): State<ApiKey>, req: Request, next: Next) -> Response {
    let Some(expected) = key.0 else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| bearer_token(v.as_bytes()));
    match given {
        Some(token) if key_matches(token, &expected) => next.run(req).await,
        _ => ApiError::Unauthorized.into_response(),
    }
}

/// The credentials of a `Bearer` authorization: the scheme in any case
/// (RFC 7235 §2.1), then one or more spaces, then the token.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked("bearer".len())?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Whether `given` is the key whose digest is `expected`, in time that
/// depends on neither key: digests are the same size whatever the keys'
/// lengths and are compared in constant time (comparing the keys themselves
/// returns early on a length mismatch, which tells the key's length).
fn key_matches(given: &[u8], expected: &[u8; 32]) -> bool {
    Sha256::digest(given).ct_eq(expected).into()
}

/// Answers 414 to a URI longer than [`MAX_URI_BYTES`].
pub async fn limit_uri(req: Request, next: Next) -> Response {
    let len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if len > MAX_URI_BYTES {
        return ApiError::UriTooLong {
            limit: MAX_URI_BYTES,
        }
        .into_response();
    }
    next.run(req).await
}

/// Answers 415 to a body in a `Content-Encoding` other than `gzip` (which
/// the next layer decompresses, so every size limit counts decompressed
/// bytes) or `identity`, naming the encoding.
pub async fn accept_encodings(req: Request, next: Next) -> Response {
    let encodings = req.headers().get_all(CONTENT_ENCODING);
    let unsupported = encodings
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(|e| e.trim().to_ascii_lowercase())
        .find(|e| !matches!(e.as_str(), "gzip" | "x-gzip" | "identity" | ""));
    match unsupported {
        None => next.run(req).await,
        Some(mut encoding) => {
            encoding.truncate(32);
            ApiError::Http {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: format!(
                    "Content-Encoding `{encoding}` is not supported: send the body as is or gzip-compressed"
                ),
            }
            .into_response()
        }
    }
}

/// The 405 of every route: axum's is bodiless. axum adds the `Allow` header.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    let mut method = method.to_string();
    method.truncate(32);
    ApiError::MethodNotAllowed {
        method,
        path: uri.path().to_string(),
    }
}

/// Gives the JSON error body to an error response that is not JSON (an
/// empty one, or an axum rejection's plain text, which becomes the message);
/// the headers stay.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_MESSAGE_BYTES)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match (text.is_empty(), status.canonical_reason()) {
        (false, _) => text,
        (true, Some(reason)) => reason.to_lowercase(),
        (true, None) => format!("HTTP status {}", status.as_u16()),
    };
    parts.headers.remove(CONTENT_TYPE);
    parts.headers.remove(CONTENT_LENGTH);
    let error = ApiError::Http { status, message }.into_response();
    let (error, body) = error.into_parts();
    parts.headers.extend(error.headers);
    Response::from_parts(parts, body)
}

/// Logs each 5xx an [`ApiError`] answered, at error level with the chain of
/// its causes (`internal error: a blocking task failed: …`), in the
/// request's span. Answering an error logs nothing itself: this layer sees
/// every error response, including those of other layers.
pub async fn log_server_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if status.is_server_error() {
        if let Some(AnsweredError(error)) = response.extensions().get::<AnsweredError>() {
            let chain = cause_chain(error.as_ref());
            tracing::error!(status = status.as_u16(), "{chain}");
        }
    }
    response
}

/// `error: its source: that one's source: …`, leaving out a source whose text
/// its parent already shows (errors that print their source as well).
fn cause_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = error.to_string();
    let mut shown = chain.clone();
    let mut next = error.source();
    while let Some(source) = next {
        let text = source.to_string();
        if !shown.contains(&text) {
            chain = format!("{chain}: {text}");
        }
        shown = text;
        next = source.source();
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        assert_eq!(bearer_token(b"Bearer k"), Some(&b"k"[..]));
        assert_eq!(bearer_token(b"bearer k"), Some(&b"k"[..]));
        assert_eq!(bearer_token(b"BeArEr   k "), Some(&b"k"[..]));
        for refused in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearerk",
            b"Basic k",
            b"k",
            b"",
        ] {
            assert_eq!(bearer_token(refused), None, "{refused:?}");
        }
    }

    #[test]
    fn the_cause_chain_is_logged_once_each() {
        let io = std::io::Error::other("disk on fire");
        let error = ApiError::internal_while("reading an upload", io);
        assert_eq!(
            cause_chain(&error),
            "internal error: reading an upload: disk on fire"
        );
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.extensions().get::<AnsweredError>().is_some());
    }

    /// Through a router, without a socket: a 500's body says nothing of its
    /// cause, and the cause stays on the response for the log.
    #[tokio::test]
    async fn a_server_error_answers_the_same_body_and_keeps_its_cause() {
        use tower::ServiceExt;
        let router = axum::Router::new()
            .route(
                "/fail",
                axum::routing::get(|| async {
                    ApiError::internal_while("opening a model file", std::io::Error::other("gone"))
                }),
            )
            .layer(axum::middleware::from_fn(log_server_errors));
        let request = Request::builder()
            .uri("/fail")
            .body(axum::body::Body::empty());
        let response = router.oneshot(request.unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let Some(AnsweredError(error)) = response.extensions().get::<AnsweredError>().cloned()
        else {
            panic!("no error recorded")
        };
        assert!(cause_chain(error.as_ref()).ends_with("opening a model file: gone"));
        let body = axum::body::to_bytes(response.into_body(), 1 << 10).await;
        let body: serde_json::Value = serde_json::from_slice(&body.unwrap()).unwrap();
        let expected = serde_json::json!({"error": {"code": "internal_error",
            "message": "internal server error", "param": null}});
        assert_eq!(body, expected);
    }

    #[test]
    fn keys_of_any_length_compare() {
        let expected = ApiKey::new(Some("s3cret")).0.unwrap();
        assert!(key_matches(b"s3cret", &expected));
        for other in [&b"s3cre"[..], b"s3cret-and-more", b"S3CRET", b""] {
            assert!(!key_matches(other, &expected), "{other:?}");
        }
    }
}
