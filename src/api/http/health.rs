//! `GET /health` and `GET /metrics` (Prometheus), both open without an API key.
//! `/health` also lists the devices the service trains and classifies on, with
//! their memory (a GPU's as its driver reports it).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::error::ErrorBody;
use crate::api::{ApiError, AppState, Json};
use crate::model::DeviceInfo;

/// The service's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
    /// The model `/classify` answers with by default, if any.
    pub latest_model: Option<String>,
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

/// 200 when the database answers, 503 otherwise.
#[utoipa::path(get, path = "/health", tag = "service",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
pub async fn health(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state
        .store
        .ping()
        .await
        .map_err(|e| ApiError::Unavailable(format!("the database does not answer: {e}")))?;
    let devices = state.devices.clone();
    let devices = tokio::task::spawn_blocking(move || {
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
    .map_err(|e| ApiError::Unavailable(format!("reading device memory: {e}")))?;
    Ok(Json(Health {
        status: "ok",
        latest_model: state.registry.latest().map(|m| m.id.clone()),
        devices,
    }))
}

/// Prometheus text: requests, latencies, inference batch sizes, jobs by
/// status, training tokens per second.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus exposition format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let handle = crate::api::telemetry::install();
    for (status, n) in state.store.count_jobs_by_status().await? {
        metrics::gauge!("tuneserve_jobs", "status" => status.as_str()).set(n as f64);
    }
    handle.run_upkeep();
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    ))
}
