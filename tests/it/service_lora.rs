//! LoRA through the service: a `method: lora` job trains an adapter, which is
//! registered in PEFT's layout (small, without its base), answers `/classify`,
//! says what it is on `/models/{id}`, and is itself the base of a job that
//! continues it.

use serde_json::{json, Value};

use crate::fixtures::repo_path;
use crate::test_app::{assert_error, quick_hyperparameters, spawn_app};

fn lora_hyperparameters() -> Value {
    let mut h = quick_hyperparameters();
    h["method"] = json!("lora");
    h["lora"] = json!({"r": 4, "alpha": 8, "target_modules": ["c_attn", "mlp.c_proj"]});
    h
}

#[tokio::test]
async fn a_lora_job_trains_serves_and_continues_an_adapter() {
    let app = spawn_app().await;
    let dataset = app.upload_tiny_dataset().await;
    let job = app.submit(&dataset, lora_hyperparameters()).await;
    let done = app.wait_status(&job, "succeeded", 180).await;
    assert_eq!(done["hyperparameters"]["method"], "lora", "{done:#}");
    let model = done["model"].as_str().unwrap().to_string();

    let (status, info) = app.get(&format!("/models/{model}")).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["method"], "lora", "{info:#}");
    assert_eq!(info["lora"]["r"], 4);
    assert_eq!(info["base_model"], app.base_model.as_str());
    let bytes = info["bytes"].as_u64().unwrap();
    assert!(
        bytes < 4 << 20,
        "an adapter of the tiny model is small: {bytes} bytes"
    );

    let (_, files) = app.get(&format!("/models/{model}/files")).await;
    let names: Vec<&str> = files["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"adapter_config.json"), "{names:?}");
    assert!(names.contains(&"adapter_model.safetensors"), "{names:?}");
    assert!(
        !names.contains(&"model.safetensors"),
        "the base is not copied: {names:?}"
    );
    assert!(
        names.contains(&"tokenizer.json") && names.contains(&"tokenizer_config.json"),
        "the tokenizer comes with the adapter: {names:?}"
    );
    let configs = adapter_configs(&app.dir.path().join("data"));
    assert!(
        configs.len() >= 2,
        "the model's and a checkpoint's: {configs:?}"
    );
    for file in configs {
        let config: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let base = config["base_model_name_or_path"]
            .as_str()
            .unwrap_or_default();
        assert!(
            base.ends_with("base-model"),
            "{}: base {base:?}",
            file.display()
        );
    }

    let (status, answer) = app
        .post(
            "/classify",
            &json!({"inputs": "I love this", "model": model}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let scores = answer["predictions"][0]["scores"].as_object().unwrap();
    assert_eq!(scores.len(), 3, "{answer}");

    let (_, health) = app.get("/health").await;
    assert_eq!(health["loaded_adapters"], 1, "{health:#}");
    assert!(health["loaded_adapter_bytes"].as_u64().unwrap() > 0);
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("tuneserve_loaded_adapters 1"), "{metrics}");

    // Continued fine-tuning: the adapter is the base; its shape must be kept.
    let mut other = lora_hyperparameters();
    other["lora"]["r"] = json!(8);
    let body = json!({"base_model": model, "train_dataset": dataset, "hyperparameters": other});
    let (status, refused) = app.post("/jobs", &body).await;
    if status == 202 {
        let id = refused["id"].as_str().unwrap();
        let failed = app.wait_status(id, "failed", 120).await;
        assert!(
            failed["error"].as_str().unwrap().contains("lora"),
            "{failed:#}"
        );
    } else {
        assert_error(&(status, refused), 422, "invalid_hyperparameters", "lora");
    }
    let body = json!({"base_model": model, "train_dataset": dataset,
                      "hyperparameters": lora_hyperparameters()});
    let (status, next) = app.post("/jobs", &body).await;
    assert_eq!(status, 202, "{next}");
    let next = app
        .wait_status(next["id"].as_str().unwrap(), "succeeded", 180)
        .await;
    let (_, info) = app
        .get(&format!("/models/{}", next["model"].as_str().unwrap()))
        .await;
    assert_eq!(info["method"], "lora", "{info:#}");
}

/// A LoRA job whose worker is killed (SIGKILL) after its first checkpoint
/// resumes from it on the next start and ends where an uninterrupted run of
/// the same job does: the same loss at every step.
/// Every `adapter_config.json` under `dir` (models and checkpoints).
fn adapter_configs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(adapter_configs(&path));
        } else if path.file_name().is_some_and(|n| n == "adapter_config.json") {
            found.push(path);
        }
    }
    found
}

