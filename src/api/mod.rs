//! The HTTP service (axum): routes per resource under [`http`], one
//! [`ApiError`], optional bearer auth, request ids, tracing, body limits,
//! Prometheus metrics, the OpenAPI document and graceful shutdown.
//!
//! [`Application::build`] opens the store, starts the inference thread, the
//! queue's workers and the node's cluster tasks (see [`crate::cluster`]),
//! preloads a model and binds the listener (port 0 picks a free port: see
//! [`Application::port`]); [`Application::run_until_stopped`] serves (see
//! [`server`]: header-read timeout, connection cap) until SIGINT/SIGTERM (or
//! [`Application::shutdown_token`]) and fans the shutdown out to the
//! connections, which finish their requests, and to the workers, which hand
//! their jobs back to the queue, both within one deadline.

mod config;
mod devices;
mod error;
mod http;
mod middleware;
mod preload;
mod server;
mod telemetry;

pub use config::ServeConfig;
pub use devices::ServiceDevice;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use error::{ApiError, Json, Query};
pub use http::{openapi, openapi_yaml};

use crate::cluster::{self, Node};
use crate::data_dir::DataDir;
use crate::infer::{Batcher, Registry};
use crate::queue::{Queue, QueueConfig};
use crate::store::{DatabaseUrl, Store};

/// What handlers share, cloned into each request (every field is cheap to
/// clone). Its fields are private to [`crate::api`]: the handlers under
/// [`http`] read them, nothing outside the service does.
#[derive(Clone)]
pub(crate) struct AppState {
    store: Store,
    /// The job queue; its log is where handlers write clients' actions.
    queue: Queue,
    /// Models loaded for `/classify`, and which one is `latest`.
    registry: Arc<Registry>,
    /// The inference thread `/classify` submits to.
    batcher: Batcher,
    data_dir: DataDir,
    /// The training devices and the inference device, each once.
    devices: Arc<Vec<ServiceDevice>>,
    /// The id the model the service was started with (`--model`) is served
    /// under; `None` without one.
    preloaded: Option<String>,
    config: Arc<ServeConfig>,
    /// Cancelled on shutdown (ends event streams).
    shutdown: CancellationToken,
}

/// A built service, bound and ready to run.
pub struct Application {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: server::Limits,
    shutdown_timeout: Duration,
    port: u16,
    store: Store,
    node_id: String,
    shutdown: CancellationToken,
    workers: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

/// Creates the data folder's layout and removes what interrupted writes left.
fn prepare_data_dir(root: &std::path::Path) -> anyhow::Result<DataDir> {
    let data_dir = DataDir::new(root);
    data_dir
        .create()
        .with_context(|| format!("creating {}", data_dir.root().display()))?;
    Ok(data_dir)
}

/// The store `config.database_url` names, or the SQLite file in the data
/// folder.
async fn open_store(config: &ServeConfig, data_dir: &DataDir) -> anyhow::Result<Store> {
    let url =
        (config.database_url.clone()).unwrap_or_else(|| DatabaseUrl::Sqlite(data_dir.database()));
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("opening the store at {url}"))?;
    tracing::info!(node = %config.node_id, store = %url, "store open");
    Ok(store)
}

