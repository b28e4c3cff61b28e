//! `POST /v1/fine_tuning/jobs`'s body, and how it becomes a tuneserve
//! [`CreateJob`]: the OpenAI-named hyperparameters (ints, floats or
//! `"auto"`) onto tuneserve's, the extension `tuneserve.hyperparameters` for
//! the rest, and a tuneserve 422's field named back in OpenAI's words.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::api::http::jobs::CreateJob;
use crate::api::ApiError;
use crate::job::JobSettings;
use crate::train::Hyperparameters;

/// A job's metadata: up to 16 key-value pairs.
pub type Metadata = BTreeMap<String, String>;

/// A fine-tuning job to submit, as OpenAI's API takes one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFineTuningJob {
    /// What to fine-tune, as `POST /jobs` takes `base_model`: a model id of
    /// this service, a folder name under `--model-dir`, or a Hub id (`gpt2`).
    pub model: String,
    /// The training file's id (`ds-…`, from `POST /v1/files`).
    pub training_file: String,
    /// The validation file's id; without one the job trains without
    /// evaluations (and keeps no checkpoint, by default).
    pub validation_file: Option<String>,
    /// Up to 40 of `[a-z0-9-]`, put into the produced model's id.
    pub suffix: Option<String>,
    /// The seed of shuffling, subsets, dropout and a new head (default 42).
    pub seed: Option<u64>,
    /// Up to 16 pairs (keys ≤ 64 characters, values ≤ 512), returned with
    /// the job.
    pub metadata: Option<BTreeMap<String, String>>,
    /// The OpenAI-named hyperparameters (OpenAI deprecated this spot for
    /// `method.supervised.hyperparameters`; either is taken, not both).
    pub hyperparameters: Option<OpenAiHyperparameters>,
    /// `{"type": "supervised", "supervised": {"hyperparameters"}}`; only
    /// `supervised` is served.
    pub method: Option<MethodSpec>,
    /// Not served: absent or empty.
    #[schema(value_type = Option<Vec<Object>>)]
    pub integrations: Option<Vec<Value>>,
    /// tuneserve's extension: `{"hyperparameters": {…}}` in `POST /jobs`'s
    /// names, for every knob OpenAI has no name for (`epochs`, `batch_size`,
    /// `learning_rate` and `seed` are set through OpenAI's names instead).
    #[schema(value_type = Option<Object>)]
    pub tuneserve: Option<Map<String, Value>>,
}

/// The fine-tuning method.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MethodSpec {
    /// `supervised` (`dpo` and `reinforcement` are refused).
    #[serde(rename = "type")]
    pub kind: String,
    /// The supervised method's settings.
    pub supervised: Option<SupervisedSpec>,
    /// Not served (taken only to refuse `type` by name).
    #[schema(value_type = Option<Object>)]
    #[allow(dead_code)]
    pub dpo: Option<Value>,
    /// Not served (taken only to refuse `type` by name).
    #[schema(value_type = Option<Object>)]
    #[allow(dead_code)]
    pub reinforcement: Option<Value>,
}

/// The supervised method's settings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SupervisedSpec {
    /// Its hyperparameters.
    pub hyperparameters: Option<OpenAiHyperparameters>,
}

/// OpenAI's hyperparameters; each `"auto"` or absent takes tuneserve's
/// default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAiHyperparameters {
    /// `"auto"` (3) or an integer ≥ 1: `epochs`.
    #[schema(value_type = Option<Object>)]
    pub n_epochs: Option<Value>,
    /// `"auto"` (8) or an integer ≥ 1: `batch_size`.
    #[schema(value_type = Option<Object>)]
    pub batch_size: Option<Value>,
    /// `"auto"` (1) or a number > 0: `learning_rate` is it × 5e-5.
    #[schema(value_type = Option<Object>)]
    pub learning_rate_multiplier: Option<Value>,
}

