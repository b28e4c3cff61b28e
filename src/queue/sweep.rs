//! The data folder's janitor: what interrupted writes left behind
//! (temporaries untouched for a while) and model folders no row names (an
//! export whose job was cancelled, or whose process died, before the model
//! was registered). Runs at startup and every minute, so a dead process's
//! leftovers go without waiting for a restart.

use std::collections::HashSet;
use std::time::Duration;

use crate::data_dir::DataDir;
use crate::store::Store;

/// How long a temporary or an unregistered model folder must be untouched
/// before it counts as left behind: younger ones may belong to a write in
/// progress, of this process or of another node sharing the folder.
pub const STALE: Duration = Duration::from_secs(600);

/// How often the running service sweeps.
pub(super) const EVERY: Duration = Duration::from_secs(60);

/// Removes stale temporaries and stale model folders that no model row
/// names; returns how many of each. Only folders named like the models jobs
/// make (`model-…`) are candidates: nothing a person put there is touched.
pub async fn sweep(data_dir: &DataDir, store: &Store, min_age: Duration) -> (usize, usize) {
    let temporaries = match data_dir.sweep_temporaries(min_age) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("sweeping interrupted writes' temporaries: {e}");
            0
        }
    };
    let known: HashSet<String> = match store.model_ids().await {
        Ok(ids) => ids.into_iter().collect(),
        Err(e) => {
            tracing::warn!("listing models for the sweep: {e}");
            return (temporaries, 0);
        }
    };
    let mut orphans = 0;
    for (id, path) in data_dir.model_folders(min_age) {
        if !id.starts_with("model-") || known.contains(&id) {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => orphans += 1,
            Err(e) => tracing::warn!(model = %id, "removing an unregistered model folder: {e}"),
        }
    }
    if temporaries + orphans > 0 {
        tracing::info!(
            temporaries,
            orphans,
            "removed what interrupted writes and unregistered exports left"
        );
    }
    (temporaries, orphans)
}
