//! The inference convention the Hugging Face ecosystem speaks, beside
//! tuneserve's own `/classify`: clients written for Text Embeddings Inference
//! (TEI) or the Hub's Inference API (`huggingface_hub`'s `InferenceClient`)
//! reach tuneserve's models without a line of code of their own.
//!
//! * `POST /predict` is TEI's route: one text answers `[{"label","score"}, …]`,
//!   a list `[[…], …]`.
//! * `POST /` (the service's own task, as TEI and an Inference Endpoint answer
//!   it) and `POST /models/{id}` (a model's own URL) answer the Inference API's
//!   shape: one list per input, `[[…]]` for one text too — what
//!   `InferenceClient.text_classification` reads (it takes the first list).
//! * `GET /info` describes the served model and the batching limits, in TEI's
//!   names.
//!
//! The predictions are `/classify`'s: same model resolution, same batcher,
//! same limits; only the request's and the answer's shapes differ.

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::classify::{check_texts, predict, resolve, Inputs};
use crate::api::error::ErrorBody;
use crate::api::{ApiError, AppState, Json};
use crate::infer::Prediction;

/// A prediction request in TEI's and the Inference API's form.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    /// One text, or a list of up to `--max-inputs` texts (none empty).
    pub inputs: Inputs,
    /// Cut texts longer than the model takes (default true); false refuses
    /// them with 422 naming the input.
    pub truncate: Option<bool>,
    /// TEI's switch for the raw logits as scores (default false): the same as
    /// `parameters.function_to_apply: "none"`.
    pub raw_scores: Option<bool>,
    /// The Inference API's text-classification parameters.
    pub parameters: Option<PredictParameters>,
}

/// Text-classification parameters. Keys the Inference API defines for other
/// tasks (or adds later) are accepted and ignored, as clients send them
/// unasked.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PredictParameters {
    /// Answer only the `top_k` highest-scoring classes (default: all).
    #[schema(minimum = 1)]
    pub top_k: Option<usize>,
    /// How logits become scores (default `softmax`).
    pub function_to_apply: Option<ScoreFunction>,
}

/// How a class's logit becomes its score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScoreFunction {
    /// Probabilities over the classes (they sum to 1): `/classify`'s scores.
    Softmax,
    /// Each class's own probability, `1 / (1 + e^-logit)` (multi-label style).
    Sigmoid,
    /// The raw logits.
    None,
}

/// One class and its score.
#[derive(Debug, Serialize, ToSchema)]
pub struct LabelScore {
    /// The class's name (the model's `id2label`).
    pub label: String,
    /// A probability (0–1) with `softmax` or `sigmoid`, the logit with `none`.
    pub score: f32,
}

/// `/predict`'s answer: a ranked list for one text, one per text for a list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PredictResponse {
    /// The classes of the one text, highest score first.
    One(Vec<LabelScore>),
    /// Per text in input order, the classes highest score first.
    Many(Vec<Vec<LabelScore>>),
}

/// What to answer, checked.
struct Options {
    function: ScoreFunction,
    top_k: Option<usize>,
    truncate: bool,
}

fn options(req: &PredictRequest) -> Result<Options, ApiError> {
    let params = req.parameters.as_ref();
    let asked = params.and_then(|p| p.function_to_apply);
    let function = match (req.raw_scores, asked) {
        (Some(true), Some(f)) if f != ScoreFunction::None => {
            return Err(ApiError::invalid(
                "raw_scores",
                "raw_scores asks for the logits, parameters.function_to_apply for another \
                 function; send one of them",
            ))
        }
        (Some(true), _) => ScoreFunction::None,
        (_, f) => f.unwrap_or(ScoreFunction::Softmax),
    };
    let top_k = params.and_then(|p| p.top_k);
    if top_k == Some(0) {
        return Err(ApiError::invalid("parameters.top_k", "must be at least 1"));
    }
    Ok(Options {
        function,
        top_k,
        truncate: req.truncate.unwrap_or(true),
    })
}