/// Where the request named each tuneserve field, to name it back in a 422.
pub struct Names {
    /// `hyperparameters` or `method.supervised.hyperparameters`.
    hyperparameters: &'static str,
}

/// Extension keys OpenAI has names of its own for.
const OPENAI_NAMED: [(&str, &str); 4] = [
    ("epochs", "hyperparameters.n_epochs"),
    ("batch_size", "hyperparameters.batch_size"),
    (
        "learning_rate",
        "hyperparameters.learning_rate_multiplier (× 5e-5)",
    ),
    ("seed", "seed"),
];

/// `"auto"` or absent: `None`; else what `read` makes of it, or a 422
/// naming `param` that says `expected`.
fn auto_or<T>(
    value: &Option<Value>,
    param: String,
    expected: &str,
    read: impl Fn(&Value) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) if s == "auto" => Ok(None),
        Some(v) => match read(v) {
            Some(t) => Ok(Some(t)),
            None => Err(ApiError::invalid(
                param.clone(),
                format!("{param}: must be \"auto\" or {expected} (got {v})"),
            )),
        },
    }
}

impl CreateFineTuningJob {
    /// The tuneserve job this asks for, the metadata to keep, and where its
    /// fields were named.
    pub fn into_job(mut self) -> Result<(CreateJob, Option<Metadata>, Names), ApiError> {
        let mut settings = extension(self.tuneserve.take())?;
        let hp = &mut settings.hyperparameters;
        let (openai, names) = self.openai_hyperparameters()?;
        let prefix = names.hyperparameters;
        if let Some(h) = openai {
            let count = |v: &Value| v.as_u64().filter(|n| *n >= 1).map(|n| n as usize);
            let positive = |v: &Value| v.as_f64().filter(|x| *x > 0.0 && x.is_finite());
            let p = |name: &str| format!("{prefix}.{name}");
            let integer = "an integer ≥ 1";
            if let Some(n) = auto_or(&h.n_epochs, p("n_epochs"), integer, count)? {
                hp.epochs = n;
            }
            if let Some(n) = auto_or(&h.batch_size, p("batch_size"), integer, count)? {
                hp.batch_size = n;
            }
            let lr = &h.learning_rate_multiplier;
            if let Some(m) = auto_or(lr, p("learning_rate_multiplier"), "a number > 0", positive)? {
                hp.learning_rate = m * Hyperparameters::default().learning_rate;
            }
        }
        if let Some(seed) = self.seed {
            hp.seed = seed;
        }
        if self.integrations.is_some_and(|i| !i.is_empty()) {
            let message = "integrations are not served (leave it out or empty)";
            return Err(ApiError::invalid("integrations", message));
        }
        check_metadata(self.metadata.as_ref())?;
        let job = CreateJob {
            base_model: self.model,
            train_dataset: self.training_file,
            eval_dataset: self.validation_file,
            hyperparameters: Some(settings_object(&settings)),
            suffix: self.suffix,
            webhooks: None,
            integrations: None,
        };
        Ok((job, self.metadata, names))
    }

    /// The OpenAI hyperparameters from whichever spot holds them.
    fn openai_hyperparameters(&self) -> Result<(Option<&OpenAiHyperparameters>, Names), ApiError> {
        let nested = match &self.method {
            None => None,
            Some(m) if m.kind == "supervised" => m
                .supervised
                .as_ref()
                .and_then(|s| s.hyperparameters.as_ref()),
            Some(m) => {
                let message = format!("`{}` is not served; only `supervised` is", m.kind);
                return Err(ApiError::invalid("method.type", message));
            }
        };
        match (&self.hyperparameters, nested) {
            (Some(_), Some(_)) => Err(ApiError::invalid(
                "hyperparameters",
                "give the hyperparameters once: in method.supervised.hyperparameters \
                 (or the deprecated top-level hyperparameters), not both",
            )),
            (Some(h), None) => Ok((
                Some(h),
                Names {
                    hyperparameters: "hyperparameters",
                },
            )),
            (None, nested) => Ok((
                nested,
                Names {
                    hyperparameters: "method.supervised.hyperparameters",
                },
            )),
        }
    }
}

