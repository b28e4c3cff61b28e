//! The data side of a run: tokenizing once, seeded subsets and epoch orders,
//! padded micro-batches, and evaluation over a prepared set.

use super::{EvalMetrics, Hyperparameters, TrainError};
use crate::data::{select_indices, shuffled_indices_in_stream, Encoded, Example, TextTokenizer};
use crate::model::{argmax, log_softmax, BatchInput, Gpt2ForSequenceClassification, Mode};

/// Examples prepared once: token ids (truncated) and labels.
pub(super) struct Tokenized {
    pub(super) ids: Vec<Vec<u32>>,
    pub(super) labels: Vec<u32>,
}

pub(super) fn tokenize(
    tok: &TextTokenizer,
    examples: &[&Example],
    n_labels: usize,
) -> Result<Tokenized, TrainError> {
    if let Some(e) = examples.iter().find(|e| e.label >= n_labels) {
        return Err(TrainError::Data(format!(
            "label id {} is outside the model's {n_labels} labels",
            e.label
        )));
    }
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let ids = tok.encode_many(&texts)?;
    if let Some(i) = ids.iter().position(Vec::is_empty) {
        return Err(TrainError::Data(format!(
            "example {i} has no tokens (empty text)"
        )));
    }
    Ok(Tokenized {
        ids,
        labels: examples.iter().map(|e| e.label as u32).collect(),
    })
}

/// `examples`, or the recipe's subset of `n` of them (see [`select_indices`]).
pub(super) fn subset(examples: &[Example], n: Option<usize>, seed: u64) -> Vec<&Example> {
    match n {
        Some(n) => select_indices(examples, n, seed)
            .into_iter()
            .map(|i| &examples[i])
            .collect(),
        None => examples.iter().collect(),
    }
}

/// The micro-batches of one epoch, as indices into the training set.
pub(super) fn epoch_batches(
    data: &Tokenized,
    h: &Hyperparameters,
    epoch: usize,
) -> Vec<Vec<usize>> {
    let n = data.ids.len();
    let mut order: Vec<usize> = if h.shuffle {
        shuffled_indices_in_stream(n, h.seed, 1 + epoch as u64)
    } else {
        (0..n).collect()
    };
    if h.group_by_length {
        // Hugging Face's LengthGroupedSampler: sort within mega-batches of 50 batches.
        for mega in order.chunks_mut(50 * h.batch_size) {
            mega.sort_by_key(|&i| std::cmp::Reverse(data.ids[i].len()));
        }
    }
    order.chunks(h.batch_size).map(<[usize]>::to_vec).collect()
}

pub(super) fn encode(
    data: &Tokenized,
    rows: &[usize],
    tok: &TextTokenizer,
    h: &Hyperparameters,
) -> (Encoded, Vec<u32>) {
    let seqs: Vec<&[u32]> = rows.iter().map(|&i| data.ids[i].as_slice()).collect();
    let labels = rows.iter().map(|&i| data.labels[i]).collect();
    (
        Encoded::pad(&seqs, tok.pad_id(), h.padding, tok.max_length()),
        labels,
    )
}

pub(super) fn evaluate(
    model: &Gpt2ForSequenceClassification,
    data: &Tokenized,
    tok: &TextTokenizer,
    h: &Hyperparameters,
) -> Result<EvalMetrics, TrainError> {
    let mut order: Vec<usize> = (0..data.ids.len()).collect();
    order.sort_by_key(|&i| data.ids[i].len());
    let (mut actual, mut predicted, mut loss_sum) = (Vec::new(), Vec::new(), 0f64);
    for rows in order.chunks(h.batch_size.max(32)) {
        let (enc, labels) = encode(data, rows, tok, h);
        let input = BatchInput::new(&enc, model.device())?;
        let logits = model.forward(&input, &mut Mode::Eval)?.to_vec2::<f32>()?;
        for (row, &label) in logits.iter().zip(&labels) {
            let log_probs = log_softmax(row);
            loss_sum -= log_probs[label as usize];
            actual.push(label as usize);
            predicted.push(argmax(row));
        }
    }
    Ok(EvalMetrics::compute(
        &actual,
        &predicted,
        model.config().num_labels(),
        loss_sum,
    ))
}
