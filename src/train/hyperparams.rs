//! Fine-tuning hyperparameters: the Hugging Face `Trainer`'s names and defaults, with
//! validation that names the offending field.

use serde::{Deserialize, Serialize};

use crate::data::Padding;
use crate::model::{LoraConfig, Precision};

/// What a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Every weight (the recipe).
    #[default]
    Full,
    /// A LoRA adapter (`lora`) and the score head; the base stays frozen.
    Lora,
}

/// How the learning rate moves after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LrScheduler {
    /// Linear decay to 0 at the last step (the `Trainer`'s default).
    #[default]
    Linear,
    /// Half a cosine wave down to 0.
    Cosine,
    /// Constant after warmup.
    Constant,
}

/// When to evaluate or save.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// At the end of each epoch.
    #[default]
    Epoch,
    /// Every `eval_steps` / `save_steps` optimizer steps.
    Steps,
    /// Never (saving still writes the final model).
    No,
}

/// The metric that picks the best checkpoint and drives early stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BestMetric {
    /// Evaluation accuracy (higher is better).
    #[default]
    Accuracy,
    /// Macro-averaged F1 (higher is better).
    MacroF1,
    /// Evaluation loss (lower is better).
    EvalLoss,
}

/// Every knob of a fine-tuning run. Unknown fields are rejected when parsed.
/// (What the service does around a run — attempts, promotion, retention — is
/// [`crate::job::JobOptions`].)
///
/// Also the `tuneserve train` flags (`--learning-rate 5e-4`, …), made from
/// this definition and these defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Hyperparameters {
    /// `full` fine-tuning, or a `lora` adapter on a frozen base.
    #[schema(inline)]
    pub method: Method,
    /// The adapter's rank, scaling, dropout and target layers (used when
    /// `method` is `lora`).
    #[schema(inline)]
    pub lora: LoraConfig,
    /// Passes over the training set.
    pub epochs: usize,
    /// Peak learning rate of AdamW.
    pub learning_rate: f64,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches averaged into one optimizer step.
    pub gradient_accumulation_steps: usize,
    /// Truncation length in tokens (default: the model's `n_positions`).
    pub max_length: Option<usize>,
    /// `longest` (pad to the longest in a batch) or `max_length`.
    #[schema(inline)]
    pub padding: Padding,
    /// Optimizer steps of linear warmup from 0.
    pub warmup_steps: usize,
    /// Decoupled weight decay (never on biases or LayerNorm weights).
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0 turns clipping off).
    pub max_grad_norm: f64,
    /// Learning-rate schedule after warmup.
    #[schema(inline)]
    pub lr_scheduler: LrScheduler,
    /// Seeds shuffling, subsets, dropout and a new head.
    pub seed: u64,
    /// Use only this many training examples (after shuffling).
    pub train_subset: Option<usize>,
    /// Use only this many evaluation examples (after shuffling).
    pub eval_subset: Option<usize>,
    /// Shuffle the training set each epoch.
    pub shuffle: bool,
    /// Group training examples of similar length into the same batch.
    pub group_by_length: bool,
    /// When to evaluate besides the baseline at step 0: each epoch's end, every
    /// `eval_steps`, or never. Ignored without an eval set.
    #[schema(inline)]
    pub eval_strategy: Strategy,
    /// Evaluate every this many steps when `eval_strategy` is `steps`.
    pub eval_steps: Option<usize>,
    /// When to save a checkpoint.
    #[schema(inline)]
    pub save_strategy: Strategy,
    /// Save every this many steps when `save_strategy` is `steps`.
    pub save_steps: Option<usize>,
    /// Checkpoints kept on disk (the best one is never deleted).
    pub save_total_limit: usize,
    /// Stop after this many evaluations without improvement (off when absent).
    pub early_stopping_patience: Option<usize>,
    /// The metric for the best checkpoint and early stopping.
    #[schema(inline)]
    pub metric_for_best_model: BestMetric,
    /// Report the training loss every this many optimizer steps.
    pub logging_steps: usize,
    /// Overrides the config's attention, embedding and residual dropout.
    pub dropout: Option<f32>,
    /// `fp32`, or `bf16` autocast: bf16 matrix products with f32 master
    /// weights, optimizer state, LayerNorm, softmax and loss. `bf16` needs a
    /// GPU (on the CPU it is slower than fp32).
    #[schema(inline)]
    pub precision: Precision,
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Self {
            method: Method::Full,
            lora: LoraConfig::default(),
            epochs: 3,
            learning_rate: 5e-5,
            batch_size: 8,
            gradient_accumulation_steps: 1,
            max_length: None,
            padding: Padding::Longest,
            warmup_steps: 0,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            lr_scheduler: LrScheduler::Linear,
            seed: 42,
            train_subset: None,
            eval_subset: None,
            shuffle: true,
            group_by_length: false,
            eval_strategy: Strategy::Epoch,
            eval_steps: None,
            save_strategy: Strategy::Epoch,
            save_steps: None,
            save_total_limit: 2,
            early_stopping_patience: None,
            metric_for_best_model: BestMetric::Accuracy,
            logging_steps: 10,
            dropout: None,
            precision: Precision::Fp32,
        }
    }
}

