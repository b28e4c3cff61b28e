//! Nodes seen through the API: `GET /nodes` and the node running a job (both
//! backends), and two in-process nodes on one PostgreSQL database and data
//! folder: either answers for a job the other runs (its live log, a cancel),
//! and a model one node trains becomes `latest` on the other.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use crate::test_app::{is_terminal, quick_hyperparameters, spawn_app_on, TestApp};
use crate::test_db::{on_both_backends, Backend};

on_both_backends!(nodes_lists_this_node_and_the_job_it_runs);

/// A job that runs until cancelled.
fn endless() -> Value {
    json!({"epochs": 1000, "batch_size": 4, "logging_steps": 1,
           "save_strategy": "no", "eval_strategy": "no"})
}

async fn nodes_lists_this_node_and_the_job_it_runs(backend: Backend) {
    let app = spawn_app_on(backend, |c| c.node_id = "node-one".into()).await;
    let (status, health) = app.get("/health").await;
    assert_eq!((status, health["node"].as_str()), (200, Some("node-one")));
    let (_, nodes) = app.get("/nodes").await;
    assert_eq!(nodes["data"].as_array().unwrap().len(), 1, "{nodes:#}");
    let node = &nodes["data"][0];
    assert_eq!(node["id"], "node-one");
    assert_eq!(node["devices"], json!(["cpu"]));
    assert_eq!(
        (node["this_node"].clone(), node["running_jobs"].clone()),
        (json!(true), json!([]))
    );

    let dataset = app.upload_tiny_dataset().await;
    let id = app.submit(&dataset, endless()).await;
    let job = app.wait_status(&id, "running", 60).await;
    assert_eq!(job["node"], "node-one", "{job:#}");
    let (_, nodes) = app.get("/nodes").await;
    assert_eq!(nodes["data"][0]["running_jobs"], json!([id]));
    app.post(&format!("/jobs/{id}/cancel"), &Value::Null).await;
    let job = app.wait_job(&id, 60, is_terminal).await;
    assert_eq!(
        (job["status"].as_str(), &job["node"]),
        (Some("cancelled"), &Value::Null)
    );
    app.stop().await;
}

/// The node (`a` or `b`) running `id`, once it runs.
async fn runner<'a>(a: &'a TestApp, b: &'a TestApp, id: &str) -> (&'a TestApp, &'a TestApp) {
    let job = a.wait_status(id, "running", 60).await;
    match job["node"].as_str() {
        Some("node-a") => (a, b),
        Some("node-b") => (b, a),
        other => panic!("unexpected node {other:?}: {job:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_answer_for_each_others_jobs_and_share_latest() {
    if !crate::test_db::postgres_available() {
        return;
    }
    let a = spawn_app_on(Backend::Postgres, |c| c.node_id = "node-a".into()).await;
    let b = a.another_node(|c| c.node_id = "node-b".into()).await;
    let (_, nodes) = b.get("/nodes").await;
    let ids: Vec<&str> = nodes["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["node-a", "node-b"], "{nodes:#}");

    let dataset = a.upload_tiny_dataset().await;
    let id = b.submit(&dataset, endless()).await;
    let (running, other) = runner(&a, &b, &id).await;

    // The live log of a job running elsewhere, through this node; a cancel
    // posted here stops it there.
    let resp = other
        .client
        .get(other.url(&format!("/jobs/{id}/events")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let (mut seen, mut cancelled_at) = (String::new(), None);
    let deadline = Instant::now() + Duration::from_secs(120);
    while let Some(chunk) = stream.next().await {
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        if cancelled_at.is_none() && seen.matches("event: step").count() >= 3 {
            let (status, _) = other
                .post(&format!("/jobs/{id}/cancel"), &Value::Null)
                .await;
            assert_eq!(status, 200);
            cancelled_at = Some(Instant::now());
        }
        assert!(Instant::now() < deadline, "the stream did not end: {seen}");
    }
    let stopped_after = cancelled_at.expect("steps streamed").elapsed();
    assert!(seen.contains("event: cancelled"), "{seen}");
    let job = running.wait_job(&id, 10, is_terminal).await;
    assert_eq!(job["status"], "cancelled", "{job:#}");
    eprintln!("cancel through the other node took effect in {stopped_after:?}");

    // A model trained on one node is `latest` on both, without a restart.
    let id = a.submit(&dataset, quick_hyperparameters()).await;
    let job = a.wait_job(&id, 120, is_terminal).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let model = job["model"].as_str().unwrap();
    for node in [&a, &b] {
        node.wait_latest(model, 10).await;
        let (status, answer) = node.post("/classify", &json!({"inputs": "so happy"})).await;
        assert_eq!(
            (status, answer["model"].as_str()),
            (200, Some(model)),
            "{answer}"
        );
    }
    b.stop().await;
    a.stop().await;
}
