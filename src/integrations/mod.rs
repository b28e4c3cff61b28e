//! What a job tells the world outside tuneserve while it runs: signed
//! webhooks when it changes status ([`webhooks`]) and, per job, an
//! experiment tracker's run ([`mlflow`]). Both only observe: a receiver or a
//! tracker that is down, slow or wrong never slows or fails a job. The types
//! here are what a job asks for (`webhooks`, `integrations` on `POST /jobs`),
//! stored with the job so that whichever node runs it knows.

pub mod mlflow;
pub mod webhooks;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A receiver of a job's webhooks, besides the server's own `--webhook-url`s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    /// An `http://` or `https://` URL; each event is POSTed to it, signed
    /// with the server's `--webhook-secret`.
    pub url: String,
}

/// An experiment tracker a job logs to (a plain object rather than a tagged
/// union, so that every OpenAPI client generator reads its schema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Integration {
    /// The tracker: `mlflow`, a run on the server's tracking server
    /// (`--mlflow-tracking-uri`).
    #[serde(rename = "type")]
    pub kind: IntegrationKind,
    /// The experiment's name; created when the tracking server has none of
    /// that name.
    pub experiment: String,
    /// The run's name; the job's id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_name: Option<String>,
    /// Tags set on the run besides tuneserve's own (`tuneserve.job_id`,
    /// `base_model`, `train_dataset`, `eval_dataset`, `datasets`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// The experiment trackers a job can log to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationKind {
    /// MLflow's tracking server.
    Mlflow,
}

/// Where in MLflow a run goes.
#[derive(Debug, Clone, PartialEq)]
pub struct MlflowIntegration {
    /// The experiment's name; created when the tracking server has none of
    /// that name.
    pub experiment: String,
    /// The run's name; the job's id (or the output folder) when absent.
    pub run_name: Option<String>,
    /// Tags set on the run besides tuneserve's own.
    pub tags: BTreeMap<String, String>,
}

impl Integration {
    /// The MLflow settings, when this is an MLflow integration.
    pub fn mlflow(&self) -> Option<MlflowIntegration> {
        match self.kind {
            IntegrationKind::Mlflow => Some(MlflowIntegration {
                experiment: self.experiment.clone(),
                run_name: self.run_name.clone(),
                tags: self.tags.clone(),
            }),
        }
    }
}

/// Whether `url` is an absolute `http` or `https` URL (what a webhook or a
/// tracking server must be).
pub fn is_http_url(url: &str) -> bool {
    reqwest::Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// The MLflow run a job logs to, recorded once made: a retry of the job, on
/// this node or another, logs to the same run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrackingRun {
    /// The run's id on the tracking server.
    pub run_id: String,
    /// The id of its experiment.
    pub experiment_id: String,
    /// The run's page in the tracking server's UI.
    pub url: String,
}
