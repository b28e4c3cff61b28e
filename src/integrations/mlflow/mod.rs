//! MLflow experiment tracking: a job with an `mlflow` integration gets one
//! run on the server's tracking server (`--mlflow-tracking-uri`), made when
//! training first starts and found again by every later attempt, on any node
//! (recorded on the job, and tagged `tuneserve.job_id`): every
//! hyperparameter as a param, the base model and datasets as tags,
//! `train_loss`, `learning_rate`, `grad_norm` at each logged step and
//! `eval_loss`, `eval_accuracy`, `eval_macro_f1` at each evaluation's step,
//! the final status, and the model card and `metrics.json` as artifacts.
//! [`tracker`] does it off the training thread; a tracker that is away never
//! slows or fails the job.

pub mod client;
pub(crate) mod tracker;

use serde_json::Value;

use super::MlflowIntegration;

/// The metrics a run gets, by name.
pub const METRIC_KEYS: [&str; 6] = [
    "train_loss",
    "learning_rate",
    "grad_norm",
    "eval_loss",
    "eval_accuracy",
    "eval_macro_f1",
];

/// Every hyperparameter as an MLflow param: nested ones (`lora`) as
/// `lora.r`, …; strings as they are, other values as JSON (`null` when unset).
/// `hp` is a run's hyperparameters, or a job's settings (the service's options
/// included).
pub fn params(hp: &impl serde::Serialize) -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
        match value {
            Value::Object(fields) => {
                for (k, v) in fields {
                    let key = match prefix {
                        "" => k.clone(),
                        p => format!("{p}.{k}"),
                    };
                    walk(&key, v, out);
                }
            }
            Value::String(s) => out.push((prefix.to_string(), s.clone())),
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    walk("", &serde_json::to_value(hp).unwrap_or_default(), &mut out);
    out
}

/// The run's tags: [`tracker::JOB_TAG`] = `key`, the base model, `extra`
/// (the datasets) and the caller's own.
pub fn run_tags(
    key: &str,
    base_model: &str,
    extra: Vec<(String, String)>,
    mlflow: &MlflowIntegration,
) -> Vec<(String, String)> {
    let mut tags = vec![
        (tracker::JOB_TAG.to_string(), key.to_string()),
        ("base_model".to_string(), base_model.to_string()),
        ("mlflow.source.name".to_string(), "tuneserve".to_string()),
    ];
    tags.extend(extra);
    tags.extend(mlflow.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    tags
}
