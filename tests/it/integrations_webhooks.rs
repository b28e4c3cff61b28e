//! Signed webhooks against a real receiver (`tests/webhook_receiver.py`)
//! that verifies every delivery with the `standardwebhooks` package: a
//! succeeded, a failed and a cancelled job each produce their event once
//! (and a promotion its own); a receiver that answers 500 three times gets
//! the event on the fourth try, each try in the job's log; a receiver with
//! another secret fails verification; per-job receivers only where the
//! server allows them.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use tuneserve::integrations::WebhookTarget;
use tuneserve::store::{Fence, JobStatus, NewJob, Subject};

use crate::integration_tools::{python, Receiver};
use crate::service_queue::store_with_dataset;
use crate::test_app::{assert_error, quick_hyperparameters, spawn_app_with, TestApp};
use crate::test_db::{on_both_backends, Backend};

on_both_backends!(the_outbox_fills_with_each_transition_and_each_row_is_claimed_once);

/// The outbox on both backends: rows for the server's receivers and the
/// job's own, written with the transition; two nodes claiming at once take
/// each row once; a try rescheduled comes back when due; a finished one never.
async fn the_outbox_fills_with_each_transition_and_each_row_is_claimed_once(backend: Backend) {
    let (_db, store) = store_with_dataset(backend).await;
    store.set_webhook_receivers(vec!["http://127.0.0.1:9/a".into()]);
    let own = WebhookTarget {
        url: "http://127.0.0.1:9/b".into(),
    };
    let job = NewJob {
        id: "job-1".into(),
        base_model: "gpt2".into(),
        train_dataset: "ds-1".into(),
        eval_dataset: None,
        settings: Default::default(),
        suffix: None,
        webhooks: vec![own.clone()],
        integrations: Vec::new(),
    };
    store.insert_job(job).await.unwrap();
    assert_eq!(
        store.pending_deliveries().await.unwrap(),
        0,
        "queued: no event"
    );
    let claimed = store
        .claim_job("node-a/cpu", 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.webhooks, Some(vec![own]));
    let fence = Fence {
        job_id: "job-1".into(),
        attempt: 1,
        owner: "node-a/cpu".into(),
    };
    assert!(store
        .end_attempt(&fence, JobStatus::Failed, Some("boom"))
        .await
        .unwrap());
    assert_eq!(
        store.pending_deliveries().await.unwrap(),
        4,
        "2 events x 2 receivers"
    );

    let (a, b) = tokio::join!(
        store.claim_deliveries("node-a", 60_000, 10),
        store.claim_deliveries("node-b", 60_000, 10)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 4, "each row once: {a:?} {b:?}");
    let all: Vec<_> = a.iter().chain(&b).collect();
    let failed: Vec<_> = all
        .iter()
        .filter(|d| d.event_type == "job.failed")
        .collect();
    assert_eq!(failed.len(), 2);
    assert_eq!(
        failed[0].message_id, failed[1].message_id,
        "one id per event"
    );
    let Subject::Job(row) = &failed[0].subject else {
        panic!("a job event")
    };
    assert_eq!(
        (row.status, row.error.as_deref()),
        (JobStatus::Failed, Some("boom"))
    );
    assert!(store
        .claim_deliveries("node-c", 60_000, 10)
        .await
        .unwrap()
        .is_empty());

    // Finish three; reschedule one to now: it comes back, with its try counted.
    let (owner, first) = match a.first() {
        Some(d) => ("node-a", d),
        None => ("node-b", &b[0]),
    };
    for d in a.iter().filter(|d| d.seq != first.seq) {
        assert!(store
            .finish_delivery(d.seq, "node-a", true, None)
            .await
            .unwrap());
    }
    for d in b.iter().filter(|d| d.seq != first.seq) {
        assert!(store
            .finish_delivery(d.seq, "node-b", false, None)
            .await
            .unwrap());
    }
    assert!(!store
        .finish_delivery(first.seq, "node-x", true, None)
        .await
        .unwrap());
    let now = tuneserve::store::now_ms();
    assert!(store
        .finish_delivery(first.seq, owner, false, Some(now))
        .await
        .unwrap());
    let again = store.claim_deliveries("node-c", 60_000, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].seq, again[0].attempts), (first.seq, 1));
    assert!(store
        .finish_delivery(first.seq, "node-c", true, None)
        .await
        .unwrap());
    assert_eq!(store.pending_deliveries().await.unwrap(), 0);
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_c2l4dGVlbiBieXRlcyBvZiBhbm90aGVyIGtleQ==";

