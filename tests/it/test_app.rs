//! Helpers for the service tests: a real server on port 0 over a temporary
//! data folder and a real database (SQLite, or PostgreSQL: see
//! [`crate::test_db`]), a tiny random base model, a small dataset, and a JSON
//! client.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use tuneserve::api::{Application, ServeConfig};
use tuneserve::model::WeightLayout;
use tuneserve::store::Store;

use crate::fixtures::write_tiny_model;
use crate::test_db::{Backend, TestDb};

/// A running service.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// A client with no default headers.
    pub client: reqwest::Client,
    /// The service's store (to reach behind the API).
    pub store: Store,
    /// The tiny random base model's name (a folder under the app's model
    /// folder, `--model-dir`): what jobs name as `base_model`.
    pub base_model: String,
    /// The data folder.
    pub dir: TempDir,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The PostgreSQL database, dropped after the server stops.
    _db: Option<TestDb>,
}

/// Fast leases and polling, a tiny base model, SQLite.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with the configuration adjusted by `tweak`.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut ServeConfig)) -> TestApp {
    spawn_app_on(Backend::Sqlite, tweak).await
}

/// Like [`spawn_app_with`], on `backend` (a PostgreSQL database of its own).
pub async fn spawn_app_on(backend: Backend, tweak: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    write_tiny_model(&models.join("base-model"), 7, WeightLayout::Classifier);
    let mut config = quick_config(dir.path().join("data"));
    config.model_dirs = vec![models];
    let db = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let db = TestDb::postgres().await;
            config.database_url = Some(db.url.clone());
            Some(db)
        }
    };
    tweak(&mut config);
    let app = Application::build(config).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let store = app.store().clone();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    TestApp {
        base,
        client: reqwest::Client::new(),
        store,
        base_model: "base-model".into(),
        dir,
        shutdown,
        server,
        _db: db,
    }
}

/// The defaults with fast leases, heartbeats and polling, on port 0.
pub fn quick_config(data_dir: PathBuf) -> ServeConfig {
    let mut config = ServeConfig::new(data_dir);
    config.port = 0;
    config.lease = Duration::from_secs(3);
    config.heartbeat = Duration::from_millis(200);
    config.poll = Duration::from_millis(100);
    config.model_poll = Duration::from_millis(500);
    config
}

/// 24 short texts, 8 per class, as JSONL with `label_text`.
pub fn tiny_dataset() -> String {
    let texts = [
        ("I hate this, it is awful", 0),
        ("worst day ever, so sad", 0),
        ("terrible service and rude staff", 0),
        ("this is broken and I am angry", 0),
        ("awful weather ruined my plans", 0),
        ("so disappointed with the result", 0),
        ("I feel miserable today", 0),
        ("bad news again, ugh", 0),
        ("the meeting is at noon", 1),
        ("I am going to the store", 1),
        ("the bus comes every hour", 1),
        ("it is a tuesday", 1),
        ("they moved the desk", 1),
        ("the report has ten pages", 1),
        ("we had pasta for lunch", 1),
        ("the train left at six", 1),
        ("I love this, it is great", 2),
        ("best day ever, so happy", 2),
        ("wonderful service and kind staff", 2),
        ("this works and I am thrilled", 2),
        ("lovely weather for a walk", 2),
        ("so proud of the result", 2),
        ("I feel fantastic today", 2),
        ("good news again, yay", 2),
    ];
    let names = ["negative", "neutral", "positive"];
    texts
        .iter()
        .map(|(t, l)| json!({"text": t, "label": l, "label_text": names[*l]}).to_string() + "\n")
        .collect()
}

/// Hyperparameters that train the tiny model in a moment.
pub fn quick_hyperparameters() -> Value {
    json!({"epochs": 1, "batch_size": 4, "logging_steps": 1, "learning_rate": 1e-3})
}

