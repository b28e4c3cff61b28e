//! A worker process killed mid-training (SIGKILL after its first checkpoint):
//! after a restart the lease expires, the job is queued again and resumes
//! from its checkpoint as attempt 2, and its metrics have no duplicate steps.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tuneserve::model::WeightLayout;

use crate::processes::{get, ServeProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_resumed_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let base_model = dir.path().join("models/base");
    crate::fixtures::write_tiny_model(&base_model, 7, WeightLayout::Classifier);
    let data = dir.path().join("data");
    let client = reqwest::Client::new();

    let mut first = ServeProcess::start(&data, &[]);
    let base = first.base.clone();
    let resp = client
        .post(format!("{base}/datasets?format=jsonl"))
        .body(crate::test_app::tiny_dataset())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let dataset = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let hyper = json!({"epochs": 12, "batch_size": 4, "logging_steps": 1, "eval_strategy": "no",
                       "save_strategy": "steps", "save_steps": 5, "save_total_limit": 1});
    let body = json!({"base_model": "base", "train_dataset": dataset,
                      "hyperparameters": hyper});
    let job: Value = client
        .post(format!("{base}/jobs"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_string();

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ckpts = get(&client, format!("{base}/jobs/{id}/checkpoints")).await;
        if !ckpts["data"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no checkpoint in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill(); // SIGKILL: no shutdown, the lease is left to expire

    let second = ServeProcess::start(&data, &[]);
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
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["attempt"], 2, "{job:#}");
    let events = get(&client, format!("{base}/jobs/{id}/events")).await;
    let messages: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("lease expired")),
        "{messages:#?}"
    );
    let kinds = crate::test_app::event_kinds(&events);
    assert!(kinds.contains(&"resumed"), "{events:#}");
    let metrics = get(&client, format!("{base}/jobs/{id}/metrics")).await;
    let steps: Vec<i64> = metrics["train"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["step"].as_i64().unwrap())
        .collect();
    assert_eq!(steps, (1..=72).collect::<Vec<i64>>(), "every step once");
    drop(second);
}
