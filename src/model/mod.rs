//! GPT-2 sequence classifiers: configuration, the network, random initialisation,
//! loading (local folders and the Hugging Face Hub, in both of its layouts) and
//! export in Hugging Face's classifier layout.

mod adapted;
mod card;
mod config;
mod device;
mod gpt2;
mod head;
mod init;
mod input;
mod layers;
mod load;
mod lora;
pub(crate) mod ops;
mod packed;
mod peft;
mod precision;
mod save;

use std::path::{Path, PathBuf};

pub use adapted::{LoraNet, RowGroup};
pub use card::ModelCard;
pub use config::{default_labels, Activation, Gpt2Config};
pub use device::{parse_device, DeviceInfo};
pub use gpt2::{parameter_shapes, Gpt2ForSequenceClassification};
pub use head::{argmax, log_softmax};
pub use init::{init_score_head, random_weights, Preset};
pub use input::{embedding_gradient, BatchInput};
pub use layers::Mode;
pub use load::{load, resolve, LoadOptions, LoadedModel, ModelFiles, ModelSource, WeightLayout};
pub use lora::{adapter_parameter_shapes, Adapter, LoraConfig, LoraTarget};
pub use ops::qgemm::{with_bgemm_isa, with_qgemm_isa, Bf16Isa, QIsa};
pub use ops::GradSink;
pub use packed::{PackedConv, PackedLayers};
pub use peft::{adapter_base, adapter_settings, is_adapter_dir, load_adapter_on};
pub use precision::{InferPrecision, Precision};
pub(crate) use save::writing_safetensors;
pub use save::{export, read_trained, save, write_model_files, write_trained, Trained};

/// Named weights of a classifier, keyed as in [`parameter_shapes`].
pub type Weights = std::collections::HashMap<String, candle_core::Tensor>;

/// Everything that can go wrong building, loading or saving a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] crate::atomic::IoError),
    /// `config.json` is unreadable or inconsistent.
    #[error("{}: {reason}", file.display())]
    Config {
        /// The file at fault: `config.json`, or a sharded model's
        /// `model.safetensors.index.json`.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The checkpoint is not a GPT-2.
    #[error("{}: unsupported {found}; tuneserve loads GPT-2 models (model_type \"gpt2\")", file.display())]
    UnsupportedArchitecture {
        /// The model's `config.json`.
        file: PathBuf,
        /// The model type or architecture found.
        found: String,
    },
    /// A tensor the configuration calls for is absent.
    #[error("{}: missing tensor `{name}`", file.display())]
    MissingTensor {
        /// The weights file; of a sharded model, its first shard (none holds the tensor).
        file: PathBuf,
        /// The tensor's name as it would appear in that file.
        name: String,
    },
    /// A tensor has a different shape than the configuration calls for.
    #[error("{}: tensor `{name}` has shape {got:?}, expected {expected:?} from config.json", file.display())]
    WrongShape {
        /// The weights file (of a sharded model, the shard) that holds the tensor.
        file: PathBuf,
        /// The tensor's name in that file.
        name: String,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape stored.
        got: Vec<usize>,
    },
    /// A weights file is not valid safetensors (truncated, corrupt).
    #[error("{}: not a valid safetensors file (truncated or corrupt?): {reason}", file.display())]
    Safetensors {
        /// The file that does not read: a model's weights (or one shard), an adapter's tensors.
        file: PathBuf,
        /// The safetensors reader's message (naming the tensor when one tensor failed).
        reason: String,
    },
    /// A required file is not in the model folder.
    #[error("{}: no {what} found (looked for {looked_for})", dir.display())]
    MissingFile {
        /// The local folder looked in (a file missing on the Hub is a [`ModelError::Hub`]).
        dir: PathBuf,
        /// What was needed, in words (`model configuration`, `safetensors weights`, `tokenizer`).
        what: &'static str,
        /// The file names tried, as the message lists them (`a, b`: either; `a + b`: both).
        looked_for: String,
    },
    /// The model source is neither a folder nor a Hub id.
    #[error("`{0}` is neither an existing directory nor a Hugging Face Hub id (`name` or `owner/name[@revision]`)")]
    BadSource(String),
    /// Fetching from the Hub failed.
    #[error(transparent)]
    Hub(#[from] crate::hub::HubError),
    /// The tokenizer could not be loaded or saved.
    #[error(transparent)]
    Tokenizer(#[from] crate::data::TokenizerError),
    /// A LoRA adapter does not fit its base, or its files are not PEFT's.
    #[error("adapter: {reason}")]
    Adapter {
        /// What is wrong, naming the file or tensor at fault.
        reason: String,
    },
    /// The model cannot run or be used in the precision asked for (a packed
    /// precision off the CPU, training a packed model).
    #[error("precision: {reason}")]
    Precision {
        /// What was asked and why it cannot be.
        reason: String,
    },
    /// A tensor operation failed (out of device memory, a driver error).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    /// Whether loading or saving again can help: a file the OS could not read
    /// or write (a full disk) or a Hub out of reach may pass; a checkpoint
    /// that is not a GPT-2 will not (see [`crate::fault`]).
    pub fn cause(&self) -> crate::fault::Cause {
        use crate::fault::Cause;
        match self {
            Self::Io(e) | Self::Tokenizer(crate::data::TokenizerError::Write(e)) => {
                crate::fault::io_cause(&e.source)
            }
            Self::Hub(e) => e.cause(),
            Self::Candle(_) => Cause::Unknown,
            _ => Cause::Permanent,
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io(crate::atomic::IoError::new(path, source))
    }
}
