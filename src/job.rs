//! What a fine-tuning job asks for: the trainer's [`Hyperparameters`] plus the
//! options only the service acts on — how many attempts a job gets, whether its
//! model becomes `latest`, which checkpoints outlive it.
//!
//! `tuneserve train` runs the trainer alone and has no use for the options, so
//! they live here and not in [`crate::train`]. Clients and the database keep one
//! flat JSON object (`"hyperparameters": {"epochs": 3, "promote": "never"}`):
//! [`JobSettings`] splits it into the two on the way in and joins them on the
//! way out, and its OpenAPI schema is the union of both.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::train::{Bound, Hyperparameters, InvalidHyperparameter};

/// When a succeeded job's model becomes the one `/classify` answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Promote {
    /// Always.
    #[default]
    Always,
    /// When its final evaluation beats the current `latest`'s by
    /// `metric_for_best_model` on the same evaluation set (same dataset,
    /// subset and seed); never when they cannot be compared.
    IfBetter,
    /// Never (`POST /models/{id}/promote` does it by hand).
    Never,
}

/// Which checkpoints outlive a succeeded job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeepCheckpoints {
    /// Only the best one (by `metric_for_best_model`), or none without evaluations.
    #[default]
    Best,
    /// Every checkpoint `save_total_limit` left.
    All,
    /// None: the exported model is all that remains.
    None,
}

/// The service's part of a job's settings. Unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct JobOptions {
    /// Attempts a job gets before it is marked failed; causes that may pass
    /// (a full disk, a database out of reach) are retried without using one.
    pub max_attempts: usize,
    /// Whether the job's model becomes `latest` when it succeeds.
    #[schema(inline)]
    pub promote: Promote,
    /// Which checkpoints are kept once the job has succeeded (while it runs,
    /// `save_total_limit` applies).
    #[schema(inline)]
    pub keep_checkpoints: KeepCheckpoints,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            promote: Promote::Always,
            keep_checkpoints: KeepCheckpoints::Best,
        }
    }
}

impl JobOptions {
    /// The JSON names of the fields, which [`JobSettings`] routes here.
    pub const FIELDS: [&'static str; 3] = ["max_attempts", "promote", "keep_checkpoints"];

    /// Every numeric field's range.
    pub const BOUNDS: [Bound; 1] = [Bound {
        field: "max_attempts",
        min: 1.0,
        max: Some(100.0),
        exclusive_min: false,
        exclusive_max: false,
        integer: true,
    }];

    /// Checks every field's range; the first violation names its field.
    pub fn validate(&self) -> Result<(), InvalidHyperparameter> {
        let [attempts] = &Self::BOUNDS;
        match attempts.allows(self.max_attempts as f64) {
            true => Ok(()),
            false => Err(InvalidHyperparameter {
                field: attempts.field,
                reason: attempts.describe(),
            }),
        }
    }
}

/// Everything a job is submitted with: what the trainer runs with and what the
/// service does around it. One flat JSON object on the wire and in the store.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct JobSettings {
    /// The trainer's part.
    #[serde(flatten)]
    pub hyperparameters: Hyperparameters,
    /// The service's part.
    #[serde(flatten)]
    pub options: JobOptions,
}

/// A field of [`JobSettings`] that does not parse: `path` is where in the
/// object (`epochs`, `lora.r`), `message` serde's reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SettingsError {
    /// The dotted path of the offending field.
    pub path: String,
    /// Why it does not parse (serde's words, without a position in a text).
    pub message: String,
}

impl JobSettings {
    /// Splits a flat object into its two parts; each omitted field takes its
    /// default, and an unknown one is refused, named by its path.
    pub fn from_object(object: Map<String, Value>) -> Result<Self, SettingsError> {
        let (options, rest): (Map<_, _>, Map<_, _>) = object
            .into_iter()
            .partition(|(k, _)| JobOptions::FIELDS.contains(&k.as_str()));
        Ok(Self {
            hyperparameters: part(rest)?,
            options: part(options)?,
        })
    }

    /// Checks both parts' ranges and the fields that depend on each other.
    pub fn validate(&self) -> Result<(), InvalidHyperparameter> {
        self.hyperparameters.validate()?;
        self.options.validate()
    }

