//! The inference thread: requests arrive on a bounded channel (a full channel
//! is the caller's 429), requests waiting together for the same model are
//! classified as one batch of at most `max_batch_size` texts, and each answer
//! goes back on its own oneshot. Tokenization and candle run only here, never
//! on the async runtime.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::{InferError, Prediction, ServedModel};

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
    /// Starts the inference thread with a queue of `capacity` requests and
    /// batches of at most `max_batch_size` texts. The thread ends when every
    /// handle is dropped.
    pub fn start(capacity: usize, max_batch_size: usize) -> std::io::Result<Self> {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || serve(rx, max_batch_size.max(1)))?;
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

fn serve(mut rx: mpsc::Receiver<Request>, max_batch_size: usize) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        let mut texts = batch[0].texts.len();
        while texts < max_batch_size {
            match rx.try_recv() {
                Ok(next) => {
                    texts += next.texts.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        // Group by model, keeping arrival order within a group.
        while !batch.is_empty() {
            let model = batch[0].model.clone();
            let (group, rest): (Vec<Request>, Vec<Request>) = batch
                .into_iter()
                .partition(|r| Arc::ptr_eq(&r.model, &model));
            batch = rest;
            run_group(&model, group, max_batch_size);
        }
    }
}

fn run_group(model: &ServedModel, group: Vec<Request>, max_batch_size: usize) {
    let started = Instant::now();
    // Each request tokenized once: the ids serve the length check and the batch.
    let mut ready = Vec::new();
    let mut all: Vec<Vec<u32>> = Vec::new();
    for req in group {
        let texts: Vec<&str> = req.texts.iter().map(String::as_str).collect();
        match model.classifier.encode(&texts, req.truncate) {
            Ok(ids) => {
                all.extend(ids);
                ready.push(req);
            }
            Err(e) => {
                let _ = req.reply.send(Err(e.into()));
            }
        }
    }
    if all.is_empty() {
        return;
    }
    metrics::histogram!("tuneserve_inference_batch_size").record(all.len() as f64);
    match model.classifier.classify_ids(&all, max_batch_size) {
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
                    .classify_ids(mine, max_batch_size)
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
    metrics::histogram!("tuneserve_inference_seconds").record(started.elapsed().as_secs_f64());
}
