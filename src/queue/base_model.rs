//! What a job trains from. A client names its base model, never a server
//! path; the name is, in this order:
//!
//! 1. the id of a model this service fine-tuned (continued fine-tuning);
//! 2. a folder under one of the configured model roots (`--model-dir`,
//!    repeatable), named relative to its root (`small`, `team/small`);
//! 3. a Hugging Face Hub id (`gpt2`, `owner/name[@revision]`).
//!
//! Anything else (an absolute path, `..`, a hidden name) is refused with the
//! same message whether or not such a file exists, so the answer tells a
//! client nothing about the server's disk. A Hub id not in the local cache is
//! asked of the Hub (for at most [`HUB_PROBE`]): one the Hub says does not exist
//! is refused at once; one it cannot be asked about is accepted, and its job
//! waits for the Hub with backoff like any cause that may pass.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::data_dir::DataDir;
use crate::hub::{is_name, HubError, HubRepo, RepoKind};
use crate::model::{Gpt2Config, ModelSource};
use crate::store::{Store, StoreError};

/// Why a base model name was refused.
#[derive(Debug, thiserror::Error)]
pub enum BaseModelError {
    /// The name is none of the three kinds.
    #[error(
        "must be a model id of this service, the name of a model under the server's model \
         folders (--model-dir), or a Hugging Face Hub id (`gpt2`, `owner/name[@revision]`)"
    )]
    Unknown,
    /// A Hub id the Hub says does not exist (repository or revision).
    #[error("no model `{0}` on the Hugging Face Hub (no such repository or revision)")]
    NotOnHub(String),
    /// A model of this service whose files are gone.
    #[error("model `{0}` is registered but its files are missing")]
    Missing(String),
    /// Looking the name up among this service's models failed: no fault of the name, so a
    /// job retries it.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How long resolving a Hub id waits for the Hub's answer before accepting it.
pub const HUB_PROBE: Duration = Duration::from_secs(3);

/// Resolves base model names against the store and the model roots.
#[derive(Debug, Clone)]
pub struct BaseModels {
    store: Store,
    data_dir: DataDir,
    roots: Vec<PathBuf>,
}

impl BaseModels {
    /// A resolver over `store`'s models and the folders in `roots`.
    pub fn new(store: Store, data_dir: DataDir, roots: Vec<PathBuf>) -> Self {
        Self {
            store,
            data_dir,
            roots,
        }
    }

    /// Where the model called `name` is.
    pub async fn resolve(&self, name: &str) -> Result<ModelSource, BaseModelError> {
        match self.store.get_model(name).await {
            Ok(row) => {
                let dir = self.data_dir.resolve(&row.path);
                return match is_model_dir(&dir) {
                    true => Ok(ModelSource::Dir(dir)),
                    false => Err(BaseModelError::Missing(name.to_string())),
                };
            }
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(dir) = self.in_model_dirs(name) {
            return Ok(ModelSource::Dir(dir));
        }
        match HubRepo::parse(name, RepoKind::Model) {
            Some(repo) => on_hub(name, repo).await,
            None => Err(BaseModelError::Unknown),
        }
    }

    /// `root/name` for the first model root (`--model-dir`) holding a model
    /// folder of that name; `None` for names that could leave a root.
    pub fn in_model_dirs(&self, name: &str) -> Option<PathBuf> {
        let parts: Vec<&str> = name.split('/').collect();
        if !parts.iter().all(|p| is_name(p)) {
            return None;
        }
        self.roots
            .iter()
            .map(|root| parts.iter().fold(root.clone(), |dir, p| dir.join(p)))
            .find(|dir| is_model_dir(dir))
    }
}

/// `repo` as a source unless the Hub says it does not exist (see the module
/// docs); a repo already in the cache is not asked about.
async fn on_hub(name: &str, repo: HubRepo) -> Result<ModelSource, BaseModelError> {
    if repo.cached("config.json").is_some() {
        return Ok(ModelSource::Hub(repo));
    }
    let asked = repo.clone();
    let answer = tokio::task::spawn_blocking(move || asked.exists(HUB_PROBE)).await;
    match answer {
        Ok(Err(HubError::NotFound { .. })) => Err(BaseModelError::NotOnHub(name.to_string())),
        Ok(Err(e)) => {
            tracing::info!(base_model = name, error = %e, "the Hub cannot say whether the base model exists; accepted");
            Ok(ModelSource::Hub(repo))
        }
        _ => Ok(ModelSource::Hub(repo)),
    }
}

/// Whether `dir` holds a model: a classifier's `config.json`, or a PEFT
/// adapter's `adapter_config.json`.
fn is_model_dir(dir: &Path) -> bool {
    dir.join("config.json").is_file() || crate::model::is_adapter_dir(dir)
}

/// The configuration of the model at `source`, when it can be read without
/// downloading anything (a folder, or a Hub repo already in the local cache);
/// blocking.
pub fn local_config(source: &ModelSource) -> Option<Gpt2Config> {
    let file = match source {
        ModelSource::Dir(dir) => dir.join("config.json"),
        ModelSource::Hub(repo) => repo.cached("config.json")?,
    };
    Gpt2Config::from_file(Path::new(&file)).ok()
}
