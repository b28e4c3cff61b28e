//! [`ServeConfig`]: everything `tuneserve serve` can be told, defined once.
//!
//! The struct is its own command line (`#[derive(clap::Args)]`): each field's
//! flag, `TUNESERVE_*` environment variable, default and help live on the
//! field, and [`ServeConfig::new`] reads the same defaults by parsing an empty
//! command line, so a library user (the tests) and `tuneserve serve` start
//! from one set of values. Whatever clap cannot say about a single value (a
//! heartbeat shorter than the lease) is checked once, in
//! [`ServeConfig::check`], when the service is built.
//!
//! Durations are given in seconds (fractions allowed) and every such flag ends
//! in `-secs`; sizes in bytes end in `-bytes`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Command, FromArgMatches};

use crate::cluster;
use crate::infer::{BatchLimits, BatchingConfig};
use crate::integrations::is_http_url;
use crate::integrations::webhooks::Secret;
use crate::model::InferPrecision;
use crate::queue::Backoff;
use crate::store::DatabaseUrl;

/// Everything `tuneserve serve` can be told; each flag also reads a
/// `TUNESERVE_*` environment variable.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Interface to listen on.
    #[arg(long, env = "TUNESERVE_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port).
    #[arg(long, env = "TUNESERVE_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Datasets, checkpoints and models go here (and the SQLite database by
    /// default); every node of a cluster mounts the same folder.
    #[arg(long, env = "TUNESERVE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The store: `sqlite://PATH` (one node; default DATA_DIR/tuneserve.db) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (any number of nodes).
    #[arg(long, env = "TUNESERVE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<DatabaseUrl>,
    /// This node's name, unique among the nodes on one database: its workers'
    /// lease owner, its row in `GET /nodes` [default: host name-pid].
    #[arg(long, env = "TUNESERVE_NODE_ID", default_value_t = cluster::default_node_id(),
          hide_default_value = true)]
    pub node_id: String,
    /// Training devices, one worker each: `cpu` or `cuda:0,cuda:1`.
    #[arg(
        long,
        env = "TUNESERVE_DEVICES",
        default_value = "cpu",
        value_delimiter = ','
    )]
    pub devices: Vec<String>,
    /// Where `/classify` runs: `cpu` or `cuda:N` (may be one of --devices).
    #[arg(long, env = "TUNESERVE_INFER_DEVICE", default_value = "cpu")]
    pub infer_device: String,
    /// What `/classify` runs the models' Conv1D products in: `fp32`, `int8`
    /// (weights quantized per output channel when a model loads, activations
    /// per row; a quarter of the memory) or `bf16` (half). int8 and bf16 run
    /// on the CPU only: with a `cuda` --infer-device they are refused.
    #[arg(long, env = "TUNESERVE_INFER_PRECISION", value_enum, default_value_t = InferPrecision::Fp32)]
    pub infer_precision: InferPrecision,
    /// A model to serve from the start (folder in the Hub's layout or Hub id);
    /// it is listed and named by its folder's name.
    #[arg(long, env = "TUNESERVE_MODEL")]
    pub model: Option<String>,
    /// A folder whose subfolders (models in the Hub's layout) jobs may name as
    /// `base_model`, relative to it; repeat the flag (or separate with commas)
    /// for several.
    #[arg(long = "model-dir", env = "TUNESERVE_MODEL_DIR", value_delimiter = ',')]
    pub model_dirs: Vec<PathBuf>,
    /// Models kept loaded for `/classify` besides `latest` (the least recently
    /// used one is unloaded beyond this).
    #[arg(long, env = "TUNESERVE_MAX_LOADED_MODELS", default_value_t = 2)]
    pub max_loaded_models: usize,
    /// MiB of LoRA adapters kept loaded for `/classify` besides `latest`, their
    /// bases not counted (each base is held once, while any adapter of it is);
    /// the least recently used adapters are unloaded beyond this. 2048 MiB holds
    /// about 1,700 adapters of rank 8 on `c_attn` at GPT-2 size.
    #[arg(
        long,
        alias = "adapter-memory",
        env = "TUNESERVE_ADAPTER_MEMORY_MIB",
        default_value_t = 2048
    )]
    pub adapter_memory_mib: usize,
    /// Require `Authorization: Bearer <key>` (all routes but /health, /metrics
    /// and the docs); empty means no key.
    #[arg(long, env = "TUNESERVE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Texts per inference forward pass.
    #[arg(long, env = "TUNESERVE_MAX_BATCH_SIZE", default_value_t = 32)]
    pub max_batch_size: usize,
    /// Padded tokens (texts × the longest one's tokens) per inference forward
    /// pass: short texts batch widely, long ones in smaller groups.
    #[arg(long, env = "TUNESERVE_MAX_BATCH_TOKENS", default_value_t = 8192)]
    pub max_batch_tokens: usize,
    /// Tokens one /classify request may hold after truncation (more: 422), so
    /// that no request holds the inference thread for long.
    #[arg(long, env = "TUNESERVE_MAX_REQUEST_TOKENS", default_value_t = 16384)]
    pub max_request_tokens: usize,
    /// Classification requests that may wait (more get 429).
    #[arg(long, env = "TUNESERVE_QUEUE_CAPACITY", default_value_t = 64)]
    pub queue_capacity: usize,
    /// Texts per /classify request at most.
    #[arg(long, env = "TUNESERVE_MAX_INPUTS", default_value_t = 64)]
    pub max_inputs: usize,
    /// Largest JSON request body, in bytes.
    #[arg(long, env = "TUNESERVE_MAX_JSON_BYTES", default_value_t = 1 << 20)]
    pub max_json_bytes: usize,
    /// Largest dataset upload, in bytes.
    #[arg(long, env = "TUNESERVE_MAX_DATASET_BYTES", default_value_t = 256 << 20)]
    pub max_dataset_bytes: usize,
    /// Seconds a running job's lease lasts without a heartbeat.
    #[arg(long = "lease-secs", env = "TUNESERVE_LEASE_SECS", value_name = "SECS",
          value_parser = secs, default_value = "30")]
    pub lease: Duration,
    /// Seconds between heartbeats (also how fast a cancel is noticed); shorter
    /// than the lease.
    #[arg(long = "heartbeat-secs", env = "TUNESERVE_HEARTBEAT_SECS", value_name = "SECS",
          value_parser = secs, default_value = "2")]
    pub heartbeat: Duration,
    /// Seconds a connection has to send a request head, from when it opens or
    /// from its previous response (also the keep-alive idle timeout).
    #[arg(long = "header-timeout-secs", env = "TUNESERVE_HEADER_TIMEOUT_SECS",
          value_name = "SECS", value_parser = secs, default_value = "15")]
    pub header_timeout: Duration,
    /// Client connections open at once at most (fewer if the limit on open
    /// files is lower); more wait to be accepted.
    #[arg(long, env = "TUNESERVE_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a job waits before its first retry after a failure that may
    /// pass (a full disk, the database or the Hub away); each further retry
    /// waits twice as long, up to --retry-max-secs (±20% jitter).
    #[arg(long = "retry-initial-secs", env = "TUNESERVE_RETRY_INITIAL_SECS",
          value_name = "SECS", value_parser = secs, default_value = "5")]
    pub retry_initial: Duration,
    /// Longest wait between two retries of a job, in seconds.
    #[arg(long = "retry-max-secs", env = "TUNESERVE_RETRY_MAX_SECS", value_name = "SECS",
          value_parser = secs, default_value = "300")]
    pub retry_max: Duration,
    /// Seconds SIGINT/SIGTERM gives requests in flight and running jobs to
    /// finish or be handed back before the process exits anyway.
    #[arg(long = "shutdown-timeout-secs", alias = "shutdown-timeout",
          env = "TUNESERVE_SHUTDOWN_TIMEOUT_SECS", value_name = "SECS", value_parser = secs,
          default_value = "30")]
    pub shutdown_timeout: Duration,
    /// Longest time a request may take to produce its response (not a flag).
    #[arg(skip = Duration::from_secs(120))]
    pub request_timeout: Duration,
    /// Idle workers' polling interval for queued jobs (not a flag: a submission
    /// on this node wakes them at once).
    #[arg(skip = Duration::from_secs(1))]
    pub poll: Duration,
    /// How often the newest model is looked for when no node announced one
    /// (not a flag).
    #[arg(skip = Duration::from_secs(2))]
    pub model_poll: Duration,
    /// A URL every job's webhooks are POSTed to (`job.running`,
    /// `job.succeeded`, `job.failed`, `job.cancelled`, `model.promoted`),
    /// signed with --webhook-secret; repeat the flag (or separate with commas)
    /// for several.
    #[arg(
        long = "webhook-url",
        env = "TUNESERVE_WEBHOOK_URL",
        value_delimiter = ','
    )]
    pub webhook_urls: Vec<String>,
    /// The Standard Webhooks secret deliveries are signed with: `whsec_` and
    /// the base64 of a key of 16 bytes or more (`whsec_$(openssl rand -base64 32)`).
    /// Required with --webhook-url or --allow-job-webhooks.
    #[arg(long, env = "TUNESERVE_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<Secret>,
    /// Let jobs name webhook receivers of their own (`webhooks: [{"url"}]` on
    /// POST /jobs); without it such jobs are refused (422 on `webhooks`).
    #[arg(long, env = "TUNESERVE_ALLOW_JOB_WEBHOOKS")]
    pub allow_job_webhooks: bool,
    /// Seconds before the second try of a webhook a receiver did not take
    /// (no 2xx); each next try waits twice as long, up to
    /// --webhook-retry-max-secs (±20% jitter).
    #[arg(long = "webhook-retry-initial-secs", env = "TUNESERVE_WEBHOOK_RETRY_INITIAL_SECS",
          value_name = "SECS", value_parser = secs, default_value = "5")]
    pub webhook_retry_initial: Duration,
    /// Longest wait between two tries of a webhook, in seconds.
    #[arg(long = "webhook-retry-max-secs", env = "TUNESERVE_WEBHOOK_RETRY_MAX_SECS",
          value_name = "SECS", value_parser = secs, default_value = "600")]
    pub webhook_retry_max: Duration,
    /// Seconds after an event when tries to deliver it stop (the job's log
    /// records the give-up).
    #[arg(long = "webhook-retry-window-secs", env = "TUNESERVE_WEBHOOK_RETRY_WINDOW_SECS",
          value_name = "SECS", value_parser = secs, default_value = "86400")]
    pub webhook_retry_window: Duration,
    /// Seconds a receiver has to answer one try.
    #[arg(long = "webhook-timeout-secs", env = "TUNESERVE_WEBHOOK_TIMEOUT_SECS",
          value_name = "SECS", value_parser = secs, default_value = "10")]
    pub webhook_timeout: Duration,
    /// How often due webhook tries are looked for (not a flag).
    #[arg(skip = Duration::from_millis(500))]
    pub webhook_poll: Duration,
    /// The MLflow tracking server jobs with an `mlflow` integration log to
    /// (`http://HOST:5000`); without it such jobs are refused (422 on
    /// `integrations`).
    #[arg(long, env = "TUNESERVE_MLFLOW_TRACKING_URI")]
    pub mlflow_tracking_uri: Option<String>,
}