/// Copies the files of `from` (not its folders) into a new folder `to`.
fn copy_files(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

#[tokio::test]
async fn a_peft_adapter_under_a_model_dir_answers_classify_by_name() {
    let app = spawn_app().await;
    let models = app.dir.path().join("models");
    // The fixture's adapter names its base `../../gpt2-tiny-parity`.
    copy_files(
        &repo_path("tests/fixtures/gpt2-tiny-parity"),
        &models.join("gpt2-tiny-parity"),
    );
    let fixture = repo_path("tests/fixtures/gpt2-tiny-lora/adapter-r8");
    copy_files(&fixture, &models.join("team/sentiment-r8"));
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture.join("expected_logits.json")).unwrap(),
    )
    .unwrap();
    let item = &expected["items"][0];
    let body = json!({"inputs": item["text"], "model": "team/sentiment-r8", "raw_scores": true});
    let (status, answer) = app.post("/classify", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["model"], "team/sentiment-r8");
    let scores = &answer["predictions"][0]["scores"];
    for (i, label) in ["negative", "neutral", "positive"].iter().enumerate() {
        let (got, want) = (
            scores[label].as_f64().unwrap(),
            item["logits"][i].as_f64().unwrap(),
        );
        assert!((got - want).abs() < 1e-4, "{label}: {got} vs PEFT's {want}");
    }
    let missing = json!({"inputs": "x", "model": "team/no-such-adapter"});
    assert_eq!(app.post("/classify", &missing).await.0, 404);
    let escape = json!({"inputs": "x", "model": "../models/team/sentiment-r8"});
    assert_eq!(app.post("/classify", &escape).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lora_job_resumes_exactly() {
    use crate::processes::{get, ServeProcess};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let base_model = dir.path().join("models/base");
    crate::fixtures::write_tiny_model(&base_model, 7, tuneserve::model::WeightLayout::Classifier);
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    let mut first = ServeProcess::start(&data, &[]);
    let resp = client
        .post(format!("{}/datasets?format=jsonl", first.base))
        .body(crate::test_app::tiny_dataset())
        .send()
        .await
        .unwrap();
    let dataset = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let hyper = json!({"method": "lora", "lora": {"r": 4, "dropout": 0.1}, "epochs": 12,
                       "batch_size": 4, "logging_steps": 1, "eval_strategy": "no",
                       "learning_rate": 1e-3, "save_strategy": "steps", "save_steps": 5,
                       "save_total_limit": 1});
    let body = json!({"base_model": "base", "train_dataset": dataset, "hyperparameters": hyper});
    let submit = |base: String| {
        let (client, body) = (client.clone(), body.clone());
        async move {
            let job: Value = client
                .post(format!("{base}/jobs"))
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            job["id"].as_str().unwrap().to_string()
        }
    };
    let killed = submit(first.base.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ckpts = get(&client, format!("{}/jobs/{killed}/checkpoints", first.base)).await;
        if !ckpts["data"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no checkpoint in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill();
    let second = ServeProcess::start(&data, &[]);
    let base = second.base.clone();
    let finished = |id: String| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(180);
            loop {
                let job = get(&client, format!("{base}/jobs/{id}")).await;
                if crate::test_app::is_terminal(&job) {
                    break job;
                }
                assert!(Instant::now() < deadline, "job did not finish: {job:#}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let job = finished(killed.clone()).await;
    assert_eq!(
        (&job["status"], &job["attempt"]),
        (&json!("succeeded"), &json!(2)),
        "{job:#}"
    );
    let whole = submit(base.clone()).await;
    assert_eq!(finished(whole.clone()).await["status"], "succeeded");
    let losses = |id: String| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let m = get(&client, format!("{base}/jobs/{id}/metrics")).await;
            m["train"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["loss"].as_f64().unwrap())
                .collect::<Vec<f64>>()
        }
    };
    let (resumed, uninterrupted) = (losses(killed).await, losses(whole).await);
    assert_eq!(resumed.len(), 72);
    assert_eq!(
        resumed, uninterrupted,
        "the resumed run's losses are the uninterrupted run's"
    );
    drop(second);
}
