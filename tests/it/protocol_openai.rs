//! OpenAI's fine-tuning API under `/v1`: its files, jobs, events,
//! checkpoints and models are views of tuneserve's datasets, jobs and models
//! (checked through both APIs), and the official `openai` SDK (from PyPI, in
//! the contract tests' venv) drives a whole job against a live server.

use serde_json::{json, Value};

use crate::contract::{run_ok, tool};
use crate::protocol_inference::python_with;
use crate::test_app::{assert_error, spawn_app_with, tiny_dataset, TestApp};

const KEY: &str = "openai-sdk-key";

/// POSTs `rows` as the `file` part (named `name`) of a multipart form with
/// `purpose`.
async fn upload(app: &TestApp, name: &str, rows: &str, purpose: &str) -> (u16, Value) {
    let boundary = "tuneserve-test-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n{rows}\r\n--{boundary}--\r\n"
    );
    let resp = (app.client.post(app.url("/v1/files")))
        .bearer_auth(KEY)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn call(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let method = method.parse().unwrap();
    let mut request = app.client.request(method, app.url(path)).bearer_auth(KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A chat-format file, as OpenAI's fine-tuning takes: not tuneserve's rows.
const CHAT_ROWS: &str = r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}"#;

#[tokio::test]
async fn v1_files_and_jobs_are_tuneserve_s_datasets_and_jobs() {
    let app = spawn_app_with(|c| c.api_key = Some(KEY.into())).await;
    let (status, _) = app.get("/v1/files").await;
    assert_eq!(status, 401, "the same bearer key guards /v1");

    let (status, file) = upload(&app, "train.jsonl", &tiny_dataset(), "fine-tune").await;
    assert_eq!(status, 200, "{file}");
    let id = file["id"].as_str().unwrap();
    assert_eq!(
        (file["object"].as_str(), file["filename"].as_str()),
        (Some("file"), Some("train.jsonl"))
    );
    let (status, dataset) = call(&app, "GET", &format!("/datasets/{id}"), None).await;
    assert_eq!(
        (status, dataset["rows"].as_i64()),
        (200, Some(24)),
        "{dataset}"
    );

    let got = upload(&app, "chat.jsonl", CHAT_ROWS, "fine-tune").await;
    assert_error(&got, 422, "validation_error", "");
    assert_eq!(got.1["error"]["param"], "file", "{}", got.1);
    assert!(
        got.1["error"]["details"].is_array(),
        "row errors by line: {}",
        got.1
    );
    let got = upload(&app, "train.jsonl", &tiny_dataset(), "assistants").await;
    assert_eq!(got.1["error"]["param"], "purpose", "{}", got.1);

    let body = json!({
        "model": app.base_model, "training_file": id, "validation_file": id,
        "hyperparameters": {"n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": 0.5},
        "tuneserve": {"hyperparameters": {"warmup_steps": 2, "lr_scheduler": "cosine"}},
        "metadata": {"run": "a"},
    });
    let (status, job) = call(&app, "POST", "/v1/fine_tuning/jobs", Some(body)).await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["object"], "fine_tuning.job");
    assert_eq!(
        job["hyperparameters"],
        json!({"n_epochs": 2, "batch_size": 8, "learning_rate_multiplier": 0.5})
    );
    assert_eq!(job["metadata"], json!({"run": "a"}));
    assert!(
        job["created_at"].as_i64().unwrap() > 1_600_000_000,
        "Unix seconds: {job}"
    );
    let job_id = job["id"].as_str().unwrap();
    // The same job, in tuneserve's own API.
    let (_, same) = call(&app, "GET", &format!("/jobs/{job_id}"), None).await;
    let hp = &same["hyperparameters"];
    assert_eq!(
        (hp["epochs"].as_i64(), hp["batch_size"].as_i64()),
        (Some(2), Some(8))
    );
    assert_eq!(hp["learning_rate"].as_f64(), Some(2.5e-5));
    assert_eq!(
        (hp["warmup_steps"].as_i64(), hp["lr_scheduler"].as_str()),
        (Some(2), Some("cosine"))
    );
    let (_, retrieved) = call(&app, "GET", &format!("/v1/fine_tuning/jobs/{job_id}"), None).await;
    assert_eq!(retrieved["metadata"], json!({"run": "a"}), "{retrieved}");

    // Refusals name OpenAI's fields.
    let base = json!({"model": app.base_model, "training_file": id});
    let with = |extra: Value| {
        let mut b = base.clone();
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let cases = [
        (json!({"training_file": "ds-nope"}), "training_file"),
        (json!({"validation_file": "ds-nope"}), "validation_file"),
        (json!({"model": ""}), "model"),
        (
            json!({"hyperparameters": {"n_epochs": -1}}),
            "hyperparameters.n_epochs",
        ),
        (
            json!({"hyperparameters": {"n_epochs": 5000}}),
            "hyperparameters.n_epochs",
        ),
        (
            json!({"hyperparameters": {"batch_sizes": 2}}),
            "hyperparameters.batch_sizes",
        ),
        (
            json!({"method": {"type": "supervised", "supervised": {"hyperparameters": {"learning_rate_multiplier": 0}}}}),
            "method.supervised.hyperparameters.learning_rate_multiplier",
        ),
        (json!({"method": {"type": "reinforcement"}}), "method.type"),
        (
            json!({"tuneserve": {"hyperparameters": {"epochs": 2}}}),
            "tuneserve.hyperparameters.epochs",
        ),
        (
            json!({"tuneserve": {"hyperparameters": {"logging_steps": 0}}}),
            "tuneserve.hyperparameters.logging_steps",
        ),
        (
            json!({"tuneserve": {"hyperparameters": {"warmup_steps": "x"}}}),
            "tuneserve.hyperparameters.warmup_steps",
        ),
        (json!({"tuneserve": {"knobs": {}}}), "tuneserve.knobs"),
        (json!({"seed": -1}), "seed"),
        (json!({"suffix": "Not Valid"}), "suffix"),
        (json!({"integrations": [{"type": "wandb"}]}), "integrations"),
    ];
    for (extra, param) in cases {
        let got = call(
            &app,
            "POST",
            "/v1/fine_tuning/jobs",
            Some(with(extra.clone())),
        )
        .await;
        assert_eq!(got.0, 422, "{extra}: {}", got.1);
        assert_eq!(got.1["error"]["param"], param, "{extra}: {}", got.1);
    }
    let (_, list) = call(&app, "GET", "/v1/fine_tuning/jobs?limit=1", None).await;
    assert_eq!(
        (list["object"].as_str(), list["has_more"].as_bool()),
        (Some("list"), Some(false))
    );
    assert_eq!(list["data"][0]["id"], job_id, "{list}");
    let (status, _) = call(
        &app,
        "POST",
        &format!("/v1/fine_tuning/jobs/{job_id}/cancel"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_drives_a_whole_fine_tuning_job() {
    let Some(venv) = python_with(&["openai"]) else {
        return;
    };
    let app = spawn_app_with(|c| c.api_key = Some(KEY.into())).await;
    let train = app.dir.path().join("train.jsonl");
    std::fs::write(&train, tiny_dataset()).unwrap();
    let bad = app.dir.path().join("chat.jsonl");
    std::fs::write(&bad, CHAT_ROWS).unwrap();
    let mut sdk = tool(&venv, "python");
    sdk.arg("tests/protocols/openai_fine_tuning.py")
        .args([&app.base, KEY, &app.base_model])
        .args([&train, &bad]);
    let out = run_ok("the openai SDK", sdk).await;
    let got: Value = serde_json::from_slice(out.stdout.trim_ascii()).unwrap();
    assert_eq!(got["openai"], "3.60.0", "the pinned version");

    let file = got["file"]["id"].as_str().unwrap();
    assert!(got["files_listed"]
        .as_array()
        .unwrap()
        .contains(&json!(file)));
    let job = &got["finished"];
    let id = job["id"].as_str().unwrap();
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(
        (job["training_file"].as_str(), job["seed"].as_i64()),
        (Some(file), Some(7))
    );
    assert_eq!(job["metadata"], json!({"team": "protocols"}));
    assert!(job["trained_tokens"].as_i64().unwrap() > 0, "{job}");
    assert!(job["finished_at"].as_i64() >= job["created_at"].as_i64());
    let model = job["fine_tuned_model"].as_str().unwrap();
    assert!(model.starts_with("model-sdk-"), "{model}");
    // The same job and model in tuneserve's API and the store.
    let (_, same) = call(&app, "GET", &format!("/jobs/{id}"), None).await;
    assert_eq!(
        (same["status"].as_str(), same["model"].as_str()),
        (Some("succeeded"), Some(model))
    );
    let hp = &same["hyperparameters"];
    assert_eq!(
        (hp["learning_rate"].as_f64(), hp["logging_steps"].as_i64()),
        (Some(1e-3), Some(1))
    );
    assert_eq!(
        (hp["epochs"].as_i64(), hp["batch_size"].as_i64()),
        (Some(1), Some(4))
    );
    assert_eq!(got["jobs_listed"][0], id, "newest first");

    let events = got["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(
        types.contains(&"metrics") && types.contains(&"message"),
        "{types:?}"
    );
    let ids: Vec<i64> = events
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let paged: Vec<i64> = (got["events_paged"].as_array().unwrap().iter())
        .map(|e| e.as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(paged, ids, "paging by 3 walks the same log");
    let (_, log) = call(&app, "GET", &format!("/jobs/{id}/events"), None).await;
    assert_eq!(log["data"].as_array().unwrap().len(), events.len());

    let checkpoints = got["checkpoints"].as_array().unwrap();
    assert!(
        !checkpoints.is_empty(),
        "the best checkpoint is kept: {got}"
    );
    let c = &checkpoints[0];
    assert_eq!(c["fine_tuning_job_id"], id);
    assert!(c["step_number"].as_i64().unwrap() >= 1, "{c}");
    for key in ["train_loss", "valid_loss"] {
        assert!(
            c["metrics"][key].as_f64().is_some_and(f64::is_finite),
            "{c}"
        );
    }
    assert!(
        got["models"].as_array().unwrap().contains(&json!(model)),
        "{got}"
    );

    let cancelled = &got["cancelled"];
    assert_eq!(cancelled["status"], "cancelled");
    let (_, same) = call(
        &app,
        "GET",
        &format!("/jobs/{}", cancelled["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(same["status"], "cancelled");

    let refusals = [
        ("bad_file", "file"),
        ("bad_purpose", "purpose"),
        ("bad_epochs", "hyperparameters.n_epochs"),
        (
            "bad_multiplier",
            "method.supervised.hyperparameters.learning_rate_multiplier",
        ),
        ("bad_extension", "tuneserve.hyperparameters.warmup_steps"),
        ("bad_training_file", "training_file"),
        ("dpo", "method.type"),
    ];
    for (case, param) in refusals {
        let r = &got[case];
        assert_eq!(r["status"], 422, "{case}: {r}");
        assert_eq!(r["error"], "UnprocessableEntityError", "{case}: {r}");
        assert_eq!(
            (r["param"].as_str(), r["code"].as_str()),
            (Some(param), Some("validation_error")),
            "{case}: {r}"
        );
    }
    app.stop().await;
}