/// Parses a number of seconds (fractions allowed, not negative).
fn secs(text: &str) -> Result<Duration, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(value).map_err(|_| "give a number of seconds, 0 or more".into())
}

impl ServeConfig {
    /// The defaults (those `tuneserve serve` starts from, environment
    /// variables aside), storing under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let command = Self::augment_args(Command::new("serve")).mut_args(|arg| arg.env(None));
        let matches = command
            .try_get_matches_from(["serve"])
            .expect("every flag of serve has a default or is optional");
        let mut config =
            Self::from_arg_matches(&matches).expect("the defaults are valid values of their flags");
        config.data_dir = data_dir.into();
        config
    }

    /// Refuses settings the service cannot run with (what clap cannot tell
    /// from one value alone).
    pub(super) fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.devices.is_empty(),
            "--devices: give at least one device"
        );
        anyhow::ensure!(
            self.infer_precision == InferPrecision::Fp32 || self.infer_device == "cpu",
            "--infer-precision {} runs on the CPU only; --infer-device {} serves fp32 \
             (give --infer-device cpu, or --infer-precision fp32)",
            self.infer_precision,
            self.infer_device
        );
        anyhow::ensure!(
            !self.header_timeout.is_zero() && self.max_connections > 0,
            "--header-timeout-secs and --max-connections must be positive"
        );
        anyhow::ensure!(
            !self.heartbeat.is_zero() && self.heartbeat < self.lease,
            "--heartbeat-secs ({:?}) must be positive and shorter than --lease-secs ({:?})",
            self.heartbeat,
            self.lease
        );
        anyhow::ensure!(
            !self.retry_initial.is_zero() && self.retry_initial <= self.retry_max,
            "--retry-initial-secs must be positive and at most --retry-max-secs"
        );
        self.check_integrations()?;
        cluster::validate_node_id(&self.node_id).map_err(anyhow::Error::msg)
    }

    fn check_integrations(&self) -> anyhow::Result<()> {
        if let Some(bad) = self.webhook_urls.iter().find(|u| !is_http_url(u)) {
            anyhow::bail!("--webhook-url: `{bad}` is not an http:// or https:// URL");
        }
        anyhow::ensure!(
            !self.webhooks_on() || self.webhook_secret.is_some(),
            "--webhook-url and --allow-job-webhooks need --webhook-secret (whsec_ and a \
             base64 key) to sign deliveries with"
        );
        anyhow::ensure!(
            !self.webhook_retry_initial.is_zero()
                && self.webhook_retry_initial <= self.webhook_retry_max
                && !self.webhook_timeout.is_zero(),
            "--webhook-retry-initial-secs must be positive and at most --webhook-retry-max-secs; \
             --webhook-timeout-secs positive"
        );
        if let Some(uri) = self.mlflow_tracking_uri.as_deref() {
            anyhow::ensure!(
                is_http_url(uri),
                "--mlflow-tracking-uri: `{uri}` is not an http:// or https:// URL"
            );
        }
        Ok(())
    }

    /// Whether any webhook can be sent: receivers of the server's or of jobs'.
    pub(crate) fn webhooks_on(&self) -> bool {
        !self.webhook_urls.is_empty() || self.allow_job_webhooks
    }

    /// The bearer token clients must send; `None` when none is set (an empty
    /// `--api-key` sets none).
    pub(super) fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref().filter(|key| !key.is_empty())
    }

    /// How long a job waits before a retry after a failure that may pass.
    pub(super) fn backoff(&self) -> Backoff {
        Backoff {
            initial: self.retry_initial,
            max: self.retry_max,
        }
    }

    /// The inference thread's queue and batch limits.
    pub(super) fn batching(&self) -> BatchingConfig {
        BatchingConfig {
            capacity: self.queue_capacity,
            limits: BatchLimits {
                texts: self.max_batch_size.max(1),
                tokens: self.max_batch_tokens.max(1),
            },
            max_request_tokens: self.max_request_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_the_check_and_old_flag_spellings_still_parse() {
        let config = ServeConfig::new("data");
        config.check().unwrap();
        assert_eq!(config.lease, Duration::from_secs(30));
        assert_eq!(config.backoff().max, Duration::from_secs(300));
        let command = ServeConfig::augment_args(Command::new("serve"));
        let matches = command
            .try_get_matches_from(["serve", "--shutdown-timeout", "1.5"])
            .unwrap();
        let parsed = ServeConfig::from_arg_matches(&matches).unwrap();
        assert_eq!(parsed.shutdown_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn negative_seconds_are_refused() {
        assert!(secs("-1").is_err());
        assert!(secs("abc").is_err());
        assert_eq!(secs("0.25"), Ok(Duration::from_millis(250)));
    }
}
