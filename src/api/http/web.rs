//! The dashboard: the static web app in `web/`, compiled into the binary with
//! `include_bytes!` (so `cargo build` alone makes a binary that serves it, and
//! nothing is read from disk or the network at run time).
//!
//! `GET /` redirects to `/ui/jobs` (`POST /` is the inference task, in
//! [`super::inference_protocol`]); every `/ui/...` page path answers
//! `index.html` and the app routes in the browser, so each job, model and
//! dataset has a URL that can be shared and reloaded; files are under
//! `/ui/assets/`. These are plain axum routes: they stay out of the OpenAPI
//! document and are open without the API key, because the pages hold no data —
//! they call the API, which asks for the key.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::api::ApiError;

/// A file of `web/`, by its path there.
struct Asset {
    path: &'static str,
    bytes: &'static [u8],
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(Asset {
            path: $path,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $path)),
        }),*]
    };
}

/// Every file the dashboard loads (a test checks this list against `web/`).
static ASSETS: &[Asset] = assets![
    "index.html",
    "app.js",
    "api.js",
    "ui.js",
    "charts.js",
    "tryit.js",
    "style.css",
    "pages/jobs.js",
    "pages/job.js",
    "pages/compare.js",
    "pages/models.js",
    "pages/model.js",
    "pages/datasets.js",
    "pages/dataset.js",
    "pages/new-job.js",
    "vendor/uplot-1.6.32/uPlot.iife.min.js",
    "vendor/uplot-1.6.32/uPlot.min.css",
    "vendor/uplot-1.6.32/LICENSE",
];

/// Same-origin everything: no CDN, font or script from elsewhere can load,
/// and the page can only call this service.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// `/` (a redirect to `/ui/jobs`) and the `/ui` pages and assets, all open without
/// the API key.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/jobs") }))
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/{*path}", get(ui))
}

/// `/ui/assets/...` is a file; any other `/ui/...` path is a page of the app.
async fn ui(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match path.strip_prefix("assets/") {
        Some(file) => serve(file, &headers),
        None => serve("index.html", &headers),
    }
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        return ApiError::NotFound {
            what: "dashboard file",
            id: path.to_string(),
        }
        .into_response();
    };
    let asset = &ASSETS[i];
    let etag = &etags()[i];
    // Versioned vendor folders never change; our own files are revalidated
    // (a cheap 304) so a new binary's dashboard shows at once.
    let cache = if asset.path.starts_with("vendor/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut out = HeaderMap::new();
    out.insert(ETAG, etag.clone());
    out.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    out.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    out.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    out.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    (out, asset.bytes).into_response()
}

/// One strong ETag per asset (a hash of its bytes), computed once.
fn etags() -> &'static [HeaderValue] {
    static ETAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let tag = format!("\"{:016x}\"", fnv1a(a.bytes));
                HeaderValue::from_str(&tag).expect("hex is a valid header value")
            })
            .collect()
    })
}

/// FNV-1a, 64 bits: enough to tell two versions of a file apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "text/plain; charset=utf-8",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn call(uri: &str, etag: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = Request::get(uri);
        if let Some(tag) = etag {
            req = req.header(IF_NONE_MATCH, tag);
        }
        let resp = router::<()>()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (parts.status, parts.headers, bytes.to_vec())
    }

    #[test]
    fn every_file_of_web_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut found = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_none_or(|e| e != "md") {
                    let rel = path.strip_prefix(&root).unwrap();
                    found.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        found.sort();
        let mut listed: Vec<String> = ASSETS.iter().map(|a| a.path.to_string()).collect();
        listed.sort();
        assert_eq!(found, listed, "web/ and the ASSETS list of web.rs differ");
    }

    #[tokio::test]
    async fn pages_answer_the_app_and_files_their_type() {
        let (status, headers, body) = call("/ui/jobs/job-123", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(String::from_utf8(body)
            .unwrap()
            .contains("/ui/assets/app.js"));
        assert!(headers[CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'self'"));
        for uri in ["/ui", "/ui/", "/ui/compare"] {
            assert_eq!(call(uri, None).await.0, StatusCode::OK, "{uri}");
        }

        let (status, headers, _) = call("/ui/assets/pages/job.js", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(headers[CACHE_CONTROL], "no-cache");
        let (_, headers, _) = call("/ui/assets/vendor/uplot-1.6.32/uPlot.min.css", None).await;
        assert_eq!(headers[CONTENT_TYPE], "text/css; charset=utf-8");
        assert!(headers[CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable"));

        let (status, _, body) = call("/ui/assets/nope.js", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(String::from_utf8(body).unwrap().contains("not_found"));
    }

    #[tokio::test]
    async fn an_unchanged_file_is_not_sent_again() {
        let (_, headers, _) = call("/ui/assets/app.js", None).await;
        let tag = headers[ETAG].to_str().unwrap().to_string();
        let (status, _, body) = call("/ui/assets/app.js", Some(&tag)).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        let (status, _, _) = call("/ui/assets/app.js", Some("\"other\"")).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn the_root_leads_to_the_dashboard() {
        let (status, headers, _) = call("/", None).await;
        assert!(status.is_redirection());
        assert_eq!(headers["location"], "/ui/jobs");
    }
}
