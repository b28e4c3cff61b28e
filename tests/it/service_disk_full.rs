//! A full disk under a running service (a small `tmpfs` mounted as the data
//! folder; skipped, with the reason printed, where mounting is not allowed):
//! `/health` says storage is degraded, the running job ends with the real
//! cause rather than an expired lease, and once space returns every upload
//! and submission succeeds again without a restart.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::spawn_app_with;

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

    /// Writes a file until the disk refuses more; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_degrades_health_fails_the_job_with_its_cause_and_heals() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = match SmallDisk::mount(&tmp.path().join("disk"), 160) {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("skipped: cannot mount a tmpfs here ({why})");
            return;
        }
    };
    let data = disk.0.join("data");
    let app = spawn_app_with(|c| {
        c.data_dir = data.clone();
        c.lease = Duration::from_secs(60);
    })
    .await;
    let (_, health) = app.get("/health").await;
    assert_eq!(health["status"], "ok", "{health}");
    let dataset = app.upload_tiny_dataset().await;
    let every_step = json!({"epochs": 1000, "batch_size": 4, "save_strategy": "steps",
                            "save_steps": 1, "save_total_limit": 1, "max_attempts": 1,
                            "eval_strategy": "no"});
    let id = app.submit(&dataset, every_step).await;
    app.wait_job(&id, 60, |j| j["progress"]["step"].as_i64() > Some(2))
        .await;

    let filler = disk.fill();
    let (status, health) = app.get("/health").await;
    assert_eq!(
        (status, &health["status"]),
        (200, &json!("degraded")),
        "{health}"
    );
    assert!(health["storage"]["problem"].is_string(), "{health}");
    tokio::time::sleep(Duration::from_secs(3)).await; // the job meets the full disk
    std::fs::remove_file(filler).unwrap();

    let job = app.wait_job(&id, 60, crate::support::is_terminal).await;
    assert_eq!(job["status"], "failed", "{job:#}");
    let error = job["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        error.contains("no space left") || error.contains("disk is full"),
        "the real cause: {error}"
    );
    assert!(!error.contains("lease"), "not an expired lease: {error}");

    for _ in 0..20 {
        app.upload_tiny_dataset().await;
    }
    for _ in 0..6 {
        let id = app
            .submit(&dataset, crate::support::quick_hyperparameters())
            .await;
        app.post(&format!("/jobs/{id}/cancel"), &json!({})).await;
    }
    let (_, health) = app.get("/health").await;
    assert_eq!(health["status"], "ok", "healed without a restart: {health}");
    app.stop().await;
}
