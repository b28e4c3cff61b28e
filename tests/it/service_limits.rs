//! What an outside tester tried, one test per finding: naming many models
//! cannot grow memory without bound (`/health` counts what is loaded; the
//! metrics' gauges are process-wide, shared by every test server), `base_model` reveals nothing about the
//! server's files and no answer carries a server path, graceful restarts do
//! not spend attempts, what is checkable at submission is checked then,
//! stale temporaries are swept at startup, and ambiguous uploads and
//! oversized classify requests are clear 422s.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::test_app::{assert_error, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naming_many_models_keeps_a_bounded_number_loaded() {
    let app = spawn_app_with(|c| c.max_loaded_models = 1).await;
    let dataset = app.upload_tiny_dataset().await;
    let mut models = Vec::new();
    for promote in ["always", "never", "never", "never"] {
        let job = app
            .train_quickly(&dataset, json!({"promote": promote}))
            .await;
        models.push(job["model"].as_str().unwrap().to_string());
    }
    for model in models.iter().chain(models.iter().rev()) {
        let (status, answer) = app
            .post("/classify", &json!({"inputs": "hi", "model": model}))
            .await;
        assert_eq!((status, &answer["model"]), (200, &json!(model)), "{answer}");
        let (_, health) = app.get("/health").await;
        let loaded = health["loaded_models"].as_u64().unwrap();
        assert!(
            loaded <= 2,
            "`latest` and one other, not {loaded}: {health}"
        );
    }
    let (_, health) = app.get("/health").await;
    assert!(health["loaded_model_bytes"].as_u64() > Some(0), "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_model_reveals_nothing_and_no_answer_holds_a_server_path() {
    let app = spawn_app().await;
    let dataset = app.upload_tiny_dataset().await;
    let root = app.dir.path().to_str().unwrap().to_string();
    let names = [
        "/etc",
        "/",
        "/proc/self",
        "..",
        "../models/base-model",
        "./base-model",
        &root,
        "gpt2/../../etc",
        "models/base-model/",
        "~",
        "base-model/../base-model",
    ];
    let mut messages = std::collections::BTreeSet::new();
    for name in names {
        let body = json!({"base_model": name, "train_dataset": dataset, "eval_dataset": dataset});
        let got = app.post("/jobs", &body).await;
        assert_error(&got, 422, "validation_error", "must be a model id");
        assert_eq!(got.1["error"]["param"], "base_model", "{name}: {}", got.1);
        messages.insert(got.1["error"]["message"].to_string());
    }
    assert_eq!(
        messages.len(),
        1,
        "one answer for every refused name: {messages:?}"
    );

    let job = app
        .train_quickly(&dataset, json!({"save_strategy": "epoch"}))
        .await;
    let id = job["id"].as_str().unwrap();
    let model = job["model"].as_str().unwrap();
    for path in [
        "/health".to_string(),
        format!("/jobs/{id}"),
        format!("/jobs/{id}/events"),
        format!("/jobs/{id}/checkpoints"),
        format!("/models/{model}"),
        format!("/models/{model}/files"),
        "/datasets".to_string(),
    ] {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            !body.to_string().contains(&root),
            "{path} shows a server path: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restarts_do_not_spend_attempts() {
    let mut app = spawn_app().await;
    let dataset = app.upload_tiny_dataset().await;
    let long =
        json!({"epochs": 1000, "batch_size": 4, "save_strategy": "no", "eval_strategy": "no"});
    let id = app.submit(&dataset, long).await;
    let mut first_dir = None;
    for restart in 0..4 {
        let job = app.wait_job(&id, 60, |j| j["status"] == "running").await;
        assert_eq!(job["attempt"], 1, "restart {restart}: {job:#}");
        let dir = app.stop().await;
        let dir = first_dir.get_or_insert(dir);
        let data = dir.path().join("data");
        app = spawn_app_with(|c| c.data_dir = data.clone()).await;
        let (_, job) = app.get(&format!("/jobs/{id}")).await;
        assert_ne!(job["status"], "failed", "{job:#}");
    }
    app.post(&format!("/jobs/{id}/cancel"), &json!({})).await;
    app.wait_status(&id, "cancelled", 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_base_model_allows_is_checked_at_submission() {
    let app = spawn_app().await;
    let dataset = app.upload_tiny_dataset().await;
    let body = json!({"base_model": app.base_model, "train_dataset": dataset,
                      "eval_dataset": dataset, "hyperparameters": {"max_length": 100000}});
    let got = app.post("/jobs", &body).await;
    assert_error(&got, 422, "validation_error", "positions");
    assert_eq!(got.1["error"]["param"], "hyperparameters.max_length");
    let (_, jobs) = app.get("/jobs").await;
    assert_eq!(jobs["data"], json!([]), "nothing was queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_temporaries_are_swept_at_startup() {
    let app = spawn_app().await;
    let dataset = app.upload_tiny_dataset().await;
    let dir = app.stop().await;
    let datasets = dir.path().join("data/datasets");
    let stale = datasets.join(".upload.tmp-killed");
    let fresh = datasets.join(".upload.tmp-in-flight");
    for (path, age) in [(&stale, 3600), (&fresh, 0)] {
        let file = std::fs::File::create(path).unwrap();
        file.set_len(1 << 20).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(age))
            .unwrap();
    }
    let data = dir.path().join("data");
    let app = spawn_app_with(|c| c.data_dir = data.clone()).await;
    assert!(
        !stale.exists(),
        "a temporary left by a killed upload is removed"
    );
    assert!(fresh.exists(), "one that may still be written is kept");
    assert_eq!(app.get(&format!("/datasets/{dataset}")).await.0, 200);
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_uploads_and_oversized_requests_are_422() {
    let app = spawn_app_with(|c| c.max_request_tokens = 64).await;
    let csv = "text,label,text\nhello,0,again\n";
    let got = app.post_raw("/datasets?format=csv", "text/csv", csv).await;
    assert_eq!(got.0, 422, "{}", got.1);
    assert!(got.1.to_string().contains("keep one"), "{}", got.1);

    let array = r#"[{"text": "hi", "label": 0}]"#;
    let got = app.post_raw("/datasets", "application/json", array).await;
    assert_error(&got, 422, "validation_error", "JSON array");

    let dataset = app.upload_tiny_dataset().await;
    app.train_quickly(&dataset, json!({})).await;
    let inputs: Vec<Value> = (0..16)
        .map(|_| json!("one two three four five six"))
        .collect();
    let got = app.post("/classify", &json!({"inputs": inputs})).await;
    assert_error(&got, 422, "validation_error", "64");
    assert_eq!(got.1["error"]["param"], "inputs");
    let (status, _) = app
        .post("/classify", &json!({"inputs": "one two three"}))
        .await;
    assert_eq!(status, 200, "a request within the budget is answered");
}