/// A hyperparameter outside its allowed range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("hyperparameters.{field}: {reason}")]
pub struct InvalidHyperparameter {
    /// The field's name, as in the JSON (`learning_rate`); the API names
    /// `hyperparameters.{field}` as the 422's `param`.
    pub field: &'static str,
    /// Why it is refused.
    pub reason: String,
}

fn check(ok: bool, field: &'static str, reason: &str) -> Result<(), InvalidHyperparameter> {
    if ok {
        Ok(())
    } else {
        Err(InvalidHyperparameter {
            field,
            reason: reason.to_string(),
        })
    }
}

/// The range of a numeric hyperparameter. The same table checks submitted
/// values ([`Hyperparameters::validate`]) and puts `minimum` / `maximum` into
/// the OpenAPI schema (which the dashboard's form reads), so the two cannot
/// drift apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    /// The field's name, as in the JSON and the OpenAPI schema (`learning_rate`).
    pub field: &'static str,
    /// The least value allowed (or, with `exclusive_min`, the greatest not allowed).
    pub min: f64,
    /// The greatest value allowed (or, with `exclusive_max`, the least not allowed).
    pub max: Option<f64>,
    /// Whether `min` itself is refused.
    pub exclusive_min: bool,
    /// Whether `max` itself is refused.
    pub exclusive_max: bool,
    /// Whether only whole numbers are taken (else any real number).
    pub integer: bool,
}

const fn range(field: &'static str, min: f64, max: f64) -> Bound {
    Bound {
        field,
        min,
        max: Some(max),
        exclusive_min: false,
        exclusive_max: false,
        integer: true,
    }
}

const fn at_least(field: &'static str, min: f64) -> Bound {
    Bound {
        field,
        min,
        max: None,
        exclusive_min: false,
        exclusive_max: false,
        integer: true,
    }
}

/// `b` for a real-valued field.
const fn real(b: Bound) -> Bound {
    Bound {
        integer: false,
        ..b
    }
}

impl Bound {
    /// Whether `v` is inside the range (never when it is not finite).
    pub fn allows(&self, v: f64) -> bool {
        let above = if self.exclusive_min {
            v > self.min
        } else {
            v >= self.min
        };
        let below = match self.max {
            None => true,
            Some(max) if self.exclusive_max => v < max,
            Some(max) => v <= max,
        };
        v.is_finite() && above && below
    }

    /// What the field takes, in words: `must be an integer ≥ 0`, `must be a
    /// number > 0 and ≤ 1`. A value of the wrong type and one out of range are
    /// answered alike.
    pub fn describe(&self) -> String {
        let kind = if self.integer {
            "an integer"
        } else {
            "a number"
        };
        let low = if self.exclusive_min { ">" } else { "≥" };
        let range = match self.max {
            None => format!("{low} {}", self.min),
            Some(max) if !self.exclusive_min && !self.exclusive_max => {
                format!("from {} to {max}", self.min)
            }
            Some(max) => {
                let high = if self.exclusive_max { "<" } else { "≤" };
                format!("{low} {} and {high} {max}", self.min)
            }
        };
        format!("must be {kind} {range}")
    }
}

impl Hyperparameters {
    /// Every numeric field's range (optional fields are checked when set).
    pub const BOUNDS: [Bound; 19] = [
        range("epochs", 1.0, 1000.0),
        real(Bound {
            exclusive_min: true,
            ..range("learning_rate", 0.0, 1.0)
        }),
        range("batch_size", 1.0, 4096.0),
        range("gradient_accumulation_steps", 1.0, 4096.0),
        at_least("max_length", 1.0),
        at_least("warmup_steps", 0.0),
        real(range("weight_decay", 0.0, 1.0)),
        real(at_least("max_grad_norm", 0.0)),
        at_least("train_subset", 1.0),
        at_least("eval_subset", 1.0),
        at_least("eval_steps", 1.0),
        at_least("save_steps", 1.0),
        at_least("save_total_limit", 1.0),
        at_least("early_stopping_patience", 1.0),
        at_least("logging_steps", 1.0),
        real(Bound {
            exclusive_max: true,
            ..range("dropout", 0.0, 1.0)
        }),
        range("lora.r", 1.0, 1024.0),
        real(Bound {
            exclusive_min: true,
            ..range("lora.alpha", 0.0, 1e6)
        }),
        real(Bound {
            exclusive_max: true,
            ..range("lora.dropout", 0.0, 1.0)
        }),
    ];

