//! The Python tools of the integration tests (mlflow, standardwebhooks): a
//! venv named by `TUNESERVE_INTEGRATION_TOOLS` (made by
//! `.ci/integration-tools.sh`). Without it the tests that need it say so and
//! pass, unless `TUNESERVE_REQUIRE_PYTHON_TOOLS=1` (CI sets both), where a
//! missing venv fails them. Also the webhook receiver those tests run
//! (`tests/webhook_receiver.py`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The venv's `python`, or `None` (after saying why) when the tests that
/// need it are to be skipped.
pub fn python() -> Option<PathBuf> {
    let required = std::env::var("TUNESERVE_REQUIRE_PYTHON_TOOLS").is_ok_and(|v| v == "1");
    let why = match std::env::var_os("TUNESERVE_INTEGRATION_TOOLS") {
        None => "TUNESERVE_INTEGRATION_TOOLS is not set (make the venv with \
                 `.ci/integration-tools.sh`)"
            .to_string(),
        Some(venv) => {
            let python = Path::new(&venv).join("bin/python");
            if python.exists() {
                return Some(python);
            }
            format!("{} does not exist", python.display())
        }
    };
    assert!(!required, "TUNESERVE_REQUIRE_PYTHON_TOOLS=1, but {why}");
    eprintln!("skipped: {why}");
    None
}

/// A Python child process killed when dropped.
pub struct PyProcess {
    child: Child,
    /// The first line it printed.
    pub first_line: String,
}

impl PyProcess {
    /// Runs `python args…` and waits for its first line on stdout.
    pub fn start(python: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(python)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first_line = lines.next().expect("it prints a line").unwrap();
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, first_line }
    }
}

impl Drop for PyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tests/webhook_receiver.py`, running: it verifies each delivery with the
/// `standardwebhooks` package and logs it.
pub struct Receiver {
    _process: PyProcess,
    /// Where it listens.
    pub url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    /// A receiver checking signatures against `secret`; it answers 500 to the
    /// first `fail_first` deliveries.
    pub fn start(python: &Path, secret: &str, fail_first: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("deliveries.jsonl");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhook_receiver.py");
        let fail = fail_first.to_string();
        let args = [script, "--secret", secret, "--log"];
        let mut args: Vec<&str> = args.to_vec();
        let log_arg = log.to_str().unwrap().to_string();
        args.extend([log_arg.as_str(), "--fail-first", fail.as_str()]);
        let process = PyProcess::start(python, &args);
        let port = process
            .first_line
            .strip_prefix("listening ")
            .unwrap()
            .trim();
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            _process: process,
            log,
            _dir: dir,
        }
    }

    /// Every delivery so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// MLflow's telemetry off: the tests reach nothing beyond loopback.
const QUIET: [(&str, &str); 2] = [
    ("MLFLOW_DISABLE_TELEMETRY", "true"),
    ("DO_NOT_TRACK", "true"),
];

/// `mlflow server` on loopback at a free port, with a SQLite backend and
/// proxied artifacts in a folder of its own; killed when dropped.
pub struct MlflowServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub uri: String,
    python: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl MlflowServer {
    /// Starts it and waits until `/health` answers.
    pub async fn start(python: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self {
            child: Self::spawn(python, dir.path(), port),
            uri: format!("http://127.0.0.1:{port}"),
            python: python.to_path_buf(),
            dir,
            port,
        };
        server.wait_healthy().await;
        server
    }

    fn spawn(python: &Path, dir: &Path, port: u16) -> Child {
        let backend = format!("sqlite:///{}", dir.join("mlflow.db").display());
        use std::os::unix::process::CommandExt as _;
        Command::new(python)
            .args([
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--workers",
                "1",
            ])
            .args(["--port", &port.to_string(), "--backend-store-uri", &backend])
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .envs(QUIET)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a stop kills the server's workers too.
            .process_group(0)
            .spawn()
            .unwrap()
    }

    async fn wait_healthy(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let client = reqwest::Client::new();
        loop {
            let health = client.get(format!("{}/health", self.uri)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("mlflow server exited: {status}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "mlflow server did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    /// Stops it and its workers (SIGKILL to its process group).
    pub fn stop(&mut self) {
        // SAFETY: kill(2) on the group this struct's child leads.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and store.
    pub async fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(&self.python, self.dir.path(), self.port);
        self.wait_healthy().await;
    }

    /// The job's run read back through MLflow's Python client
    /// (`tests/mlflow_read.py`).
    pub fn read(&self, experiment: &str, job: &str) -> Value {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mlflow_read.py");
        let out = Command::new(&self.python)
            .args([script, &self.uri, experiment, job])
            .envs(QUIET)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.stop();
    }
}
