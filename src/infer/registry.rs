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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwapOption;
use candle_core::Device;

use super::{Classifier, InferError};
use crate::model::{self, InferPrecision, LoadOptions, LoadedModel, ModelSource};

/// Bytes of adapters kept loaded unless told otherwise (the service's
/// `--adapter-memory-mib` default): about 1,700 adapters of rank 8 on
/// `c_attn` at GPT-2 size, beside their bases.
pub const DEFAULT_ADAPTER_MEMORY: usize = 2 << 30;

/// A classifier with the id clients name it by.
#[derive(Debug)]
pub struct ServedModel {
    /// The model id (a fine-tuned model's id, or the name the service was
    /// started with).
    pub id: String,
    /// What answers for it: network, labels, and a tokenizer that cuts at the model's
    /// `n_positions`.
    pub classifier: Classifier,
    /// The base a LoRA adapter runs on, shared with every adapter of it the
    /// registry holds, and kept loaded while any of them is; `None` for a
    /// whole classifier.
    pub base: Option<Arc<LoadedModel>>,
}

impl ServedModel {
    /// Loads the model at `source` to serve as `id` (blocking); an adapter's
    /// base comes from `bases` when one loaded there is alive.
    pub fn load(
        id: &str,
        source: &ModelSource,
        (device, precision): (&Device, InferPrecision),
        bases: &Bases,
    ) -> Result<Self, InferError> {
        let opts = LoadOptions {
            device: device.clone(),
            ..LoadOptions::default()
        };
        if let ModelSource::Dir(dir) = source {
            if model::is_adapter_dir(dir) {
                let base = bases.get_or_load(&model::adapter_base(dir)?, &opts, precision)?;
                let loaded = model::load_adapter_on(dir, &base, &opts)?;
                return Ok(Self {
                    id: id.to_string(),
                    classifier: Classifier::new(&loaded, None)?,
                    base: Some(base),
                });
            }
        }
        let loaded = model::load(source, &opts)?.pack(precision)?;
        Ok(Self {
            id: id.to_string(),
            classifier: Classifier::new(&loaded, None)?,
            base: None,
        })
    }

    /// Whether it is a LoRA adapter (counted against the adapter memory).
    pub fn is_adapter(&self) -> bool {
        self.classifier.adapter().is_some()
    }

    /// Bytes it holds of its own: an adapter's tensors, or a whole model's.
    pub fn bytes(&self) -> usize {
        self.classifier.weight_bytes()
    }
}

/// The bases adapters were loaded onto, by where they came from, as long as
/// an adapter holds them: each is loaded once however many adapters use it.
#[derive(Debug, Default)]
pub struct Bases {
    loaded: Mutex<HashMap<String, Weak<LoadedModel>>>,
}

