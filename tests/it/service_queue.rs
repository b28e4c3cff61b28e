//! The queue's guarantees against a real database, each test on SQLite and
//! on PostgreSQL: fencing of stale workers, lease rescue, attempts capped,
//! and concurrent writers.

use std::collections::BTreeMap;

use serde_json::json;
use tuneserve::job::{JobOptions, JobSettings};
use tuneserve::store::{
    Fence, JobStatus, Lease, NewDataset, NewJob, NewModel, Progress, Split, Store,
};

use crate::test_db::{on_both_backends, Backend, TestDb};

on_both_backends!(
    a_stale_worker_changes_nothing,
    expired_leases_fail_the_job_once_attempts_are_spent,
    cancel_of_a_finished_job_conflicts,
    fifty_concurrent_uploads_and_submissions_lose_nothing,
    a_worker_whose_lease_is_taken_away_stops_and_the_job_resumes,
);

/// A store on a fresh database with dataset `ds-1`.
pub async fn store_with_dataset(backend: Backend) -> (TestDb, Store) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    store
        .insert_dataset(NewDataset {
            id: "ds-1".into(),
            name: None,
            format: tuneserve::data::DatasetFormat::Jsonl,
            rows: 1,
            labels: vec!["a".into()],
            label_counts: BTreeMap::from([("a".into(), 1)]),
            path: "/dev/null".into(),
            hub_repo: None,
        })
        .await
        .unwrap();
    (db, store)
}

/// Queues job `id` on dataset `ds-1`.
pub async fn queue_job(store: &Store, id: &str, max_attempts: i64) {
    store
        .insert_job(NewJob {
            id: id.into(),
            base_model: "gpt2".into(),
            train_dataset: "ds-1".into(),
            eval_dataset: None,
            settings: JobSettings {
                options: JobOptions {
                    max_attempts: max_attempts as usize,
                    ..JobOptions::default()
                },
                ..JobSettings::default()
            },
            suffix: None,
            webhooks: Vec::new(),
            integrations: Vec::new(),
        })
        .await
        .unwrap();
}

async fn store_with_job(backend: Backend, max_attempts: i64) -> (TestDb, Store) {
    let (db, store) = store_with_dataset(backend).await;
    queue_job(&store, "job-1", max_attempts).await;
    (db, store)
}

async fn expire_lease(store: &Store, job: &str) {
    store.expire_lease(job).await.unwrap();
}

async fn a_stale_worker_changes_nothing(backend: Backend) {
    let (_db, store) = store_with_job(backend, 3).await;
    let first = store.claim_job("worker-a", 60_000).await.unwrap().unwrap();
    assert_eq!((first.status, first.attempt), (JobStatus::Running, 1));
    assert!(
        store.claim_job("worker-b", 60_000).await.unwrap().is_none(),
        "one claim per job"
    );
    let stale = Fence {
        job_id: "job-1".into(),
        attempt: 1,
        owner: "worker-a".into(),
    };
    assert!(store
        .record_metric(&stale, Split::Train, 1, 0.1, Some(1.0), &json!({}))
        .await
        .unwrap());

    // Worker A's lease runs out (backdated); the rescuer requeues, B claims attempt 2.
    expire_lease(&store, "job-1").await;
    let rescued = store.rescue_expired().await.unwrap();
    assert_eq!(rescued[0].status, JobStatus::Queued);
    let second = store.claim_job("worker-b", 60_000).await.unwrap().unwrap();
    assert_eq!(second.attempt, 2);
    let fresh = Fence {
        job_id: "job-1".into(),
        attempt: 2,
        owner: "worker-b".into(),
    };

    // Every write of A is fenced off.
    assert_eq!(store.heartbeat(&stale, 60_000).await.unwrap(), Lease::Lost);
    let p = Progress {
        step: 99,
        ..Progress::default()
    };
    assert!(!store.update_progress(&stale, &p).await.unwrap());
    assert!(!store
        .record_metric(&stale, Split::Train, 2, 0.2, Some(9.0), &json!({}))
        .await
        .unwrap());
    assert!(!store.add_checkpoint(&stale, 2, "/x", None).await.unwrap());
    assert!(!store
        .end_attempt(&stale, JobStatus::Failed, Some("stale"))
        .await
        .unwrap());
    let model = NewModel {
        id: "model-stale".into(),
        base_model: "gpt2".into(),
        labels: vec!["a".into()],
        metrics: None,
        path: "/x".into(),
    };
    assert!(store
        .finish_succeeded(&stale, model.clone(), true)
        .await
        .unwrap()
        .model()
        .is_none());
    let job = store.get_job("job-1").await.unwrap();
    assert_eq!(
        (job.status, job.attempt, job.progress.step),
        (JobStatus::Running, 2, 0)
    );
    assert_eq!(job.lease_owner.as_deref(), Some("worker-b"));
    assert!(job.error.is_none());
    assert!(store.list_models(10, None).await.unwrap().is_empty());
    assert_eq!(store.list_metrics("job-1").await.unwrap().len(), 1);

    // B's writes go through; a replayed step overwrites rather than duplicates.
    assert_eq!(
        store.heartbeat(&fresh, 60_000).await.unwrap(),
        Lease::Held {
            cancel_requested: false
        }
    );
    assert!(store
        .record_metric(&fresh, Split::Train, 1, 0.1, Some(0.5), &json!({}))
        .await
        .unwrap());
    let metrics = store.list_metrics("job-1").await.unwrap();
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0].loss, Some(0.5));
    let model = NewModel {
        id: "model-b".into(),
        ..model
    };
    assert!(store
        .finish_succeeded(&fresh, model, true)
        .await
        .unwrap()
        .model()
        .is_some());
    let job = store.get_job("job-1").await.unwrap();
    assert_eq!(
        (job.status, job.model_id.as_deref()),
        (JobStatus::Succeeded, Some("model-b"))
    );
}

