//! Inference: turning texts into predictions with a loaded classifier.
//!
//! [`Classifier`] is synchronous and CPU/GPU-bound; the service keeps loaded
//! models in a [`Registry`] (`latest` swapped atomically) and runs them on the
//! [`Batcher`]'s own thread behind a bounded queue.

mod batcher;
mod classifier;
mod mixed;
mod registry;

pub use batcher::{Batcher, BatchingConfig, SubmitError};
pub use classifier::{BatchLimits, Classifier, InferError, Prediction};
pub use mixed::{classify_adapters, shares_pass};
pub use registry::{Registry, ServedModel};
