//! What the service keeps and what it lets go: explicit promotion (`promote`,
//! `POST /models/{id}/promote`), deletes of datasets, models and finished
//! jobs (409 while in use), checkpoints pruned after success, disk use per
//! job, and `latest` surviving a deleted model folder across a restart.

use serde_json::json;

use crate::test_app::{assert_error, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_is_explicit_and_survives_a_restart() {
    let app = spawn_app().await;
    let dataset = app.upload_tiny_dataset().await;
    let first = app.train_quickly(&dataset, json!({})).await;
    let first_model = first["model"].as_str().unwrap().to_string();
    let (_, answer) = app.post("/classify", &json!({"inputs": "hi"})).await;
    assert_eq!(answer["model"], first_model.as_str(), "`always` promotes");

    let second = app
        .train_quickly(&dataset, json!({"promote": "never"}))
        .await;
    let second_model = second["model"].as_str().unwrap().to_string();
    let (_, answer) = app.post("/classify", &json!({"inputs": "hi"})).await;
    assert_eq!(
        answer["model"],
        first_model.as_str(),
        "`never` leaves `latest`"
    );
    let (_, model) = app.get(&format!("/models/{second_model}")).await;
    assert_eq!(
        (model["latest"].as_bool(), &model["promoted_at"]),
        (Some(false), &json!(null))
    );

    let (status, model) = app
        .post(&format!("/models/{second_model}/promote"), &json!({}))
        .await;
    assert_eq!(
        (status, model["latest"].as_bool()),
        (200, Some(true)),
        "{model}"
    );
    let (_, answer) = app.post("/classify", &json!({"inputs": "hi"})).await;
    assert_eq!(answer["model"], second_model.as_str());

    // A job whose model is no better on the same evaluation set is not promoted.
    let third = app
        .train_quickly(
            &dataset,
            json!({"promote": "if_better", "learning_rate": 1e-9}),
        )
        .await;
    let (_, events) = app
        .get(&format!("/jobs/{}/events", third["id"].as_str().unwrap()))
        .await;
    let succeeded = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "succeeded");
    let succeeded = succeeded.unwrap().clone();
    let promoted = succeeded["data"]["promoted"].as_bool().unwrap();
    let (_, answer) = app.post("/classify", &json!({"inputs": "hi"})).await;
    let expected = if promoted {
        third["model"].clone()
    } else {
        json!(second_model)
    };
    assert_eq!(answer["model"], expected, "{succeeded}");

    let dir = app.stop().await;
    let data = dir.path().join("data");
    let restarted = spawn_app_with(|c| c.data_dir = data.clone()).await;
    let (_, health) = restarted.get("/health").await;
    assert_eq!(
        health["latest_model"], expected,
        "the promoted model comes back as `latest`"
    );
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_refuse_what_is_in_use_and_free_the_disk() {
    let app = spawn_app().await;
    let dataset = app.upload_tiny_dataset().await;
    let spare = app.upload_tiny_dataset().await;
    let job = app
        .train_quickly(
            &dataset,
            json!({"save_strategy": "steps", "save_steps": 2, "save_total_limit": 5}),
        )
        .await;
    let (job_id, model) = (job["id"].as_str().unwrap(), job["model"].as_str().unwrap());

    // Only the best checkpoint outlives the job (keep_checkpoints: best).
    let (_, checkpoints) = app.get(&format!("/jobs/{job_id}/checkpoints")).await;
    let kept = checkpoints["data"].as_array().unwrap();
    assert_eq!(kept.len(), 1, "{checkpoints}");
    let (_, detail) = app.get(&format!("/jobs/{job_id}")).await;
    assert!(
        detail["disk_bytes"].as_u64().unwrap() > 1_000_000,
        "{detail}"
    );

    assert_error(
        &app.delete(&format!("/datasets/{dataset}")).await,
        409,
        "conflict",
        job_id,
    );
    assert_eq!(app.delete(&format!("/datasets/{spare}")).await.0, 204);
    assert_eq!(app.get(&format!("/datasets/{spare}")).await.0, 404);

    assert_error(
        &app.delete(&format!("/models/{model}")).await,
        409,
        "conflict",
        "latest",
    );
    assert_error(
        &app.delete(&format!("/jobs/{job_id}")).await,
        409,
        "conflict",
        model,
    );

    // Another model becomes `latest`: the first can go, then its job, then the dataset.
    let other = app.train_quickly(&dataset, json!({})).await;
    assert_eq!(app.delete(&format!("/models/{model}")).await.0, 204);
    assert_eq!(app.get(&format!("/models/{model}")).await.0, 404);
    assert!(!app.dir.path().join("data/models").join(model).exists());
    assert_eq!(app.delete(&format!("/jobs/{job_id}")).await.0, 204);
    assert_eq!(app.get(&format!("/jobs/{job_id}")).await.0, 404);
    assert!(!app.dir.path().join("data/jobs").join(job_id).exists());

    // A running job cannot be deleted.
    let long =
        json!({"epochs": 1000, "batch_size": 4, "save_strategy": "no", "eval_strategy": "no"});
    let running = app.submit(&dataset, long).await;
    app.wait_job(&running, 60, |j| j["status"] == "running")
        .await;
    assert_error(
        &app.delete(&format!("/jobs/{running}")).await,
        409,
        "conflict",
        "cancel it first",
    );
    app.post(&format!("/jobs/{running}/cancel"), &json!({}))
        .await;
    app.wait_status(&running, "cancelled", 60).await;
    assert_eq!(app.delete(&format!("/jobs/{running}")).await.0, 204);
    assert_error(
        &app.delete(&format!("/datasets/{dataset}")).await,
        409,
        "conflict",
        other["id"].as_str().unwrap(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_model_folder_is_skipped_at_startup_and_named_clearly() {
    let app = spawn_app().await;
    let dataset = app.upload_tiny_dataset().await;
    let older = app.train_quickly(&dataset, json!({})).await;
    let newer = app.train_quickly(&dataset, json!({})).await;
    let (older, newer) = (
        older["model"].as_str().unwrap(),
        newer["model"].as_str().unwrap(),
    );
    let dir = app.stop().await;
    let data = dir.path().join("data");
    std::fs::remove_dir_all(data.join("models").join(newer)).unwrap();

    let app = spawn_app_with(|c| c.data_dir = data.clone()).await;
    let (_, health) = app.get("/health").await;
    assert_eq!(
        health["latest_model"], older,
        "the newest model that loads is served"
    );
    let (_, answer) = app.post("/classify", &json!({"inputs": "hi"})).await;
    assert_eq!(answer["model"], older);
    let got = app
        .post("/classify", &json!({"inputs": "hi", "model": newer}))
        .await;
    assert_error(&got, 409, "conflict", "files are missing");
    drop(dir);
}