async fn expired_leases_fail_the_job_once_attempts_are_spent(backend: Backend) {
    let (_db, store) = store_with_job(backend, 1).await;
    store.claim_job("w", 60_000).await.unwrap().unwrap();
    expire_lease(&store, "job-1").await;
    let rescued = store.rescue_expired().await.unwrap();
    assert_eq!(rescued[0].status, JobStatus::Failed);
    let job = store.get_job("job-1").await.unwrap();
    assert!(job.error.unwrap().contains("lease expired"));
    assert!(store.claim_job("w", 60_000).await.unwrap().is_none());
}

async fn cancel_of_a_finished_job_conflicts(backend: Backend) {
    let (_db, store) = store_with_job(backend, 1).await;
    let job = store.request_cancel("job-1").await.unwrap();
    assert_eq!(job.status, JobStatus::Cancelled);
    assert!(
        store.claim_job("w", 60_000).await.unwrap().is_none(),
        "cancelled jobs are not claimed"
    );
    let err = store.request_cancel("job-1").await.unwrap_err();
    assert!(err.to_string().contains("already cancelled"), "{err}");
}

async fn fifty_concurrent_uploads_and_submissions_lose_nothing(backend: Backend) {
    // A worker that polls rarely: most submissions stay queued while we count.
    let app =
        crate::test_app::spawn_app_on(backend, |c| c.poll = std::time::Duration::from_secs(3600))
            .await;
    let app = std::sync::Arc::new(app);
    let uploads = (0..50).map(|_| {
        let app = app.clone();
        tokio::spawn(async move {
            let (status, body) = app
                .post_raw(
                    "/datasets",
                    "application/x-ndjson",
                    crate::test_app::tiny_dataset(),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            body["id"].as_str().unwrap().to_string()
        })
    });
    let ids: Vec<String> = futures::future::join_all(uploads)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let (_, list) = app.get("/datasets?limit=100").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 50);

    let submissions = ids.into_iter().map(|ds| {
        let app = app.clone();
        tokio::spawn(async move {
            let body = json!({"base_model": app.base_model, "train_dataset": ds,
                              "hyperparameters": {"epochs": 1}});
            let (status, job) = app.post("/jobs", &body).await;
            assert_eq!(status, 202, "{job}");
        })
    });
    for r in futures::future::join_all(submissions).await {
        r.unwrap();
    }
    let (status, page) = app.get("/jobs?limit=100").await;
    assert_eq!(status, 200);
    assert_eq!(page["data"].as_array().unwrap().len(), 50);
    let (_, first) = app.get("/jobs?limit=20").await;
    assert_eq!(first["has_more"], true);
    let after = first["data"][19]["id"].as_str().unwrap();
    let (_, next) = app.get(&format!("/jobs?limit=100&after={after}")).await;
    assert_eq!(next["data"].as_array().unwrap().len(), 30);
}

async fn a_worker_whose_lease_is_taken_away_stops_and_the_job_resumes(backend: Backend) {
    let app = crate::test_app::spawn_app_on(backend, |_| {}).await;
    let dataset = app.upload_tiny_dataset().await;
    let hyper = json!({"epochs": 30, "batch_size": 4, "logging_steps": 1, "eval_strategy": "no",
                       "save_strategy": "steps", "save_steps": 5, "save_total_limit": 1});
    let id = app.submit(&dataset, hyper).await;
    app.wait_job(&id, 60, |j| j["progress"]["step"].as_i64() > Some(10))
        .await;
    // Backdate the lease behind the worker's back: the rescuer requeues the job,
    // the old attempt's heartbeat fails, it stops, and attempt 2 resumes.
    // (The live worker renews its lease every 200 ms, so backdate until the
    // rescue wins the race, as it would against a stalled worker.)
    loop {
        expire_lease(&app.store, &id).await;
        let rescued = app.store.rescue_expired().await.unwrap();
        if rescued.iter().any(|r| r.job_id == id) {
            break;
        }
    }
    let job = app.wait_job(&id, 180, crate::test_app::is_terminal).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["attempt"], 2, "{job:#}");
    let (_, metrics) = app.get(&format!("/jobs/{id}/metrics")).await;
    let steps: Vec<i64> = metrics["train"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["step"].as_i64().unwrap())
        .collect();
    assert_eq!(steps, (1..=180).collect::<Vec<i64>>(), "each step once");
    let (_, models) = app.get("/models").await;
    assert_eq!(models["data"].as_array().unwrap().len(), 1);
    let (_, events) = app.get(&format!("/jobs/{id}/events")).await;
    let kinds = crate::test_app::event_kinds(&events);
    assert_eq!(
        kinds.iter().filter(|k| **k == "started").count(),
        2,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"resumed"), "{events:#}");
    assert_eq!(kinds.iter().filter(|k| **k == "succeeded").count(), 1);
    app.stop().await;
}
