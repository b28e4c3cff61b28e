//! A model and its tokenizer, answering batches of texts.

use std::collections::BTreeMap;

use candle_core::Device;

use crate::data::{Padding, TextTokenizer, TokenizerError};
use crate::model::{Gpt2ForSequenceClassification, LoadedModel, Mode, ModelError};

/// Inference failures.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// A text could not be tokenized (for example, it is empty).
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The forward pass failed.
    #[error("forward pass failed: {0}")]
    Model(#[from] candle_core::Error),
}

/// One text's classification.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prediction {
    /// The most probable class.
    pub label: String,
    /// Its id.
    pub label_id: usize,
    /// Its probability.
    pub score: f32,
    /// Every class's softmax probability.
    pub scores: BTreeMap<String, f32>,
    /// Raw logits, by label id.
    pub logits: Vec<f32>,
}

/// A classifier ready to answer: network, tokenizer and labels.
#[derive(Debug, Clone)]
pub struct Classifier {
    model: Gpt2ForSequenceClassification,
    tokenizer: TextTokenizer,
}

impl Classifier {
    /// Builds the network of `loaded`; inputs are truncated to `max_length`
    /// (default: the model's `n_positions`) and padded to the longest in a batch.
    pub fn new(loaded: &LoadedModel, max_length: Option<usize>) -> Result<Self, ModelError> {
        let cfg = &loaded.config;
        let max_length = max_length.unwrap_or(cfg.n_positions).min(cfg.n_positions);
        let tokenizer = loaded
            .tokenizer
            .with_settings(cfg.pad_id(), max_length, Padding::Longest);
        Ok(Self {
            model: loaded.build()?,
            tokenizer,
        })
    }

    /// Class names by id.
    pub fn labels(&self) -> &[String] {
        &self.model.config().labels
    }

    /// The tokenizer (with this classifier's pad id and length limit).
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        self.model.device()
    }

    /// Classifies `texts` as one padded batch (one prediction per text, in order).
    pub fn classify(&self, texts: &[&str]) -> Result<Vec<Prediction>, InferError> {
        let rows = self.tokenizer.encode_many(texts)?;
        let rows: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        self.classify_rows(&rows)
    }

    /// Classifies many texts in batches of `batch_size`, grouping texts of
    /// similar length to pad less; results come back in input order.
    pub fn classify_all(
        &self,
        texts: &[&str],
        batch_size: usize,
    ) -> Result<Vec<Prediction>, InferError> {
        let rows = self.tokenizer.encode_many(texts)?;
        self.classify_all_ids(&rows, batch_size)
    }

    /// [`Classifier::classify_all`] for texts already tokenized by
    /// [`Classifier::tokenizer`] (each at most its `max_length` long), so a caller
    /// that needed the ids anyway (to check lengths) tokenizes only once.
    pub fn classify_all_ids(
        &self,
        rows: &[Vec<u32>],
        batch_size: usize,
    ) -> Result<Vec<Prediction>, InferError> {
        if let Some(index) = rows.iter().position(Vec::is_empty) {
            return Err(TokenizerError::EmptyText { index }.into());
        }
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].len());
        let mut out: Vec<Option<Prediction>> = vec![None; rows.len()];
        for chunk in order.chunks(batch_size.max(1)) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| rows[i].as_slice()).collect();
            for (&i, p) in chunk.iter().zip(self.classify_rows(&batch)?) {
                out[i] = Some(p);
            }
        }
        Ok(out
            .into_iter()
            .map(|p| p.expect("every text classified"))
            .collect())
    }

    /// One padded batch of token ids through the network.
    fn classify_rows(&self, rows: &[&[u32]]) -> Result<Vec<Prediction>, InferError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, mask) = self.tokenizer.pad(rows)?.to_tensors(self.device())?;
        let logits = self
            .model
            .forward(&ids, Some(&mask), &mut Mode::Eval)?
            .to_vec2::<f32>()?;
        Ok(logits.into_iter().map(|row| self.prediction(row)).collect())
    }

    fn prediction(&self, logits: Vec<f32>) -> Prediction {
        let probs = softmax(&logits);
        let (label_id, &score) = probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .expect("at least one label");
        let labels = self.labels();
        Prediction {
            label: labels[label_id].clone(),
            label_id,
            score,
            scores: labels.iter().cloned().zip(probs.iter().copied()).collect(),
            logits,
        }
    }
}

/// Numerically stable softmax.
fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::softmax;

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[1.0, 3.0, 2.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[1] > p[2] && p[2] > p[0]);
        assert!((p[1] - 0.665_240_9).abs() < 1e-6);
    }
}
