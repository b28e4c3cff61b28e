//! `GET /health` and `GET /metrics` (Prometheus), both open without an API key.
//! `/health` also probes the data folder (a small write, free space) and lists
//! the devices the service trains and classifies on, with their memory (a
//! GPU's as its driver reports it).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::error::ErrorBody;
use crate::api::{ApiError, AppState, Json};
use crate::model::DeviceInfo;

/// What `/health` reports: storage, the models held in memory, the devices in use.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when storage is in trouble (the service still
    /// classifies, but uploads and training may fail until it recovers).
    pub status: &'static str,
    /// The node that answered (`--node-id`).
    pub node: String,
    /// The model `/classify` answers with by default; null before any.
    pub latest_model: Option<String>,
    /// Models held in memory for `/classify`, `latest` included (at most
    /// `--max-loaded-models` besides it).
    pub loaded_models: usize,
    /// Bytes of those models' weights as held (a LoRA adapter's own, not its
    /// base's; int8 or bf16 layers at their packed size).
    pub loaded_model_bytes: usize,
    /// What `/classify` runs the models in (`--infer-precision`): `fp32`,
    /// `int8` or `bf16`.
    #[schema(inline)]
    pub infer_precision: crate::model::InferPrecision,
    /// How many of the loaded models are LoRA adapters (kept within
    /// `--adapter-memory` bytes besides `latest`).
    pub loaded_adapters: usize,
    /// Bytes of those adapters' tensors.
    pub loaded_adapter_bytes: usize,
    /// Whether the database takes writes and how much disk the data folder has left.
    pub storage: Storage,
    /// The devices in use: one training worker each, and `/classify`'s.
    pub devices: Vec<DeviceHealth>,
}

/// A device the service uses, and its memory now.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceHealth {
    /// As named on the command line (`cpu`, `cuda:0`), what it is, its memory.
    #[serde(flatten)]
    pub device: DeviceInfo,
    /// Whether a training worker runs on it.
    pub training: bool,
    /// Whether `/classify` runs on it.
    pub inference: bool,
}

/// Whether the data folder takes writes.
#[derive(Debug, Serialize, ToSchema)]
pub struct Storage {
    /// The database took a small write just now.
    pub writable: bool,
    /// Bytes free on the data folder's file system; null where unknown.
    pub free_bytes: Option<u64>,
    /// What is wrong, in words; null when nothing is.
    pub problem: Option<String>,
}

/// Free space under which storage counts as degraded: a checkpoint of a
/// small model, or a dataset upload, would no longer fit.
const LOW_SPACE: u64 = 64 << 20;

/// How long `/health` waits for the database: it must answer fast whatever
/// the database does, so an orchestrator can tell "degraded" from "gone".
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1500);

/// Reports the service's state.
///
/// Always 200 with the service's state: `degraded`, with the reason, while
/// the database is out of reach or refuses writes, or the disk runs low
/// (`/classify` still answers then). Answers within about 1.5 s whatever the
/// database does.
#[utoipa::path(get, path = "/health", operation_id = "health", tag = "service",
    responses(
        (status = 200, description = "Up (`ok` or `degraded`)", body = Health),
        (status = 503, description = "Reading device memory failed", body = ErrorBody),
    ))]
pub async fn health(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let write = match tokio::time::timeout(PROBE_TIMEOUT, state.store.probe_write()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if e.is_unreachable() => Err(format!("the database does not answer: {e}")),
        Ok(Err(e)) => Err(format!("the database refuses writes: {e}")),
        Err(_) => Err(format!(
            "the database does not answer within {:.1} s",
            PROBE_TIMEOUT.as_secs_f64()
        )),
    };
    let free_bytes = crate::fault::free_bytes(state.data_dir.root());
    let problem = match (&write, free_bytes) {
        (Err(e), _) => Some(e.clone()),
        (Ok(()), Some(free)) if free < LOW_SPACE => Some(format!(
            "only {} MiB free on the data folder's disk",
            free >> 20
        )),
        _ => None,
    };
    let devices = device_health(&state).await?;
    let (loaded_models, loaded_model_bytes) = state.registry.footprint();
    let (loaded_adapters, loaded_adapter_bytes) = state.registry.adapters();
    Ok(Json(Health {
        status: if problem.is_some() { "degraded" } else { "ok" },
        node: state.config.node_id.clone(),
        latest_model: state.registry.latest().map(|m| m.id.clone()),
        loaded_models,
        loaded_model_bytes,
        infer_precision: state.registry.precision(),
        loaded_adapters,
        loaded_adapter_bytes,
        storage: Storage {
            writable: write.is_ok(),
            free_bytes,
            problem,
        },
        devices,
    }))
}

/// Each device the service uses with its memory now (read off the async
/// threads: a GPU's driver call may block).
async fn device_health(state: &AppState) -> Result<Vec<DeviceHealth>, ApiError> {
    let devices = state.devices.clone();
    tokio::task::spawn_blocking(move || {
        devices
            .iter()
            .map(|d| DeviceHealth {
                device: DeviceInfo::of(&d.name, &d.device),
                training: d.training,
                inference: d.inference,
            })
            .collect()
    })
    .await
    .map_err(|e| ApiError::Unavailable(format!("reading device memory: {e}")))
}

/// Metrics for Prometheus.
///
/// Prometheus text: requests, latencies, open connections, inference batch
/// sizes and queue depth, jobs by status, models and adapters loaded,
/// training tokens per second, build.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "service",
    responses((status = 200, description = "Prometheus exposition format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let handle = crate::api::telemetry::install();
    for (status, n) in state.store.count_jobs_by_status().await? {
        metrics::gauge!(crate::metric_names::JOBS, "status" => status.as_str()).set(n as f64);
    }
    let depth = state.batcher.queue_depth() as f64;
    metrics::gauge!(crate::metric_names::INFERENCE_QUEUE_DEPTH).set(depth);
    state.registry.report();
    handle.run_upkeep();
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    ))
}
