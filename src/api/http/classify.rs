//! `POST /classify`: predictions from `latest` or a named model, computed on
//! the inference thread.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::error::ErrorBody;
use crate::api::{ApiError, AppState, Json};
use crate::infer::{InferError, ServedModel, SubmitError};
use crate::model::{ModelError, ModelSource};
use crate::store::StoreError;

/// One text or several.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Inputs {
    /// A single text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
}

/// What to classify.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRequest {
    /// The text(s).
    pub inputs: Inputs,
    /// A model id (default: `latest`).
    pub model: Option<String>,
    /// Cut texts longer than the model takes (default true); false refuses them.
    pub truncate: Option<bool>,
}

/// One text's prediction.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClassPrediction {
    /// The most probable class.
    pub label: String,
    /// Its id.
    pub label_id: usize,
    /// Its probability.
    pub score: f32,
    /// Every class's probability.
    pub scores: BTreeMap<String, f32>,
}

/// The predictions, in input order.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClassifyResponse {
    /// The model that answered.
    pub model: String,
    /// One per input.
    pub predictions: Vec<ClassPrediction>,
}

/// Classifies texts.
#[utoipa::path(post, path = "/classify", tag = "models", request_body = ClassifyRequest,
    responses(
        (status = 200, body = ClassifyResponse),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 422, description = "Empty text, too many inputs, too long", body = ErrorBody),
        (status = 429, description = "Inference queue full", body = ErrorBody),
        (status = 503, description = "No model loaded yet", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn classify(
    State(state): State<AppState>,
    Json(req): Json<ClassifyRequest>,
) -> Result<Json<ClassifyResponse>, ApiError> {
    let texts = match req.inputs {
        Inputs::One(t) => vec![t],
        Inputs::Many(ts) => ts,
    };
    let max = state.config.max_inputs;
    if texts.is_empty() {
        return Err(ApiError::invalid("inputs", "give at least one text"));
    }
    if texts.len() > max {
        return Err(ApiError::invalid(
            "inputs",
            format!("{} texts sent; at most {max} per request", texts.len()),
        ));
    }
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(ApiError::invalid(format!("inputs[{i}]"), "text is empty"));
    }
    let model = resolve(&state, req.model.as_deref()).await?;
    let id = model.id.clone();
    let predictions = state
        .batcher
        .classify(model, texts, req.truncate.unwrap_or(true))
        .await
        .map_err(|e| match e {
            SubmitError::Full(_) => ApiError::Overloaded(e.to_string()),
            SubmitError::Closed => ApiError::Unavailable(e.to_string()),
            SubmitError::Infer(InferError::TooLong { index, .. }) => {
                ApiError::invalid(format!("inputs[{index}]"), e.to_string())
            }
            SubmitError::Infer(InferError::Tokenizer(t)) => {
                ApiError::invalid("inputs", t.to_string())
            }
            SubmitError::Infer(other) => ApiError::Internal(other.to_string()),
        })?;
    Ok(Json(ClassifyResponse {
        model: id,
        predictions: predictions
            .into_iter()
            .map(|p| ClassPrediction {
                label: p.label,
                label_id: p.label_id,
                score: p.score,
                scores: p.scores,
            })
            .collect(),
    }))
}

/// `latest`, or the model named: loaded already, or loaded now from where
/// the store says it is (or, for the model the service was started with,
/// from its source).
async fn resolve(state: &AppState, id: Option<&str>) -> Result<Arc<ServedModel>, ApiError> {
    let Some(id) = id else {
        return state.registry.latest().ok_or_else(|| {
            ApiError::Unavailable(
                "no model to serve yet: start the server with --model DIR|HUB_ID, or fine-tune \
                 one with POST /jobs (it is served once the job succeeds)"
                    .into(),
            )
        });
    };
    if let Some(model) = state.registry.get(id) {
        return Ok(model);
    }
    let source = match state.store.get_model(id).await {
        Ok(row) => ModelSource::Dir(state.data_dir.resolve(&row.path)),
        Err(StoreError::NotFound { .. }) if state.config.model.as_deref() == Some(id) => id
            .parse()
            .map_err(|e: ModelError| ApiError::Internal(e.to_string()))?,
        Err(e) => return Err(e.into()),
    };
    state
        .registry
        .get_or_load(id, source)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
}
