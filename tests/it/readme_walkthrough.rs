//! README's Service walkthrough, run as a newcomer runs it: the block's setup
//! commands (`init-model`, then `serve`, on a free port instead of 8080), then
//! the curl walkthrough top to bottom in bash with `set -euo pipefail`, every
//! `curl` made to fail on a non-2xx answer (`--fail-with-body`). The text
//! announces no failing command, so any non-2xx fails the test, and so does a
//! step that waits forever (the live log must end with the job).
//!
//! Needs `curl` and `jq` (the walkthrough's tools); skipped with the reason
//! printed where either is missing, unless `TUNESERVE_REQUIRE_CLI_TOOLS=1`
//! (CI) makes that a failure.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The walkthrough may take this long (the recipe's 3 epochs on `small`).
const LIMIT: Duration = Duration::from_secs(900);

/// README's text from the line starting with `marker` to the end of the next
/// `sh` code block: (the block's body).
fn block_after(readme: &str, marker: &str) -> String {
    let from = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README lacks `{marker}`"));
    let rest = &readme[from..];
    let start = rest.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let len = rest[start..].find("```").expect("the block ends");
    rest[start..start + len].to_string()
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

fn missing_tools() -> Option<String> {
    let missing: Vec<&str> = ["curl", "jq"]
        .into_iter()
        .filter(|tool| Command::new(tool).arg("--version").output().is_err())
        .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// The setup block's `cargo run --release -- ARGS` lines as argument lists
/// (comments dropped), 8080 replaced by `port`.
fn setup_commands(block: &str, port: u16) -> Vec<Vec<String>> {
    block
        .lines()
        .filter_map(|line| line.trim().strip_prefix("cargo run --release -- "))
        .map(|args| {
            let args = args.split(" #").next().unwrap();
            let args = args.replace("8080", &port.to_string());
            args.split_whitespace().map(str::to_string).collect()
        })
        .collect()
}

/// Starts `serve` as the setup block says and waits until it answers.
fn start_server(args: &[String], dir: &Path, port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_tuneserve"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "serve did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// Kills the server when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn readme_walkthrough_runs_top_to_bottom() {
    if let Some(tools) = missing_tools() {
        let required = std::env::var("TUNESERVE_REQUIRE_CLI_TOOLS").is_ok_and(|v| v == "1");
        assert!(!required, "the walkthrough needs {tools}");
        eprintln!("skipped: the walkthrough needs {tools}");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let service = &readme[readme.find("## Service").expect("a Service section")..];
    let port = free_port();
    let setup = setup_commands(&block_after(service, "`tuneserve serve` runs"), port);
    let walkthrough = block_after(service, "A walkthrough with curl");
    assert!(walkthrough.contains("# 1. Upload"), "{walkthrough}");

    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo.join("tests"), dir.path().join("tests")).unwrap();
    let (serve, others): (Vec<_>, Vec<_>) = setup.into_iter().partition(|a| a[0] == "serve");
    for args in others {
        let status = Command::new(env!("CARGO_BIN_EXE_tuneserve"))
            .args(&args)
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "tuneserve {args:?}");
    }
    let [serve] = &serve[..] else {
        panic!("one serve command in the setup block: {serve:?}")
    };
    let _server = Killed(start_server(serve, dir.path(), port));

    let script = format!(
        "set -euo pipefail\ncurl() {{ command curl --fail-with-body --max-time {} \"$@\"; }}\n{}",
        LIMIT.as_secs(),
        walkthrough.replace("localhost:8080", &format!("localhost:{port}"))
    );
    let started = Instant::now();
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the walkthrough stopped:\n{text}");
    assert!(started.elapsed() < LIMIT, "{text}");
    // What the steps print, in order: the cancel's status, the live log's end,
    // the predictions, the model's files, and the downloaded weights.
    assert!(text.contains("\"cancelled\""), "{text}");
    assert!(text.contains("event: "), "the live log streamed: {text}");
    assert!(text.contains("\"predictions\""), "{text}");
    assert!(text.contains("\"model.safetensors\""), "{text}");
    let weights = std::fs::metadata(dir.path().join("model.safetensors")).unwrap();
    assert!(weights.len() > 1_000_000, "the weights downloaded");
}
