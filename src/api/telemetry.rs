//! Prometheus metrics and request logging: the process-wide recorder
//! (installed once, at build time, before any metric is recorded) with a
//! `# HELP` for every metric the crate records and buckets for every
//! histogram (histograms aggregate across instances, summaries do not), the
//! build's identity, and the per-request middleware.
//!
//! Request labels come from closed sets only — the method from a fixed list
//! (else `other`), the route's template (else `unmatched`) and the status — so
//! no client can create series: each made-up label value would be a new
//! series held in memory and rendered on every scrape.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics::Unit;

use crate::metric_names as names;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets (seconds): a millisecond to the request timeout's order.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Batch size buckets (texts per forward pass).
const TEXTS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Routes whose requests are logged at `debug`: polled by probes and scrapers.
const POLLED: &[&str] = &["/health", "/metrics"];

/// The recorder's handle; the first call installs it.
pub(crate) fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = builder()
            .install_recorder()
            .unwrap_or_else(|_| builder().build_recorder().handle());
        describe();
        metrics::gauge!(
            names::BUILD_INFO,
            "version" => env!("CARGO_PKG_VERSION"),
            "commit" => env!("TUNESERVE_COMMIT"),
        )
        .set(1.0);
        // Present, at 0, before the first job: no job, no throughput.
        metrics::gauge!(names::TRAINING_TOKENS_PER_SECOND).set(0.0);
        handle
    })
}

fn builder() -> PrometheusBuilder {
    let buckets = [
        (names::HTTP_REQUEST_DURATION, SECONDS),
        (names::INFERENCE_SECONDS, SECONDS),
        (names::INFERENCE_BATCH_SIZE, TEXTS),
    ];
    buckets
        .into_iter()
        .fold(PrometheusBuilder::new(), |builder, (name, values)| {
            builder
                .set_buckets_for_metric(Matcher::Full(name.to_string()), values)
                .expect("bucket lists are not empty")
        })
}

/// `# HELP` (and units) of every metric the crate records.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        names::BUILD_INFO,
        "Always 1; the labels say which build runs (version, commit)"
    );
    describe_counter!(
        names::HTTP_REQUESTS,
        "HTTP requests answered, by method (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or \
         other), route template (or unmatched) and status"
    );
    describe_histogram!(
        names::HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request (to the response head), by method, route and status"
    );
    describe_gauge!(
        names::HTTP_CONNECTIONS,
        "Client connections open (at most --max-connections)"
    );
    describe_histogram!(
        names::INFERENCE_BATCH_SIZE,
        Unit::Count,
        "Texts classified together in one pass of the inference thread"
    );
    describe_histogram!(
        names::INFERENCE_SECONDS,
        Unit::Seconds,
        "Time the inference thread took for one batch (tokenizing included)"
    );
    describe_gauge!(
        names::INFERENCE_QUEUE_DEPTH,
        "Classification requests waiting for the inference thread (a full queue answers 429)"
    );
    describe_gauge!(
        names::LOADED_MODELS,
        "Models held in memory for /classify: `latest` and up to --max-loaded-models others"
    );
    describe_gauge!(
        names::LOADED_MODEL_BYTES,
        Unit::Bytes,
        "Bytes of the weights of the models held for /classify (an adapter's own, not its base's)"
    );
    describe_gauge!(
        names::LOADED_ADAPTERS,
        "LoRA adapters held in memory for /classify (their bases are held once each)"
    );
    describe_gauge!(
        names::LOADED_ADAPTER_BYTES,
        Unit::Bytes,
        "Bytes of the LoRA adapters held for /classify, without their bases"
    );
    describe_gauge!(names::JOBS, "Jobs by status, counted when /metrics is read");
    describe_counter!(
        names::JOBS_FINISHED,
        "Jobs that reached a final status (succeeded, failed, cancelled)"
    );
    describe_gauge!(
        names::TRAINING_TOKENS_PER_SECOND,
        "Training throughput of the newest logged step; 0 when no job is running"
    );
}

/// The method as a label: one of the methods the API knows, or `other`.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 7] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ];
    KNOWN
        .iter()
        .find(|m| *m == method)
        .map_or("other", Method::as_str)
}

/// Counts requests, records their latency by method, route and status, and
/// logs one line per request (at `debug` for health and metrics polls).
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let method = method_label(req.method());
    let response = next.run(req).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let latency_ms = (elapsed.as_secs_f64() * 1e4).round() / 10.0;
    if POLLED.contains(&path.as_str()) {
        tracing::debug!(status, latency_ms, "answered");
    } else {
        tracing::info!(status, latency_ms, "answered");
    }
    let labels = [
        ("method", method.to_string()),
        ("path", path),
        ("status", status.to_string()),
    ];
    metrics::counter!(names::HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(names::HTTP_REQUEST_DURATION, &labels).record(elapsed.as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_list_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::OPTIONS), "OPTIONS");
        assert_eq!(method_label(&Method::TRACE), "other");
        let made_up = Method::from_bytes(b"FOO").unwrap();
        assert_eq!(method_label(&made_up), "other");
    }
}
