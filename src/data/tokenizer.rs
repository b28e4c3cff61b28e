//! GPT-2 tokenization through the `tokenizers` crate.
//!
//! Loads `tokenizer.json` (or `vocab.json` + `merges.txt`), pads on the right with
//! the pad id (GPT-2 has none, so eos 50256, as the recipe sets it), truncates to
//! `max_length` keeping the first tokens, and pads each batch to its longest row
//! (default) or to `max_length`.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

/// Tokenizer failures.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The tokenizer files could not be read or parsed.
    #[error("{}: cannot load tokenizer: {reason}", path.display())]
    Load {
        /// The file (or folder) tried.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// A folder has neither `tokenizer.json` nor `vocab.json` + `merges.txt`.
    #[error("{}: no tokenizer.json (or vocab.json + merges.txt) in this folder", .0.display())]
    NotFound(PathBuf),
    /// Encoding failed.
    #[error("tokenization failed: {0}")]
    Encode(String),
    /// Every text in the batch tokenized to nothing.
    #[error("input {index} is empty: a text needs at least one token to be classified")]
    EmptyText {
        /// Position of the text in the batch (0-based).
        index: usize,
    },
    /// Writing the tokenizer failed.
    #[error("{}: cannot save tokenizer: {reason}", path.display())]
    Save {
        /// The target file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Where a tokenizer's definition lives on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerFiles {
    /// A `tokenizers` JSON file.
    Json(PathBuf),
    /// GPT-2's original pair of files.
    VocabMerges {
        /// `vocab.json` (or `encoder.json`).
        vocab: PathBuf,
        /// `merges.txt` (or `vocab.bpe`).
        merges: PathBuf,
    },
}

impl TokenizerFiles {
    /// Finds the tokenizer files in `dir`, preferring `tokenizer.json`.
    pub fn in_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return Ok(Self::Json(json));
        }
        let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        if vocab.is_file() && merges.is_file() {
            return Ok(Self::VocabMerges { vocab, merges });
        }
        Err(TokenizerError::NotFound(dir.to_path_buf()))
    }
}

/// How a batch is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// Pad to the longest row of the batch (same maths, far less work).
    #[default]
    Longest,
    /// Pad every row to `max_length`, as the recipe's `padding="max_length"`.
    MaxLength,
}

/// A tokenized, padded batch (row-major `[batch, seq_len]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, right-padded with the pad id.
    pub ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
    /// Rows.
    pub batch: usize,
    /// Columns.
    pub seq_len: usize,
}

impl Encoded {
    /// Real (unpadded) tokens of each row.
    pub fn lengths(&self) -> Vec<usize> {
        self.attention_mask
            .chunks(self.seq_len.max(1))
            .map(|row| row.iter().filter(|&&m| m != 0).count())
            .collect()
    }

    /// `(input_ids, attention_mask)` as `[batch, seq_len]` u32 tensors.
    pub fn to_tensors(&self, dev: &Device) -> candle_core::Result<(Tensor, Tensor)> {
        let shape = (self.batch, self.seq_len);
        Ok((
            Tensor::from_slice(&self.ids, shape, dev)?,
            Tensor::from_slice(&self.attention_mask, shape, dev)?,
        ))
    }
}

/// GPT-2's tokenizer, configured for classification batches.
#[derive(Clone)]
pub struct TextTokenizer {
    /// As loaded, without padding or truncation: what [`TextTokenizer::save`] writes.
    raw: Tokenizer,
    /// With truncation to `max_length` and right padding with `pad_id`.
    configured: Tokenizer,
    pad_id: u32,
    max_length: usize,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("pad_id", &self.pad_id)
            .field("max_length", &self.max_length)
            .finish_non_exhaustive()
    }
}

impl TextTokenizer {
    /// Loads the tokenizer from `files`.
    pub fn load(files: &TokenizerFiles) -> Result<Self, TokenizerError> {
        let raw = match files {
            TokenizerFiles::Json(path) => {
                Tokenizer::from_file(path).map_err(|e| TokenizerError::Load {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
            }
            TokenizerFiles::VocabMerges { vocab, merges } => from_vocab_merges(vocab, merges)?,
        };
        Ok(Self::new(raw, 50256, 1024, Padding::Longest))
    }

    /// Wraps a loaded tokenizer: pad with `pad_id`, truncate to `max_length`.
    pub fn new(raw: Tokenizer, pad_id: u32, max_length: usize, padding: Padding) -> Self {
        let mut tok = Self {
            configured: raw.clone(),
            raw,
            pad_id,
            max_length,
        };
        tok.configure(padding);
        tok
    }

    /// The same tokenizer with another pad id, length limit and padding.
    pub fn with_settings(&self, pad_id: u32, max_length: usize, padding: Padding) -> Self {
        Self::new(self.raw.clone(), pad_id, max_length, padding)
    }

    fn configure(&mut self, padding: Padding) {
        let pad_token = self
            .raw
            .id_to_token(self.pad_id)
            .unwrap_or_else(|| "<|endoftext|>".to_string());
        let strategy = match padding {
            Padding::Longest => PaddingStrategy::BatchLongest,
            Padding::MaxLength => PaddingStrategy::Fixed(self.max_length),
        };
        self.configured
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: self.max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .expect("stride 0 is always a valid truncation");
        self.configured.with_padding(Some(PaddingParams {
            strategy,
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id: self.pad_id,
            pad_type_id: 0,
            pad_token,
        }));
    }

    /// The padding id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The truncation length.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Token ids of one text, truncated, unpadded.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let enc = self
            .raw
            .encode(text, true)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        let mut ids = enc.get_ids().to_vec();
        ids.truncate(self.max_length);
        Ok(ids)
    }

    /// Tokenizes `texts` into one padded batch. A text with no tokens is an error.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Encoded, TokenizerError> {
        let encodings = self
            .configured
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        let seq_len = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut out = Encoded {
            ids: Vec::with_capacity(texts.len() * seq_len),
            attention_mask: Vec::with_capacity(texts.len() * seq_len),
            batch: texts.len(),
            seq_len,
        };
        for (index, enc) in encodings.iter().enumerate() {
            if enc.get_attention_mask().iter().all(|&m| m == 0) {
                return Err(TokenizerError::EmptyText { index });
            }
            out.ids.extend_from_slice(enc.get_ids());
            out.attention_mask
                .extend_from_slice(enc.get_attention_mask());
        }
        Ok(out)
    }

    /// Writes the tokenizer as `tokenizer.json` at `path`.
    pub fn save(&self, path: &Path) -> Result<(), TokenizerError> {
        self.raw
            .save(path, false)
            .map_err(|e| TokenizerError::Save {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
    }
}

fn from_vocab_merges(vocab: &Path, merges: &Path) -> Result<Tokenizer, TokenizerError> {
    let load_err = |e: tokenizers::Error| TokenizerError::Load {
        path: vocab.to_path_buf(),
        reason: e.to_string(),
    };
    let to_str = |p: &Path| p.to_string_lossy().into_owned();
    let bpe = BPE::from_file(&to_str(vocab), &to_str(merges))
        .build()
        .map_err(load_err)?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
        .with_decoder(Some(ByteLevel::default()))
        .with_post_processor(Some(ByteLevel::new(true, false, true)));
    tokenizer
        .add_special_tokens([tokenizers::AddedToken::from("<|endoftext|>", true)])
        .map_err(load_err)?;
    Ok(tokenizer)
}
