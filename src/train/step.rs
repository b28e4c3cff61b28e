//! One optimizer step's gradients: forward and backward over its micro-batches,
//! averaged, with the embedding's gradient scattered once per step and the
//! Conv1D layers' gradients summed by the model's gradient sink when it has one
//! (see `model::GradSink`).
//!
//! Nothing is read back from the device until the step's last backward pass
//! is queued: the micro-batches' losses are read together, once (on a GPU,
//! one synchronisation per step for the logged loss).

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;

use crate::data::Encoded;
use crate::model::{embedding_gradient, BatchInput, Gpt2ForSequenceClassification};

/// One micro-batch on the model's device (and on the host, to be packed with
/// others).
pub struct MicroBatch {
    /// The padded token ids, attention mask and pooling rows, on the model's device.
    pub input: BatchInput,
    /// Class ids `[batch]` (u32).
    pub labels: Tensor,
    encoded: Encoded,
    label_ids: Vec<u32>,
}

impl MicroBatch {
    /// The padded texts `encoded` with their class ids, uploaded to `dev`.
    pub fn new(encoded: Encoded, label_ids: Vec<u32>, dev: &Device) -> candle_core::Result<Self> {
        Ok(Self {
            input: BatchInput::new(&encoded, dev)?,
            labels: Tensor::new(label_ids.as_slice(), dev)?,
            encoded,
            label_ids,
        })
    }
}

/// Real tokens up to which consecutive micro-batches run as one packed
/// forward pass (see [`BatchInput::packed`]): every weight is read once for
/// all of them instead of once each. Beyond it the packed attention (which
/// grows with the square of the tokens) would cost more than it saves.
const PACK_TOKENS: usize = 512;

/// `group` as one packed forward input: the texts, their labels, and each
/// text's share of the micro-batch mean it belongs to (`1 / batch size`);
/// `None` when packing does not apply (one micro-batch, too many tokens, a
/// text without tokens).
fn pack(group: &[MicroBatch]) -> candle_core::Result<Option<(BatchInput, Tensor, Tensor)>> {
    let tokens: usize = group.iter().map(|m| m.encoded.real_tokens()).sum();
    let Some(first) = group.first() else {
        return Ok(None);
    };
    if group.len() < 2 || tokens > PACK_TOKENS {
        return Ok(None);
    }
    let dev = first.labels.device();
    let encoded: Vec<&Encoded> = group.iter().map(|m| &m.encoded).collect();
    let Some(input) = BatchInput::packed(&encoded, dev)? else {
        return Ok(None);
    };
    let labels: Vec<u32> = group
        .iter()
        .flat_map(|m| m.label_ids.iter().copied())
        .collect();
    let shares: Vec<f32> = group
        .iter()
        .flat_map(|m| std::iter::repeat_n(1.0 / m.label_ids.len() as f32, m.label_ids.len()))
        .collect();
    let n = labels.len();
    Ok(Some((
        input,
        Tensor::from_vec(labels, n, dev)?,
        Tensor::from_vec(shares, n, dev)?,
    )))
}

/// Cross-entropy of each row of `logits` `[rows, classes]` against `labels`.
fn row_losses(logits: &Tensor, labels: &Tensor) -> candle_core::Result<Tensor> {
    let log_probs = candle_nn::ops::log_softmax(logits, 1)?;
    log_probs
        .gather(&labels.unsqueeze(1)?, 1)?
        .squeeze(1)?
        .neg()
}

/// Seconds a step spent in each phase.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepTiming {
    /// Forward passes and losses.
    pub forward_s: f64,
    /// Backward passes, gradient accumulation and the embedding scatter.
    pub backward_s: f64,
}

/// Padded tokens whose activations one backward pass may keep: consecutive
/// micro-batches up to this size share one backward pass, so each parameter's
/// gradient is allocated and accumulated once per group instead of once per
/// micro-batch (for the recipe's batches of one short text, that bookkeeping
/// costs as much as the arithmetic). Larger micro-batches go alone, keeping peak
/// memory that of one micro-batch.
const TOKENS_PER_BACKWARD: usize = 1024;

/// Consecutive runs of `micro` within [`TOKENS_PER_BACKWARD`] (at least one each).
fn backward_groups(micro: &[MicroBatch]) -> Vec<&[MicroBatch]> {
    let mut groups = Vec::new();
    let (mut start, mut tokens) = (0, 0);
    for (i, mb) in micro.iter().enumerate() {
        let t = mb.input.ids.elem_count();
        if i > start && tokens + t > TOKENS_PER_BACKWARD {
            groups.push(&micro[start..i]);
            (start, tokens) = (i, 0);
        }
        tokens += t;
    }
    if start < micro.len() {
        groups.push(&micro[start..]);
    }
    groups
}

/// A token-embedding leaf variable and the token ids it was cut for.
type Leaf = (Tensor, Var);

