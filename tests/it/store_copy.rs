//! `migrate-store`: a single node's SQLite database copied to PostgreSQL and
//! back, every row and id kept, sequences continuing after the copied ids;
//! a non-empty target refused; and the command itself.

use std::process::Command;

use serde_json::json;
use tuneserve::store::{EventKind, Fence, JobStatus, NewEvent, NewModel, Progress, Split, Store};

use crate::service_queue::{queue_job, store_with_dataset};
use crate::test_db::{Backend, TestDb};

/// A store with one dataset, a succeeded job (metrics, a checkpoint, log
/// entries, a model), a cancelled one and a queued one.
async fn populated() -> (TestDb, Store) {
    let (db, store) = store_with_dataset(Backend::Sqlite).await;
    // Webhook events fill the outbox: job-a running, succeeded and promoted, job-b cancelled.
    store.set_webhook_receivers(vec!["http://127.0.0.1:9/hook".into()]);
    for id in ["job-a", "job-b", "job-c"] {
        queue_job(&store, id, 3).await;
    }
    let job = store.claim_job("node/cpu", 60_000).await.unwrap().unwrap();
    let fence = Fence {
        job_id: job.id.clone(),
        attempt: job.attempt,
        owner: "node/cpu".into(),
    };
    let progress = Progress {
        step: 2,
        total_steps: Some(2),
        epoch: Some(1.0),
        tokens: 40,
        tokens_per_second: Some(12.5),
    };
    assert!(store.update_progress(&fence, &progress).await.unwrap());
    for step in 1..=2 {
        let data = json!({"loss": 0.5 / step as f64, "learning_rate": 2e-5});
        let recorded = store.record_metric(&fence, Split::Train, step, 0.5, Some(0.5), &data);
        assert!(recorded.await.unwrap());
    }
    let eval = json!({"accuracy": 0.75, "confusion": [[1, 0], [0, 1]]});
    let ckpt = store.add_checkpoint(&fence, 2, "jobs/job-a/checkpoints/step-2", Some(&eval));
    assert!(ckpt.await.unwrap());
    let event = NewEvent::info(
        EventKind::Step,
        "step 2: loss 0.25",
        Some(json!({"step": 2})),
    );
    store.add_event("job-a", Some(&fence), event).await.unwrap();
    let model = NewModel {
        id: "model-a".into(),
        base_model: "gpt2".into(),
        labels: vec!["a".into()],
        metrics: Some(eval),
        path: "models/model-a".into(),
    };
    store
        .finish_succeeded(&fence, model, true)
        .await
        .unwrap()
        .model()
        .unwrap();
    store.request_cancel("job-b").await.unwrap();
    (db, store)
}

/// Everything the store shows of `jobs`, for comparing two stores.
async fn snapshot(store: &Store, jobs: &[&str]) -> String {
    let mut out = format!("{:?}\n", store.list_datasets(100, None).await.unwrap());
    out += &format!("{:?}\n", store.list_jobs(None, 100, None).await.unwrap());
    out += &format!("{:?}\n", store.list_models(100, None).await.unwrap());
    for id in jobs {
        out += &format!("{:?}\n", store.list_metrics(id).await.unwrap());
        out += &format!(
            "{:?}\n",
            store
                .list_events(id, 0, 100, &Default::default())
                .await
                .unwrap()
        );
        out += &format!("{:?}\n", store.list_checkpoints(id).await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_moves_to_postgres_and_back() {
    let jobs = ["job-a", "job-b", "job-c"];
    let (_src_db, source) = populated().await;
    let before = snapshot(&source, &jobs).await;
    let middle_db = match crate::test_db::postgres_available() {
        true => TestDb::postgres().await,
        false => TestDb::sqlite(),
    };
    let middle = middle_db.store().await;
    let copied = source.copy_into(&middle).await.unwrap();
    let rows: Vec<(&str, u64)> = copied.iter().map(|c| (c.table, c.rows)).collect();
    assert_eq!(
        rows,
        [
            ("datasets", 1),
            ("jobs", 3),
            ("metrics", 2),
            ("events", 1),
            ("checkpoints", 1),
            ("models", 1),
            ("webhook_outbox", 4)
        ]
    );
    assert_eq!(snapshot(&middle, &jobs).await, before);

    // Refused into a store that has rows; nothing written.
    let err = source.copy_into(&middle).await.unwrap_err().to_string();
    assert!(err.contains("already has datasets"), "{err}");
    assert_eq!(snapshot(&middle, &jobs).await, before);

    // Back into a fresh SQLite file: the same rows again.
    let back_db = TestDb::sqlite();
    let back = back_db.store().await;
    middle.copy_into(&back).await.unwrap();
    assert_eq!(snapshot(&back, &jobs).await, before);

    // Ids continue after the copied ones, and the queue works on.
    queue_job(&middle, "job-d", 3).await;
    let all = middle.list_jobs(None, 100, None).await.unwrap();
    assert_eq!(all.last().unwrap().id, "job-d");
    let claimed = middle.claim_job("n/cpu", 1000).await.unwrap().unwrap();
    assert_eq!(
        (claimed.id.as_str(), claimed.status),
        ("job-c", JobStatus::Running)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migrate_store_command_copies_and_refuses_a_live_sqlite_source() {
    let (src_db, source) = populated().await;
    let target = match crate::test_db::postgres_available() {
        true => TestDb::postgres().await,
        false => TestDb::sqlite(),
    };
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_tuneserve"))
            .args([
                "migrate-store",
                "--from",
                &src_db.url_arg(),
                "--to",
                &target.url_arg(),
            ])
            .output()
            .unwrap()
    };
    // The source is open here (a node running on it): refused.
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("in use by another tuneserve node"),
        "{stderr}"
    );
    source.close().await;

    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("jobs") && stdout.contains("3 rows"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("tuneserve@"),
        "no password printed: {stdout}"
    );
    let copied = target.store().await;
    assert_eq!(copied.list_jobs(None, 100, None).await.unwrap().len(), 3);
    assert_eq!(copied.get_model("model-a").await.unwrap().job_id, "job-a");
}
