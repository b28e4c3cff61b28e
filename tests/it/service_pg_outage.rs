//! PostgreSQL stopped for 20 s under a running service: `/health` says
//! `degraded` within 2 s, the routes that need the database answer 503 at once,
//! and every job succeeds once the database is back.
//!
//! The outage needs a server of its own to stop, so the test makes a throwaway
//! cluster (`initdb` into a temporary folder, run as the `postgres` user, on a
//! free port) instead of stopping the one the other tests share. It runs where
//! the PostgreSQL tests run (`TUNESERVE_TEST_DATABASE_URL` set) and the server
//! programs and the `postgres` user are there, as `.ci/postgres.sh` leaves them.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use tuneserve::store::DatabaseUrl;

use crate::test_app::{spawn_app_with, TestApp};

/// A PostgreSQL server of this test's own, stopped for good when dropped.
struct OwnCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl OwnCluster {
    /// `initdb` and start; `None` (after saying why) where that cannot be done.
    fn create() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()?;
        let dir = tempfile::tempdir().ok()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let cluster = Self { dir, bin, port };
        let owned = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(cluster.dir.path())
            .status();
        let initdb = format!(
            "{} -D {} -A trust -U tuneserve",
            cluster.bin.join("initdb").display(),
            cluster.data().display()
        );
        if !(owned.ok()?.success() && cluster.as_postgres(&initdb)) {
            eprintln!("skipped: cannot make a PostgreSQL cluster as the postgres user");
            return None;
        }
        cluster.start();
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self) -> DatabaseUrl {
        let url = format!("postgres://tuneserve@127.0.0.1:{}/postgres", self.port);
        url.parse().unwrap()
    }

    fn as_postgres(&self, command: &str) -> bool {
        let quiet = format!("{command} >/dev/null 2>&1");
        let status = Command::new("runuser")
            .args(["-u", "postgres", "--", "sh", "-c", &quiet])
            .status();
        status.is_ok_and(|s| s.success())
    }

    fn pg_ctl(&self, action: &str) -> bool {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        self.as_postgres(&format!(
            "{} -D {} -o '{options}' -m fast -w {action}",
            self.bin.join("pg_ctl").display(),
            self.data().display()
        ))
    }

    fn start(&self) {
        assert!(self.pg_ctl("start"), "the test's PostgreSQL starts");
    }

    fn stop(&self) {
        assert!(self.pg_ctl("stop"), "the test's PostgreSQL stops");
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        self.pg_ctl("stop");
    }
}

/// GETs `path`; its status and how long the answer took.
async fn timed_get(app: &TestApp, path: &str) -> (u16, Duration) {
    let started = Instant::now();
    let resp = app.client.get(app.url(path)).send().await.unwrap();
    (resp.status().as_u16(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_postgresql_stopped_for_20_seconds() {
    if !crate::test_db::postgres_available() {
        return;
    }
    let Some(cluster) = OwnCluster::create() else {
        return;
    };
    let app = spawn_app_with(|c| {
        c.database_url = Some(cluster.url());
        c.lease = Duration::from_secs(30);
        c.heartbeat = Duration::from_secs(1);
    })
    .await;
    let dataset = app.upload_tiny_dataset().await;
    let hyper = json!({"epochs": 40, "batch_size": 4, "logging_steps": 1, "eval_strategy": "no",
                       "save_strategy": "no"});
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(app.submit(&dataset, hyper.clone()).await);
    }
    app.wait_status(&jobs[0], "running", 60).await;

    cluster.stop();
    let outage = Instant::now();
    let (status, health) = app.get("/health").await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(status, 200);
    let (status, took) = timed_get(&app, "/health").await;
    assert!(status == 200 && took < Duration::from_secs(2), "{took:?}");
    let (status, took) = timed_get(&app, "/jobs").await;
    assert!(
        status == 503 && took < Duration::from_secs(2),
        "{status} in {took:?}"
    );
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(outage.elapsed())).await;
    cluster.start();

    for id in &jobs {
        let job = app.wait_status(id, "succeeded", 180).await;
        assert_eq!(job["status"], "succeeded", "{job:#}");
    }
    let (_, health) = app.get("/health").await;
    assert_eq!(health["status"], "ok", "{health}");
    app.stop().await;
}