    /// Checks every field's range and the fields that depend on each other;
    /// the first violation names its field.
    pub fn validate(&self) -> Result<(), InvalidHyperparameter> {
        let values = serde_json::to_value(self).unwrap_or_default();
        for b in &Self::BOUNDS {
            let pointer = format!("/{}", b.field.replace('.', "/"));
            match values.pointer(&pointer).unwrap_or(&serde_json::Value::Null) {
                serde_json::Value::Null if self.float_field_is_set(b.field) => {
                    // A float that JSON cannot hold (NaN, infinite).
                    check(false, b.field, &b.describe())?;
                }
                serde_json::Value::Null => {}
                v => check(
                    v.as_f64().is_some_and(|v| b.allows(v)),
                    b.field,
                    &b.describe(),
                )?,
            }
        }
        check(
            self.eval_strategy != Strategy::Steps || self.eval_steps.is_some(),
            "eval_steps",
            "is required when eval_strategy is \"steps\"",
        )?;
        check(
            self.save_strategy != Strategy::Steps || self.save_steps.is_some(),
            "save_steps",
            "is required when save_strategy is \"steps\"",
        )?;
        check(
            self.early_stopping_patience.is_none() || self.eval_strategy != Strategy::No,
            "early_stopping_patience",
            "needs evaluation (eval_strategy is \"no\")",
        )?;
        let targets = &self.lora.target_modules;
        check(
            !targets.is_empty(),
            "lora.target_modules",
            "must name at least one layer",
        )?;
        check(
            (1..targets.len()).all(|i| !targets[..i].contains(&targets[i])),
            "lora.target_modules",
            "names a layer twice",
        )
    }

    /// Checks the settings against the device the run trains on: `bf16` needs
    /// a GPU (on the CPU, candle's bf16 ops are slower than the f32 kernels;
    /// README → GPU has the numbers).
    pub fn validate_for_device(
        &self,
        device: &candle_core::Device,
    ) -> Result<(), InvalidHyperparameter> {
        check(
            self.precision != Precision::Bf16 || !device.is_cpu(),
            "precision",
            "\"bf16\" needs a GPU (train with --device cuda:N, or a service started with \
             --devices cuda:N); on the CPU it is slower than \"fp32\"",
        )
    }

    /// Whether the float field `field` holds a value (JSON writes a
    /// non-finite one as null).
    fn float_field_is_set(&self, field: &str) -> bool {
        match field {
            "learning_rate" | "weight_decay" | "max_grad_norm" | "lora.alpha" | "lora.dropout" => {
                true
            }
            "dropout" => self.dropout.is_some(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_designs_and_valid() {
        let h = Hyperparameters::default();
        assert_eq!(
            (h.epochs, h.batch_size, h.seed, h.logging_steps),
            (3, 8, 42, 10)
        );
        assert_eq!(h.learning_rate, 5e-5);
        h.validate().unwrap();
    }

    #[test]
    fn unknown_fields_and_bad_ranges_name_the_field() {
        let err = serde_json::from_str::<Hyperparameters>(r#"{"epochz": 1}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `epochz`"), "{err}");
        let h: Hyperparameters = serde_json::from_str(r#"{"learning_rate": -1}"#).unwrap();
        assert_eq!(h.validate().unwrap_err().field, "learning_rate");
        let h: Hyperparameters = serde_json::from_str(r#"{"eval_strategy": "steps"}"#).unwrap();
        assert_eq!(h.validate().unwrap_err().field, "eval_steps");
        let h: Hyperparameters = serde_json::from_str(r#"{"dropout": 1.0}"#).unwrap();
        assert_eq!(h.validate().unwrap_err().field, "dropout");
        let nan = Hyperparameters {
            learning_rate: f64::NAN,
            ..Hyperparameters::default()
        };
        assert_eq!(nan.validate().unwrap_err().field, "learning_rate");
    }

    #[test]
    fn ranges_read_the_same_in_words_for_counts_and_reals() {
        let words = |field: &str| {
            let b = Hyperparameters::BOUNDS.iter().find(|b| b.field == field);
            b.unwrap().describe()
        };
        assert_eq!(words("warmup_steps"), "must be an integer ≥ 0");
        assert_eq!(words("epochs"), "must be an integer from 1 to 1000");
        assert_eq!(words("learning_rate"), "must be a number > 0 and ≤ 1");
        assert_eq!(words("dropout"), "must be a number ≥ 0 and < 1");
    }

    #[test]
    fn every_bound_is_enforced_at_its_edges() {
        for b in Hyperparameters::BOUNDS {
            let with = |v: f64| {
                let mut value = serde_json::to_value(Hyperparameters::default()).unwrap();
                let slot = value
                    .pointer_mut(&format!("/{}", b.field.replace('.', "/")))
                    .unwrap();
                *slot = if b.integer && v.fract() == 0.0 {
                    serde_json::json!(v as i64)
                } else {
                    serde_json::json!(v)
                };
                let h: Hyperparameters = serde_json::from_value(value).unwrap();
                h.validate().map_err(|e| e.field)
            };
            let low = if b.exclusive_min { b.min + 1e-9 } else { b.min };
            assert!(with(low).is_ok(), "{b:?} at its minimum");
            if b.min >= 1.0 || b.exclusive_min {
                assert_eq!(with(b.min - 1.0), Err(b.field), "{b:?} below");
            }
            if let Some(max) = b.max {
                let high = if b.exclusive_max { max - 1e-6 } else { max };
                assert!(with(high).is_ok(), "{b:?} at its maximum");
                assert_eq!(with(max + 1.0), Err(b.field), "{b:?} above");
            }
        }
    }
}
