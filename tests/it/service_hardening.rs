//! What an outside tester tried: made-up methods and paths must not grow the
//! metrics, every error the framework makes (405, 408, 414, a bad path) is the
//! service's JSON error body, a query parameter that does not parse is a 422
//! naming it, and the API key's scheme is case-insensitive.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::test_app::{spawn_app, spawn_app_with};

/// Status, headers and JSON body of `method path`.
async fn call(
    app: &crate::test_app::TestApp,
    method: &str,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let resp = app
        .client
        .request(method, app.url(path))
        .send()
        .await
        .unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, headers, body)
}

#[tokio::test]
async fn made_up_methods_and_paths_share_one_metric_label() {
    let app = spawn_app().await;
    for i in 0..40 {
        let (status, _, _) = call(&app, &format!("MADEUP{i}"), "/health").await;
        assert_eq!(status, 405);
        let (status, _, _) = call(&app, "GET", &format!("/no-such-route-{i}")).await;
        assert_eq!(status, 404);
        let (status, _, _) = call(&app, "GET", &format!("/jobs/job-{i}")).await;
        assert_eq!(status, 404);
    }
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("tuneserve_http_requests_total{"))
        .collect();
    assert!(!series.iter().any(|l| l.contains("MADEUP")), "{series:#?}");
    assert!(!series.iter().any(|l| l.contains("no-such-route")));
    assert!(!series.iter().any(|l| l.contains("job-1")));
    let has = |method: &str, path: &str, status: u16| {
        let labels = [
            format!("method=\"{method}\""),
            format!("path=\"{path}\""),
            format!("status=\"{status}\""),
        ];
        series
            .iter()
            .any(|l| labels.iter().all(|label| l.contains(label.as_str())))
    };
    assert!(has("other", "/health", 405), "{series:#?}");
    assert!(has("GET", "unmatched", 404), "{series:#?}");
    assert!(has("GET", "/jobs/{id}", 404), "{series:#?}");
    app.stop().await;
}

#[tokio::test]
async fn framework_errors_are_json_too() {
    let app = spawn_app().await;
    // 405, with the methods that are allowed.
    let (status, headers, body) = call(&app, "DELETE", "/health").await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    let allow = headers.get("allow").and_then(|v| v.to_str().ok());
    assert!(allow.unwrap_or_default().contains("GET"), "{headers:?}");
    // 414 for a URI longer than the service reads.
    let long = format!("/health?pad={}", "a".repeat(10_000));
    let (status, _, body) = call(&app, "GET", &long).await;
    assert_eq!(status, 414, "{body}");
    assert_eq!(body["error"]["code"], "uri_too_long", "{body}");
    // A path axum cannot decode (its rejection is plain text).
    let (status, _, body) = call(&app, "GET", "/jobs/%FF").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request", "{body}");
    assert!(body["error"]["message"].as_str().is_some(), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_request_timeout_is_a_json_408() {
    let app = spawn_app_with(|c| c.request_timeout = Duration::from_millis(500)).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A body announced but never sent: the handler waits on it until the timeout.
    stream
        .write_all(
            b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("}}") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"timeout\""), "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app_with(|c| c.api_key = Some("s3cret".into())).await;
    let status = |authorization: &'static str| {
        let request = app.client.get(app.url("/jobs"));
        async move {
            let request = match authorization {
                "" => request,
                value => request.header("authorization", value),
            };
            request.send().await.unwrap().status().as_u16()
        }
    };
    for ok in [
        "Bearer s3cret",
        "bearer s3cret",
        "BEARER s3cret",
        "Bearer   s3cret",
    ] {
        assert_eq!(status(ok).await, 200, "{ok}");
    }
    for refused in [
        "",
        "Bearer",
        "Bearer ",
        "Bearer s3cre",
        "Bearer s3cret2",
        "Bearer S3CRET",
        "Basic s3cret",
        "Bearers3cret",
        "s3cret",
    ] {
        assert_eq!(status(refused).await, 401, "{refused}");
    }
    let resp = app.client.get(app.url("/jobs")).send().await.unwrap();
    assert!(resp.headers().contains_key("www-authenticate"));
    app.stop().await;
}

#[tokio::test]
async fn query_errors_name_their_parameter() {
    let app = spawn_app().await;
    let cases = [
        ("/jobs/job-0/events?limit=9223372036854775808", "limit"),
        ("/jobs?limit=ten", "limit"),
        ("/datasets?after=ds-0&colour=red", "colour"),
        ("/models?limit=-", "limit"),
    ];
    for (path, param) in cases {
        let (status, _, body) = call(&app, "GET", path).await;
        assert_eq!(status, 422, "{path}: {body}");
        assert_eq!(body["error"]["code"], "validation_error", "{path}: {body}");
        assert_eq!(body["error"]["param"], param, "{path}: {body}");
    }
    app.stop().await;
}
