//! `GET /nodes`: the nodes serving this database, as their heartbeats say.

use std::collections::BTreeMap;

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::timestamp;
use crate::api::{ApiError, AppState, Json};
use crate::store::JobStatus;

/// A tuneserve process on this database, as its last heartbeat left it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Node {
    /// Its `--node-id`.
    pub id: String,
    /// Its training devices, one worker each.
    pub devices: Vec<String>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Its last heartbeat (RFC 3339, by the database's clock).
    pub last_seen: String,
    /// Ids of the `running` jobs whose lease one of its workers holds.
    pub running_jobs: Vec<String>,
    /// Whether it is the node that answered.
    pub this_node: bool,
}

/// Live nodes, by id.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeList {
    /// Nodes heard from within one lease (`--lease-secs`).
    pub data: Vec<Node>,
}

/// Running jobs looked at per request, at most.
const MAX_RUNNING: i64 = 1000;

/// Lists the live nodes.
///
/// The nodes that renewed their heartbeat within one lease, with the jobs
/// each runs. On SQLite, only this one.
#[utoipa::path(get, path = "/nodes", tag = "service", operation_id = "list_nodes",
    responses((status = 200, description = "Live nodes, ordered by id", body = NodeList)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<NodeList>, ApiError> {
    let within = i64::try_from(state.config.lease.as_millis()).unwrap_or(i64::MAX);
    let rows = state.store.list_nodes(within).await?;
    let running = (state.store)
        .list_jobs(Some(JobStatus::Running), MAX_RUNNING, None)
        .await?;
    let mut jobs: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for job in &running {
        if let Some(owner) = &job.lease_owner {
            let node = crate::queue::owner_node(owner);
            jobs.entry(node).or_default().push(job.id.clone());
        }
    }
    let data = rows
        .into_iter()
        .map(|row| Node {
            running_jobs: jobs.get(row.id.as_str()).cloned().unwrap_or_default(),
            this_node: row.id == state.config.node_id,
            id: row.id,
            devices: row.devices,
            started_at: timestamp(row.started_at),
            last_seen: timestamp(row.last_seen),
        })
        .collect();
    Ok(Json(NodeList { data }))
}
