//! A full disk under a running service (a small `tmpfs` mounted as the data
//! folder; skipped, with the reason printed, where mounting is not allowed):
//! `/health` says storage is degraded, uploads answer 507, the running job
//! waits (queued with a backoff, its error naming the full disk) instead of
//! failing, and once space returns it resumes from its newest checkpoint and
//! succeeds with every step's metrics once — whether the disk filled during
//! a checkpoint or during the export.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::test_app::spawn_app_with;

/// A `tmpfs` of `megabytes`, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, megabytes: u32) -> Result<Self, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        match out.status.success() {
            true => Ok(Self(at.to_path_buf())),
            false => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        }
    }

    /// Writes the file `name` until the disk refuses more; returns its path.
    fn fill(&self, name: &str) -> PathBuf {
        let path = self.0.join(name);
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![7u8; 1 << 20];
        while file.write_all(&chunk).and_then(|()| file.flush()).is_ok() {}
        while file.write_all(&chunk[..4096]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A service on a 160 MB tmpfs with short retry delays; `None` (with the
/// reason printed) where mounting is not allowed.
async fn app_on_small_disk(tmp: &Path) -> Option<(SmallDisk, crate::test_app::TestApp)> {
    let disk = match SmallDisk::mount(&tmp.join("disk"), 160) {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("skipped: cannot mount a tmpfs here ({why})");
            return None;
        }
    };
    let data = disk.0.join("data");
    let app = spawn_app_with(|c| {
        c.data_dir = data.clone();
        c.lease = Duration::from_secs(60);
        c.retry_initial = Duration::from_millis(200);
        c.retry_max = Duration::from_secs(1);
    })
    .await;
    Some((disk, app))
}

/// The job's train metrics: each logged step exactly once, 1..=last.
async fn assert_every_step_once(app: &crate::test_app::TestApp, id: &str) {
    let (status, metrics) = app.get(&format!("/jobs/{id}/metrics")).await;
    assert_eq!(status, 200, "{metrics}");
    let rows = metrics["train"].as_array().cloned().unwrap_or_default();
    let steps: Vec<i64> = rows.iter().filter_map(|r| r["step"].as_i64()).collect();
    let expected: Vec<i64> = (1..=steps.len() as i64).collect();
    let mut sorted = steps.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "every step once: {steps:?}");
}

/// The messages of the job's error events.
async fn error_messages(app: &crate::test_app::TestApp, id: &str) -> Vec<String> {
    let (_, events) = app.get(&format!("/jobs/{id}/events?limit=1000")).await;
    let rows = events["data"].as_array().cloned().unwrap_or_default();
    rows.iter()
        .filter(|e| e["level"] == "error" || e["kind"] == "export_retry")
        .filter_map(|e| e["message"].as_str().map(str::to_lowercase))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_during_checkpoints_pauses_the_job_which_then_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((disk, app)) = app_on_small_disk(tmp.path()).await else {
        return;
    };
    let (_, health) = app.get("/health").await;
    assert_eq!(health["status"], "ok", "{health}");
    let dataset = app.upload_tiny_dataset().await;
    let every_step = json!({"epochs": 20, "batch_size": 4, "save_strategy": "steps",
                            "save_steps": 1, "save_total_limit": 1, "max_attempts": 1,
                            "logging_steps": 1, "eval_strategy": "no"});
    let id = app.submit(&dataset, every_step).await;
    app.wait_job(&id, 60, |j| j["progress"]["step"].as_i64() > Some(2))
        .await;

    let filler = disk.fill("filler");
    let (status, health) = app.get("/health").await;
    assert_eq!(
        (status, &health["status"]),
        (200, &json!("degraded")),
        "{health}"
    );
    assert!(health["storage"]["problem"].is_string(), "{health}");
    // Topped up until an upload meets the full disk: the job, failing to
    // write a checkpoint, removes what it had half-written (and finishing
    // one frees its predecessor), so space can come back between a fill
    // and the upload.
    let mut fillers = vec![filler];
    let (mut status, mut body) = (0, json!(null));
    for attempt in 0..5 {
        fillers.push(disk.fill(&format!("filler-{attempt}")));
        (status, body) = app
            .post_raw(
                "/datasets?format=jsonl",
                "application/x-ndjson",
                crate::test_app::tiny_dataset(),
            )
            .await;
        if status != 201 {
            break;
        }
    }
    assert_eq!(
        (status, &body["error"]["code"]),
        (507, &json!("insufficient_storage")),
        "{body}"
    );
    let said = body["error"]["message"].as_str().unwrap_or_default();
    assert!(said.contains("free)"), "how much was left: {said}");
    let root = disk.0.display().to_string();
    assert!(!said.contains(&root), "no server path: {said}");
    tokio::time::sleep(Duration::from_secs(3)).await; // the job meets the full disk
    let (_, waiting) = app.get(&format!("/jobs/{id}")).await;
    assert_ne!(
        waiting["status"], "failed",
        "a full disk is a cause that passes: {waiting:#}"
    );
    for filler in fillers {
        std::fs::remove_file(filler).unwrap();
    }

    let job = app.wait_job(&id, 240, crate::test_app::is_terminal).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let errors = error_messages(&app, &id).await;
    assert!(
        errors
            .iter()
            .any(|e| e.contains("no space left") && e.contains("free)")),
        "the history names the full disk: {errors:#?}"
    );
    assert!(errors.iter().all(|e| !e.contains("corrupt")), "{errors:#?}");
    assert_every_step_once(&app, &id).await;
    let (_, health) = app.get("/health").await;
    assert_eq!(health["status"], "ok", "healed without a restart: {health}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_at_export_retries_the_export_without_retraining() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((disk, app)) = app_on_small_disk(tmp.path()).await else {
        return;
    };
    let dataset = app.upload_tiny_dataset().await;
    // No checkpoints: the first file the job writes after the fill is its model.
    let no_saves = json!({"epochs": 40, "batch_size": 4, "save_strategy": "no",
                          "logging_steps": 1, "eval_strategy": "no", "max_attempts": 1});
    let id = app.submit(&dataset, no_saves).await;
    app.wait_job(&id, 60, |j| j["progress"]["step"].as_i64() > Some(1))
        .await;
    let filler = disk.fill("filler");
    // Held full until the export has met it: its temporary folder appears
    // (or, where even that cannot be made, the training has long ended).
    // The store cannot say: it writes to the same full disk.
    let models = disk.0.join("data/models");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let exporting = || {
        std::fs::read_dir(&models)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            })
            .unwrap_or(false)
    };
    while !exporting() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // a retry or two
    let (_, job) = app.get(&format!("/jobs/{id}")).await;
    assert_ne!(job["status"], "failed", "{job:#}");
    std::fs::remove_file(filler).unwrap();
    let job = app.wait_job(&id, 120, crate::test_app::is_terminal).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["attempt"], 1, "not trained again: {job:#}");
    let errors = error_messages(&app, &id).await;
    assert!(
        errors.iter().any(|e| e.contains("no space left")),
        "{errors:#?}"
    );
    assert_every_step_once(&app, &id).await;
    app.stop().await;
}