/// One prediction as ranked `(label, score)` pairs. Softmax scores are the
/// classifier's own probabilities, exactly `/classify`'s.
fn ranked(p: Prediction, labels: &[String], o: &Options) -> Vec<LabelScore> {
    let mut out: Vec<LabelScore> = match o.function {
        ScoreFunction::Softmax => p
            .scores
            .into_iter()
            .map(|(label, score)| LabelScore { label, score })
            .collect(),
        f => labels
            .iter()
            .zip(&p.logits)
            .map(|(label, &logit)| LabelScore {
                label: label.clone(),
                score: match f {
                    ScoreFunction::Sigmoid => 1.0 / (1.0 + (-logit).exp()),
                    _ => logit,
                },
            })
            .collect(),
    };
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out.truncate(o.top_k.unwrap_or(usize::MAX));
    out
}

/// Every input's ranked classes from the model `id` names (`latest` when
/// none), and whether one text was sent (not a list).
async fn run(
    state: &AppState,
    id: Option<&str>,
    req: PredictRequest,
) -> Result<(bool, Vec<Vec<LabelScore>>), ApiError> {
    let o = options(&req)?;
    let (one, texts) = match req.inputs {
        Inputs::One(t) => (true, vec![t]),
        Inputs::Many(ts) => (false, ts),
    };
    check_texts(state, &texts)?;
    let model = resolve(state, id).await?;
    let labels = model.classifier.labels().to_vec();
    let predictions = predict(state, model, texts, o.truncate).await?;
    let lists = predictions
        .into_iter()
        .map(|p| ranked(p, &labels, &o))
        .collect();
    Ok((one, lists))
}

