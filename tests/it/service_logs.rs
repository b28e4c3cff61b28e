//! What an operator sees of a `serve` process: its log as JSON lines (no
//! colour codes when not on a terminal) with the address it listens on, each
//! step of a job's life once with the job's id, polls of `/health` and
//! `/metrics` kept out at `info`, and a `/metrics` page whose metrics all have
//! `# HELP`, whose latencies are histograms and whose training throughput is
//! back to 0 once no job runs. SIGTERM ends it within `--shutdown-timeout-secs`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tuneserve::model::WeightLayout;

struct Server {
    child: Child,
    base: String,
    lines: Arc<Mutex<Vec<String>>>,
}

fn start(data: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tuneserve"))
        .args(["serve", "--port", "0", "--log-format", "json"])
        .args(["--heartbeat-secs", "0.2", "--shutdown-timeout-secs", "5"])
        .arg("--data-dir")
        .arg(data)
        .arg("--model-dir")
        .arg(data.parent().unwrap().join("models"))
        .env("TUNESERVE_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let address = loop {
        let found = lines.lock().unwrap().iter().find_map(|l| {
            let rest = &l[l.find("listening on http://")? + "listening on http://".len()..];
            Some(rest[..rest.find('"')?].to_string())
        });
        if let Some(address) = found {
            break address;
        }
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    Server {
        child,
        base: format!("http://{address}"),
        lines,
    }
}

impl Server {
    fn json_lines(&self) -> Vec<Value> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .map(|l| {
                assert!(!l.contains('\x1b'), "a colour code: {l:?}");
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// Log lines of an attempt of `job` (in its `attempt` span) whose
    /// message starts with `prefix`.
    fn job_lines(&self, job: &str, prefix: &str) -> usize {
        self.json_lines()
            .iter()
            .filter(|l| l["span"]["name"] == "attempt" && l["span"]["job"] == job)
            .filter(|l| {
                let message = l["fields"]["message"].as_str().unwrap_or_default();
                message.starts_with(prefix)
            })
            .count()
    }

    async fn wait_status(&self, client: &reqwest::Client, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let url = format!("{}/jobs/{id}", self.base);
            let job: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            if job["status"] == want {
                return job;
            }
            let terminal = crate::test_app::is_terminal(&job);
            assert!(!terminal && Instant::now() < deadline, "{job:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn submit(server: &Server, client: &reqwest::Client, body: Value) -> String {
    let resp = client
        .post(format!("{}/jobs", server.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let job: Value = resp.json().await.unwrap();
    job["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_can_follow_jobs_in_the_log_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let base_model = dir.path().join("models/base");
    crate::fixtures::write_tiny_model(&base_model, 7, WeightLayout::Classifier);
    let mut server = start(&dir.path().join("data"));
    let client = reqwest::Client::new();
    let base = server.base.clone();
    for path in ["/health", "/metrics", "/health"] {
        let resp = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let resp = client
        .post(format!("{base}/datasets?format=jsonl"))
        .body(crate::test_app::tiny_dataset())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let dataset = resp.json::<Value>().await.unwrap()["id"].clone();
    let model = "base";
    let quick = json!({"base_model": model, "train_dataset": dataset, "eval_dataset": dataset,
                       "hyperparameters": crate::test_app::quick_hyperparameters()});
    let done = submit(&server, &client, quick).await;
    server.wait_status(&client, &done, "succeeded").await;
    let resp = client
        .post(format!("{base}/classify"))
        .json(&json!({"inputs": ["what a day", "fine"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let long = json!({"base_model": model, "train_dataset": dataset,
                      "hyperparameters": {"epochs": 500, "batch_size": 4, "logging_steps": 1}});
    let cancelled = submit(&server, &client, long).await;
    server.wait_status(&client, &cancelled, "running").await;
    let url = format!("{base}/jobs/{cancelled}/cancel");
    assert_eq!(client.post(url).send().await.unwrap().status(), 200);
    server.wait_status(&client, &cancelled, "cancelled").await;

    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap();
    check_metrics(&metrics.text().await.unwrap());

    // SIGTERM: the process ends on its own, well within --shutdown-timeout-secs.
    let pid = server.child.id() as libc::pid_t;
    // SAFETY: signals a child process this test started and still owns.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit 30 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    std::thread::sleep(Duration::from_millis(200)); // the last lines

    for (prefix, times) in [("claimed", 1), ("started", 1), ("succeeded", 1)] {
        let n = server.job_lines(&done, prefix);
        assert_eq!(n, times, "`{prefix}` lines for {done}: {:#?}", server.lines);
    }
    assert!(server.job_lines(&done, "eval at step") >= 1);
    assert!(server.job_lines(&done, "checkpoint at step") >= 1);
    assert_eq!(server.job_lines(&cancelled, "cancelled"), 1);
    let requests: Vec<String> = server
        .json_lines()
        .iter()
        .filter_map(|l| l["span"]["uri"].as_str().map(str::to_string))
        .collect();
    assert!(requests.iter().any(|u| u.starts_with("/datasets")));
    assert!(
        !requests.iter().any(|u| u == "/health" || u == "/metrics"),
        "health and metrics polls are debug: {requests:?}"
    );
    let messages: Vec<String> = server
        .json_lines()
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str().map(str::to_string))
        .collect();
    assert!(messages.iter().any(|m| m.starts_with("shutting down")));
}

/// Every metric described, latencies and batch sizes as histograms, the
/// build and the inference queue there, no training throughput left over.
fn check_metrics(text: &str) {
    let names = |prefix: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    };
    let (types, helps) = (names("# TYPE "), names("# HELP "));
    for name in &types {
        assert!(helps.contains(name), "no # HELP for {name}:\n{text}");
    }
    for histogram in [
        "tuneserve_http_request_duration_seconds",
        "tuneserve_inference_batch_size",
        "tuneserve_inference_seconds",
    ] {
        let line = format!("# TYPE {histogram} histogram");
        assert!(text.contains(&line), "{line} missing:\n{text}");
    }
    assert!(!text.contains(" summary"), "{text}");
    for present in [
        "tuneserve_build_info{",
        "tuneserve_inference_queue_depth 0",
        "tuneserve_training_tokens_per_second 0",
        "tuneserve_http_connections ",
    ] {
        assert!(text.contains(present), "{present} missing:\n{text}");
    }
}
