//! Two nodes against one database: a hundred races for the same job, each
//! won by exactly one node, with the loser's (and later the stale winner's)
//! writes fenced off; migrations applied once when nodes start together
//! (PostgreSQL); and a second node refused on one SQLite file.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::Barrier;
use tuneserve::store::{Fence, JobStatus, Lease, NewModel, Progress, Split, Store};

use crate::service_queue::{queue_job, store_with_dataset};
use crate::test_db::{on_both_backends, Backend, TestDb};

on_both_backends!(two_nodes_race_for_one_job_a_hundred_times);

/// Node A and node B claim the same job at the same instant.
async fn race(a: &Store, b: &Store) -> (Option<i64>, Option<i64>) {
    let barrier = Arc::new(Barrier::new(2));
    let claim = |store: Store, owner: &'static str| {
        let barrier = barrier.clone();
        tokio::spawn(async move {
            barrier.wait().await;
            let job = store.claim_job(owner, 60_000).await.unwrap();
            job.map(|j| j.attempt)
        })
    };
    let (ra, rb) = tokio::join!(
        claim(a.clone(), "node-a/cpu"),
        claim(b.clone(), "node-b/cpu")
    );
    (ra.unwrap(), rb.unwrap())
}

async fn two_nodes_race_for_one_job_a_hundred_times(backend: Backend) {
    let (db, a) = store_with_dataset(backend).await;
    // PostgreSQL: a second node with a pool of its own. SQLite serves one
    // node, so its "second node" is a second handle on the same pool.
    let b = match backend {
        Backend::Postgres => db.store().await,
        Backend::Sqlite => a.clone(),
    };
    let (mut a_won, mut b_won) = (0, 0);
    for i in 0..100 {
        let id = format!("job-{i}");
        queue_job(&a, &id, 3).await;
        let (winner, loser, owners) = match race(&a, &b).await {
            (Some(1), None) => (&a, &b, ["node-a/cpu", "node-b/cpu"]),
            (None, Some(1)) => (&b, &a, ["node-b/cpu", "node-a/cpu"]),
            other => panic!("race {i}: exactly one claim must win, got {other:?}"),
        };
        if owners[0] == "node-a/cpu" {
            a_won += 1;
        } else {
            b_won += 1;
        }
        let fence = |owner: &str, attempt| Fence {
            job_id: id.clone(),
            attempt,
            owner: owner.to_string(),
        };
        // The loser holds nothing: its writes change nothing.
        assert_stale(loser, &fence(owners[1], 1)).await;
        // The winner stalls; its lease runs out; the loser takes attempt 2.
        winner.expire_lease(&id).await.unwrap();
        let rescued = loser.rescue_expired().await.unwrap();
        assert_eq!(rescued.len(), 1, "race {i}: {rescued:?}");
        let second = loser.claim_job(owners[1], 60_000).await.unwrap().unwrap();
        assert_eq!((second.id.as_str(), second.attempt), (id.as_str(), 2));
        // The stale winner wakes up: fenced off too.
        assert_stale(winner, &fence(owners[0], 1)).await;
        let model = new_model(&format!("model-{i}"));
        let done = loser
            .finish_succeeded(&fence(owners[1], 2), model, true)
            .await;
        assert!(done.unwrap().model().is_some(), "race {i}");
        let job = a.get_job(&id).await.unwrap();
        assert_eq!((job.status, job.attempt), (JobStatus::Succeeded, 2));
        assert_eq!(job.model_id, Some(format!("model-{i}")));
        assert!(a.list_metrics(&id).await.unwrap().is_empty());
        assert!(a.list_checkpoints(&id).await.unwrap().is_empty());
    }
    assert_eq!(a.list_models(1000, None).await.unwrap().len(), 100);
    eprintln!("{backend:?}: node A won {a_won} races, node B {b_won}");
}

fn new_model(id: &str) -> NewModel {
    NewModel {
        id: id.into(),
        base_model: "gpt2".into(),
        labels: vec!["a".into()],
        metrics: None,
        path: format!("models/{id}"),
    }
}

/// Every write under `fence` is refused.
async fn assert_stale(store: &Store, fence: &Fence) {
    let p = Progress {
        step: 7,
        ..Progress::default()
    };
    assert_eq!(store.heartbeat(fence, 60_000).await.unwrap(), Lease::Lost);
    assert!(!store.update_progress(fence, &p).await.unwrap());
    let data = json!({});
    let metric = store.record_metric(fence, Split::Train, 1, 0.1, Some(1.0), &data);
    assert!(!metric.await.unwrap());
    assert!(!store.add_checkpoint(fence, 1, "x", None).await.unwrap());
    let event = tuneserve::store::NewEvent::info(tuneserve::store::EventKind::Step, "stale", None);
    let logged = store.add_event(&fence.job_id, Some(fence), event).await;
    assert!(logged.unwrap().is_none());
    let ended = store.end_attempt(fence, JobStatus::Failed, Some("stale"));
    assert!(!ended.await.unwrap());
    let stale = new_model(&format!("stale-{}-{}", fence.job_id, fence.owner));
    assert!(store
        .finish_succeeded(fence, stale, true)
        .await
        .unwrap()
        .model()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_a_postgres_database_once() {
    if !crate::test_db::postgres_available() {
        return;
    }
    let db = TestDb::postgres().await;
    let opens = (0..6).map(|_| {
        let url = db.url.clone();
        tokio::spawn(async move { Store::connect(&url).await })
    });
    let stores: Vec<Store> = futures::future::join_all(opens)
        .await
        .into_iter()
        .map(|r| r.unwrap().expect("every node opens the store"))
        .collect();
    let tuneserve::store::DatabaseUrl::Postgres(url) = &db.url else {
        unreachable!()
    };
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let shipped = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count() as i64;
    assert_eq!(
        applied,
        (1..=shipped).map(|v| (v, true)).collect::<Vec<_>>()
    );
    for store in stores {
        store.ping().await.unwrap();
        store.close().await;
    }
}

#[tokio::test]
async fn a_second_node_on_one_sqlite_file_is_refused() {
    let db = TestDb::sqlite();
    let first = db.store().await;
    let err = Store::connect(&db.url).await.unwrap_err().to_string();
    assert!(
        err.contains("in use by another tuneserve node") && err.contains("PostgreSQL"),
        "{err}"
    );
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    first.close().await;
    let again = db.store().await;
    again.ping().await.unwrap();
}
