//! Text data: tokenization with GPT-2's byte-level BPE and padded batches.

mod batch;
mod tokenizer;

pub use batch::{Encoded, Padding};
pub use tokenizer::{TextTokenizer, TokenizerError, TokenizerFiles};
/// TEMP
#[derive(Debug, Clone)]
pub struct Example {
    pub text: String,
    pub label: usize,
}
