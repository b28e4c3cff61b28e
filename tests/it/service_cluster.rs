//! Three `serve` processes on one PostgreSQL database and one data folder:
//! six jobs submitted across them all succeed, spread over more than one
//! node, every (job, split, step) metric once; then the node running a job
//! is killed (SIGKILL) after its first checkpoint, another node takes the job
//! once the lease expires, resumes from that checkpoint and finishes, and
//! `/classify` on every surviving node answers from the newest model.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tuneserve::model::WeightLayout;

use crate::processes::{get, post, ServeProcess};
use crate::test_db::TestDb;

/// The steps of a job's `split` metrics, as stored.
async fn steps(client: &reqwest::Client, base: &str, id: &str, split: &str) -> Vec<i64> {
    let metrics = get(client, format!("{base}/jobs/{id}/metrics")).await;
    let rows = metrics[split].as_array().unwrap();
    rows.iter().map(|m| m["step"].as_i64().unwrap()).collect()
}

/// Polls job `id` through `base` until `pred` holds (panics after `secs`).
async fn wait(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    secs: u64,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let job = get(client, format!("{base}/jobs/{id}")).await;
        if pred(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "timed out: {job:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The nodes whose workers started an attempt of job `id`, from its log.
async fn started_on(client: &reqwest::Client, base: &str, id: &str) -> Vec<String> {
    let events = get(client, format!("{base}/jobs/{id}/events")).await;
    let started = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "started");
    let worker = |e: &Value| e["data"]["worker"].as_str().unwrap().to_string();
    started
        .map(|e| worker(e).split('/').next().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_the_work_and_survive_losing_one() {
    if !crate::test_db::postgres_available() {
        return;
    }
    let db = TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let base_model = dir.path().join("models/base");
    crate::fixtures::write_tiny_model(&base_model, 7, WeightLayout::Classifier);
    let data = dir.path().join("shared-data");
    let url = db.url_arg();
    let mut nodes: Vec<ServeProcess> = (1..=3)
        .map(|n| {
            ServeProcess::start(
                &data,
                &["--database-url", &url, "--node-id", &format!("node-{n}")],
            )
        })
        .collect();
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{}/datasets?format=jsonl", bases[0]))
        .body(crate::test_app::tiny_dataset())
        .send()
        .await
        .unwrap();
    let dataset = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = |hyper: Value| {
        json!({"base_model": "base",
        "train_dataset": dataset, "eval_dataset": dataset, "hyperparameters": hyper})
    };

    // Six small jobs, submitted round-robin.
    let small = json!({"epochs": 2, "batch_size": 4, "logging_steps": 1, "eval_strategy": "epoch"});
    let mut ids = Vec::new();
    for i in 0..6 {
        let answer = post(
            &client,
            format!("{}/jobs", bases[i % 3]),
            &job(small.clone()),
        )
        .await;
        ids.push(answer["id"].as_str().unwrap().to_string());
    }
    let mut ran_on = BTreeSet::new();
    for (i, id) in ids.iter().enumerate() {
        let base = &bases[(i + 1) % 3]; // asked of a node other than the one submitted to
        let done = wait(&client, base, id, 300, crate::test_app::is_terminal).await;
        assert_eq!(done["status"], "succeeded", "{done:#}");
        assert_eq!(
            steps(&client, base, id, "train").await,
            (1..=12).collect::<Vec<_>>()
        );
        assert_eq!(steps(&client, base, id, "eval").await, vec![0, 6, 12]);
        ran_on.extend(started_on(&client, base, id).await);
    }
    assert!(ran_on.len() > 1, "all six jobs ran on {ran_on:?}");
    eprintln!("the six jobs ran on {ran_on:?}");

    // A longer job; its node dies after the first checkpoint.
    let long = json!({"epochs": 12, "batch_size": 4, "logging_steps": 1, "eval_strategy": "no",
                      "save_strategy": "steps", "save_steps": 5, "save_total_limit": 1});
    let id = post(&client, format!("{}/jobs", bases[0]), &job(long)).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    while get(&client, format!("{}/jobs/{id}/checkpoints", bases[1])).await["data"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "no checkpoint in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let running = get(&client, format!("{}/jobs/{id}", bases[2])).await;
    let victim = running["node"].as_str().unwrap().to_string();
    let index: usize = victim.trim_start_matches("node-").parse::<usize>().unwrap() - 1;
    nodes[index].kill();
    let killed = Instant::now();
    let survivors: Vec<String> = (0..3)
        .filter(|&n| n != index)
        .map(|n| bases[n].clone())
        .collect();
    let moved = wait(&client, &survivors[0], &id, 60, |j| {
        j["status"] == "running" && j["attempt"] == 2
    })
    .await;
    eprintln!(
        "job running again on {} {:?} after the kill",
        moved["node"],
        killed.elapsed()
    );
    assert_ne!(moved["node"], victim.as_str(), "{moved:#}");
    let done = wait(
        &client,
        &survivors[1],
        &id,
        300,
        crate::test_app::is_terminal,
    )
    .await;
    assert_eq!(
        (done["status"].as_str(), done["attempt"].as_i64()),
        (Some("succeeded"), Some(2)),
        "{done:#}"
    );
    let events = get(&client, format!("{}/jobs/{id}/events", survivors[0])).await;
    let kinds = crate::test_app::event_kinds(&events);
    assert!(kinds.contains(&"resumed"), "{events:#}");
    assert_eq!(
        steps(&client, &survivors[0], &id, "train").await,
        (1..=72).collect::<Vec<_>>()
    );

    // The newest model answers on every surviving node.
    let newest = done["model"].as_str().unwrap();
    for base in &survivors {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = post(
                &client,
                format!("{base}/classify"),
                &json!({"inputs": "a fine day"}),
            )
            .await;
            if answer["model"] == newest {
                break;
            }
            assert!(Instant::now() < deadline, "{base} answers with {answer}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop(nodes);
}