impl Application {
    /// Opens the store (`config.database_url`, or SQLite under
    /// `config.data_dir`), starts the inference thread, the workers and the
    /// node's cluster tasks, preloads a model and binds the listener.
    pub async fn build(config: ServeConfig) -> anyhow::Result<Self> {
        config.check()?;
        let data_dir = prepare_data_dir(&config.data_dir)?;
        telemetry::install();
        let store = open_store(&config, &data_dir).await?;
        store.set_webhook_receivers(config.webhook_urls.clone());
        crate::queue::sweep::sweep(&data_dir, &store, crate::queue::sweep::STALE).await;
        let service_devices = ServiceDevice::open(&config)?;
        let device = |name: &str| ServiceDevice::named(&service_devices, name);
        let devices = config.devices.iter().map(|d| (d.clone(), device(d)));
        let registry = Registry::new(device(&config.infer_device), config.max_loaded_models)
            .with_adapter_memory(config.adapter_memory_mib << 20)
            .with_precision(config.infer_precision);
        let registry = Arc::new(registry);
        let preloaded = preload::preload(&config, &store, &data_dir, &registry).await?;
        let batcher = Batcher::start(config.batching())?;
        let shutdown = CancellationToken::new();
        let queue_config = QueueConfig {
            node_id: config.node_id.clone(),
            data_dir: data_dir.clone(),
            devices: devices.collect(),
            lease: config.lease,
            heartbeat: config.heartbeat,
            poll: config.poll,
            backoff: config.backoff(),
            model_dirs: config.model_dirs.clone(),
            mlflow_tracking_uri: config.mlflow_tracking_uri.clone(),
        };
        let (queue, workers) = Queue::start(
            queue_config,
            store.clone(),
            registry.clone(),
            shutdown.clone(),
        );
        let mut background = cluster::start(Node {
            id: config.node_id.clone(),
            devices: config.devices.clone(),
            store: store.clone(),
            queue: queue.clone(),
            registry: registry.clone(),
            data_dir: data_dir.clone(),
            heartbeat: config.heartbeat,
            model_poll: config.model_poll,
            shutdown: shutdown.clone(),
        })
        .await?;
        let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
            .await
            .with_context(|| format!("binding {}:{}", config.host, config.port))?;
        let port = listener.local_addr()?.port();
        let limits = server::Limits {
            header_timeout: config.header_timeout,
            max_connections: server::fit_connection_cap(config.max_connections),
        };
        let shutdown_timeout = config.shutdown_timeout;
        let state = AppState {
            store: store.clone(),
            queue,
            registry,
            batcher,
            data_dir,
            devices: Arc::new(service_devices),
            preloaded,
            config: Arc::new(config),
            shutdown: shutdown.clone(),
        };
        if let Some(webhooks) = webhook_config(&state.config) {
            let render = http::webhook_render(state.clone());
            let log = state.queue.log().clone();
            let task = crate::integrations::webhooks::start(
                webhooks,
                store.clone(),
                log,
                render,
                shutdown.clone(),
            )?;
            background.push(task);
        }
        Ok(Self {
            listener,
            router: http::router(state.clone()),
            limits,
            shutdown_timeout,
            port,
            store,
            node_id: state.config.node_id.clone(),
            shutdown,
            workers,
            background,
        })
    }

    /// The port listened on: the configured one, or the free one picked for port 0.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The store (tests reach behind the API through it).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Cancelling this token stops the service as a signal would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until SIGINT/SIGTERM or the shutdown token; then stops taking
    /// connections, and gives requests in flight and the workers (handing
    /// their jobs back) until the shutdown timeout; closes the store.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let token = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = signal() => token.cancel(),
                _ = token.cancelled() => {}
            }
        });
        let address = self.listener.local_addr()?;
        tracing::info!("listening on http://{address}");
        let open = server::serve(self.listener, self.router, self.limits, self.shutdown).await;
        let limit = self.shutdown_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        tracing::info!(
            connections = open.len(),
            "shutting down: finishing requests in flight, workers hand back their jobs \
             (at most {limit:?})"
        );
        let cut = server::drain(open, deadline).await;
        if cut > 0 {
            tracing::warn!("closed {cut} connections still busy after {limit:?}");
        }
        let workers = futures::future::join_all(self.workers);
        if tokio::time::timeout_at(deadline, workers).await.is_err() {
            tracing::warn!("workers did not hand back their jobs within {limit:?}");
        }
        futures::future::join_all(self.background).await;
        if let Err(e) = self.store.remove_node(&self.node_id).await {
            tracing::warn!("removing this node from the nodes table: {e}");
        }
        self.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// How this node sends webhooks; `None` when it sends none.
fn webhook_config(config: &ServeConfig) -> Option<crate::integrations::webhooks::WebhookConfig> {
    let secret = config
        .webhook_secret
        .clone()
        .filter(|_| config.webhooks_on())?;
    Some(crate::integrations::webhooks::WebhookConfig {
        node_id: config.node_id.clone(),
        secret,
        backoff: crate::queue::Backoff {
            initial: config.webhook_retry_initial,
            max: config.webhook_retry_max,
        },
        retry_window: config.webhook_retry_window,
        timeout: config.webhook_timeout,
        poll: config.webhook_poll,
    })
}

async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
