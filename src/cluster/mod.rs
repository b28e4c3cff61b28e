//! What makes several nodes on one database one service. Every node is the
//! same program: it runs the API and its own workers, and the database is
//! the only thing the nodes share besides the data folder — no node talks to
//! another. This module gives a node its identity and keeps it there:
//!
//! * a heartbeat in the `nodes` table (`GET /nodes` lists the live ones);
//! * announcements from other nodes (PostgreSQL's `LISTEN`/`NOTIFY`): a job
//!   queued wakes an idle worker at once, a model registered is loaded here
//!   (see [`follow`]); polling stays the fallback, so a missed announcement
//!   costs a poll interval.
//!
//! On SQLite there is one node, and the same tasks run with nothing to listen to.

mod follow;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::data_dir::DataDir;
use crate::infer::Registry;
use crate::queue::Queue;
use crate::store::{now_ms, Notice, Store, StoreError};

/// The tasks' shared view of this node.
#[derive(Clone)]
pub struct Node {
    /// `--node-id`.
    pub id: String,
    /// Its training devices by name (`cpu`, `cuda:0`), one worker each, as its `nodes` row
    /// and `GET /nodes` list them.
    pub devices: Vec<String>,
    /// Where the node's row is kept and announcements are heard.
    pub store: Store,
    /// The queue, woken when another node queues a job.
    pub queue: Queue,
    /// The models `/classify` answers with.
    pub registry: Arc<Registry>,
    /// Where models are read from.
    pub data_dir: DataDir,
    /// How often the node renews its `nodes` row.
    pub heartbeat: Duration,
    /// How often the newest model is looked for without an announcement.
    pub model_poll: Duration,
    /// Stops every task.
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Registers the node (it is listed once this returns), then starts its
/// heartbeat, its listener and its model follower; they end on shutdown.
pub async fn start(node: Node) -> Result<Vec<JoinHandle<()>>, StoreError> {
    let started_at = now_ms();
    (node.store)
        .node_heartbeat(&node.id, &node.devices, started_at)
        .await?;
    let models = Arc::new(Notify::new());
    Ok(vec![
        tokio::spawn(heartbeat(node.clone(), started_at)),
        tokio::spawn(listen(node.clone(), models.clone())),
        tokio::spawn(follow::follow(node, models)),
    ])
}

/// `--node-id`'s default: the host name and the process id.
pub fn default_node_id() -> String {
    let host = crate::host::host_name();
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    let host = if host.is_empty() { "node" } else { &host };
    format!("{host}-{}", std::process::id())
}

/// Checks a node id: 1 to 100 of ASCII letters, digits, `.`, `-`, `_`, `:`
/// (no `/`: a worker is named `NODE/DEVICE`).
pub fn validate_node_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--node-id `{id}`: use 1 to 100 of letters, digits, `.`, `-`, `_` and `:`"
        ))
    }
}

/// Renews the node's row every `heartbeat` until shutdown.
async fn heartbeat(node: Node, started_at: i64) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(node.heartbeat) => {}
            _ = node.shutdown.cancelled() => return,
        }
        let beat = node
            .store
            .node_heartbeat(&node.id, &node.devices, started_at);
        if let Err(e) = beat.await {
            tracing::warn!(node = %node.id, "node heartbeat failed: {e}");
        }
    }
}

/// How long to wait before subscribing again after the subscription failed.
const RESUBSCRIBE: Duration = Duration::from_secs(2);

/// Turns other nodes' announcements into local wake-ups until shutdown;
/// subscribes again whenever the subscription breaks.
async fn listen(node: Node, models: Arc<Notify>) {
    loop {
        match node.store.listen().await {
            Ok(None) => return, // SQLite: no other node to hear from
            Ok(Some(mut notices)) => loop {
                let notice = tokio::select! {
                    n = notices.recv() => n,
                    _ = node.shutdown.cancelled() => return,
                };
                match notice {
                    Ok(Notice::JobQueued) => node.queue.notify(),
                    Ok(Notice::ModelAdded(_)) => models.notify_one(),
                    Ok(Notice::Missed) => {
                        node.queue.notify();
                        models.notify_one();
                    }
                    Err(e) => {
                        tracing::warn!("listening for other nodes failed: {e}");
                        break;
                    }
                }
            },
            Err(e) => tracing::warn!("cannot listen for other nodes (polling meanwhile): {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RESUBSCRIBE) => {}
            _ = node.shutdown.cancelled() => return,
        }
    }
}
