//! `latest` followed across nodes: when the model promoted last in the store
//! ranks above the one this node serves (a job finished, or a model was
//! promoted by hand, on another node), it is
//! loaded on a blocking thread and swapped in — no restart, and requests in
//! flight finish on the weights they started with. Woken by the announcement
//! of a new model, and every `model_poll` without one.

use std::sync::Arc;

use tokio::sync::Notify;

use super::Node;
use crate::model::ModelSource;
use crate::store::StoreError;

/// Keeps `latest` on the model promoted last until shutdown.
pub(super) async fn follow(node: Node, models: Arc<Notify>) {
    // The model that last failed to load: its failure is reported once.
    let mut failed: Option<String> = None;
    loop {
        tokio::select! {
            _ = models.notified() => {}
            _ = tokio::time::sleep(node.model_poll) => {}
            _ = node.shutdown.cancelled() => return,
        }
        if let Err(e) = catch_up(&node, &mut failed).await {
            tracing::warn!("looking for a newer model failed: {e}");
        }
    }
}

/// Loads and serves the model promoted last when it ranks above `latest`.
async fn catch_up(node: &Node, failed: &mut Option<String>) -> Result<(), StoreError> {
    let Some(newest) = node.store.latest_model().await? else {
        return Ok(());
    };
    let rank = newest.promoted_at.unwrap_or(0);
    if rank <= node.registry.rank() {
        return Ok(());
    }
    let source = ModelSource::Dir(node.data_dir.resolve(&newest.path));
    match node.registry.get_or_load(&newest.id, source).await {
        Ok(model) => {
            if node.registry.promote(model, rank) {
                tracing::info!(model = %newest.id, "newest model loaded; it is now `latest`");
            }
            *failed = None;
        }
        // Tried again at the next poll: the files may not be visible here yet.
        Err(e) if failed.as_deref() != Some(newest.id.as_str()) => {
            tracing::warn!(model = %newest.id, "cannot load the newest model (retrying): {e}");
            *failed = Some(newest.id);
        }
        Err(e) => tracing::debug!(model = %newest.id, "still cannot load the newest model: {e}"),
    }
    Ok(())
}
