//! A model and its tokenizer, answering texts: tokenize, cut to the model's
//! length (or refuse a text that is too long), pad into batches of similar
//! lengths, run the network, turn logits into predictions.

use std::collections::BTreeMap;

use candle_core::Device;

use crate::data::{Padding, TextTokenizer, TokenizerError};
use crate::model::{
    argmax, log_softmax, BatchInput, Gpt2ForSequenceClassification, InferPrecision, LoadedModel,
    Mode, ModelError,
};

/// Inference failures.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// A text could not be tokenized, or tokenized to nothing.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// A text is longer than the model takes and truncation was off.
    #[error("inputs[{index}] has {tokens} tokens, more than the model's {max} (send \"truncate\": true to cut it)")]
    TooLong {
        /// Position of the text (0-based).
        index: usize,
        /// Its length in tokens, before any truncation.
        tokens: usize,
        /// The longest text taken: the model's `n_positions`, or the smaller `max_length` the
        /// classifier was built with.
        max: usize,
    },
    /// A request's texts hold more tokens than one request may.
    #[error("the inputs hold {tokens} tokens, more than the {max} one request may (send fewer or shorter texts)")]
    TooManyTokens {
        /// Tokens in the request (after truncation).
        tokens: usize,
        /// The limit (`--max-request-tokens`).
        max: usize,
    },
    /// The forward pass failed (out of device memory, a driver error).
    #[error("forward pass failed: {0}")]
    Model(#[from] candle_core::Error),
    /// The model could not be loaded.
    #[error(transparent)]
    Load(#[from] ModelError),
}

/// One text's classification.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prediction {
    /// The most probable class's name (from `id2label`).
    pub label: String,
    /// Index of that class in `id2label` (0-based).
    pub label_id: usize,
    /// Its softmax probability (0–1).
    pub score: f32,
    /// Every class's softmax probability.
    pub scores: BTreeMap<String, f32>,
    /// Raw logits, by label id.
    pub logits: Vec<f32>,
}

/// How big one forward pass may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Texts in one batch at most.
    pub texts: usize,
    /// Padded tokens (texts × the longest one's length) in one batch at most.
    pub tokens: usize,
}

impl BatchLimits {
    /// One batch of `texts` texts, whatever their length.
    pub fn whole(texts: usize) -> Self {
        Self {
            texts: texts.max(1),
            tokens: usize::MAX,
        }
    }
}

