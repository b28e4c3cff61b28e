//! What `/classify` answers with at startup: `--model`, or the model
//! promoted last (over every node) whose files load.

use crate::data_dir::DataDir;
use crate::infer::Registry;
use crate::model::ModelSource;
use crate::store::Store;

use super::ServeConfig;

/// `--model` if given, else the model promoted last that loads (a model
/// whose files were deleted is skipped), becomes `latest`; returns the id
/// `--model` is served under. `--model` ranks with the model promoted last
/// so far: a model promoted later (on any node) replaces it.
pub(super) async fn preload(
    config: &ServeConfig,
    store: &Store,
    data_dir: &DataDir,
    registry: &Registry,
) -> anyhow::Result<Option<String>> {
    let promoted = store.promoted_models(16).await?;
    if let Some(model) = &config.model {
        let source: ModelSource = model.parse()?;
        let served = registry
            .get_or_load(&served_name(&source), source)
            .await
            .map_err(|e| anyhow::anyhow!("--model: {e}"))?;
        tracing::info!(model = %served.id, "serving --model as `latest`");
        let id = served.id.clone();
        let rank = promoted.first().and_then(|m| m.promoted_at).unwrap_or(0);
        registry.promote(served, rank);
        return Ok(Some(id));
    }
    for row in promoted {
        let source = ModelSource::Dir(data_dir.resolve(&row.path));
        match registry.get_or_load(&row.id, source).await {
            Ok(served) => {
                tracing::info!(model = %row.id, "serving as `latest`");
                registry.promote(served, row.promoted_at.unwrap_or(0));
                return Ok(None);
            }
            Err(e) => tracing::warn!(model = %row.id, "cannot serve the model promoted last: {e}"),
        }
    }
    Ok(None)
}

/// The id a `--model` is served (and listed) under: a folder's name, never
/// its path on the server; a Hub id as given.
pub(crate) fn served_name(source: &ModelSource) -> String {
    match source {
        ModelSource::Dir(dir) => dir
            .file_name()
            .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned()),
        ModelSource::Hub(_) => source.to_string(),
    }
}