fn webhooks(config: &mut tuneserve::api::ServeConfig) {
    config.webhook_secret = Some(SECRET.parse().unwrap());
    config.webhook_retry_initial = Duration::from_millis(200);
    config.webhook_poll = Duration::from_millis(50);
}

/// Waits until `pred` holds for the receiver's deliveries (panics after `secs`).
async fn wait_deliveries(rx: &Receiver, secs: u64, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = rx.deliveries();
        if pred(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "deliveries: {got:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The deliveries about job `id` (a model's about its job), by event type.
fn of_job<'a>(got: &'a [Value], id: &str, kind: &str) -> Vec<&'a Value> {
    got.iter()
        .filter(|d| d["type"] == kind)
        .filter(|d| d["body"]["data"]["id"] == id || d["body"]["data"]["job"] == id)
        .collect()
}

/// A job whose base model does not load: it fails at once, not retried.
async fn submit_failing(app: &TestApp, dataset: &str) -> String {
    let models = app.dir.path().join("models");
    let broken = models.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(models.join("base-model").join(file), broken.join(file)).unwrap();
    }
    std::fs::write(broken.join("model.safetensors"), b"not safetensors").unwrap();
    let body = json!({"base_model": "broken", "train_dataset": dataset,
                      "hyperparameters": quick_hyperparameters()});
    let (status, job) = app.post("/jobs", &body).await;
    assert_eq!(status, 202, "{job}");
    job["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn succeeded_failed_and_cancelled_jobs_each_send_their_event_once_signed() {
    let Some(python) = python() else { return };
    let rx = Receiver::start(&python, SECRET, 0);
    let url = rx.url.clone();
    let app = spawn_app_with(|c| {
        webhooks(c);
        c.webhook_urls = vec![url];
    })
    .await;
    let dataset = app.upload_tiny_dataset().await;
    let succeeded = app.train_quickly(&dataset, json!({})).await;
    let succeeded = succeeded["id"].as_str().unwrap().to_string();
    let failed = submit_failing(&app, &dataset).await;
    assert_eq!(
        app.wait_status(&failed, "failed", 60).await["status"],
        "failed"
    );
    let long = json!({"epochs": 200, "batch_size": 4, "logging_steps": 1, "eval_strategy": "no"});
    let cancelled = app.submit(&dataset, long).await;
    app.wait_status(&cancelled, "running", 60).await;
    let (status, _) = app
        .post(&format!("/jobs/{cancelled}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        app.wait_status(&cancelled, "cancelled", 60).await["status"],
        "cancelled"
    );

    let got = wait_deliveries(&rx, 30, |got| {
        !of_job(got, &cancelled, "job.cancelled").is_empty()
            && !of_job(got, &failed, "job.failed").is_empty()
    })
    .await;
    // A little longer: a duplicate would show now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(rx.deliveries().len() >= got.len());
    let got = &rx.deliveries()[..];
    assert!(got.iter().all(|d| d["verified"] == true), "{got:#?}");
    for (id, kind, status) in [
        (&succeeded, "job.succeeded", "succeeded"),
        (&failed, "job.failed", "failed"),
        (&cancelled, "job.cancelled", "cancelled"),
        (&succeeded, "job.running", "running"),
        (&failed, "job.running", "running"),
        (&cancelled, "job.running", "running"),
    ] {
        let ones = of_job(got, id, kind);
        assert_eq!(ones.len(), 1, "{kind} of {id}: {got:#?}");
        let data = &ones[0]["body"]["data"];
        assert_eq!(data["status"], status, "{data:#}");
        assert!(ones[0]["body"]["timestamp"].is_string());
    }
    let promoted = of_job(got, &succeeded, "model.promoted");
    assert_eq!(promoted.len(), 1, "{got:#?}");
    assert_eq!(promoted[0]["body"]["data"]["latest"], true);
    let ids: std::collections::HashSet<&str> = got
        .iter()
        .map(|d| d["webhook_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), got.len(), "one webhook-id per event: {got:#?}");
    let failed_data = &of_job(got, &failed, "job.failed")[0]["body"]["data"];
    assert!(failed_data["error"]
        .as_str()
        .unwrap()
        .contains("safetensors"));

    // Each delivery is in its job's log.
    let (_, events) = app.get(&format!("/jobs/{succeeded}/events")).await;
    let delivered: Vec<&Value> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "webhook_delivered")
        .collect();
    assert_eq!(
        delivered.len(),
        3,
        "running, succeeded, promoted: {events:#}"
    );
    assert!(delivered.iter().all(|e| e["data"]["status"] == 200));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_the_event_on_its_fourth_try_and_a_wrong_secret_fails() {
    let Some(python) = python() else { return };
    let flaky = Receiver::start(&python, SECRET, 3);
    let wrong = Receiver::start(&python, OTHER_SECRET, 0);
    let app = spawn_app_with(|c| {
        webhooks(c);
        c.allow_job_webhooks = true;
    })
    .await;
    let dataset = app.upload_tiny_dataset().await;
    // One long job holds the only worker, so the next ones stay queued.
    let long = json!({"epochs": 200, "batch_size": 4, "logging_steps": 1, "eval_strategy": "no"});
    let busy = app.submit(&dataset, long).await;
    app.wait_status(&busy, "running", 60).await;
    let mut ids = Vec::new();
    for rx in [&flaky, &wrong] {
        let body = json!({"base_model": app.base_model, "train_dataset": dataset,
                          "webhooks": [{"url": rx.url}]});
        let (status, job) = app.post("/jobs", &body).await;
        assert_eq!(status, 202, "{job}");
        assert_eq!(job["webhooks"], json!([{"url": rx.url}]));
        let id = job["id"].as_str().unwrap().to_string();
        let (status, job) = app.post(&format!("/jobs/{id}/cancel"), &json!({})).await;
        assert_eq!((status, job["status"].as_str()), (200, Some("cancelled")));
        ids.push(id);
    }
    let got = wait_deliveries(&flaky, 30, |got| got.len() >= 4).await;
    let answered: Vec<i64> = got
        .iter()
        .map(|d| d["answered"].as_i64().unwrap())
        .collect();
    assert_eq!(answered, [500, 500, 500, 200], "{got:#?}");
    assert!(got
        .iter()
        .all(|d| d["verified"] == true && d["type"] == "job.cancelled"));
    assert!(
        got.iter().all(|d| d["webhook_id"] == got[0]["webhook_id"]),
        "one id over tries"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(flaky.deliveries().len(), 4, "no try after the 200");
    let (_, events) = app.get(&format!("/jobs/{}/events", ids[0])).await;
    let tries: Vec<(&str, i64)> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"].as_str().unwrap().starts_with("webhook_"))
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["data"]["attempt"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tries,
        [
            ("webhook_failed", 1),
            ("webhook_failed", 2),
            ("webhook_failed", 3),
            ("webhook_delivered", 4)
        ],
        "{events:#}"
    );

    let got = wait_deliveries(&wrong, 30, |got| !got.is_empty()).await;
    assert_eq!(got[0]["verified"], false, "{got:#?}");
    assert_eq!(got[0]["answered"], 401);
    let (_, events) = app.get(&format!("/jobs/{}/events", ids[1])).await;
    let failure = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "webhook_failed")
        .cloned()
        .unwrap_or_else(|| panic!("{events:#}"));
    assert!(
        failure["message"].as_str().unwrap().contains("HTTP 401"),
        "{failure:#}"
    );
    let (status, _) = app.post(&format!("/jobs/{busy}/cancel"), &json!({})).await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_job_webhooks_are_refused_unless_allowed_and_must_be_urls() {
    let app = spawn_app_with(webhooks).await;
    let dataset = app.upload_tiny_dataset().await;
    let body = |hooks: Value| json!({"base_model": app.base_model, "train_dataset": dataset, "webhooks": hooks});
    let got = app
        .post("/jobs", &body(json!([{"url": "http://127.0.0.1:9/x"}])))
        .await;
    assert_error(&got, 422, "validation_error", "--allow-job-webhooks");
    assert_eq!(got.1["error"]["param"], "webhooks");
    app.stop().await;
    let app = spawn_app_with(|c| {
        webhooks(c);
        c.allow_job_webhooks = true;
    })
    .await;
    let dataset = app.upload_tiny_dataset().await;
    let body = json!({"base_model": app.base_model, "train_dataset": dataset,
                      "webhooks": [{"url": "ftp://example.com/"}]});
    let got = app.post("/jobs", &body).await;
    assert_eq!(got.1["error"]["param"], "webhooks[0].url", "{}", got.1);
    let body = json!({"base_model": app.base_model, "train_dataset": dataset,
                      "integrations": [{"type": "mlflow", "experiment": "e"}]});
    let got = app.post("/jobs", &body).await;
    assert_error(&got, 422, "validation_error", "--mlflow-tracking-uri");
    assert_eq!(got.1["error"]["param"], "integrations[0]");
    app.stop().await;
}
