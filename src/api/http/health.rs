//! `GET /health` and `GET /metrics` (Prometheus), both open without an API key.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::error::ErrorBody;
use crate::api::{ApiError, AppState, Json};

/// The service's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
    /// The node that answered (`--node-id`).
    pub node: String,
    /// The model `/classify` answers with by default, if any.
    pub latest_model: Option<String>,
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
    Ok(Json(Health {
        status: "ok",
        node: state.config.node_id.clone(),
        latest_model: state.registry.latest().map(|m| m.id.clone()),
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
