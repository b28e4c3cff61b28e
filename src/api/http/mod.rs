//! Routes, one module per resource, assembled with their OpenAPI description.

mod classify;
mod common_responses;
mod datasets;
mod event_schema;
mod events;
mod health;
mod inference_protocol;
mod job_integrations;
mod job_records;
mod jobs;
mod model_files;
mod models;
mod nodes;
mod openai;
mod openapi_tidy;
mod openapi_yaml;
mod paging;
mod upload;
mod web;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use tower::ServiceBuilder;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use super::error::{ErrorBody, ErrorDetail};
use super::middleware::{
    accept_encodings, json_errors, limit_uri, log_server_errors, method_not_allowed,
    require_api_key, ApiKey,
};
use super::AppState;
use crate::job::JobSettings;
pub use openapi_yaml::openapi_yaml;

/// Renders webhook payloads' `data` as the API returns it: a job as
/// `GET /jobs/{id}` does (without the single-job extras), a model as
/// `GET /models/{id}` does, `latest` true (the event is its promotion).
pub(crate) fn webhook_render(state: AppState) -> crate::integrations::webhooks::Render {
    use crate::store::Subject;
    std::sync::Arc::new(move |subject: &Subject| {
        let value = match subject {
            Subject::Job(row) => serde_json::to_value(jobs::Job::from((**row).clone())),
            Subject::Model(row) => match models::view(&state, row.clone()) {
                Ok(mut model) => {
                    model.latest = true;
                    serde_json::to_value(model)
                }
                Err(e) => {
                    tracing::warn!(model = %row.id, "rendering a webhook's model: {e}");
                    Ok(serde_json::Value::Null)
                }
            },
        };
        value.unwrap_or_default()
    })
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tuneserve",
        description = "Fine-tune GPT-2-family classifiers and serve them. Every error is \
            `{\"error\": {\"code\", \"message\", \"param\"}}`: a method a path has no \
            operation for is a 405 (`method_not_allowed`, with `Allow`), a URI over 8 KiB a 414, \
            a full inference queue a 429 with `Retry-After` (only a request head too malformed or \
            too large to parse gets a bare 400 or 431 from the HTTP layer). With `--api-key`, \
            every route but `/health` and `/metrics` needs `Authorization: Bearer <key>` (the \
            scheme in any case)."
    ),
    servers((url = "/", description = "The server that serves this document (`/openapi.json`)")),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth),
    tags(
        (name = "service", description = "Health, metrics and the nodes serving the database"),
        (name = "datasets", description = "Uploaded training data"),
        (name = "jobs", description = "Fine-tuning jobs"),
        (name = "models", description = "Fine-tuned models and classification"),
        (name = "inference protocols", description = "Classification in the Hugging Face \
            convention (Text Embeddings Inference's `/predict` and `/info`, the Inference API's \
            `POST /` and `POST /models/{id}`), for clients such as `huggingface_hub`'s \
            `InferenceClient`"),
        (name = "openai", description = "OpenAI's fine-tuning API under `/v1` (files, \
            fine-tuning jobs, their events and checkpoints, models), for the `openai` SDKs: \
            views of the same datasets, jobs and models"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Puts each hyperparameter's range ([`JobSettings::bounds`], the table
/// the server checks submissions against) into the schema as `minimum`,
/// `maximum` (or their exclusive forms). Applied to the finished document:
/// the schema is collected from the routes after `ApiDoc`'s own modifiers run.
struct HyperparameterBounds;

impl utoipa::Modify for HyperparameterBounds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Schema};
        let number = |v: f64| match v.fract() {
            0.0 => utoipa::Number::Int(v as isize),
            _ => utoipa::Number::Float(v),
        };
        let schemas = openapi.components.as_mut().map(|c| &mut c.schemas);
        let Some(RefOr::T(Schema::Object(h))) = schemas.and_then(|s| s.get_mut("Hyperparameters"))
        else {
            return;
        };
        // Generated clients refuse a default on an object property (the
        // object's own fields carry theirs).
        for p in h.properties.values_mut() {
            if let RefOr::T(Schema::OneOf(one)) = p {
                if matches!(one.items.as_slice(), [RefOr::T(Schema::Object(_))]) {
                    one.default = None;
                }
            }
        }
        for b in JobSettings::bounds() {
            let Some(p) = property_at(h, b.field) else {
                continue;
            };
            let (min, max) = (Some(number(b.min)), b.max.map(number));
            (p.minimum, p.exclusive_minimum) = if b.exclusive_min {
                (None, min)
            } else {
                (min, None)
            };
            (p.maximum, p.exclusive_maximum) = if b.exclusive_max {
                (None, max)
            } else {
                (max, None)
            };
        }
    }
}

