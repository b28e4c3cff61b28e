//! GPT-2 tokenization through the `tokenizers` crate.
//!
//! Loads `tokenizer.json` (or `vocab.json` + `merges.txt`), pads on the right with
//! the pad id (GPT-2 has none, so eos 50256, as the recipe sets it), truncates to
//! `max_length` keeping the first tokens, and pads each batch to its longest row
//! (default) or to `max_length`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::Tokenizer;

use super::batch::{Encoded, Padding};

/// Tokenizer failures.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The tokenizer files could not be read or parsed.
    #[error("{}: cannot load tokenizer: {reason}", path.display())]
    Load {
        /// The file (or folder) tried.
        path: PathBuf,
        /// The `tokenizers` library's message.
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
    /// Writing the tokenizer's file failed.
    #[error("cannot save tokenizer: {0}")]
    Write(crate::atomic::IoError),
    /// Serialising the tokenizer failed.
    #[error("{}: cannot save tokenizer: {reason}", path.display())]
    Save {
        /// The file it was to be written to (a model folder's `tokenizer.json`).
        path: PathBuf,
        /// The `tokenizers` library's message.
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

/// GPT-2's tokenizer, configured for classification batches.
#[derive(Clone)]
pub struct TextTokenizer {
    /// As loaded: what [`TextTokenizer::save`] writes. Shared, not copied,
    /// by clones: GPT-2's vocabulary and merges take ~8 MB, more than a LoRA
    /// adapter, and every adapter served on a base uses the base's.
    raw: Arc<Tokenizer>,
    pad_id: u32,
    max_length: usize,
    padding: Padding,
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

    /// GPT-2's own tokenizer (the Hub's `gpt2`), compiled into the binary so
    /// that models can be made offline (`assets/gpt2-tokenizer/` in the
    /// repository says where it comes from).
    pub fn gpt2() -> Result<Self, TokenizerError> {
        const JSON: &[u8] = include_bytes!("../../assets/gpt2-tokenizer/tokenizer.json");
        let raw = Tokenizer::from_bytes(JSON).map_err(|e| TokenizerError::Load {
            path: PathBuf::from("<built-in gpt2 tokenizer>"),
            reason: e.to_string(),
        })?;
        Ok(Self::new(raw, 50256, 1024, Padding::Longest))
    }

    /// Wraps a loaded tokenizer: pad with `pad_id`, truncate to `max_length`.
    pub fn new(mut raw: Tokenizer, pad_id: u32, max_length: usize, padding: Padding) -> Self {
        // Truncation and padding are ours; a tokenizer.json that sets them is overridden.
        raw.with_padding(None);
        raw.with_truncation(None)
            .expect("turning truncation off cannot fail");
        Self {
            raw: Arc::new(raw),
            pad_id,
            max_length,
            padding,
        }
    }

    /// The same tokenizer (shared) with another pad id, length limit and
    /// padding.
    pub fn with_settings(&self, pad_id: u32, max_length: usize, padding: Padding) -> Self {
        Self {
            raw: Arc::clone(&self.raw),
            pad_id,
            max_length,
            padding,
        }
    }

    /// The id short rows are padded with (callers pass the model's `pad_token_id`, else
    /// its `eos_token_id`).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Longest encoding, in tokens: texts are cut to it (their first tokens kept), and
    /// `Padding::MaxLength` pads to it.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Token ids of one text, truncated to `max_length`, unpadded.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        Ok(self.encode_many(&[text])?.remove(0))
    }

    /// Token ids of many texts (in parallel), each truncated, unpadded.
    pub fn encode_many(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, TokenizerError> {
        let mut rows = self.encode_untruncated(texts)?;
        for row in &mut rows {
            row.truncate(self.max_length);
        }
        Ok(rows)
    }

    /// Token ids of many texts (in parallel), whole: for checking lengths
    /// before truncating them oneself.
    pub fn encode_untruncated(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, TokenizerError> {
        let encodings = self
            .raw
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Tokenizes `texts` into one padded batch. A text with no tokens is an error.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Encoded, TokenizerError> {
        let rows = self.encode_many(texts)?;
        let rows: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        self.pad(&rows)
    }

    /// Pads token ids (each at most `max_length` long) into one batch with this
    /// tokenizer's settings. A row with no tokens is an error.
    pub fn pad(&self, rows: &[&[u32]]) -> Result<Encoded, TokenizerError> {
        if let Some(index) = rows.iter().position(|r| r.is_empty()) {
            return Err(TokenizerError::EmptyText { index });
        }
        Ok(Encoded::pad(
            rows,
            self.pad_id,
            self.padding,
            self.max_length,
        ))
    }

    /// The token with id `id`, if the vocabulary has one.
    pub fn token(&self, id: u32) -> Option<String> {
        self.raw.id_to_token(id)
    }

    /// Writes the tokenizer as `tokenizer.json` at `path`. Serialised here
    /// and written with `std::fs`, so a failed write keeps its OS error (a
    /// full disk is a cause that passes; a serialisation error is not).
    pub fn save(&self, path: &Path) -> Result<(), TokenizerError> {
        let json = self
            .raw
            .to_string(false)
            .map_err(|e| TokenizerError::Save {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        std::fs::write(path, json)
            .map_err(|source| TokenizerError::Write(crate::atomic::IoError::new(path, source)))
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
