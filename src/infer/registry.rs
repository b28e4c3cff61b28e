//! The models the service answers with: `latest` (swapped atomically when a
//! model is promoted) and a bounded set of others loaded on demand by id.
//!
//! Each promotion carries the model's rank (when it was promoted, in the
//! store, over every node): a model only replaces `latest` when it ranks at
//! least as high, so promotions arriving out of order (this node's own job,
//! another node's promotion seen a moment later) settle on the one promoted
//! last.
//!
//! Requests hold an `Arc`, so in-flight ones finish on the weights they started
//! with; a model's weights are freed when it has left the registry and its last
//! request has ended. Beyond `max_loaded` models the least recently used one
//! leaves (never `latest`), so naming many models cannot exhaust memory.
//! Loading runs on a blocking thread, never on the async runtime.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use candle_core::Device;

use super::{Classifier, InferError};
use crate::model::{self, LoadOptions, ModelSource};

/// A classifier with the id clients name it by.
#[derive(Debug)]
pub struct ServedModel {
    /// The model id (a fine-tuned model's id, or the name the service was
    /// started with).
    pub id: String,
    /// The network and tokenizer.
    pub classifier: Classifier,
}

impl ServedModel {
    /// Loads the model at `source` to serve as `id` (blocking).
    pub fn load(id: &str, source: &ModelSource, device: &Device) -> Result<Self, InferError> {
        let opts = LoadOptions {
            device: device.clone(),
            ..LoadOptions::default()
        };
        let loaded = model::load(source, &opts)?;
        Ok(Self {
            id: id.to_string(),
            classifier: Classifier::new(&loaded, None)?,
        })
    }
}

/// Loaded models by id, and which one is `latest`.
#[derive(Debug)]
pub struct Registry {
    latest: ArcSwapOption<ServedModel>,
    /// The rank of `latest` (`i64::MIN` before any promotion); held while swapping.
    rank: Mutex<i64>,
    /// Models other than `latest`, least recently used first.
    recent: Mutex<Vec<Arc<ServedModel>>>,
    max_loaded: usize,
    device: Device,
}

impl Registry {
    /// An empty registry loading onto `device` and keeping at most
    /// `max_loaded` models besides `latest`.
    pub fn new(device: Device, max_loaded: usize) -> Self {
        Self {
            latest: ArcSwapOption::empty(),
            rank: Mutex::new(i64::MIN),
            recent: Mutex::new(Vec::new()),
            max_loaded,
            device,
        }
    }

    /// Makes `model` `latest` unless `rank` is lower than the current one's
    /// (a model promoted earlier); otherwise keeps it as a recent model.
    /// `true` when it became `latest`. The previous `latest` stays loaded as
    /// a recent model (until evicted).
    pub fn promote(&self, model: Arc<ServedModel>, rank: i64) -> bool {
        let mut current = self.rank.lock().unwrap_or_else(|e| e.into_inner());
        if rank < *current {
            drop(current);
            if self.latest().is_none_or(|latest| latest.id != model.id) {
                self.remember(model);
            }
            return false;
        }
        *current = rank;
        self.remember_except(&model.id);
        if let Some(old) = self.latest.swap(Some(model)) {
            self.remember(old);
        }
        self.report();
        true
    }

    /// The rank of `latest` (`i64::MIN` before any promotion).
    pub fn rank(&self) -> i64 {
        *self.rank.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The device models are loaded onto.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The current `latest`, if any model was promoted.
    pub fn latest(&self) -> Option<Arc<ServedModel>> {
        self.latest.load_full()
    }

    /// The loaded model `id` (`latest` included), marking it recently used.
    pub fn get(&self, id: &str) -> Option<Arc<ServedModel>> {
        if let Some(latest) = self.latest().filter(|m| m.id == id) {
            return Some(latest);
        }
        let mut recent = self.lock();
        let pos = recent.iter().position(|m| m.id == id)?;
        let model = recent.remove(pos);
        recent.push(model.clone());
        Some(model)
    }

    /// The loaded model `id`, or `source` loaded now (on a blocking thread) and
    /// kept under `id`.
    pub async fn get_or_load(
        &self,
        id: &str,
        source: ModelSource,
    ) -> Result<Arc<ServedModel>, InferError> {
        if let Some(model) = self.get(id) {
            return Ok(model);
        }
        let (owned_id, device) = (id.to_string(), self.device.clone());
        let loaded =
            tokio::task::spawn_blocking(move || ServedModel::load(&owned_id, &source, &device))
                .await
                .map_err(|e| candle_core::Error::Msg(format!("loading thread failed: {e}")))??;
        if let Some(model) = self.get(id) {
            return Ok(model); // another request loaded it meanwhile
        }
        let model = Arc::new(loaded);
        self.remember(model.clone());
        Ok(model)
    }

    /// Forgets model `id` (it is being deleted); `latest` is never forgotten.
    pub fn forget(&self, id: &str) {
        self.remember_except(id);
    }

    /// How many models are loaded (`latest` included) and the bytes of their
    /// weights.
    pub fn footprint(&self) -> (usize, usize) {
        let recent = self.lock();
        let latest = self.latest();
        let models = recent.iter().chain(latest.as_ref());
        let bytes = models.map(|m| m.classifier.weight_bytes()).sum();
        (recent.len() + usize::from(latest.is_some()), bytes)
    }

    /// Keeps `model` as the most recently used, evicting beyond the bound.
    fn remember(&self, model: Arc<ServedModel>) {
        let mut recent = self.lock();
        recent.retain(|m| m.id != model.id);
        recent.push(model);
        let excess = recent.len().saturating_sub(self.max_loaded);
        recent.drain(..excess);
        drop(recent);
        self.report();
    }

    fn remember_except(&self, id: &str) {
        self.lock().retain(|m| m.id != id);
        self.report();
    }

    /// Puts [`Registry::footprint`] into the metrics.
    fn report(&self) {
        let (models, bytes) = self.footprint();
        metrics::gauge!(crate::metric_names::LOADED_MODELS).set(models as f64);
        metrics::gauge!(crate::metric_names::LOADED_MODEL_BYTES).set(bytes as f64);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<ServedModel>>> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }
}
