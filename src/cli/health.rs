//! `tuneserve health`: asks a running service's `GET /health` and exits 0
//! only when it says `ok`. The container image's health check runs it, so the
//! image needs no `curl`.

use std::time::Duration;

use anyhow::{bail, Context};

/// Arguments of `health`.
#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The service's address [default: http://127.0.0.1:$TUNESERVE_PORT, port 8080 when unset];
    /// `/health` is appended unless the URL ends with it.
    #[arg(long, env = "TUNESERVE_HEALTH_URL")]
    pub url: Option<String>,
    /// Seconds to wait for the answer.
    #[arg(long, env = "TUNESERVE_HEALTH_TIMEOUT_SECS", default_value_t = 4)]
    pub timeout_secs: u64,
}

/// Prints `ok` and returns Ok when `/health` answers 200 with `"status": "ok"`;
/// an error that says what it got otherwise.
pub fn run(args: HealthArgs) -> anyhow::Result<()> {
    let url = health_url(args.url)?;
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(args.timeout_secs))
        .build();
    let body = match agent.get(&url).call() {
        Ok(resp) => resp
            .into_string()
            .with_context(|| format!("{url}: reading the answer"))?,
        Err(ureq::Error::Status(code, resp)) => {
            let body = resp.into_string().unwrap_or_default();
            bail!("{url} answered {code}: {}", body.trim());
        }
        Err(err) => {
            // ureq's transport errors start with the URL already.
            let text = err.to_string();
            let why = text.strip_prefix(&format!("{url}: ")).unwrap_or(&text);
            bail!("cannot reach {url}: {why}");
        }
    };
    let health: serde_json::Value = serde_json::from_str(&body)
        .with_context(|| format!("{url} answered something other than JSON: {body:.200}"))?;
    match health["status"].as_str() {
        Some("ok") => {
            println!("ok");
            Ok(())
        }
        Some(status) => match health["storage"]["problem"].as_str() {
            Some(problem) => bail!("{url}: {status}: {problem}"),
            None => bail!("{url}: {status}"),
        },
        None => bail!("{url}: no `status` in {body:.200}"),
    }
}

/// `--url` with `/health` appended, or the local service on `TUNESERVE_PORT`.
fn health_url(url: Option<String>) -> anyhow::Result<String> {
    let base = match url {
        Some(url) => url,
        None => {
            let port = match std::env::var("TUNESERVE_PORT") {
                Ok(port) => port
                    .parse::<u16>()
                    .map_err(|_| anyhow::anyhow!("TUNESERVE_PORT={port:?} is not a port"))?,
                Err(_) => 8080,
            };
            format!("http://127.0.0.1:{port}")
        }
    };
    let base = base.trim_end_matches('/');
    Ok(if base.ends_with("/health") {
        base.to_string()
    } else {
        format!("{base}/health")
    })
}
