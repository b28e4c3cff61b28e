//! The dashboard in a real browser: two services (one open, one with
//! `--api-key`) and `tests/browser/dashboard.mjs`, Playwright driving Debian's
//! headless Chromium through every page against them.
//!
//! Without Chromium, node or `tests/browser/node_modules` the test says why and
//! passes, unless `TUNESERVE_REQUIRE_BROWSER=1` (CI sets it; `.ci/browser-deps.sh`
//! installs what is missing). `UPDATE_SCREENSHOTS=1` also writes the README's
//! `docs/dashboard-*.png` (1280×800).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::test_app::{spawn_app, spawn_app_with, tiny_dataset};

const KEY: &str = "browser-test-key";

fn chromium() -> PathBuf {
    std::env::var_os("TUNESERVE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into())
}

/// Why the browser tests cannot run here, if they cannot.
fn missing(scripts: &Path) -> Option<String> {
    let chromium = chromium();
    if !chromium.exists() {
        return Some(format!(
            "no Chromium at {} (install Debian's `chromium`, or set TUNESERVE_CHROMIUM)",
            chromium.display()
        ));
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => return Some("no `node` on PATH".into()),
    }
    if !scripts.join("node_modules/playwright-core").is_dir() {
        return Some("tests/browser/node_modules is missing (`npm ci` in tests/browser)".into());
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scripts = root.join("tests/browser");
    if let Some(why) = missing(&scripts) {
        let required = std::env::var("TUNESERVE_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(!required, "TUNESERVE_REQUIRE_BROWSER=1, but {why}");
        eprintln!("skipping the browser tests: {why}");
        return;
    }

    let app = spawn_app().await;
    let locked = spawn_app_with(|c| c.api_key = Some(KEY.into())).await;
    let dataset = app.dir.path().join("tiny-sentiment.jsonl");
    std::fs::write(&dataset, tiny_dataset()).unwrap();

    let mut node = Command::new("node");
    node.arg(scripts.join("dashboard.mjs"))
        .args(["--base", &app.base, "--locked", &locked.base, "--key", KEY])
        .arg("--base-model")
        .arg(&app.base_model)
        .arg("--dataset")
        .arg(&dataset)
        .arg("--chromium")
        .arg(chromium());
    if std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        node.arg("--screenshots").arg(root.join("docs"));
    }
    // The servers run on this runtime's workers; node waits on a blocking thread.
    let out = tokio::task::spawn_blocking(move || node.output())
        .await
        .unwrap()
        .expect("node runs");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    app.stop().await;
    locked.stop().await;
    assert!(
        out.status.success(),
        "the browser tests failed ({}): see their output above",
        out.status
    );
}