    /// Every numeric field's range, both parts.
    pub fn bounds() -> impl Iterator<Item = Bound> {
        Hyperparameters::BOUNDS
            .into_iter()
            .chain(JobOptions::BOUNDS)
    }
}

/// One part of the settings from its fields. A number of the wrong type or
/// sign (`"three"`, `-3` for a count) is answered in the words its range is
/// (`must be an integer ≥ 0`); other problems (an unknown field or variant) in
/// serde's.
fn part<T: serde::de::DeserializeOwned>(object: Map<String, Value>) -> Result<T, SettingsError> {
    serde_path_to_error::deserialize(Value::Object(object)).map_err(|e| {
        let path = e.path().to_string();
        let serde_says = e.into_inner().to_string();
        let wrong_value =
            serde_says.starts_with("invalid type") || serde_says.starts_with("invalid value");
        let bound = JobSettings::bounds().find(|b| b.field == path);
        let message = match bound {
            Some(b) if wrong_value => b.describe(),
            _ => serde_says,
        };
        SettingsError { path, message }
    })
}

impl<'de> Deserialize<'de> for JobSettings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let object = Map::deserialize(d)?;
        Self::from_object(object).map_err(serde::de::Error::custom)
    }
}

impl utoipa::ToSchema for JobSettings {
    fn name() -> Cow<'static, str> {
        "Hyperparameters".into()
    }
}

/// The trainer's object schema with the options' properties added: one flat
/// object, as on the wire.
impl utoipa::PartialSchema for JobSettings {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{schema::Schema, RefOr};
        let object = |s| match s {
            RefOr::T(Schema::Object(o)) => Some(o),
            _ => None,
        };
        let trainer = object(<Hyperparameters as utoipa::PartialSchema>::schema());
        let options = object(<JobOptions as utoipa::PartialSchema>::schema());
        let (Some(mut merged), Some(options)) = (trainer, options) else {
            unreachable!("both derive an object schema");
        };
        merged.properties.extend(options.properties);
        merged.description = Some(
            "A job's hyperparameters: the trainer's knobs (the Hugging Face `Trainer`'s names \
             and defaults) and the service's (`max_attempts`, `promote`, `keep_checkpoints`). \
             Each omitted field takes its default; unknown fields are refused."
                .into(),
        );
        RefOr::T(Schema::Object(merged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_flat_object_both_ways() {
        let given = json!({"epochs": 1, "promote": "never", "max_attempts": 5});
        let s: JobSettings = serde_json::from_value(given).unwrap();
        assert_eq!(s.hyperparameters.epochs, 1);
        assert_eq!(
            (s.options.promote, s.options.max_attempts),
            (Promote::Never, 5)
        );
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(back["promote"], "never");
        assert_eq!(back["epochs"], 1);
        assert_eq!(serde_json::from_value::<JobSettings>(back).unwrap(), s);
    }

    #[test]
    fn errors_name_the_field_by_its_path() {
        let object = |v: Value| v.as_object().unwrap().clone();
        let err = JobSettings::from_object(object(json!({"epochz": 1}))).unwrap_err();
        assert_eq!(err.path, "epochz");
        let err = JobSettings::from_object(object(json!({"lora": {"r": "x"}}))).unwrap_err();
        assert_eq!(err.path, "lora.r");
        let err = JobSettings::from_object(object(json!({"promote": "sometimes"}))).unwrap_err();
        assert_eq!(err.path, "promote");
        // A wrong type reads as the range does.
        let err = JobSettings::from_object(object(json!({"warmup_steps": -3}))).unwrap_err();
        assert_eq!(err.to_string(), "warmup_steps: must be an integer ≥ 0");
        let err = JobSettings::from_object(object(json!({"lora": {"alpha": "x"}}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "lora.alpha: must be a number > 0 and ≤ 1000000"
        );
        let too_many = JobSettings {
            options: JobOptions {
                max_attempts: 101,
                ..JobOptions::default()
            },
            ..JobSettings::default()
        };
        assert_eq!(too_many.validate().unwrap_err().field, "max_attempts");
    }
}
