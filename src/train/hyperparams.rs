//! Fine-tuning hyperparameters: DESIGN.md §3's names and defaults, with
//! validation that names the offending field.

use serde::{Deserialize, Serialize};

use crate::data::Padding;

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
///
/// Also the `tuneserve train` flags (`--learning-rate 5e-4`, …), made from
/// this definition and these defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Hyperparameters {
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
    /// When to evaluate.
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
    /// Attempts a job gets before it is marked failed (used by the service).
    pub max_attempts: usize,
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Self {
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
            max_attempts: 3,
        }
    }
}

/// A hyperparameter outside its allowed range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("hyperparameters.{field}: {reason}")]
pub struct InvalidHyperparameter {
    /// The field's name.
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

impl Hyperparameters {
    /// Checks every field's range; the first violation names its field.
    pub fn validate(&self) -> Result<(), InvalidHyperparameter> {
        check(
            (1..=1000).contains(&self.epochs),
            "epochs",
            "must be between 1 and 1000",
        )?;
        check(
            self.learning_rate.is_finite() && self.learning_rate > 0.0 && self.learning_rate <= 1.0,
            "learning_rate",
            "must be > 0 and <= 1",
        )?;
        check(
            (1..=4096).contains(&self.batch_size),
            "batch_size",
            "must be between 1 and 4096",
        )?;
        check(
            (1..=4096).contains(&self.gradient_accumulation_steps),
            "gradient_accumulation_steps",
            "must be between 1 and 4096",
        )?;
        check(self.max_length != Some(0), "max_length", "must be positive")?;
        check(
            (0.0..=1.0).contains(&self.weight_decay),
            "weight_decay",
            "must be between 0 and 1",
        )?;
        check(
            self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0,
            "max_grad_norm",
            "must be >= 0 (0 turns clipping off)",
        )?;
        check(
            self.train_subset != Some(0),
            "train_subset",
            "must be positive",
        )?;
        check(
            self.eval_subset != Some(0),
            "eval_subset",
            "must be positive",
        )?;
        check(self.eval_steps != Some(0), "eval_steps", "must be positive")?;
        check(
            self.eval_strategy != Strategy::Steps || self.eval_steps.is_some(),
            "eval_steps",
            "is required when eval_strategy is \"steps\"",
        )?;
        check(self.save_steps != Some(0), "save_steps", "must be positive")?;
        check(
            self.save_strategy != Strategy::Steps || self.save_steps.is_some(),
            "save_steps",
            "is required when save_strategy is \"steps\"",
        )?;
        check(
            self.save_total_limit >= 1,
            "save_total_limit",
            "must be at least 1",
        )?;
        check(
            self.early_stopping_patience != Some(0),
            "early_stopping_patience",
            "must be positive",
        )?;
        check(
            self.early_stopping_patience.is_none() || self.eval_strategy != Strategy::No,
            "early_stopping_patience",
            "needs evaluation (eval_strategy is \"no\")",
        )?;
        check(
            self.logging_steps >= 1,
            "logging_steps",
            "must be at least 1",
        )?;
        check(
            self.dropout.is_none_or(|p| (0.0..1.0).contains(&p)),
            "dropout",
            "must be >= 0 and < 1",
        )?;
        check(
            (1..=100).contains(&self.max_attempts),
            "max_attempts",
            "must be between 1 and 100",
        )?;
        Ok(())
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
    }
}
