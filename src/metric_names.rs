//! The name of every Prometheus metric the crate records, each written once:
//! the code that records a metric and the recorder that describes it
//! (`# HELP`, buckets: see `api::telemetry`) both use these, so a renamed
//! metric cannot lose its description. Dashboards and alerts read the names,
//! so they are part of the service's interface.

/// Always 1; labels `version` and `commit`.
pub const BUILD_INFO: &str = "tuneserve_build_info";
/// Counter of HTTP requests answered, by `method`, `path` and `status`.
pub const HTTP_REQUESTS: &str = "tuneserve_http_requests_total";
/// Histogram of seconds to answer an HTTP request, by `method`, `path`, `status`.
pub const HTTP_REQUEST_DURATION: &str = "tuneserve_http_request_duration_seconds";
/// Gauge of client connections open.
pub const HTTP_CONNECTIONS: &str = "tuneserve_http_connections";
/// Histogram of texts per pass of the inference thread.
pub const INFERENCE_BATCH_SIZE: &str = "tuneserve_inference_batch_size";
/// Histogram of seconds per batch of the inference thread.
pub const INFERENCE_SECONDS: &str = "tuneserve_inference_seconds";
/// Gauge of classification requests waiting for the inference thread.
pub const INFERENCE_QUEUE_DEPTH: &str = "tuneserve_inference_queue_depth";
/// Gauge of models held in memory for `/classify`.
pub const LOADED_MODELS: &str = "tuneserve_loaded_models";
/// Gauge of bytes of those models' weights.
pub const LOADED_MODEL_BYTES: &str = "tuneserve_loaded_model_bytes";
/// Gauge of LoRA adapters held in memory for `/classify`.
pub const LOADED_ADAPTERS: &str = "tuneserve_loaded_adapters";
/// Gauge of bytes of those adapters' tensors (their bases not counted).
pub const LOADED_ADAPTER_BYTES: &str = "tuneserve_loaded_adapter_bytes";
/// Gauge of jobs, by `status`.
pub const JOBS: &str = "tuneserve_jobs";
/// Counter of jobs that reached a final status, by `status`.
pub const JOBS_FINISHED: &str = "tuneserve_jobs_finished_total";
/// Gauge of training tokens per second of the newest logged step.
pub const TRAINING_TOKENS_PER_SECOND: &str = "tuneserve_training_tokens_per_second";
