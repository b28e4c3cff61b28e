//! The models the service answers with: `latest` (swapped atomically when a
//! job succeeds) and any other loaded by id. Requests hold an `Arc`, so
//! in-flight ones finish on the weights they started with; old weights are
//! dropped with their last request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwapOption;

use super::Classifier;

/// A classifier with the id clients name it by.
#[derive(Debug)]
pub struct ServedModel {
    /// The model id (a fine-tuned model's id, or the `--model` argument).
    pub id: String,
    /// The network and tokenizer.
    pub classifier: Classifier,
}

/// Loaded models by id, and which one is `latest`.
#[derive(Debug, Default)]
pub struct Registry {
    latest: ArcSwapOption<ServedModel>,
    by_id: RwLock<HashMap<String, Arc<ServedModel>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `model` under its id and makes it `latest`. The previous `latest`
    /// leaves the registry (its weights are freed when its last request ends;
    /// asking for it by id loads it again).
    pub fn promote(&self, model: Arc<ServedModel>) {
        self.insert(model.clone());
        if let Some(old) = self.latest.swap(Some(model)) {
            let mut by_id = self.by_id.write().unwrap_or_else(|e| e.into_inner());
            if by_id.get(&old.id).is_some_and(|m| Arc::ptr_eq(m, &old)) {
                by_id.remove(&old.id);
            }
        }
    }

    /// Adds `model` under its id without changing `latest`.
    pub fn insert(&self, model: Arc<ServedModel>) {
        self.by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(model.id.clone(), model);
    }

    /// The current `latest`, if any model was loaded.
    pub fn latest(&self) -> Option<Arc<ServedModel>> {
        self.latest.load_full()
    }

    /// A loaded model by id (`latest` also answers to its own id).
    pub fn get(&self, id: &str) -> Option<Arc<ServedModel>> {
        self.by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }
}
