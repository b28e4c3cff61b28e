//! Signed webhooks: each job transition and promotion is in the store's
//! outbox (see [`crate::store::Subject`]) the moment it commits; this task,
//! on every node that has webhooks configured, claims due rows, POSTs them
//! signed the Standard Webhooks way ([`Secret`]) and records each try in the
//! job's log (`webhook_delivered`, `webhook_failed`). A receiver that does
//! not answer 2xx within the timeout is tried again after an exponential
//! backoff until the event is `retry_window` old; then the try is given up
//! (and logged as such). Delivery is at least once: a node that dies between
//! the receiver's answer and recording it leaves the row to be sent again
//! once its claim runs out. It runs on the async runtime, never on a
//! training thread, and a job never waits for it.

mod sign;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use sign::Secret;

use crate::queue::{Backoff, JobLog};
use crate::store::event_data::WebhookData;
use crate::store::{now_ms, Delivery, EventKind, Level, NewEvent, Store, Subject};

/// How webhooks are sent.
#[derive(Debug, Clone)]
pub(crate) struct WebhookConfig {
    /// This node's name: the claims' owner.
    pub node_id: String,
    /// Signs every delivery.
    pub secret: Secret,
    /// The wait before the second try; doubled for each next one up to `max`.
    pub backoff: Backoff,
    /// Tries stop once the event is this old.
    pub retry_window: Duration,
    /// How long a receiver has to answer one try.
    pub timeout: Duration,
    /// How often due rows are looked for.
    pub poll: Duration,
}

/// Renders the job or model of an event as the API returns it (the
/// payload's `data`).
pub type Render = Arc<dyn Fn(&Subject) -> Value + Send + Sync>;

/// Tries in flight at once, per node.
const IN_FLIGHT: usize = 16;

/// Starts the delivery task; it stops when `shutdown` is cancelled (a try in
/// flight then is sent again by the next claimer).
pub(crate) fn start(
    config: WebhookConfig,
    store: Store,
    log: JobLog,
    render: Render,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        .user_agent(concat!("tuneserve/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let sender = Arc::new(Sender {
        config,
        store,
        log,
        render,
        client,
    });
    Ok(tokio::spawn(run(sender, shutdown)))
}

struct Sender {
    config: WebhookConfig,
    store: Store,
    log: JobLog,
    render: Render,
    client: reqwest::Client,
}

async fn run(sender: Arc<Sender>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    // A claim outlives a try's timeout, so no other node sends it meanwhile.
    let claim_ms = (sender.config.timeout.as_millis() as i64).saturating_mul(2) + 5_000;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(sender.config.poll) => {}
            _ = shutdown.cancelled() => return,
        }
        let free = slots.available_permits() as i64;
        if free == 0 {
            continue;
        }
        let owner = &sender.config.node_id;
        let claimed = match sender.store.claim_deliveries(owner, claim_ms, free).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!("claiming webhook deliveries failed: {e}");
                continue;
            }
        };
        for delivery in claimed {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let sender = sender.clone();
            tokio::spawn(async move {
                sender.deliver(delivery).await;
                drop(permit);
            });
        }
    }
}

/// `ms` (Unix) as RFC 3339, UTC.
fn rfc3339(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Sender {
    /// The body of `d`: `{type, timestamp, data}`.
    fn body(&self, d: &Delivery) -> Vec<u8> {
        let body = json!({
            "type": d.event_type,
            "timestamp": rfc3339(d.created_at),
            "data": (self.render)(&d.subject),
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// One try: POST, then record how it went.
    async fn deliver(&self, d: Delivery) {
        let body = self.body(&d);
        let sent_at = now_ms() / 1000;
        let signature = self.config.secret.sign(&d.message_id, sent_at, &body);
        let request = self
            .client
            .post(&d.url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.message_id)
            .header("webhook-timestamp", sent_at.to_string())
            .header("webhook-signature", signature)
            .body(body);
        let answer = match request.send().await {
            Ok(resp) if resp.status().is_success() => Ok(resp.status().as_u16()),
            Ok(resp) => Err(format!("answered HTTP {}", resp.status().as_u16())),
            Err(e) => Err(describe(&e)),
        };
        self.record(&d, answer).await;
    }

    async fn record(&self, d: &Delivery, answer: Result<u16, String>) {
        let attempt = d.attempts + 1;
        let owner = &self.config.node_id;
        let mut data = WebhookData {
            event: d.event_type.clone(),
            url: d.url.clone(),
            webhook_id: d.message_id.clone(),
            attempt,
            status: None,
            error: None,
            gave_up: None,
            retry_in_ms: None,
        };
        let (event, finished) = match answer {
            Ok(status) => {
                data.status = Some(status);
                let message = format!(
                    "webhook {} delivered to {} (attempt {attempt}, HTTP {status})",
                    d.event_type, d.url
                );
                let event = NewEvent::info(EventKind::WebhookDelivered, message, Some(json!(data)));
                (event, self.store.finish_delivery(d.seq, owner, true, None))
            }
            Err(why) => {
                let wait = self.config.backoff.delay(d.attempts);
                let next = now_ms() + wait.as_millis() as i64;
                let window = self.config.retry_window.as_millis() as i64;
                let give_up = next - d.created_at > window;
                data.error = Some(why.clone());
                data.gave_up = Some(give_up);
                let (level, then, next) = match give_up {
                    true => (
                        Level::Error,
                        format!("giving up after {attempt} attempts"),
                        None,
                    ),
                    false => {
                        data.retry_in_ms = Some(wait.as_millis() as u64);
                        let then = format!("trying again in {:.1} s", wait.as_secs_f64());
                        (Level::Warning, then, Some(next))
                    }
                };
                let message = format!(
                    "webhook {} to {} failed (attempt {attempt}): {why}; {then}",
                    d.event_type, d.url
                );
                let event = NewEvent {
                    level,
                    kind: EventKind::WebhookFailed,
                    message,
                    data: Some(json!(data)),
                };
                (event, self.store.finish_delivery(d.seq, owner, false, next))
            }
        };
        match finished.await {
            Ok(true) => {
                if let Err(e) = self.log.write(&d.job_id, None, event).await {
                    tracing::warn!(job = %d.job_id, "recording a webhook try: {e}");
                }
            }
            Ok(false) => tracing::debug!("webhook claim lost; another node sends it"),
            Err(e) => tracing::warn!("recording a webhook try failed (it is sent again): {e}"),
        }
    }
}

/// A request error in words, with its cause (reqwest's own text omits it).
fn describe(e: &reqwest::Error) -> String {
    let mut text = match () {
        _ if e.is_timeout() => "no answer in time".to_string(),
        _ if e.is_connect() => "could not connect".to_string(),
        _ => e.to_string(),
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}
