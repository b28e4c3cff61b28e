//! Bad input and edge cases through a real server: each answer's status,
//! error code and message.

use crate::test_app::{assert_error, spawn_app, spawn_app_with};
use serde_json::{json, Value};

#[tokio::test]
async fn health_metrics_and_unknown_resources() {
    let app = spawn_app().await;
    let (status, health) = app.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let text = resp.text().await.unwrap();
    assert!(text.contains("tuneserve_jobs"), "{text}");
    assert_error(
        &app.get("/jobs/job-nope").await,
        404,
        "not_found",
        "job `job-nope` not found",
    );
    assert_error(
        &app.get("/jobs/job-nope/metrics").await,
        404,
        "not_found",
        "job-nope",
    );
    assert_error(
        &app.get("/models/model-nope").await,
        404,
        "not_found",
        "model `model-nope`",
    );
    assert_error(
        &app.get("/datasets/ds-nope").await,
        404,
        "not_found",
        "dataset `ds-nope`",
    );
    assert_error(
        &app.post("/jobs/job-nope/cancel", &Value::Null).await,
        404,
        "not_found",
        "job-nope",
    );
    assert_error(
        &app.post("/classify", &json!({"inputs": "x", "model": "model-nope"}))
            .await,
        404,
        "not_found",
        "model `model-nope`",
    );
    let docs = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
    let (status, openapi) = app.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(openapi["paths"]["/jobs"].is_object());

    // A database that does not answer: `/health` says so at once, the
    // routes that need it answer 503 with `Retry-After`.
    app.store.close().await;
    let started = std::time::Instant::now();
    let (status, health) = app.get("/health").await;
    assert_eq!(
        (status, &health["status"]),
        (200, &json!("degraded")),
        "{health}"
    );
    let problem = health["storage"]["problem"].as_str().unwrap_or_default();
    assert!(problem.contains("database"), "{health}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let jobs = app.client.get(app.url("/jobs")).send().await.unwrap();
    assert_eq!(jobs.status(), 503);
    assert!(jobs.headers().contains_key("retry-after"));
    app.stop().await;
}

#[tokio::test]
async fn job_submissions_are_validated() {
    let app = spawn_app().await;
    let dataset = app.upload_tiny_dataset().await;
    let base = app.base_model.clone();
    let job = |extra: Value| {
        let mut body = json!({"base_model": base, "train_dataset": dataset});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let hp = |hyperparameters: Value| job(json!({"hyperparameters": hyperparameters}));
    // (body, the message's fragment, the field at fault); each one is a 422.
    let test_cases = [
        (
            hp(json!({"epochz": 1})),
            "unknown field `epochz`",
            "hyperparameters.epochz",
        ),
        (
            job(json!({"colour": "red"})),
            "unknown field `colour`",
            "colour",
        ),
        (
            json!({"train_dataset": dataset}),
            "missing field `base_model`",
            "base_model",
        ),
        (
            hp(json!({"learning_rate": 5})),
            "learning_rate",
            "hyperparameters.learning_rate",
        ),
        (
            hp(json!({"epochs": "three"})),
            "hyperparameters.epochs: must be an integer from 1 to 1000",
            "hyperparameters.epochs",
        ),
        (
            hp(json!({"warmup_steps": -3})),
            "hyperparameters.warmup_steps: must be an integer ≥ 0",
            "hyperparameters.warmup_steps",
        ),
        // bf16 needs a GPU worker; this service trains on the CPU.
        (
            hp(json!({"precision": "bf16"})),
            "needs a GPU worker",
            "hyperparameters.precision",
        ),
        (
            hp(json!({"precision": "fp16"})),
            "unknown variant `fp16`",
            "hyperparameters.precision",
        ),
        (
            job(json!({"train_dataset": "ds-missing"})),
            "dataset `ds-missing` not found",
            "train_dataset",
        ),
        (
            job(json!({"base_model": "./no/such/dir"})),
            "must be a model id of this service",
            "base_model",
        ),
        (
            job(json!({"suffix": "Bad Suffix"})),
            "must be 1 to 40",
            "suffix",
        ),
    ];
    for (body, fragment, param) in test_cases {
        let got = app.post("/jobs", &body).await;
        assert_error(&got, 422, "validation_error", fragment);
        assert_eq!(got.1["error"]["param"], param, "{body}: {}", got.1);
    }

    let got = app
        .post_raw("/jobs", "application/json", "{\"base_model\": ")
        .await;
    assert_error(&got, 400, "invalid_request", "malformed JSON");
    for (query, fragment, param) in [
        ("status=sleeping", "unknown status", "status"),
        ("limit=0", "between 1 and 100", "limit"),
        ("colour=red", "unknown field `colour`", "colour"),
    ] {
        let got = app.get(&format!("/jobs?{query}")).await;
        assert_error(&got, 422, "validation_error", fragment);
        assert_eq!(got.1["error"]["param"], param, "{query}: {}", got.1);
    }
    let (status, list) = app.get("/jobs").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"], json!([]), "no invalid job was stored");
    app.stop().await;
}

#[tokio::test]
async fn classify_inputs_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("m");
    crate::fixtures::write_tiny_model(&model_dir, 3, tuneserve::model::WeightLayout::Classifier);
    let source = model_dir.display().to_string();
    let app = spawn_app_with(|c| {
        c.model = Some(source.clone());
        c.max_inputs = 4;
        c.max_json_bytes = 4096;
    })
    .await;
    assert_error(
        &app.post("/classify", &json!({"inputs": "   "})).await,
        422,
        "validation_error",
        "empty",
    );
    let got = app
        .post("/classify", &json!({"inputs": ["fine", ""]}))
        .await;
    assert_eq!(got.1["error"]["param"], "inputs[1]");
    let got = app.post("/classify", &json!({"inputs": []})).await;
    assert_error(&got, 422, "validation_error", "at least one");
    let got = app
        .post("/classify", &json!({"inputs": ["a", "b", "c", "d", "e"]}))
        .await;
    assert_error(&got, 422, "validation_error", "at most 4");
    assert_eq!(got.1["error"]["param"], "inputs");
    let got = app.post("/classify", &json!({"inputs": 5})).await;
    assert_error(&got, 422, "validation_error", "inputs");
    let got = app
        .post("/classify", &json!({"inputs": "a", "temperature": 2}))
        .await;
    assert_eq!(got.1["error"]["param"], "temperature");
    let long = "word ".repeat(400);
    let got = app
        .post("/classify", &json!({"inputs": long, "truncate": false}))
        .await;
    assert_error(&got, 422, "validation_error", "more than the model's 128");
    let (status, _) = app.post("/classify", &json!({"inputs": long})).await;
    assert_eq!(status, 200, "truncated by default");
    let huge = "x".repeat(10_000);
    let got = app.post("/classify", &json!({"inputs": huge})).await;
    assert_error(&got, 413, "payload_too_large", "too large");
    app.stop().await;
}

#[tokio::test]
async fn dataset_uploads_report_row_errors_by_line() {
    let app = spawn_app_with(|c| c.max_dataset_bytes = 2048).await;
    let body = "{\"text\": \"good\", \"label\": 1}\n{\"text\": \"\", \"label\": 0}\nnot json\n{\"text\": \"x\"}\n";
    let got = app
        .post_raw("/datasets", "application/x-ndjson", body)
        .await;
    assert_error(&got, 422, "validation_error", "line 2");
    let details = got.1["error"]["details"].as_array().unwrap();
    let lines: Vec<i64> = details
        .iter()
        .map(|d| d["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [2, 3, 4]);
    assert_eq!(details[2]["field"], "label");

    let got = app
        .post_raw(
            "/datasets?format=csv",
            "text/plain",
            "text,label\nhi,pos\n,neg\n",
        )
        .await;
    assert_error(&got, 422, "validation_error", "line 3");
    let got = app
        .post_raw("/datasets?format=xml", "text/plain", "<a/>")
        .await;
    assert_eq!(got.1["error"]["param"], "format");
    let got = app.post_raw("/datasets", "text/csv", "").await;
    assert_error(&got, 422, "validation_error", "no rows");
    let big = "{\"text\": \"good\", \"label\": 1}\n".repeat(200);
    assert_error(
        &app.post_raw("/datasets", "application/x-ndjson", big).await,
        413,
        "payload_too_large",
        "too large",
    );

    let (status, ds) = app
        .post_raw(
            "/datasets?name=tiny",
            "text/csv",
            "text,label\nhi,pos\n\"x, y\",neg\n",
        )
        .await;
    assert_eq!(status, 201, "{ds}");
    assert_eq!(ds["labels"], json!(["neg", "pos"]));
    assert_eq!(ds["format"], "csv");
    assert_eq!(ds["name"], "tiny");
    // A multipart form (`curl -F file=@tiny.csv`): the format comes from the file name.
    let form = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"tiny.csv\"\r\n\
                Content-Type: application/octet-stream\r\n\r\ntext,label\nhi,pos\nho,neg\n\r\n--XyZ--\r\n";
    let (status, ds) = app
        .post_raw("/datasets", "multipart/form-data; boundary=XyZ", form)
        .await;
    assert_eq!(status, 201, "{ds}");
    assert_eq!(
        (ds["format"].as_str(), ds["rows"].as_i64()),
        (Some("csv"), Some(2))
    );
    let empty_form =
        "--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--XyZ--\r\n";
    let got = app
        .post_raw("/datasets", "multipart/form-data; boundary=XyZ", empty_form)
        .await;
    assert_eq!(got.1["error"]["param"], "file", "{}", got.1);

    let (_, list) = app.get("/datasets").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);

    let got = app
        .post(
            "/datasets/import",
            &json!({"repo": "not a repo", "split": "train"}),
        )
        .await;
    assert_eq!(
        (got.0, &got.1["error"]["param"]),
        (422, &json!("repo")),
        "{}",
        got.1
    );
    let got = app
        .post("/datasets/import", &json!({"repo": "a/b", "split": "../x"}))
        .await;
    assert_eq!(
        (got.0, &got.1["error"]["param"]),
        (422, &json!("split")),
        "{}",
        got.1
    );
    // No Hub from the test machine (or no such repo): a clear 502.
    let repo = "tuneserve-tests/no-such-dataset-0000";
    let got = app
        .post("/datasets/import", &json!({"repo": repo, "split": "train"}))
        .await;
    assert_error(&got, 502, "bad_gateway", repo);
    app.stop().await;
}

#[tokio::test]
async fn api_key_guards_everything_but_health_and_metrics() {
    let app = spawn_app_with(|c| c.api_key = Some("s3cret".into())).await;
    assert_error(&app.get("/jobs").await, 401, "unauthorized", "API key");
    let resp = app
        .client
        .get(app.url("/jobs"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = app
        .client
        .get(app.url("/jobs"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(app.get("/health").await.0, 200);
    assert_eq!(
        app.client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn classify_before_any_model_is_503() {
    let app = spawn_app().await;
    let got = app.post("/classify", &json!({"inputs": "hello"})).await;
    assert_error(&got, 503, "unavailable", "--model");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_inference_queue_answers_429() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("m");
    crate::fixtures::write_tiny_model(&model_dir, 3, tuneserve::model::WeightLayout::Classifier);
    let source = model_dir.display().to_string();
    let app = std::sync::Arc::new(
        spawn_app_with(|c| {
            c.model = Some(source.clone());
            c.queue_capacity = 1;
            c.max_batch_size = 1;
        })
        .await,
    );
    let texts: Vec<String> = (0..64)
        .map(|i| format!("text number {i} ").repeat(20))
        .collect();
    let requests = (0..16).map(|_| {
        let app = app.clone();
        let texts = texts.clone();
        tokio::spawn(async move {
            let url = app.url("/classify");
            let resp = app.client.post(url).json(&json!({"inputs": texts}));
            let resp = resp.send().await.unwrap();
            let status = resp.status().as_u16();
            let retry = resp.headers().get("retry-after").cloned();
            // Every 429 says when to come back; no 200 does.
            assert_eq!(retry.is_some(), status == 429, "{status}: {retry:?}");
            (status, resp.json::<Value>().await.unwrap())
        })
    });
    let answers: Vec<(u16, Value)> = futures::future::join_all(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    let busy = answers
        .iter()
        .find(|a| a.0 == 429)
        .expect("some request is turned away");
    assert_error(busy, 429, "overloaded", "queue is full");
}