/// A classifier ready to answer: network, tokenizer and labels.
#[derive(Debug, Clone)]
pub struct Classifier {
    model: Gpt2ForSequenceClassification,
    tokenizer: TextTokenizer,
    /// What the base's Conv1D products run in.
    precision: InferPrecision,
    /// Bytes of the whole model's weights as held (packed layers at their
    /// size).
    model_bytes: usize,
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
            precision: loaded.precision(),
            model_bytes: loaded.weight_bytes(),
        })
    }

    /// The precision the model answers in (set when it was loaded, see
    /// [`LoadedModel::pack`]).
    pub fn precision(&self) -> InferPrecision {
        self.precision
    }

    /// Class names by id.
    pub fn labels(&self) -> &[String] {
        &self.model.config().labels
    }

    /// Tokens a text keeps (longer ones are cut, or refused without
    /// truncation): the `max_length` it was built with, at most the model's
    /// `n_positions`.
    pub fn max_length(&self) -> usize {
        self.tokenizer.max_length()
    }

    /// The device its weights live on: inputs are uploaded and forward passes run there.
    pub fn device(&self) -> &Device {
        self.model.device()
    }

    /// The settings of the LoRA adapter the model runs with, if any.
    pub fn adapter(&self) -> Option<&crate::model::LoraConfig> {
        self.model.adapter().map(|a| a.config())
    }

    /// Bytes of weights the model holds (what keeping it loaded costs): an
    /// adapter's own tensors (f32), without the base it shares; a whole
    /// model's as held (int8 or bf16 layers at their packed size).
    pub fn weight_bytes(&self) -> usize {
        let cfg = self.model.config();
        if let Some(adapter) = self.model.adapter() {
            return crate::model::adapter_parameter_shapes(cfg, adapter.config())
                .iter()
                .map(|(_, shape)| shape.iter().product::<usize>() * 4)
                .sum();
        }
        self.model_bytes
    }

    /// The token ids of `texts`, each cut to the model's length; with
    /// `truncate` false, the first text over it is an [`InferError::TooLong`]
    /// instead. A text with no tokens is an error either way.
    pub fn encode(&self, texts: &[&str], truncate: bool) -> Result<Vec<Vec<u32>>, InferError> {
        let max = self.tokenizer.max_length();
        let mut rows = self.tokenizer.encode_untruncated(texts)?;
        if let Some(index) = rows.iter().position(Vec::is_empty) {
            return Err(TokenizerError::EmptyText { index }.into());
        }
        if !truncate {
            if let Some(index) = rows.iter().position(|ids| ids.len() > max) {
                let tokens = rows[index].len();
                return Err(InferError::TooLong { index, tokens, max });
            }
        }
        for ids in &mut rows {
            ids.truncate(max);
        }
        Ok(rows)
    }

    /// Classifies `texts` as one padded batch (cut to the model's length), one
    /// prediction per text, in order.
    pub fn classify(&self, texts: &[&str]) -> Result<Vec<Prediction>, InferError> {
        let rows = self.encode(texts, true)?;
        self.classify_ids(&rows, BatchLimits::whole(rows.len()))
    }

    /// Classifies texts already encoded by [`Classifier::encode`] in batches,
    /// grouping texts of similar length to pad less: each batch holds at most
    /// `limits.texts` texts and `limits.tokens` padded tokens (a longer text
    /// goes alone). Results come back in input order.
    pub fn classify_ids(
        &self,
        rows: &[Vec<u32>],
        limits: BatchLimits,
    ) -> Result<Vec<Prediction>, InferError> {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].len());
        let mut out: Vec<Option<Prediction>> = vec![None; rows.len()];
        let mut start = 0;
        while start < order.len() {
            // Sorted by length: the newest row is the longest, so padding is its length.
            let mut end = start + 1;
            while end < order.len()
                && end - start < limits.texts.max(1)
                && (end - start + 1) * rows[order[end]].len() <= limits.tokens
            {
                end += 1;
            }
            let chunk = &order[start..end];
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| rows[i].as_slice()).collect();
            for (&i, p) in chunk.iter().zip(self.classify_rows(&batch)?) {
                out[i] = Some(p);
            }
            start = end;
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// One padded batch of token ids through the network.
    fn classify_rows(&self, rows: &[&[u32]]) -> Result<Vec<Prediction>, InferError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self.tokenizer.pad(rows)?;
        let input = BatchInput::new(&enc, self.device())?;
        let logits = self
            .model
            .forward(&input, &mut Mode::Eval)?
            .to_vec2::<f32>()?;
        Ok(logits.into_iter().map(|row| self.prediction(row)).collect())
    }

    /// The network (for passes that mix adapters, see `mixed.rs`).
    pub(super) fn network(&self) -> &Gpt2ForSequenceClassification {
        &self.model
    }

    /// The tokenizer, as set up for this model.
    pub(super) fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// A row's logits as a prediction with this model's labels.
    pub(super) fn prediction(&self, logits: Vec<f32>) -> Prediction {
        let probs: Vec<f32> = log_softmax(&logits)
            .into_iter()
            .map(|lp| lp.exp() as f32)
            .collect();
        let label_id = argmax(&logits);
        let labels = self.labels();
        Prediction {
            label: labels[label_id].clone(),
            label_id,
            score: probs[label_id],
            scores: labels.iter().cloned().zip(probs).collect(),
            logits,
        }
    }
}
