//! Text data: labelled datasets (JSONL/CSV parsing, validation, label maps, seeded
//! subsets, Hub splits) and tokenization with GPT-2's byte-level BPE into padded
//! batches.

mod batch;
mod dataset;
pub mod numpy_rng;
mod tokenizer;

pub use batch::{pool_index, Encoded, Padding};
pub use dataset::{
    default_label, fetch_hub_split, load_hub_split, select_indices, shuffled_indices_in_stream,
    Dataset, DatasetError, DatasetFormat, Example, ParseOptions, RowError,
};
pub use tokenizer::{TextTokenizer, TokenizerError, TokenizerFiles};
