//! MLflow tracking against a real `mlflow server` (SQLite backend, proxied
//! artifacts, on loopback), read back through MLflow's own Python client
//! (`tests/mlflow_read.py`): a job's params, per-step metrics (the same
//! count and values as `/jobs/{id}/metrics`), tags, final status and
//! artifacts; a job killed (SIGKILL) and retried on a new process keeps one
//! run; a job whose tracker stops mid-run still succeeds, says so in its
//! log, and the run catches up once the tracker is back; `tuneserve train`
//! logs its run the same way.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::integration_tools::{python, MlflowServer};
use crate::processes::{get, ServeProcess};
use crate::test_app::{spawn_app_with, TestApp};

/// Polls `read` until `pred` holds (panics after `secs`).
async fn wait_run(
    server: &MlflowServer,
    experiment: &str,
    job: &str,
    secs: u64,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let run = server.read(experiment, job);
        if pred(&run) {
            return run;
        }
        assert!(Instant::now() < deadline, "run of {job}: {run:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `(step, value)` of `field` in each row of `rows` (`/jobs/{id}/metrics`).
fn series(rows: &Value, field: &str) -> Vec<(i64, f64)> {
    let rows = rows.as_array().unwrap();
    rows.iter()
        .map(|r| (r["step"].as_i64().unwrap(), r[field].as_f64().unwrap()))
        .collect()
}

fn mlflow_series(run: &Value, key: &str) -> Vec<(i64, f64)> {
    let points = run["metrics"][key].as_array().unwrap();
    points
        .iter()
        .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
        .collect()
}

fn kinds(events: &Value, kind: &str) -> Vec<Value> {
    let all = events["data"].as_array().unwrap();
    all.iter().filter(|e| e["kind"] == kind).cloned().collect()
}

async fn submit(app: &TestApp, dataset: &str, hp: Value, mlflow: Value) -> String {
    let body = json!({"base_model": app.base_model, "train_dataset": dataset,
                      "eval_dataset": dataset, "hyperparameters": hp,
                      "integrations": [mlflow]});
    let (status, job) = app.post("/jobs", &body).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["integrations"][0]["type"], "mlflow");
    job["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_logs_params_metrics_tags_status_and_artifacts_to_mlflow() {
    let Some(python) = python() else { return };
    let server = MlflowServer::start(&python).await;
    let uri = server.uri.clone();
    let app = spawn_app_with(|c| c.mlflow_tracking_uri = Some(uri)).await;
    let dataset = app.upload_tiny_dataset().await;
    let hp = json!({"epochs": 2, "batch_size": 4, "logging_steps": 1, "learning_rate": 1e-3,
                    "eval_strategy": "steps", "eval_steps": 4});
    let mlflow = json!({"type": "mlflow", "experiment": "tiny", "run_name": "first",
                        "tags": {"team": "nlp"}});
    let id = submit(&app, &dataset, hp, mlflow).await;
    let job = app.wait_status(&id, "succeeded", 180).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let run = wait_run(&server, "tiny", &id, 60, |r| r["status"] == "FINISHED").await;
    assert_eq!(run["runs"].as_array().unwrap().len(), 1, "{run:#}");
    assert_eq!(run["run_name"], "first");
    let run_id = run["runs"][0].as_str().unwrap();
    let tracking = &job["tracking"];
    assert_eq!(tracking["run_id"], run_id, "{job:#}");
    assert!(tracking["url"].as_str().unwrap().contains(run_id));

    // Every hyperparameter, as the job reports it.
    let params = run["params"].as_object().unwrap();
    for (key, value) in job["hyperparameters"].as_object().unwrap() {
        let want = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_string);
        if !value.is_object() {
            assert_eq!(
                params.get(key),
                Some(&json!(want)),
                "param {key}: {params:?}"
            );
        }
    }
    assert_eq!(params["learning_rate"], "0.001");
    let tags = &run["tags"];
    assert_eq!(tags["base_model"], app.base_model);
    assert_eq!(tags["team"], "nlp");
    assert_eq!(tags["tuneserve.job_id"], id);
    assert!(
        tags["datasets"].as_str().is_some_and(|d| !d.is_empty()),
        "{tags}"
    );

    // The same points as the job's own metrics, at their steps.
    let (_, metrics) = app.get(&format!("/jobs/{id}/metrics")).await;
    let train = &metrics["train"];
    assert!(train.as_array().unwrap().len() >= 10, "{metrics:#}");
    for (key, field) in [
        ("train_loss", "loss"),
        ("learning_rate", "learning_rate"),
        ("grad_norm", "grad_norm"),
    ] {
        assert_eq!(mlflow_series(&run, key), series(train, field), "{key}");
    }
    let eval = &metrics["eval"];
    assert!(
        eval.as_array().unwrap().len() >= 3,
        "baseline and steps: {metrics:#}"
    );
    for (key, field) in [
        ("eval_loss", "loss"),
        ("eval_accuracy", "accuracy"),
        ("eval_macro_f1", "macro_f1"),
    ] {
        assert_eq!(mlflow_series(&run, key), series(eval, field), "{key}");
    }

    // Artifacts: the model card and metrics.json (the job's final evaluation).
    assert_eq!(
        run["artifacts"],
        json!(["README.md", "metrics.json"]),
        "{run:#}"
    );
    assert_eq!(run["card"], true);
    let final_eval = &run["metrics_json"]["final"];
    assert_eq!(
        final_eval["accuracy"],
        eval.as_array().unwrap().last().unwrap()["accuracy"]
    );
    let (_, events) = app.get(&format!("/jobs/{id}/events")).await;
    let tracked = kinds(&events, "tracking");
    assert_eq!(tracked.len(), 1, "created, nothing dropped: {tracked:#?}");
    assert_eq!(tracked[0]["data"]["resumed"], false);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_retried_after_a_kill_keeps_one_run() {
    let Some(python) = python() else { return };
    let server = MlflowServer::start(&python).await;
    let dir = tempfile::tempdir().unwrap();
    let base_model = dir.path().join("models/base");
    crate::fixtures::write_tiny_model(&base_model, 7, tuneserve::model::WeightLayout::Classifier);
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    let args = ["--mlflow-tracking-uri", server.uri.as_str()];
    let mut first = ServeProcess::start(&data, &args);
    let base = first.base.clone();
    let resp = client
        .post(format!("{base}/datasets?format=jsonl"))
        .body(crate::test_app::tiny_dataset())
        .send()
        .await
        .unwrap();
    let dataset = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let hp = json!({"epochs": 12, "batch_size": 4, "logging_steps": 1, "eval_strategy": "no",
                    "save_strategy": "steps", "save_steps": 5, "save_total_limit": 1});
    let body = json!({"base_model": "base", "train_dataset": dataset, "hyperparameters": hp,
                      "integrations": [{"type": "mlflow", "experiment": "kill"}]});
    let job = crate::processes::post(&client, format!("{base}/jobs"), &body).await;
    let id = job["id"].as_str().unwrap().to_string();
    // Killed once the run exists (on the job and in its log) and a
    // checkpoint (and steps after it) do.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job = get(&client, format!("{base}/jobs/{id}")).await;
        let step = job["progress"]["step"].as_i64().unwrap_or(0);
        let events = get(&client, format!("{base}/jobs/{id}/events")).await;
        let logged = !kinds(&events, "tracking").is_empty();
        if job["tracking"].is_object() && logged && step >= 8 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no run or progress in time: {job:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill();
    let second = ServeProcess::start(&data, &args);
    let base = second.base.clone();
    let deadline = Instant::now() + Duration::from_secs(180);
    let job = loop {
        let job = get(&client, format!("{base}/jobs/{id}")).await;
        if crate::test_app::is_terminal(&job) {
            break job;
        }
        assert!(Instant::now() < deadline, "job did not finish: {job:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (job["status"].as_str(), job["attempt"].as_i64()),
        (Some("succeeded"), Some(2))
    );
    let run = wait_run(&server, "kill", &id, 60, |r| r["status"] == "FINISHED").await;
    assert_eq!(run["runs"].as_array().unwrap().len(), 1, "one run: {run:#}");
    let metrics = get(&client, format!("{base}/jobs/{id}/metrics")).await;
    assert_eq!(
        mlflow_series(&run, "train_loss"),
        series(&metrics["train"], "loss")
    );
    let events = get(&client, format!("{base}/jobs/{id}/events")).await;
    let tracked = kinds(&events, "tracking");
    let resumed: Vec<bool> = tracked
        .iter()
        .map(|e| e["data"]["resumed"] == true)
        .collect();
    assert_eq!(resumed, [false, true], "{tracked:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_tracker_stops_succeeds_and_the_run_catches_up() {
    let Some(python) = python() else { return };
    let mut server = MlflowServer::start(&python).await;
    let uri = server.uri.clone();
    let app = spawn_app_with(|c| c.mlflow_tracking_uri = Some(uri)).await;
    let dataset = app.upload_tiny_dataset().await;
    let hp = json!({"epochs": 40, "batch_size": 4, "logging_steps": 1, "eval_strategy": "no"});
    let id = submit(
        &app,
        &dataset,
        hp,
        json!({"type": "mlflow", "experiment": "down"}),
    )
    .await;
    app.wait_job(&id, 120, |j| {
        j["tracking"].is_object() && j["progress"]["step"].as_i64() >= Some(3)
    })
    .await;
    server.stop();
    let started = Instant::now();
    let job = app.wait_status(&id, "succeeded", 180).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let (_, events) = app.get(&format!("/jobs/{id}/events")).await;
    let tracked = kinds(&events, "tracking");
    assert!(
        tracked.iter().any(|e| e["level"] == "warning"
            && e["message"].as_str().unwrap().contains("the job goes on")),
        "{tracked:#?} ({:?} after the stop)",
        started.elapsed()
    );
    // Back within the tracker's catch-up time: every point arrives, once.
    server.restart().await;
    let run = wait_run(&server, "down", &id, 90, |r| r["status"] == "FINISHED").await;
    let (_, metrics) = app.get(&format!("/jobs/{id}/metrics")).await;
    assert_eq!(
        mlflow_series(&run, "train_loss"),
        series(&metrics["train"], "loss")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_train_command_logs_its_run_too() {
    let Some(python) = python() else { return };
    let server = MlflowServer::start(&python).await;
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    crate::fixtures::write_tiny_model(&base, 9, tuneserve::model::WeightLayout::Base);
    let data = tmp.path().join("train.jsonl");
    std::fs::write(&data, crate::test_app::tiny_dataset()).unwrap();
    let out = tmp.path().join("run");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_tuneserve"))
        .args(["train", "--model"])
        .arg(&base)
        .arg("--train")
        .arg(&data)
        .arg("--eval")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .args(["--epochs", "1", "--batch-size", "4", "--logging-steps", "1"])
        .args([
            "--mlflow-tracking-uri",
            &server.uri,
            "--mlflow-experiment",
            "cli",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let recorded: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("mlflow-run.json")).unwrap())
            .unwrap();
    let key = format!("train:{}", std::fs::canonicalize(&out).unwrap().display());
    // The command waited for the tracker: the run is finished already.
    let run = server.read("cli", &key);
    assert_eq!(run["runs"], json!([recorded["run_id"]]), "{run:#}");
    assert_eq!(run["status"], "FINISHED");
    assert_eq!(run["params"]["batch_size"], "4");
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(
        mlflow_series(&run, "train_loss"),
        series(&metrics["history"]["steps"], "loss")
    );
    let evals = metrics["history"]["evals"].as_array().unwrap();
    let accuracy: Vec<(i64, f64)> = evals
        .iter()
        .map(|e| {
            (
                e["step"].as_i64().unwrap(),
                e["metrics"]["accuracy"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(mlflow_series(&run, "eval_accuracy"), accuracy);
    assert_eq!(run["artifacts"], json!(["README.md", "metrics.json"]));
}
