//! schemathesis against live servers, from `openapi.yaml`: no server error,
//! no undocumented status code, content type or header, no body off its
//! schema. Three runs: an open server, a server with `--api-key` given the
//! key, and the same server without it. Each has a model, a dataset and a
//! finished job to find.
//!
//! Bounded by time: `TUNESERVE_FUZZ_SECS` (default 60) per keyed or open
//! run, a third of it without the key; `TUNESERVE_FUZZ_SEED` (default 1).
//! Needs the Python tools (see `contract`); the run's JSON report and its
//! counts are printed.

use std::path::Path;

use serde_json::Value;

use crate::contract::{python_tools, tool};
use crate::test_app::{spawn_app_with, TestApp};

const KEY: &str = "fuzz-test-key";

/// The checks: every one of schemathesis's conformance checks.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
    response_schema_conformance,response_headers_conformance";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A server serving its base model as `latest`, with a dataset and a
/// finished job (so that ids schemathesis picks up lead somewhere).
async fn populated(api_key: Option<&str>) -> TestApp {
    let mut app = spawn_app_with(|c| {
        c.model = Some(c.model_dirs[0].join("base-model").display().to_string());
        c.api_key = api_key.map(str::to_string);
    })
    .await;
    if let Some(key) = api_key {
        let mut headers = reqwest::header::HeaderMap::new();
        let bearer = format!("Bearer {key}").parse().unwrap();
        headers.insert(reqwest::header::AUTHORIZATION, bearer);
        app.client = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap();
    }
    let dataset = app.upload_tiny_dataset().await;
    app.train_quickly(&dataset, serde_json::json!({})).await;
    app
}

/// One schemathesis run against `app`; returns its JSON report.
async fn fuzz(venv: &Path, app: &TestApp, key: Option<&str>, secs: u64, report: &Path) -> Value {
    let root = crate::contract::root();
    let mut st = tool(venv, "schemathesis");
    // In the report's folder: schemathesis keeps a cache of crashes to replay
    // in its working directory.
    st.current_dir(report.parent().unwrap())
        .arg("--config-file")
        .arg(root.join("tests/contract/schemathesis.toml"))
        .arg("run")
        .arg(root.join("openapi.yaml"))
        .args(["--url", &app.base, "--checks", CHECKS])
        .args(["--max-time", &secs.to_string()])
        .args(["--seed", &env_number("TUNESERVE_FUZZ_SEED", 1).to_string()])
        .args(["--report", "json", "--report-json-path"])
        .arg(report)
        .args(["--no-color", "--output-truncate", "true"]);
    if let Some(key) = key {
        st.args(["--header", &format!("Authorization: Bearer {key}")]);
    }
    let out = tokio::task::spawn_blocking(move || st.output())
        .await
        .unwrap()
        .expect("schemathesis starts");
    let report: Value = std::fs::read(report)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    if !out.status.success() {
        println!("{}", String::from_utf8_lossy(&out.stdout));
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    report
}

/// The run's counts, as one line.
fn counts(name: &str, report: &Value) -> String {
    let cases = &report["test_cases"];
    format!(
        "fuzzing ({name}): {} test cases generated, {} with failures ({} unique), {} errored",
        cases["generated"], cases["with_failures"], cases["unique_failures"], cases["errored"]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_contract_violation() {
    let Some(venv) = python_tools() else { return };
    let secs = env_number("TUNESERVE_FUZZ_SECS", 60);
    let open = populated(None).await;
    let locked = populated(Some(KEY)).await;
    let reports = open.dir.path().join("reports");
    std::fs::create_dir_all(&reports).unwrap();

    let runs = [
        ("open server", &open, None, secs),
        ("with the API key", &locked, Some(KEY), secs),
        ("without the API key", &locked, None, secs.div_ceil(3)),
    ];
    let mut failed = Vec::new();
    for (i, (name, app, key, secs)) in runs.into_iter().enumerate() {
        let report = fuzz(&venv, app, key, secs, &reports.join(format!("{i}.json"))).await;
        println!("{}", counts(name, &report));
        let clean = report["exit_code"] == 0
            && report["failures"].as_array().is_some_and(Vec::is_empty)
            && report["errors"].as_array().is_some_and(Vec::is_empty);
        if !clean {
            failed.push(format!("{name}: {}", report["failures"]));
        }
    }
    open.stop().await;
    locked.stop().await;
    assert!(failed.is_empty(), "schemathesis found: {failed:#?}");
}