/// tuneserve's hyperparameters from the extension (`tuneserve`), defaults
/// filled in; a 422 names the field under `tuneserve.hyperparameters`.
fn extension(ext: Option<Map<String, Value>>) -> Result<JobSettings, ApiError> {
    let mut ext = ext.unwrap_or_default();
    let hp = ext
        .remove("hyperparameters")
        .unwrap_or(Value::Object(Map::new()));
    if let Some(key) = ext.keys().next() {
        let message = format!("unknown field `{key}` (the extension takes `hyperparameters`)");
        return Err(ApiError::invalid(format!("tuneserve.{key}"), message));
    }
    if let Some((key, instead)) = OPENAI_NAMED.iter().find(|(k, _)| hp.get(k).is_some()) {
        return Err(ApiError::invalid(
            format!("tuneserve.hyperparameters.{key}"),
            format!("set it through {instead}, OpenAI's name for it"),
        ));
    }
    let Value::Object(hp) = hp else {
        let param = "tuneserve.hyperparameters";
        return Err(ApiError::invalid(
            param,
            format!("{param}: must be an object"),
        ));
    };
    JobSettings::from_object(hp).map_err(|e| {
        let param = format!("tuneserve.hyperparameters.{}", e.path);
        let message = format!("{param}: {}", e.message);
        ApiError::invalid(param, message)
    })
}

/// `settings` as the flat object `POST /jobs` takes.
fn settings_object(settings: &JobSettings) -> Map<String, Value> {
    match serde_json::to_value(settings) {
        Ok(Value::Object(object)) => object,
        _ => unreachable!("settings serialize to an object"),
    }
}

fn check_metadata(metadata: Option<&Metadata>) -> Result<(), ApiError> {
    let Some(m) = metadata else { return Ok(()) };
    if m.len() > 16 {
        return Err(ApiError::invalid("metadata", "at most 16 pairs"));
    }
    for (k, v) in m {
        if k.chars().count() > 64 || v.chars().count() > 512 {
            return Err(ApiError::invalid(
                format!("metadata.{k}"),
                "keys are at most 64 characters, values at most 512",
            ));
        }
    }
    Ok(())
}

impl Names {
    /// `e` with its field (and the field in its message) in the request's
    /// words: `train_dataset` is `training_file`, `hyperparameters.epochs`
    /// is `n_epochs` where the request named it, other hyperparameters are
    /// under `tuneserve.hyperparameters`.
    pub fn rename(&self, e: ApiError) -> ApiError {
        let ApiError::Validation {
            message,
            param: Some(param),
            details,
        } = e
        else {
            return e;
        };
        let h = self.hyperparameters;
        let renamed = match param.as_str() {
            "base_model" => "model".to_string(),
            "train_dataset" => "training_file".to_string(),
            "eval_dataset" => "validation_file".to_string(),
            "hyperparameters.epochs" => format!("{h}.n_epochs"),
            "hyperparameters.batch_size" => format!("{h}.batch_size"),
            "hyperparameters.learning_rate" => format!("{h}.learning_rate_multiplier"),
            "hyperparameters.seed" => "seed".to_string(),
            p => match p.strip_prefix("hyperparameters.") {
                Some(rest) => format!("tuneserve.hyperparameters.{rest}"),
                None => p.to_string(),
            },
        };
        let message = match message.strip_prefix(&format!("{param}: ")) {
            Some(rest) if param == "hyperparameters.learning_rate" => {
                format!("{renamed}: the learning rate it makes (× 5e-5) {rest}")
            }
            Some(rest) => format!("{renamed}: {rest}"),
            None => message.replace("POST /datasets", "POST /v1/files"),
        };
        ApiError::Validation {
            message,
            param: Some(renamed),
            details,
        }
    }
}
