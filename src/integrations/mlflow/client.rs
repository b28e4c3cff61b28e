//! The few routes of MLflow's tracking REST API (`/api/2.0/mlflow/…`) a run
//! needs, and its artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/…`,
//! which `mlflow server` serves by default), over reqwest. Each call has a
//! short timeout: a tracker that hangs costs a try, never a job.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

/// Why a call failed, in words (the route and the server's answer).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct MlflowError(pub String);

/// A metric point as `log-batch` takes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Metric {
    /// `train_loss`, `eval_accuracy`, ….
    pub key: &'static str,
    /// Its value.
    pub value: f64,
    /// When logged (Unix ms).
    pub timestamp: i64,
    /// The optimizer step.
    pub step: i64,
}

/// What a run is, as the server tells.
#[derive(Debug, Clone, Deserialize)]
pub struct RunInfo {
    /// Its id.
    pub run_id: String,
    /// Its experiment.
    pub experiment_id: String,
    /// Where its artifacts go (`mlflow-artifacts:/…` when the server proxies them).
    #[serde(default)]
    pub artifact_uri: String,
}

/// A client of one tracking server.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

/// How long one call may take.
const TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    /// A client of the server at `uri` (`http://HOST:PORT`).
    pub fn new(uri: &str) -> Result<Self, MlflowError> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| MlflowError(e.to_string()))?;
        Ok(Self {
            base: uri.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// The page of run `run` in the server's UI.
    pub fn run_url(&self, run: &RunInfo) -> String {
        format!(
            "{}/#/experiments/{}/runs/{}",
            self.base, run.experiment_id, run.run_id
        )
    }

    async fn call(
        &self,
        method: reqwest::Method,
        route: &str,
        body: Value,
    ) -> Result<Value, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{route}", self.base);
        let request = match method {
            reqwest::Method::GET => self.http.get(&url).query(&body_query(&body)),
            m => self.http.request(m, &url).json(&body),
        };
        let resp = request
            .send()
            .await
            .map_err(|e| MlflowError(format!("{route}: {}", chain(&e))))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(MlflowError(format!(
                "{route}: HTTP {}: {}",
                status.as_u16(),
                short(&text)
            )));
        }
        serde_json::from_str(&text).map_err(|e| MlflowError(format!("{route}: {e}")))
    }

    /// The id of experiment `name`, made when there is none.
    pub async fn experiment_id(&self, name: &str) -> Result<String, MlflowError> {
        let by_name = json!({"experiment_name": name});
        let get = || {
            self.call(
                reqwest::Method::GET,
                "experiments/get-by-name",
                by_name.clone(),
            )
        };
        match get().await {
            Ok(v) => return id_of(&v["experiment"]["experiment_id"]),
            Err(e) if !e.0.contains("RESOURCE_DOES_NOT_EXIST") => return Err(e),
            Err(_) => {}
        }
        let made = self
            .call(
                reqwest::Method::POST,
                "experiments/create",
                json!({"name": name}),
            )
            .await;
        match made {
            Ok(v) => id_of(&v["experiment_id"]),
            // Made meanwhile by another job's tracker.
            Err(e) if e.0.contains("RESOURCE_ALREADY_EXISTS") => {
                id_of(&get().await?["experiment"]["experiment_id"])
            }
            Err(e) => Err(e),
        }
    }

    /// The run of `experiment` whose tag `key` is `value`, if any.
    pub async fn find_run(
        &self,
        experiment: &str,
        key: &str,
        value: &str,
    ) -> Result<Option<RunInfo>, MlflowError> {
        let filter = format!("tags.`{key}` = '{}'", value.replace('\'', ""));
        let body = json!({"experiment_ids": [experiment], "filter": filter, "max_results": 1,
                          "run_view_type": "ACTIVE_ONLY"});
        let found = self
            .call(reqwest::Method::POST, "runs/search", body)
            .await?;
        match found["runs"].get(0) {
            Some(run) => Ok(Some(info(&run["info"])?)),
            None => Ok(None),
        }
    }

    /// Makes a run.
    pub async fn create_run(
        &self,
        experiment: &str,
        name: &str,
        tags: &[(String, String)],
    ) -> Result<RunInfo, MlflowError> {
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let body = json!({"experiment_id": experiment, "run_name": name,
                          "start_time": crate::store::now_ms(), "tags": tags});
        let made = self
            .call(reqwest::Method::POST, "runs/create", body)
            .await?;
        info(&made["run"]["info"])
    }

    /// Run `run_id`'s info, the step of the newest point of each metric, and
    /// whether it has params.
    pub async fn get_run(
        &self,
        run_id: &str,
    ) -> Result<(RunInfo, Vec<(String, i64)>, bool), MlflowError> {
        let got = self
            .call(reqwest::Method::GET, "runs/get", json!({"run_id": run_id}))
            .await?;
        let run = &got["run"];
        let latest = run["data"]["metrics"].as_array().into_iter().flatten();
        let steps = latest
            .filter_map(|m| {
                Some((
                    m["key"].as_str()?.to_string(),
                    m["step"].as_i64().unwrap_or(0),
                ))
            })
            .collect();
        let has_params = run["data"]["params"]
            .as_array()
            .is_some_and(|p| !p.is_empty());
        Ok((info(&run["info"])?, steps, has_params))
    }

    /// Logs metrics (at most 1000), params (at most 100) and tags in one call.
    pub async fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<(), MlflowError> {
        let pairs = |xs: &[(String, String)]| -> Vec<Value> {
            xs.iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect()
        };
        let body = json!({"run_id": run_id, "metrics": metrics, "params": pairs(params),
                          "tags": pairs(tags)});
        self.call(reqwest::Method::POST, "runs/log-batch", body)
            .await
            .map(drop)
    }

    /// Sets the run's status (`RUNNING`, `FINISHED`, `FAILED`, `KILLED`);
    /// a final one with its end time.
    pub async fn set_status(&self, run_id: &str, status: &str) -> Result<(), MlflowError> {
        let mut body = json!({"run_id": run_id, "status": status});
        if status != "RUNNING" {
            body["end_time"] = json!(crate::store::now_ms());
        }
        self.call(reqwest::Method::POST, "runs/update", body)
            .await
            .map(drop)
    }

    /// Uploads `bytes` as artifact `name` of a run whose artifacts the server
    /// proxies (`artifact_uri` `mlflow-artifacts:/PATH`).
    pub async fn upload_artifact(
        &self,
        artifact_uri: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(), MlflowError> {
        let path = proxied_path(artifact_uri).ok_or_else(|| {
            MlflowError(format!(
                "the run's artifacts go to `{artifact_uri}`, which the tracking server does not \
                 proxy (start it with --serve-artifacts, MLflow's default)"
            ))
        })?;
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{path}/{name}",
            self.base
        );
        let resp = self
            .http
            .put(&url)
            .body(bytes)
            .send()
            .await
            .map_err(|e| MlflowError(format!("uploading {name}: {}", chain(&e))))?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            s => Err(MlflowError(format!(
                "uploading {name}: HTTP {}",
                s.as_u16()
            ))),
        }
    }
}

/// The path under the artifact proxy of a `mlflow-artifacts:` URI (with or
/// without a host part).
fn proxied_path(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("mlflow-artifacts:")?;
    let rest = match rest.strip_prefix("//") {
        Some(hosted) => hosted.split_once('/').map_or("", |(_, p)| p),
        None => rest,
    };
    Some(rest.trim_matches('/').to_string())
}

fn body_query(body: &Value) -> Vec<(String, String)> {
    let fields = body.as_object().into_iter().flatten();
    fields
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().map_or_else(|| v.to_string(), str::to_string),
            )
        })
        .collect()
}

fn id_of(v: &Value) -> Result<String, MlflowError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| MlflowError(format!("the server's answer has no id: {v}")))
}

fn info(v: &Value) -> Result<RunInfo, MlflowError> {
    serde_json::from_value(v.clone()).map_err(|e| MlflowError(format!("run info {v}: {e}")))
}

fn short(text: &str) -> &str {
    let end = text.char_indices().nth(300).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

fn chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxied_artifact_paths() {
        assert_eq!(
            proxied_path("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            proxied_path("mlflow-artifacts://host:5000/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(proxied_path("s3://bucket/1/abc"), None);
    }
}
