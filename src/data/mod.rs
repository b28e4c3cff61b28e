//! Text data: tokenization with GPT-2's byte-level BPE and padded batches.

mod tokenizer;

pub use tokenizer::{Encoded, Padding, TextTokenizer, TokenizerError, TokenizerFiles};