/// The property `path` names in `object` (`lora.r`: the property `r` of the
/// object property `lora`, inline or wrapped in a one-item `oneOf`).
fn property_at<'a>(
    object: &'a mut utoipa::openapi::schema::Object,
    path: &str,
) -> Option<&'a mut utoipa::openapi::schema::Object> {
    use utoipa::openapi::{RefOr, Schema};
    let (name, rest) = match path.split_once('.') {
        Some((name, rest)) => (name, Some(rest)),
        None => (path, None),
    };
    let found = match object.properties.get_mut(name)? {
        RefOr::T(Schema::Object(p)) => p,
        RefOr::T(Schema::OneOf(one)) => match one.items.as_mut_slice() {
            [RefOr::T(Schema::Object(p))] => p,
            _ => return None,
        },
        _ => return None,
    };
    match rest {
        Some(rest) => property_at(found, rest),
        None => Some(found),
    }
}

/// The routes that need the API key (when one is set).
fn protected_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(datasets::upload, datasets::list))
        .routes(routes!(datasets::get, datasets::delete))
        .routes(routes!(datasets::import))
        .routes(routes!(jobs::create, jobs::list))
        .routes(routes!(jobs::get, jobs::delete))
        .routes(routes!(job_records::metrics))
        .routes(routes!(events::events))
        .routes(routes!(job_records::checkpoints))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::retry))
        .routes(routes!(models::list))
        .routes(routes!(
            models::get,
            models::delete,
            inference_protocol::model_task
        ))
        .routes(routes!(models::promote))
        .routes(routes!(model_files::list))
        .routes(routes!(model_files::download))
        .routes(routes!(classify::classify))
        .routes(routes!(inference_protocol::predict_tei))
        .routes(routes!(inference_protocol::task))
        .routes(routes!(inference_protocol::info))
        .routes(routes!(openai::files::create, openai::files::list))
        .routes(routes!(openai::files::retrieve, openai::files::delete))
        .routes(routes!(openai::jobs::create, openai::jobs::list))
        .routes(routes!(openai::jobs::retrieve))
        .routes(routes!(openai::jobs::cancel))
        .routes(routes!(openai::job_records::events))
        .routes(routes!(openai::job_records::checkpoints))
        .routes(routes!(openai::models::list))
        .routes(routes!(openai::models::retrieve, openai::models::delete))
        .routes(routes!(nodes::list))
}

/// The routes anyone may call: probes and scrapers carry no key.
fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::health))
        .routes(routes!(health::metrics))
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .merge(protected_routes())
        .merge(public_routes())
        .split_for_parts()
        .1;
    utoipa::Modify::modify(&HyperparameterBounds, &mut doc);
    utoipa::Modify::modify(&common_responses::CommonResponses, &mut doc);
    utoipa::Modify::modify(&openapi_tidy::Tidy, &mut doc);
    doc
}

/// The whole application router. Its layers wrap every route and the
/// fallback (outermost first): request id, the request's tracing span,
/// request-id propagation, metrics and the request's log line, server
/// errors' log lines, JSON error bodies, the URI limit, the encodings taken and gzip's decompression, the
/// request timeout, the body limit (of decompressed bytes).
pub fn router(state: AppState) -> Router {
    let (api, _) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(
            protected_routes().route_layer(axum::middleware::from_fn_with_state(
                ApiKey::new(state.config.api_key()),
                require_api_key,
            )),
        )
        .merge(public_routes())
        .split_for_parts();
    let config = &state.config;
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                // `telemetry::track` logs each answer; a server error's
                // cause is logged once, by `log_server_errors`.
                .on_response(())
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(axum::middleware::from_fn(super::telemetry::track))
        .layer(axum::middleware::from_fn(log_server_errors))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn(limit_uri))
        .layer(axum::middleware::from_fn(accept_encodings))
        .layer(RequestDecompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(DefaultBodyLimit::max(config.max_json_bytes));
    api.merge(SwaggerUi::new("/docs").url("/openapi.json", openapi()))
        .merge(web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(layers)
        .with_state(state)
}

/// The span every request's log lines belong to (its URI cut short: a client
/// chooses how long it is).
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let uri = req.uri().to_string();
    let uri = match uri.char_indices().nth(MAX_LOGGED_URI) {
        Some((end, _)) => format!("{}…", &uri[..end]),
        None => uri,
    };
    tracing::info_span!("request", method = %req.method(), uri = %uri, request_id = %id)
}

/// Characters of a request's URI its log lines show.
const MAX_LOGGED_URI: usize = 200;

async fn not_found(uri: axum::http::Uri) -> super::ApiError {
    super::ApiError::NotFound {
        what: "route",
        id: uri.path().to_string(),
    }
}

/// Unix milliseconds as RFC 3339 (UTC).
pub(crate) fn timestamp(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
