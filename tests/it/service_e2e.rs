//! End to end through a real server: upload, fine-tune, watch, classify,
//! switch models without a restart, cancel.

use crate::test_app::{quick_hyperparameters, spawn_app, spawn_app_with};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_train_watch_classify_and_switch_models() {
    let app = spawn_app().await;
    let dataset = app.upload_tiny_dataset().await;
    let (status, ds) = app.get(&format!("/datasets/{dataset}")).await;
    assert_eq!(status, 200);
    assert_eq!(ds["rows"], 24);
    assert_eq!(ds["labels"], json!(["negative", "neutral", "positive"]));
    assert_eq!(ds["label_counts"]["neutral"], 8);

    let before = app.post("/classify", &json!({"inputs": "hello"})).await;
    crate::test_app::assert_error(&before, 503, "unavailable", "POST /jobs");

    let job_id = app.submit(&dataset, quick_hyperparameters()).await;
    let job = app.wait_status(&job_id, "succeeded", 180).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["attempt"], 1);
    assert_eq!(job["progress"]["step"], 6);
    assert_eq!(job["progress"]["total_steps"], 6);
    assert!(
        job["latest_metrics"]["eval"]["accuracy"].is_number(),
        "{job:#}"
    );
    let model = job["model"].as_str().unwrap().to_string();

    // 24 examples, batch 4, 1 epoch: 6 steps, every one logged; eval at the end.
    let (_, metrics) = app.get(&format!("/jobs/{job_id}/metrics")).await;
    let steps: Vec<i64> = metrics["train"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["step"].as_i64().unwrap())
        .collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6], "{metrics:#}");
    assert!(metrics["train"][0]["loss"].is_number());
    assert!(metrics["train"][0]["learning_rate"].is_number());
    let evals: Vec<i64> = metrics["eval"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["step"].as_i64().unwrap())
        .collect();
    assert_eq!(evals.last(), Some(&6), "{metrics:#}");

    let (_, events) = app.get(&format!("/jobs/{job_id}/events")).await;
    let kinds = crate::test_app::event_kinds(&events);
    for kind in [
        "created",
        "started",
        "plan",
        "step",
        "eval",
        "checkpoint",
        "succeeded",
    ] {
        assert!(kinds.contains(&kind), "no `{kind}` in {kinds:?}");
    }
    // The live log of a finished job replays everything, then ends.
    let sse = app
        .client
        .get(app.url(&format!("/jobs/{job_id}/events")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert!(sse.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let stream = sse.text().await.unwrap();
    assert!(stream.contains("event: succeeded"), "{stream}");
    assert!(stream.contains("event: step"), "{stream}");

    let (_, checkpoints) = app.get(&format!("/jobs/{job_id}/checkpoints")).await;
    assert_eq!(checkpoints["data"][0]["step"], 6, "{checkpoints:#}");

    let (status, answer) = app
        .post("/classify", &json!({"inputs": ["I love it", "I hate it"]}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["model"], model.as_str());
    let predictions = answer["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 2);
    let scores: f64 = predictions[0]["scores"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!((scores - 1.0).abs() < 1e-4);
    assert!(
        ["negative", "neutral", "positive"].contains(&predictions[0]["label"].as_str().unwrap())
    );

    // A second job replaces `latest` without a restart; the first stays addressable.
    let second = app
        .submit(&dataset, json!({"epochs": 1, "batch_size": 8, "seed": 7}))
        .await;
    let job2 = app.wait_status(&second, "succeeded", 180).await;
    assert_eq!(job2["status"], "succeeded", "{job2:#}");
    let model2 = job2["model"].as_str().unwrap();
    assert_ne!(model2, model);
    let (_, answer) = app.post("/classify", &json!({"inputs": "fine"})).await;
    assert_eq!(answer["model"], model2);
    let (status, answer) = app
        .post("/classify", &json!({"inputs": "fine", "model": model}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["model"], model.as_str());
    let (_, models) = app.get("/models").await;
    let listed: Vec<(&str, bool)> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["latest"].as_bool().unwrap()))
        .collect();
    assert_eq!(listed, [(model2, true), (model.as_str(), false)]);
    let (status, _) = app.get(&format!("/models/{model}")).await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_queued_and_running_jobs() {
    let app = spawn_app().await;
    let dataset = app.upload_tiny_dataset().await;
    let long = json!({"epochs": 1000, "batch_size": 4, "logging_steps": 1,
                      "save_strategy": "no", "eval_strategy": "no"});
    let running = app.submit(&dataset, long.clone()).await;
    let queued = app.submit(&dataset, long).await;
    app.wait_job(&running, 60, |j| j["progress"]["step"].as_i64() > Some(2))
        .await;

    let (status, job) = app
        .post(&format!("/jobs/{queued}/cancel"), &Value::Null)
        .await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["status"], "cancelled");

    let (status, job) = app
        .post(&format!("/jobs/{running}/cancel"), &Value::Null)
        .await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["cancel_requested"], true);
    let job = app.wait_status(&running, "cancelled", 60).await;
    assert_eq!(job["status"], "cancelled", "{job:#}");
    assert!(job["model"].is_null());
    let (_, models) = app.get("/models").await;
    assert_eq!(models["data"], json!([]));

    let again = app
        .post(&format!("/jobs/{running}/cancel"), &Value::Null)
        .await;
    crate::test_app::assert_error(&again, 409, "conflict", "already cancelled");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preloaded_model_answers_before_any_job() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("m");
    crate::fixtures::write_tiny_model(&model_dir, 3, tuneserve::model::WeightLayout::Classifier);
    let source = model_dir.display().to_string();
    let app = spawn_app_with(|c| c.model = Some(source.clone())).await;
    // Served (and listed) by its folder's name: no server path in any answer.
    let name = "m";
    let (status, answer) = app
        .post("/classify", &json!({"inputs": "hello there"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["model"], name);
    let (status, health) = app.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["latest_model"], name);
    let (_, models) = app.get("/models").await;
    assert_eq!(models["data"][0]["id"], name, "{models}");
    assert!(!models.to_string().contains(&source), "{models}");

    // A fine-tuned model takes over as `latest`; the preloaded one still answers by name.
    let dataset = app.upload_tiny_dataset().await;
    let id = app.submit(&dataset, quick_hyperparameters()).await;
    let job = app.wait_status(&id, "succeeded", 180).await;
    let (_, answer) = app
        .post("/classify", &json!({"inputs": "hello there"}))
        .await;
    assert_eq!(answer["model"], job["model"]);
    let (status, answer) = app
        .post(
            "/classify",
            &json!({"inputs": "hello there", "model": name}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["model"], name);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_cannot_train_fails_at_once_with_its_reason() {
    let app = spawn_app().await;
    let dataset = app.upload_tiny_dataset().await;
    // A base model whose weights are damaged: only loading it tells.
    let models = app.dir.path().join("models");
    let broken = models.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(models.join("base-model").join(file), broken.join(file)).unwrap();
    }
    std::fs::write(broken.join("model.safetensors"), b"not safetensors").unwrap();
    let body = json!({"base_model": "broken", "train_dataset": dataset,
                      "hyperparameters": crate::test_app::quick_hyperparameters()});
    let (status, job) = app.post("/jobs", &body).await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let job = app.wait_status(&id, "failed", 60).await;
    assert_eq!(job["status"], "failed", "{job:#}");
    assert_eq!(job["attempt"], 1, "not retried: {job:#}");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("not a valid safetensors file"), "{job:#}");
    assert!(
        !error.contains(&app.dir.path().display().to_string()),
        "no server path: {error}"
    );
    let (_, failed) = app.get("/jobs?status=failed").await;
    assert_eq!(failed["data"][0]["id"], id.as_str());

    // Repaired, the failed job is queued again by `retry` and succeeds.
    let weights = models.join("base-model").join("model.safetensors");
    std::fs::copy(weights, broken.join("model.safetensors")).unwrap();
    let (status, retried) = app.post(&format!("/jobs/{id}/retry"), &json!({})).await;
    assert_eq!(status, 200, "{retried}");
    let picked = ["queued", "running"].map(serde_json::Value::from);
    assert!(picked.contains(&retried["status"]), "{retried}"); // a worker may take it at once
    let job = app.wait_job(&id, 120, crate::test_app::is_terminal).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let again = app.post(&format!("/jobs/{id}/retry"), &json!({})).await;
    crate::test_app::assert_error(&again, 409, "conflict", "failed");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_a_running_job_back_to_the_queue() {
    let app = spawn_app().await;
    let dataset = app.upload_tiny_dataset().await;
    let long =
        json!({"epochs": 1000, "batch_size": 4, "save_strategy": "no", "eval_strategy": "no"});
    let id = app.submit(&dataset, long).await;
    app.wait_job(&id, 60, |j| j["progress"]["step"].as_i64() > Some(1))
        .await;
    let dir = app.stop().await;

    let store = tuneserve::store::Store::open(&dir.path().join("data/tuneserve.db"))
        .await
        .unwrap();
    let job = store.get_job(&id).await.unwrap();
    assert_eq!(job.status, tuneserve::store::JobStatus::Queued);
    assert_eq!(job.lease_owner, None);
    let events = store
        .list_events(&id, 0, 1000, &Default::default())
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == tuneserve::store::EventKind::Interrupted),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_follows_a_running_job_until_it_ends() {
    use futures::StreamExt;
    let app = spawn_app().await;
    let dataset = app.upload_tiny_dataset().await;
    let long = json!({"epochs": 1000, "batch_size": 4, "logging_steps": 1,
                      "save_strategy": "no", "eval_strategy": "no"});
    let id = app.submit(&dataset, long).await;
    let resp = app
        .client
        .get(app.url(&format!("/jobs/{id}/events")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    let mut cancelled = false;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while let Some(chunk) = stream.next().await {
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        if !cancelled && seen.matches("event: step").count() >= 3 {
            let (status, _) = app.post(&format!("/jobs/{id}/cancel"), &Value::Null).await;
            assert_eq!(status, 200);
            cancelled = true;
        }
        assert!(std::time::Instant::now() < deadline, "stream did not end");
    }
    // The stream ended by itself once the job was cancelled.
    assert!(cancelled, "{seen}");
    assert!(seen.contains("event: started"), "{seen}");
    assert!(seen.contains("event: cancelled"), "{seen}");
    assert!(seen.contains("\"kind\":\"step\""), "{seen}");
    app.stop().await;
}
