//! Measurements behind README's "Beyond one machine" (ignored: they time, they
//! do not check; run them alone, on an otherwise idle machine):
//!
//! ```sh
//! export TUNESERVE_TEST_DATABASE_URL="$(bash .ci/postgres.sh)"
//! cargo test --release --test it cluster_bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! * claims per second: 600 tiny jobs (claim, one heartbeat, one progress
//!   write, success registered) drained by 1 or 3 nodes of 2 workers each;
//! * `/classify` requests per second: a bounded load (16 requests in flight)
//!   over 1 `serve` process, then spread over 2, on loopback.
//!
//! The time from `kill -9` to the job running on another node is printed by
//! `service_cluster` (`--nocapture`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tuneserve::model::WeightLayout;
use tuneserve::store::{Fence, NewModel, Progress, Store};

use crate::processes::ServeProcess;
use crate::service_queue::{queue_job, store_with_dataset};
use crate::test_db::{Backend, TestDb};

/// Jobs drained per measurement.
const JOBS: usize = 600;
/// Workers per node.
const WORKERS: usize = 2;

/// One worker: claims and finishes tiny jobs until none is queued.
async fn drain(store: Store, owner: String) -> usize {
    let mut done = 0;
    while let Some(job) = store.claim_job(&owner, 60_000).await.unwrap() {
        let fence = Fence {
            job_id: job.id.clone(),
            attempt: job.attempt,
            owner: owner.clone(),
        };
        store.heartbeat(&fence, 60_000).await.unwrap();
        let progress = Progress {
            step: 1,
            ..Progress::default()
        };
        store.update_progress(&fence, &progress).await.unwrap();
        let model = NewModel {
            id: format!("model-{}", job.id),
            base_model: "gpt2".into(),
            labels: vec!["a".into(), "b".into()],
            metrics: None,
            path: format!("models/{}", job.id),
        };
        let finished = store.finish_succeeded(&fence, model, false).await;
        assert!(finished.unwrap().model().is_some());
        done += 1;
    }
    done
}

/// Jobs per second `nodes` nodes (stores with pools of their own on
/// PostgreSQL) drain from one queue.
async fn claims_per_second(backend: Backend, nodes: usize) -> f64 {
    let (db, first) = store_with_dataset(backend).await;
    for i in 0..JOBS {
        queue_job(&first, &format!("job-{i:04}"), 3).await;
    }
    let mut stores = vec![first];
    for _ in 1..nodes {
        stores.push(db.store().await);
    }
    let started = Instant::now();
    let workers = stores.iter().enumerate().flat_map(|(n, store)| {
        (0..WORKERS).map(move |w| tokio::spawn(drain(store.clone(), format!("node-{n}/w{w}"))))
    });
    let done: usize = futures::future::join_all(workers.collect::<Vec<_>>())
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    let rate = done as f64 / started.elapsed().as_secs_f64();
    assert_eq!(done, JOBS, "every job once");
    drop(db);
    rate
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement; see the module documentation"]
async fn claims_per_second_on_one_and_three_nodes() {
    let sqlite = claims_per_second(Backend::Sqlite, 1).await;
    println!("claims/s  sqlite, 1 node x {WORKERS} workers: {sqlite:.0}");
    if !crate::test_db::postgres_available() {
        return;
    }
    for nodes in [1, 3] {
        let rate = claims_per_second(Backend::Postgres, nodes).await;
        println!("claims/s  postgres, {nodes} node(s) x {WORKERS} workers: {rate:.0}");
    }
}

/// Requests per second with `in_flight` requests at a time for `secs`,
/// spread round-robin over `bases`.
async fn classify_rate(bases: &[String], in_flight: usize, secs: u64) -> f64 {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let body = json!({"inputs": "what a great game tonight, loving every minute of it"});
    let tasks = (0..in_flight).map(|i| {
        let (client, count, body) = (client.clone(), count.clone(), body.clone());
        let url = format!("{}/classify", bases[i % bases.len()]);
        tokio::spawn(async move {
            while Instant::now() < deadline {
                let resp = client.post(&url).json(&body).send().await.unwrap();
                assert_eq!(resp.status(), 200);
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    });
    let started = Instant::now();
    futures::future::join_all(tasks.collect::<Vec<_>>()).await;
    count.load(std::sync::atomic::Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement; see the module documentation"]
async fn classify_requests_per_second_over_one_and_two_nodes() {
    if !crate::test_db::postgres_available() {
        return;
    }
    let db = TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("models/tiny");
    crate::fixtures::write_tiny_model(&model, 7, WeightLayout::Classifier);
    let data = dir.path().join("data");
    let url = db.url_arg();
    let model_arg = model.display().to_string();
    let start = |n: usize| {
        let id = format!("node-{n}");
        ServeProcess::start(
            &data,
            &[
                "--database-url",
                &url,
                "--node-id",
                &id,
                "--model",
                &model_arg,
            ],
        )
    };
    let nodes = [start(1), start(2)];
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    classify_rate(&bases[..1], 4, 2).await; // warm-up
    let one = classify_rate(&bases[..1], 16, 10).await;
    println!("/classify req/s, 16 in flight, 1 node: {one:.0}");
    let two = classify_rate(&bases, 16, 10).await;
    println!("/classify req/s, 16 in flight, 2 nodes: {two:.0}");
}
