//! Inference: turning texts into predictions with a loaded classifier.
//!
//! [`Classifier`] is synchronous and CPU/GPU-bound; callers on an async runtime
//! run it on a thread of its own.

mod classifier;

pub use classifier::{Classifier, InferError, Prediction};
