//! Faults at the edges of a job's life and of an upload: a cancel that lands
//! as the job succeeds (one of the two wins, and no model folder is left
//! without a row), and request bodies in gzip or as multipart forms.

use std::io::Write;

use serde_json::{json, Value};

use crate::test_app::{assert_error, spawn_app, spawn_app_with, tiny_dataset, TestApp};

/// POSTs `body` with the given content type and encoding.
async fn post_encoded(
    app: &TestApp,
    content_type: &str,
    encoding: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let resp = app
        .client
        .post(app.url("/datasets?format=jsonl"))
        .header("content-type", content_type)
        .header("content-encoding", encoding)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn gzip_bodies_are_decompressed_within_the_limits_and_other_encodings_refused() {
    let app = spawn_app_with(|c| c.max_dataset_bytes = 64 << 10).await;
    let ndjson = "application/x-ndjson";
    let (status, ds) = post_encoded(&app, ndjson, "gzip", gzip(tiny_dataset().as_bytes())).await;
    assert_eq!((status, &ds["rows"]), (201, &json!(24)), "{ds}");

    // 1 MiB of rows that compresses to a few kB: the limit counts what it inflates to.
    let row = "{\"text\": \"the same text again and again\", \"label\": 0}\n";
    let bomb = gzip(row.repeat((1 << 20) / row.len()).as_bytes());
    assert!(bomb.len() < 64 << 10);
    let got = post_encoded(&app, ndjson, "gzip", bomb).await;
    assert_error(&got, 413, "payload_too_large", "too large");

    let got = post_encoded(&app, ndjson, "br", tiny_dataset().into_bytes()).await;
    assert_error(&got, 415, "unsupported_media_type", "`br`");
    app.stop().await;
}

/// A multipart body of `(name, filename, content)` parts.
fn form(parts: &[(&str, &str, &str)]) -> String {
    let mut body = String::new();
    for (name, file, content) in parts {
        body += &format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n{content}\r\n"
        );
    }
    body + "--XyZ--\r\n"
}

#[tokio::test]
async fn multipart_takes_the_part_named_file_and_only_one() {
    let app = spawn_app().await;
    let multipart = "multipart/form-data; boundary=XyZ";
    let a = "text,label\nhi,pos\nho,neg\nhe,neg\n";
    let b = "text,label\nother,pos\n";
    let (status, ds) = app
        .post_raw(
            "/datasets",
            multipart,
            form(&[("other", "b.csv", b), ("file", "a.csv", a)]),
        )
        .await;
    assert_eq!(
        (status, &ds["rows"]),
        (201, &json!(3)),
        "the `file` part, not the first: {ds}"
    );

    let two = form(&[("file", "a.csv", a), ("file", "b.csv", b)]);
    let got = app.post_raw("/datasets", multipart, two).await;
    assert_error(&got, 422, "validation_error", "several `file` parts");
    assert_eq!(got.1["error"]["param"], "file");
    let none = form(&[("data", "a.csv", a)]);
    let got = app.post_raw("/datasets", multipart, none).await;
    assert_error(&got, 422, "validation_error", "no part named `file`");
    app.stop().await;
}