/// Classifies texts (Text Embeddings Inference's route).
///
/// With `latest`, answered as Text Embeddings Inference does: one text gives
/// its labels sorted by score, a list one such list per text.
#[utoipa::path(post, path = "/predict", operation_id = "predict", tag = "inference protocols",
    request_body = PredictRequest,
    responses(
        (status = 200, description = "One text: its classes by score, highest first. A list: \
            that, per text in input order", body = PredictResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 422, description = "Empty text, too many inputs or tokens, too long, a bad parameter", body = ErrorBody),
        (status = 429, description = "Inference queue full", body = ErrorBody),
        (status = 503, description = "No model loaded yet", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn predict_tei(
    State(state): State<AppState>,
    Json(req): Json<PredictRequest>,
) -> Result<Json<PredictResponse>, ApiError> {
    let (one, mut lists) = run(&state, None, req).await?;
    Ok(Json(match one {
        true => PredictResponse::One(lists.remove(0)),
        false => PredictResponse::Many(lists),
    }))
}

/// Classifies texts (an Inference Endpoint's task route).
///
/// As an Inference Endpoint answers it: classifies texts with `latest`
/// (`InferenceClient(base_url=…)` posts here).
#[utoipa::path(post, path = "/", operation_id = "run_task", tag = "inference protocols",
    request_body = PredictRequest,
    responses(
        (status = 200, description = "Per text in input order (one text too), its classes by \
            score, highest first", body = Vec<Vec<LabelScore>>),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 422, description = "Empty text, too many inputs or tokens, too long, a bad parameter", body = ErrorBody),
        (status = 429, description = "Inference queue full", body = ErrorBody),
        (status = 503, description = "No model loaded yet", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn task(
    State(state): State<AppState>,
    Json(req): Json<PredictRequest>,
) -> Result<Json<Vec<Vec<LabelScore>>>, ApiError> {
    Ok(Json(run(&state, None, req).await?.1))
}

/// Classifies texts with one model (the Inference API's route).
///
/// A model's own task URL, as the Inference API serves `models/{id}`:
/// classifies texts with that model (`InferenceClient(model=".../models/ID")`
/// posts here).
#[utoipa::path(post, path = "/models/{id}", operation_id = "run_model_task", tag = "inference protocols",
    params(("id" = String, Path, description = "Model id (from `GET /models`), or a model \
        folder's name under `--model-dir`")),
    request_body = PredictRequest,
    responses(
        (status = 200, description = "Per text in input order (one text too), its classes by \
            score, highest first", body = Vec<Vec<LabelScore>>),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 409, description = "The model's files are missing or damaged", body = ErrorBody),
        (status = 422, description = "Empty text, too many inputs or tokens, too long, a bad parameter", body = ErrorBody),
        (status = 429, description = "Inference queue full", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn model_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(req): Json<PredictRequest>,
) -> Result<Json<Vec<Vec<LabelScore>>>, ApiError> {
    Ok(Json(run(&state, Some(&id), req).await?.1))
}

/// What `GET /info` describes, in Text Embeddings Inference's names.
#[derive(Debug, Serialize, ToSchema)]
pub struct Info {
    /// The id of the model `/`, `/predict` and `/classify` answer with
    /// (`latest`); null while none is loaded.
    pub model_id: Option<String>,
    /// The weights' type on the inference device: always `float32`.
    pub model_dtype: &'static str,
    /// `{"classifier": {"id2label", "label2id"}}` of `latest`; null while
    /// none is loaded.
    pub model_type: Option<ModelType>,
    /// Tokens a text keeps before it is cut (or refused with
    /// `truncate: false`); null while no model is loaded.
    pub max_input_length: Option<usize>,
    /// Padded tokens per forward pass (`--max-batch-tokens`).
    pub max_batch_tokens: usize,
    /// Texts per forward pass (`--max-batch-size`).
    pub max_batch_requests: usize,
    /// Texts per request (`--max-inputs`).
    pub max_client_batch_size: usize,
    /// Tokens per request after truncation (`--max-request-tokens`).
    pub max_request_tokens: usize,
    /// Requests that may wait for the inference thread before more get 429
    /// (`--queue-capacity`).
    pub max_concurrent_requests: usize,
    /// tuneserve's version.
    pub version: &'static str,
    /// The git commit it was built from (12 hex digits), or `unknown`.
    pub sha: &'static str,
}

/// The served model's kind: a sequence classifier.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelType {
    /// Its classes.
    pub classifier: ClassifierInfo,
}

/// A classifier's classes, both ways (ids as decimal strings, as in
/// `config.json`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ClassifierInfo {
    /// Class name by id.
    pub id2label: std::collections::BTreeMap<String, String>,
    /// Id by class name.
    pub label2id: std::collections::BTreeMap<String, usize>,
}

/// Describes the served model.
///
/// The served model and the limits requests meet.
#[utoipa::path(get, path = "/info", operation_id = "get_info", tag = "inference protocols",
    responses((status = 200, description = "The model `latest` names and the batching limits", body = Info)),
    security(("bearer" = [])))]
pub async fn info(State(state): State<AppState>) -> Json<Info> {
    let latest = state.registry.latest();
    let c = &state.config;
    let model_type = latest.as_ref().map(|m| {
        let labels = m.classifier.labels();
        ModelType {
            classifier: ClassifierInfo {
                id2label: (labels.iter().enumerate())
                    .map(|(i, l)| (i.to_string(), l.clone()))
                    .collect(),
                label2id: (labels.iter().enumerate())
                    .map(|(i, l)| (l.clone(), i))
                    .collect(),
            },
        }
    });
    Json(Info {
        model_id: latest.as_ref().map(|m| m.id.clone()),
        model_dtype: "float32",
        model_type,
        max_input_length: latest.as_ref().map(|m| m.classifier.max_length()),
        max_batch_tokens: c.max_batch_tokens,
        max_batch_requests: c.max_batch_size,
        max_client_batch_size: c.max_inputs,
        max_request_tokens: c.max_request_tokens,
        max_concurrent_requests: c.queue_capacity,
        version: env!("CARGO_PKG_VERSION"),
        sha: env!("TUNESERVE_COMMIT"),
    })
}