impl Bases {
    /// The base at `source`, loaded now unless a live one is held (blocking).
    fn get_or_load(
        &self,
        source: &ModelSource,
        opts: &LoadOptions,
        precision: InferPrecision,
    ) -> Result<Arc<LoadedModel>, InferError> {
        let key = source.peft_name();
        let held = |map: &HashMap<String, Weak<LoadedModel>>| map.get(&key)?.upgrade();
        if let Some(base) = held(&self.lock()) {
            return Ok(base);
        }
        let base = Arc::new(model::load(source, opts)?.pack(precision)?);
        let mut map = self.lock();
        if let Some(other) = held(&map) {
            return Ok(other); // loaded meanwhile by another request
        }
        map.retain(|_, w| w.strong_count() > 0);
        map.insert(key, Arc::downgrade(&base));
        Ok(base)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<LoadedModel>>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
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
    /// Whole models kept besides `latest`.
    max_loaded: usize,
    /// Bytes of adapters kept besides `latest` (their bases not counted).
    adapter_memory: usize,
    bases: Arc<Bases>,
    device: Device,
    /// What the models loaded here run in.
    precision: InferPrecision,
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
            adapter_memory: DEFAULT_ADAPTER_MEMORY,
            bases: Arc::new(Bases::default()),
            device,
            precision: InferPrecision::Fp32,
        }
    }

    /// The registry loading models to run in `precision` (int8 and bf16 on
    /// the CPU only: loading refuses them elsewhere).
    pub fn with_precision(mut self, precision: InferPrecision) -> Self {
        self.precision = precision;
        self
    }

    /// What the models loaded here run in.
    pub fn precision(&self) -> InferPrecision {
        self.precision
    }

    /// The registry keeping at most `bytes` of adapters besides `latest`.
    pub fn with_adapter_memory(mut self, bytes: usize) -> Self {
        self.adapter_memory = bytes;
        self
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

    /// The loaded model `id` (`latest` included), without marking it used.
    pub fn peek(&self, id: &str) -> Option<Arc<ServedModel>> {
        if let Some(latest) = self.latest().filter(|m| m.id == id) {
            return Some(latest);
        }
        self.lock().iter().find(|m| m.id == id).cloned()
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

    /// `source` loaded to serve as `id` on this registry's device, a LoRA
    /// adapter onto the base the registry's other adapters of it share (so a
    /// job's new adapter joins their mixed batches at once). Blocking: call it
    /// from a worker thread; the model is not kept until promoted or asked for.
    pub fn load_blocking(&self, id: &str, source: &ModelSource) -> Result<ServedModel, InferError> {
        ServedModel::load(id, source, (&self.device, self.precision), &self.bases)
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
        let (owned_id, device, bases) = (id.to_string(), self.device.clone(), self.bases.clone());
        let precision = self.precision;
        let loaded = tokio::task::spawn_blocking(move || {
            ServedModel::load(&owned_id, &source, (&device, precision), &bases)
        })
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
    /// weights (an adapter's own, not its base's).
    pub fn footprint(&self) -> (usize, usize) {
        self.count(|_| true)
    }

    /// How many of the loaded models are adapters, and their bytes.
    pub fn adapters(&self) -> (usize, usize) {
        self.count(ServedModel::is_adapter)
    }

    fn count(&self, which: impl Fn(&ServedModel) -> bool) -> (usize, usize) {
        let recent = self.lock();
        let latest = self.latest();
        let models: Vec<_> = recent
            .iter()
            .chain(latest.as_ref())
            .filter(|m| which(m))
            .collect();
        (models.len(), models.iter().map(|m| m.bytes()).sum())
    }

    /// Keeps `model` as the most recently used, evicting the least recently
    /// used beyond the bounds: `max_loaded` whole models, `adapter_memory`
    /// bytes of adapters.
    fn remember(&self, model: Arc<ServedModel>) {
        let mut recent = self.lock();
        recent.retain(|m| m.id != model.id);
        recent.push(model);
        let mut whole = recent.iter().filter(|m| !m.is_adapter()).count();
        let mut adapter_bytes: usize = recent
            .iter()
            .filter(|m| m.is_adapter())
            .map(|m| m.bytes())
            .sum();
        let newest = recent.len() - 1;
        let mut keep = vec![true; recent.len()];
        for (i, m) in recent.iter().enumerate().take(newest) {
            if m.is_adapter() && adapter_bytes > self.adapter_memory {
                adapter_bytes -= m.bytes();
                keep[i] = false;
            } else if !m.is_adapter() && whole > self.max_loaded {
                whole -= 1;
                keep[i] = false;
            }
        }
        let mut flags = keep.into_iter();
        recent.retain(|_| flags.next().unwrap_or(true));
        drop(recent);
        self.report();
    }

    fn remember_except(&self, id: &str) {
        self.lock().retain(|m| m.id != id);
        self.report();
    }

    /// Puts [`Registry::footprint`] and [`Registry::adapters`] into the
    /// metrics gauges. Called on every change and again when `/metrics` is
    /// read, so a scrape shows this registry's counts even where several
    /// registries share one process-wide recorder (tests).
    pub fn report(&self) {
        let (models, bytes) = self.footprint();
        metrics::gauge!(crate::metric_names::LOADED_MODELS).set(models as f64);
        metrics::gauge!(crate::metric_names::LOADED_MODEL_BYTES).set(bytes as f64);
        let (adapters, bytes) = self.adapters();
        metrics::gauge!(crate::metric_names::LOADED_ADAPTERS).set(adapters as f64);
        metrics::gauge!(crate::metric_names::LOADED_ADAPTER_BYTES).set(bytes as f64);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<ServedModel>>> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }
}
