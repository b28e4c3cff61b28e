//! `tuneserve serve` as a child process on port 0 (fast leases and
//! heartbeats), for tests that kill a node with SIGKILL; killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A running `serve` process.
pub struct ServeProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl ServeProcess {
    /// Starts `serve` over `data` with `args` added, base models read from
    /// `models` beside `data`; waits until it listens.
    pub fn start(data: &Path, args: &[&str]) -> Self {
        Self::start_with_env(data, args, &[])
    }

    /// [`ServeProcess::start`] with environment variables `env` set.
    pub fn start_with_env(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tuneserve"))
            .args([
                "serve",
                "--port",
                "0",
                "--lease-secs",
                "2",
                "--heartbeat-secs",
                "0.2",
            ])
            .arg("--data-dir")
            .arg(data)
            .arg("--model-dir")
            .arg(data.parent().unwrap().join("models"))
            .args(args)
            .env("TUNESERVE_LOG", "info")
            // Several nodes share few cores: one matmul thread each.
            .env("RAYON_NUM_THREADS", "1")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                match line.split_once("listening on http://") {
                    Some((_, address)) => drop(tx.send(address.trim().to_string())),
                    None if line.contains("ERROR") || line.starts_with("error") => {
                        eprintln!("serve: {line}")
                    }
                    None => {}
                }
            }
        });
        let address = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server starts");
        Self {
            child,
            base: format!("http://{address}"),
        }
    }

    /// SIGKILL: no shutdown, its leases are left to expire.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// GET `url` as JSON.
pub async fn get(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// POST `body` to `url`; the answer as JSON.
pub async fn post(client: &reqwest::Client, url: String, body: &Value) -> Value {
    let resp = client.post(url).json(body).send().await.unwrap();
    resp.json().await.unwrap()
}

/// Job `id` on the server at `base` once it has finished (succeeded, failed
/// or cancelled), or as it is after `secs` seconds.
pub async fn wait_finished(client: &reqwest::Client, base: &str, id: &str, secs: u64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let job = get(client, format!("{base}/jobs/{id}")).await;
        let done =
            ["succeeded", "failed", "cancelled"].contains(&job["status"].as_str().unwrap_or(""));
        if done || std::time::Instant::now() > deadline {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