/// Model folders under the data folder (temporaries aside).
fn model_folders(app: &TestApp) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(app.dir.path().join("data/models")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_at_export_or_success_either_wins_or_is_refused_and_leaves_no_orphan() {
    let app = spawn_app().await;
    let dataset = app.upload_tiny_dataset().await;
    let hyper = json!({"epochs": 1, "batch_size": 4, "logging_steps": 1,
                       "eval_strategy": "no", "save_strategy": "no", "promote": "never"});
    let (mut cancelled, mut refused) = (0, 0);
    for round in 0..40u64 {
        let id = app.submit(&dataset, hyper.clone()).await;
        // Poll until the last step is done (the export follows), then wait
        // a little longer each round so the cancel lands at every moment.
        app.wait_job(&id, 60, |j| {
            crate::test_app::is_terminal(j)
                || (j["progress"]["step"].as_i64() >= j["progress"]["total_steps"].as_i64()
                    && j["progress"]["total_steps"].as_i64().is_some())
        })
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(round % 8 * 15)).await;
        let (status, body) = app.post(&format!("/jobs/{id}/cancel"), &json!({})).await;
        let job = app.wait_job(&id, 60, crate::test_app::is_terminal).await;
        match status {
            200 => {
                assert_eq!(
                    job["status"], "cancelled",
                    "round {round}: a 200 cancel wins: {job:#}"
                );
                cancelled += 1;
            }
            409 => {
                let message = body["error"]["message"].as_str().unwrap_or_default();
                assert!(
                    message.contains("already succeeded"),
                    "round {round}: {body}"
                );
                assert_eq!(job["status"], "succeeded", "round {round}");
                refused += 1;
            }
            other => panic!("round {round}: cancel answered {other}: {body}"),
        }
    }
    let (_, models) = app.get("/models?limit=100").await;
    let mut rows: Vec<String> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .filter(|id| id.starts_with("model-"))
        .collect();
    rows.sort();
    assert_eq!(
        model_folders(&app),
        rows,
        "every model folder has its row ({cancelled} cancelled, {refused} refused)"
    );
    assert_eq!(cancelled + refused, 40);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_model_the_hub_cannot_give_is_retried_with_growing_delays() {
    let app = spawn_app_with(|c| {
        c.retry_initial = std::time::Duration::from_millis(200);
        c.retry_max = std::time::Duration::from_secs(5);
    })
    .await;
    let dataset = app.upload_tiny_dataset().await;
    let body = json!({"base_model": "nope", "train_dataset": dataset,
                      "hyperparameters": crate::test_app::quick_hyperparameters()});
    let (status, job) = app.post("/jobs", &body).await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let job = app
        .wait_job(&id, 60, |j| {
            j["retries"].as_i64() >= Some(3) || crate::test_app::is_terminal(j)
        })
        .await;
    if job["status"] == "failed" {
        // A Hub that answers says there is no such repo: a permanent cause.
        let error = job["error"].as_str().unwrap_or_default();
        assert!(error.contains("not found"), "{job:#}");
        app.stop().await;
        return;
    }
    assert!(
        job["attempt"].as_i64() <= Some(1),
        "an unreachable Hub uses up no attempt: {job:#}"
    );
    let (_, events) = app.get(&format!("/jobs/{id}/events")).await;
    let waits: Vec<u64> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["data"]["retry_in_ms"].as_u64())
        .collect();
    assert!(waits.len() >= 3, "{events:#}");
    assert!(
        waits.windows(2).all(|w| w[1] > w[0]),
        "growing delays: {waits:?}"
    );
    let (status, _) = app.post(&format!("/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(status, 200);
    app.stop().await;
}

/// A stand-in for the Hub's repository-info route (`/api/models/{id}/revision/{rev}`),
/// answering as the Hub answers an anonymous caller: `owner/there` exists at
/// `main` only (another revision: 404 `RevisionNotFound`); any other repo is
/// 401 `RepoNotFound`.
async fn stand_in_hub() -> String {
    use axum::http::{HeaderName, StatusCode};
    use axum::response::{IntoResponse, Response};
    async fn info(axum::extract::Path(rest): axum::extract::Path<String>) -> Response {
        let refuse = |status, code| {
            let header = [(HeaderName::from_static("x-error-code"), code)];
            (status, header, "not found").into_response()
        };
        match rest.as_str() {
            "owner/there/revision/main" => {
                axum::Json(json!({"sha": "0123", "siblings": []})).into_response()
            }
            r if r.starts_with("owner/there/") => refuse(StatusCode::NOT_FOUND, "RevisionNotFound"),
            _ => refuse(StatusCode::UNAUTHORIZED, "RepoNotFound"),
        }
    }
    let app = axum::Router::new().route("/api/models/{*rest}", axum::routing::get(info));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_model_the_hub_says_does_not_exist_is_refused_at_submission() {
    let hub = stand_in_hub().await;
    let dir = tempfile::tempdir().unwrap();
    let (data, hf_home) = (dir.path().join("data"), dir.path().join("hf"));
    let hf_home = hf_home.to_str().unwrap();
    let env = [("HF_ENDPOINT", hub.as_str()), ("HF_HOME", hf_home)];
    let server = crate::processes::ServeProcess::start_with_env(&data, &[], &env);
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{}/datasets?format=jsonl", server.base))
        .body(tiny_dataset())
        .send()
        .await
        .unwrap();
    let dataset = resp.json::<Value>().await.unwrap()["id"].clone();
    let submit = |base_model: &str| {
        let body = json!({"base_model": base_model, "train_dataset": dataset});
        let request = client.post(format!("{}/jobs", server.base)).json(&body);
        async move {
            let resp = request.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let started = std::time::Instant::now();
    assert_error(
        &submit("nope").await,
        422,
        "validation_error",
        "no model `nope` on the Hugging Face Hub",
    );
    let got = submit("owner/there@v2").await;
    assert_eq!(got.1["error"]["param"], "base_model", "{}", got.1);
    // A repo the Hub knows is accepted (its job then fails: this Hub serves no files).
    let (status, job) = submit("owner/there").await;
    assert_eq!(status, 202, "{job}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
