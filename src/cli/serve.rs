//! `tuneserve serve`: the HTTP service (see [`crate::api`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::api::{Application, ServeConfig};
use crate::queue::Backoff;
use crate::store::DatabaseUrl;

/// Arguments of `serve`; each also reads a `TUNESERVE_*` environment variable.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
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
    /// This node's name, unique among the nodes on one database [default: host name-pid].
    #[arg(long, env = "TUNESERVE_NODE_ID")]
    pub node_id: Option<String>,
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
    /// A model to serve from the start (folder in the Hub's layout or Hub id);
    /// it is listed and named by its folder's name.
    #[arg(long, env = "TUNESERVE_MODEL")]
    pub model: Option<String>,
    /// A folder whose subfolders (models in the Hub's layout) jobs may name as
    /// `base_model`, relative to it; repeat the flag (or separate with commas)
    /// for several.
    #[arg(long, env = "TUNESERVE_MODEL_DIR", value_delimiter = ',')]
    pub model_dir: Vec<PathBuf>,
    /// Models kept loaded for `/classify` besides `latest` (the least recently
    /// used one is unloaded beyond this).
    #[arg(long, env = "TUNESERVE_MAX_LOADED_MODELS", default_value_t = 2)]
    pub max_loaded_models: usize,
    /// Require `Authorization: Bearer <key>` (all routes but /health and /metrics).
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
    #[arg(long, env = "TUNESERVE_LEASE_SECS", default_value_t = 30.0)]
    pub lease_secs: f64,
    /// Seconds between heartbeats (also how fast a cancel is noticed).
    #[arg(long, env = "TUNESERVE_HEARTBEAT_SECS", default_value_t = 2.0)]
    pub heartbeat_secs: f64,
    /// Seconds a connection has to send a request head, from when it opens or
    /// from its previous response (also the keep-alive idle timeout).
    #[arg(long, env = "TUNESERVE_HEADER_TIMEOUT_SECS", default_value_t = 15.0)]
    pub header_timeout_secs: f64,
    /// Client connections open at once (more wait to be accepted).
    #[arg(long, env = "TUNESERVE_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Seconds a job waits before its first retry after a failure that may
    /// pass (a full disk, the database or the Hub away); each further retry
    /// waits twice as long, up to --retry-max-secs (±20% jitter).
    #[arg(long, env = "TUNESERVE_RETRY_INITIAL_SECS", default_value_t = 5.0)]
    pub retry_initial_secs: f64,
    /// Longest wait between two retries of a job, in seconds.
    #[arg(long, env = "TUNESERVE_RETRY_MAX_SECS", default_value_t = 300.0)]
    pub retry_max_secs: f64,
    /// Seconds SIGINT/SIGTERM gives requests in flight and running jobs to
    /// finish or be handed back before the process exits anyway.
    #[arg(long, env = "TUNESERVE_SHUTDOWN_TIMEOUT", default_value_t = 30.0)]
    pub shutdown_timeout: f64,
}

/// Runs the service until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.heartbeat_secs > 0.0 && args.lease_secs > args.heartbeat_secs,
        "--lease-secs must be greater than --heartbeat-secs (> 0)"
    );
    anyhow::ensure!(
        args.header_timeout_secs > 0.0 && args.shutdown_timeout >= 0.0,
        "--header-timeout-secs must be positive and --shutdown-timeout not negative"
    );
    anyhow::ensure!(
        args.retry_initial_secs > 0.0 && args.retry_max_secs >= args.retry_initial_secs,
        "--retry-initial-secs must be positive and at most --retry-max-secs"
    );
    let mut config = ServeConfig::new(args.data_dir);
    config.host = args.host;
    config.port = args.port;
    config.database_url = args.database_url;
    if let Some(id) = args.node_id {
        config.node_id = id;
    }
    config.devices = args.devices;
    config.infer_device = args.infer_device;
    config.model = args.model;
    config.model_dirs = args.model_dir;
    config.max_loaded_models = args.max_loaded_models;
    config.api_key = args.api_key.filter(|k| !k.is_empty());
    config.max_batch_size = args.max_batch_size;
    config.max_batch_tokens = args.max_batch_tokens;
    config.max_request_tokens = args.max_request_tokens;
    config.queue_capacity = args.queue_capacity;
    config.max_inputs = args.max_inputs;
    config.max_json_bytes = args.max_json_bytes;
    config.max_dataset_bytes = args.max_dataset_bytes;
    config.lease = Duration::from_secs_f64(args.lease_secs);
    config.heartbeat = Duration::from_secs_f64(args.heartbeat_secs);
    config.header_timeout = Duration::from_secs_f64(args.header_timeout_secs);
    config.max_connections = args.max_connections as usize;
    config.shutdown_timeout = Duration::from_secs_f64(args.shutdown_timeout);
    config.backoff = Backoff {
        initial: Duration::from_secs_f64(args.retry_initial_secs),
        max: Duration::from_secs_f64(args.retry_max_secs),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let app = Application::build(config).await?;
        app.run_until_stopped().await?;
        anyhow::Ok(())
    })
}