impl TestApp {
    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET, returning status and JSON body (Null when not JSON).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.client.get(self.url(path)).send().await.unwrap();
        split(resp).await
    }

    /// POST a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        split(resp).await
    }

    /// DELETE, returning status and JSON body (Null when empty).
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let resp = self.client.delete(self.url(path)).send().await.unwrap();
        split(resp).await
    }

    /// Runs a quick job on the tiny dataset to success; returns the job.
    pub async fn train_quickly(&self, dataset: &str, extra: Value) -> Value {
        let mut hp = quick_hyperparameters();
        if let (Some(h), Some(e)) = (hp.as_object_mut(), extra.as_object()) {
            h.extend(e.clone());
        }
        let id = self.submit(dataset, hp).await;
        let job = self.wait_status(&id, "succeeded", 180).await;
        assert_eq!(job["status"], "succeeded", "{job:#}");
        job
    }

    /// POST a raw body with a content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        split(resp).await
    }

    /// Uploads [`tiny_dataset`]; returns its id.
    pub async fn upload_tiny_dataset(&self) -> String {
        let (status, body) = self
            .post_raw(
                "/datasets?format=jsonl",
                "application/x-ndjson",
                tiny_dataset(),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// Submits a job on the tiny model; returns its id.
    pub async fn submit(&self, dataset: &str, hyperparameters: Value) -> String {
        let body = json!({
            "base_model": self.base_model,
            "train_dataset": dataset,
            "eval_dataset": dataset,
            "hyperparameters": hyperparameters,
        });
        let (status, job) = self.post("/jobs", &body).await;
        assert_eq!(status, 202, "{job}");
        assert_eq!(job["status"], "queued");
        job["id"].as_str().unwrap().to_string()
    }

    /// Polls a job until `pred` holds (panics after `secs`).
    pub async fn wait_job(&self, id: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (status, job) = self.get(&format!("/jobs/{id}")).await;
            assert_eq!(status, 200, "{job}");
            if pred(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting on job: {job:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls `/health` until `model` is `latest` (panics after `secs`).
    pub async fn wait_latest(&self, model: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (_, health) = self.get("/health").await;
            if health["latest_model"] == model {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{model} is not latest on {}: {health}",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until the job reaches `status`.
    pub async fn wait_status(&self, id: &str, status: &str, secs: u64) -> Value {
        self.wait_job(id, secs, |j| j["status"] == status || is_terminal(j))
            .await
    }

    /// Stops the server (as SIGTERM would) and waits for it; hands back the
    /// data folder for a look behind.
    pub async fn stop(self) -> TempDir {
        self.shutdown.cancel();
        let _ = self.server.await;
        self.dir
    }

    /// Another node on the same database and data folder as `self` (its
    /// configuration adjusted by `tweak`); `self` must outlive it.
    pub async fn another_node(&self, tweak: impl FnOnce(&mut ServeConfig)) -> TestApp {
        let mut config = quick_config(self.dir.path().join("data"));
        config.model_dirs = vec![self.dir.path().join("models")];
        config.database_url = self._db.as_ref().map(|db| db.url.clone());
        tweak(&mut config);
        let app = Application::build(config).await.unwrap();
        TestApp {
            base: format!("http://127.0.0.1:{}", app.port()),
            client: reqwest::Client::new(),
            store: app.store().clone(),
            base_model: self.base_model.clone(),
            dir: tempfile::tempdir().unwrap(),
            shutdown: app.shutdown_token(),
            server: tokio::spawn(app.run_until_stopped()),
            _db: None,
        }
    }
}

/// Whether a job JSON is in a terminal status.
pub fn is_terminal(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

async fn split(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The kinds of a page of a job's log (`GET /jobs/{id}/events`), in order.
pub fn event_kinds(events: &Value) -> Vec<&str> {
    let entries = events["data"].as_array().expect("a page of events");
    entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect()
}

/// Asserts an error answer: status, code, and a message fragment.
pub fn assert_error(got: &(u16, Value), status: u16, code: &str, fragment: &str) {
    let (s, body) = got;
    assert_eq!(*s, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(fragment), "`{message}` lacks `{fragment}`");
}