/// The forward passes of one backward group: the group's share of the
/// step's objective (its micro-batches' mean losses over `n`), and each
/// token-embedding leaf with the ids it was cut for. The micro-batches run as
/// one packed pass when [`pack`] allows, one after another otherwise; each
/// loss value (without its graph) goes to `losses`.
fn forward_group(
    net: &Gpt2ForSequenceClassification,
    group: &[MicroBatch],
    n: f64,
    rng: &mut ChaCha8Rng,
    losses: &mut Vec<Tensor>,
) -> candle_core::Result<(Option<Tensor>, Vec<Leaf>)> {
    let mut leaves = Vec::with_capacity(group.len());
    if let Some((input, labels, shares)) = pack(group)? {
        // The sum of the micro-batches' mean losses, in one pass.
        let (logits, tokens) = net.forward_train(&input, rng)?;
        let loss = (row_losses(&logits, &labels)? * shares)?.sum_all()?;
        losses.push(loss.detach());
        leaves.extend(tokens.map(|t| (input.ids.clone(), t)));
        return Ok((Some((loss / n)?), leaves));
    }
    let mut objective: Option<Tensor> = None;
    for mb in group {
        let (logits, tokens) = net.forward_train(&mb.input, rng)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &mb.labels)?;
        losses.push(loss.detach()); // the value only: the graph goes with its backward
        let share = (loss / n)?;
        objective = Some(match objective {
            Some(o) => (o + share)?,
            None => share,
        });
        leaves.extend(tokens.map(|t| (mb.input.ids.clone(), t)));
    }
    Ok((objective, leaves))
}

/// The gradients of the mean loss over `micro` for each of `vars` (in order;
/// zeros for a variable the loss does not reach), that mean loss, and where the
/// time went.
///
/// Forward passes run in the micro-batches' order (dropout draws from `rng`
/// exactly as one pass after another would); see [`TOKENS_PER_BACKWARD`] for how
/// they share backward passes. `wte.weight` gets its gradient from the
/// token-embedding leaves of [`Gpt2ForSequenceClassification::forward_train`],
/// scattered once. When the model has a gradient sink, the Conv1D layers'
/// gradients are views of its buffers: valid until the next call.
pub fn step_gradients(
    net: &Gpt2ForSequenceClassification,
    vars: &[(String, Var)],
    micro: &[MicroBatch],
    rng: &mut ChaCha8Rng,
) -> candle_core::Result<(Vec<Tensor>, f64, StepTiming)> {
    let n = micro.len() as f64;
    let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
    let (mut ids, mut row_grads) = (Vec::new(), Vec::new());
    let mut losses = Vec::with_capacity(micro.len());
    let mut timing = StepTiming::default();
    let sink = net.gradient_sink();
    if let Some(sink) = sink {
        sink.begin_step();
    }
    for group in backward_groups(micro) {
        let start = Instant::now();
        let (objective, leaves) = forward_group(net, group, n, rng, &mut losses)?;
        let Some(objective) = objective else { continue };
        let forward_done = Instant::now();
        timing.forward_s += (forward_done - start).as_secs_f64();
        let store = objective.backward()?;
        for ((_, var), acc) in vars.iter().zip(grads.iter_mut()) {
            if let Some(g) = store.get(var.as_tensor()) {
                *acc = Some(match acc.take() {
                    Some(a) => (a + g)?,
                    None => g.clone(),
                });
            }
        }
        for (mb_ids, tokens) in leaves {
            if let Some(g) = store.get(tokens.as_tensor()) {
                ids.push(mb_ids);
                row_grads.push(g.clone());
            }
        }
        timing.backward_s += forward_done.elapsed().as_secs_f64();
    }
    let scatter_start = Instant::now();
    let grads = grads
        .into_iter()
        .zip(vars)
        .map(|(g, (name, v))| {
            if let Some(g) = g {
                return Ok(g);
            }
            if let Some(g) = sink.map(|s| s.gradient(v)).transpose()?.flatten() {
                return Ok(g);
            }
            if name == "transformer.wte.weight" && !ids.is_empty() {
                return embedding_gradient(v.as_tensor(), &ids, &row_grads);
            }
            v.zeros_like()
        })
        .collect::<candle_core::Result<_>>()?;
    timing.backward_s += scatter_start.elapsed().as_secs_f64();
    let loss_sum = match losses.len() {
        0 => 0.0,
        _ => Tensor::stack(&losses, 0)?
            .to_vec1::<f32>()?
            .into_iter()
            .map(f64::from)
            .sum(),
    };
    Ok((grads, loss_sum / n, timing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn micro(t: usize) -> MicroBatch {
        let row = vec![1u32; t];
        let enc = crate::data::Encoded::pad(&[&row], 0, crate::data::Padding::Longest, t);
        MicroBatch::new(enc, vec![0], &Device::Cpu).unwrap()
    }

    #[test]
    fn groups_fill_the_token_budget_in_order() {
        let sizes = |ts: &[usize]| {
            let mbs: Vec<_> = ts.iter().map(|&t| micro(t)).collect();
            backward_groups(&mbs)
                .iter()
                .map(|g| {
                    g.iter()
                        .map(|m| m.input.ids.elem_count())
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(sizes(&[30, 40, 50, 60]), vec![vec![30, 40, 50, 60]]);
        assert_eq!(sizes(&[600, 500, 400]), vec![vec![600], vec![500, 400]]);
        assert_eq!(sizes(&[2048, 10]), vec![vec![2048], vec![10]]);
        assert!(sizes(&[]).is_empty());
    }
}
