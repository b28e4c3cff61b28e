//! `POST /classify`: predictions from `latest` or a named model, computed on
//! the inference thread.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::error::ErrorBody;
use crate::api::{ApiError, AppState, Json};
use crate::infer::{InferError, Prediction, ServedModel, SubmitError};
use crate::model::{ModelError, ModelSource};
use crate::store::StoreError;

/// One text or several.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Inputs {
    /// A single text (`predictions` then holds one).
    One(String),
    /// Several texts.
    Many(Vec<String>),
}

/// What to classify.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRequest {
    /// One text, or a list of up to `--max-inputs` texts (none empty).
    pub inputs: Inputs,
    /// The model to answer with: an id from `GET /models`, or the name of a
    /// model folder under the server's `--model-dir` (`team/sentiment`, a
    /// PEFT adapter among them); `latest` when absent.
    pub model: Option<String>,
    /// Cut texts longer than the model takes (default true); false refuses
    /// them with 422 naming the input.
    pub truncate: Option<bool>,
    /// Return the raw logits as scores instead of softmax probabilities
    /// (default false).
    pub raw_scores: Option<bool>,
    /// Return only the `top_k` highest-scoring classes in `scores` (default:
    /// all of them).
    #[schema(minimum = 1)]
    pub top_k: Option<usize>,
}

/// One text's prediction.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClassPrediction {
    /// The highest-scoring class's name.
    pub label: String,
    /// Index of that class in the model's `id2label` (0-based).
    pub label_id: usize,
    /// Its score: a probability (0–1), or a logit with `raw_scores`.
    pub score: f32,
    /// Each class's score by name (only the `top_k` best with `top_k`).
    pub scores: BTreeMap<String, f32>,
}

/// The predictions, in input order.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClassifyResponse {
    /// The id of the model that answered.
    pub model: String,
    /// One per input, in input order.
    pub predictions: Vec<ClassPrediction>,
}

/// The response's view of a prediction: probabilities or logits, all
/// classes or the `top_k` best.
fn prediction_view(
    p: Prediction,
    labels: &[String],
    raw: bool,
    top_k: Option<usize>,
) -> ClassPrediction {
    let mut ranked: Vec<(String, f32)> = match raw {
        true => labels
            .iter()
            .cloned()
            .zip(p.logits.iter().copied())
            .collect(),
        false => p.scores.into_iter().collect(),
    };
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(top_k.unwrap_or(usize::MAX));
    let score = match raw {
        true => p.logits[p.label_id],
        false => p.score,
    };
    ClassPrediction {
        label: p.label,
        label_id: p.label_id,
        score,
        scores: ranked.into_iter().collect(),
    }
}

/// Classifies texts.
///
/// With `model` absent or `latest`, the promoted model answers; any other
/// model id, `--model-dir` folder name or adapter is loaded on first use and
/// kept while memory allows. Requests are batched with others waiting on the
/// inference thread; a full queue answers 429 with `Retry-After`.
#[utoipa::path(post, path = "/classify", operation_id = "classify", tag = "models", request_body = ClassifyRequest,
    responses(
        (status = 200, description = "One prediction per input, in order", body = ClassifyResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 409, description = "The model's files are missing or damaged", body = ErrorBody),
        (status = 422, description = "Empty text, too many inputs or tokens, too long", body = ErrorBody),
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
    check_texts(&state, &texts)?;
    if req.top_k == Some(0) {
        return Err(ApiError::invalid("top_k", "must be at least 1"));
    }
    let model = resolve(&state, req.model.as_deref()).await?;
    let (id, labels) = (model.id.clone(), model.classifier.labels().to_vec());
    let predictions = predict(&state, model, texts, req.truncate.unwrap_or(true)).await?;
    let raw = req.raw_scores.unwrap_or(false);
    Ok(Json(ClassifyResponse {
        model: id,
        predictions: predictions
            .into_iter()
            .map(|p| prediction_view(p, &labels, raw, req.top_k))
            .collect(),
    }))
}

/// Refuses an empty list, more than `--max-inputs` texts, or an empty text
/// (422 naming `inputs` or `inputs[i]`).
pub(super) fn check_texts(state: &AppState, texts: &[String]) -> Result<(), ApiError> {
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
    Ok(())
}

/// `texts` through `model` on the inference thread, in input order; the
/// batcher's refusals as the API's errors (a full queue 429, a text over the
/// model's length with `truncate` false 422 naming it).
pub(super) async fn predict(
    state: &AppState,
    model: Arc<ServedModel>,
    texts: Vec<String>,
    truncate: bool,
) -> Result<Vec<Prediction>, ApiError> {
    state
        .batcher
        .classify(model, texts, truncate)
        .await
        .map_err(|e| match e {
            SubmitError::Full(_) => ApiError::Overloaded(e.to_string()),
            SubmitError::Closed => ApiError::Unavailable(e.to_string()),
            SubmitError::Infer(InferError::TooLong { index, .. }) => {
                ApiError::invalid(format!("inputs[{index}]"), e.to_string())
            }
            SubmitError::Infer(InferError::TooManyTokens { .. }) => {
                ApiError::invalid("inputs", e.to_string())
            }
            SubmitError::Infer(InferError::Tokenizer(t)) => {
                ApiError::invalid("inputs", t.to_string())
            }
            SubmitError::Infer(other) => ApiError::internal(other),
        })
}

/// `latest`, or the model named: loaded already, or loaded now from where
/// the store says it is (or, for the model the service was started with,
/// from its source; or a folder under `--model-dir`, such as an adapter made
/// elsewhere, named as a job's `base_model` names it).
pub(super) async fn resolve(
    state: &AppState,
    id: Option<&str>,
) -> Result<Arc<ServedModel>, ApiError> {
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
        Err(StoreError::NotFound { .. }) if state.config.model.as_deref() == Some(id) => {
            id.parse().map_err(|e: ModelError| ApiError::internal(e))?
        }
        Err(e @ StoreError::NotFound { .. }) => match state.queue.base_models().in_model_dirs(id) {
            Some(dir) => ModelSource::Dir(dir),
            None => return Err(e.into()),
        },
        Err(e) => return Err(e.into()),
    };
    state
        .registry
        .get_or_load(id, source)
        .await
        .map_err(|e| super::models::unloadable(id, e))
}
