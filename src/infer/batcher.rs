//! The inference thread: requests arrive on a bounded channel (a full channel
//! is the caller's 429), requests waiting together for the same model are
//! classified together in forward passes packed by texts and by padded
//! tokens ([`BatchLimits`]), and each answer goes back on its own oneshot. A
//! request may hold at most `max_request_tokens` tokens, so no single request
//! holds the thread for long while others wait. Tokenization and candle run
//! only here, never on the async runtime.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::{
    classify_adapters, shares_pass, BatchLimits, Classifier, InferError, Prediction, ServedModel,
};

/// How the inference thread packs work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchingConfig {
    /// Requests that may wait (more: 429).
    pub capacity: usize,
    /// Limits of one forward pass.
    pub limits: BatchLimits,
    /// Tokens one request may hold (after truncation).
    pub max_request_tokens: usize,
}

/// Why a request was not answered.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full: try again later.
    #[error("the inference queue is full ({0} requests waiting); retry later")]
    Full(usize),
    /// The inference thread has stopped.
    #[error("the inference thread has stopped")]
    Closed,
    /// Classification itself failed (an input too long or empty included).
    #[error(transparent)]
    Infer(#[from] InferError),
}

struct Request {
    model: Arc<ServedModel>,
    texts: Vec<String>,
    truncate: bool,
    reply: oneshot::Sender<Result<Vec<Prediction>, SubmitError>>,
}

/// The handle the API holds: cheap to clone.
#[derive(Debug, Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Request>,
    capacity: usize,
}

impl Batcher {
    /// Starts the inference thread. The thread ends when every handle is
    /// dropped.
    pub fn start(config: BatchingConfig) -> std::io::Result<Self> {
        let capacity = config.capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || serve(rx, config))?;
        Ok(Self { tx, capacity })
    }

    /// Requests waiting for the inference thread.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Classifies `texts` with `model`; fails at once when the queue is full.
    pub async fn classify(
        &self,
        model: Arc<ServedModel>,
        texts: Vec<String>,
        truncate: bool,
    ) -> Result<Vec<Prediction>, SubmitError> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            model,
            texts,
            truncate,
            reply,
        };
        self.tx.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SubmitError::Full(self.capacity),
            mpsc::error::TrySendError::Closed(_) => SubmitError::Closed,
        })?;
        answer.await.map_err(|_| SubmitError::Closed)?
    }
}

fn serve(mut rx: mpsc::Receiver<Request>, config: BatchingConfig) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        let mut texts = batch[0].texts.len();
        while texts < config.limits.texts {
            match rx.try_recv() {
                Ok(next) => {
                    texts += next.texts.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        // Group by model (adapters of one base together), keeping arrival
        // order within a group.
        while !batch.is_empty() {
            let model = batch[0].model.clone();
            let together = |r: &Request| {
                Arc::ptr_eq(&r.model, &model) || shares_pass(&r.model.classifier, &model.classifier)
            };
            let (group, rest): (Vec<Request>, Vec<Request>) = batch.into_iter().partition(together);
            batch = rest;
            if group.iter().all(|r| Arc::ptr_eq(&r.model, &model)) {
                run_group(&model, group, &config);
            } else {
                run_adapters(group, &config);
            }
        }
    }
}

/// Each request's texts tokenized by its own model and checked against the
/// budget; a request that fails is answered at once and left out.
fn encode_each(group: Vec<Request>, config: &BatchingConfig) -> Vec<(Request, Vec<Vec<u32>>)> {
    let mut ready = Vec::new();
    for req in group {
        let texts: Vec<&str> = req.texts.iter().map(String::as_str).collect();
        let encoded = req
            .model
            .classifier
            .encode(&texts, req.truncate)
            .and_then(|ids| within_budget(ids, config.max_request_tokens));
        match encoded {
            Ok(ids) => ready.push((req, ids)),
            Err(e) => {
                let _ = req.reply.send(Err(e.into()));
            }
        }
    }
    ready
}

/// Requests to different adapters of one base, in shared forward passes
/// (see `mixed.rs`); should a pass fail, each request is tried alone.
fn run_adapters(group: Vec<Request>, config: &BatchingConfig) {
    let started = Instant::now();
    let ready = encode_each(group, config);
    let rows: usize = ready.iter().map(|(_, ids)| ids.len()).sum();
    metrics::histogram!("tuneserve_inference_batch_size").record(rows as f64);
    let parts: Vec<(&Classifier, &[Vec<u32>])> = ready
        .iter()
        .map(|(r, ids)| (&r.model.classifier, ids.as_slice()))
        .collect();
    match classify_adapters(&parts, config.limits) {
        Ok(answers) => {
            for ((req, _), answer) in ready.into_iter().zip(answers) {
                let _ = req.reply.send(Ok(answer));
            }
        }
        Err(_) => {
            for (req, ids) in ready {
                let answer = req.model.classifier.classify_ids(&ids, config.limits);
                let _ = req.reply.send(answer.map_err(SubmitError::from));
            }
        }
    }
    metrics::histogram!("tuneserve_inference_seconds").record(started.elapsed().as_secs_f64());
}

fn run_group(model: &ServedModel, group: Vec<Request>, config: &BatchingConfig) {
    let limits = config.limits;
    let started = Instant::now();
    // Each request tokenized once: the ids serve the length check and the batch.
    let ready = encode_each(group, config);
    let all: Vec<Vec<u32>> = ready
        .iter()
        .flat_map(|(_, ids)| ids.iter().cloned())
        .collect();
    let ready: Vec<Request> = ready.into_iter().map(|(req, _)| req).collect();
    if all.is_empty() {
        return;
    }
    metrics::histogram!(crate::metric_names::INFERENCE_BATCH_SIZE).record(all.len() as f64);
    match model.classifier.classify_ids(&all, limits) {
        Ok(mut predictions) => {
            for req in ready {
                let rest = predictions.split_off(req.texts.len());
                let mine = std::mem::replace(&mut predictions, rest);
                let _ = req.reply.send(Ok(mine));
            }
        }
        Err(_) if ready.len() > 1 => {
            // One request's bad input must not fail the others: retry one by one.
            let mut rows = all.as_slice();
            for req in ready {
                let (mine, rest) = rows.split_at(req.texts.len());
                rows = rest;
                let answer = model
                    .classifier
                    .classify_ids(mine, limits)
                    .map_err(SubmitError::from);
                let _ = req.reply.send(answer);
            }
        }
        Err(e) => {
            if let Some(req) = ready.into_iter().next() {
                let _ = req.reply.send(Err(e.into()));
            }
        }
    }
    metrics::histogram!(crate::metric_names::INFERENCE_SECONDS)
        .record(started.elapsed().as_secs_f64());
}

/// `ids` when their tokens fit one request's budget.
fn within_budget(ids: Vec<Vec<u32>>, max: usize) -> Result<Vec<Vec<u32>>, InferError> {
    let tokens = ids.iter().map(Vec::len).sum();
    match tokens <= max {
        true => Ok(ids),
        false => Err(InferError::TooManyTokens { tokens, max }),
    }
}
