//! One optimizer step's gradients: forward and backward over its micro-batches,
//! averaged, with the embedding's gradient scattered once per step.

use std::time::Instant;

use candle_core::{Tensor, Var};
use rand_chacha::ChaCha8Rng;

use crate::model::{embedding_gradient, Gpt2ForSequenceClassification};

/// One micro-batch on the model's device: `[b, t]` ids and mask, `[b]` labels.
pub struct MicroBatch {
    /// Token ids (u32).
    pub ids: Tensor,
    /// Attention mask (1 = token).
    pub mask: Tensor,
    /// Class ids (u32).
    pub labels: Tensor,
}

/// Seconds a step spent in each phase.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepTiming {
    /// Forward passes and losses.
    pub forward_s: f64,
    /// Backward passes, gradient accumulation and the embedding scatter.
    pub backward_s: f64,
}

/// The gradients of the mean loss over `micro` for each of `vars` (in order;
/// zeros for a variable the loss does not reach), that mean loss, and where the
/// time went.
///
/// `wte.weight` gets its gradient from the token-embedding leaves of
/// [`Gpt2ForSequenceClassification::forward_train`], scattered once.
pub fn step_gradients(
    net: &Gpt2ForSequenceClassification,
    vars: &[(String, Var)],
    micro: &[MicroBatch],
    rng: &mut ChaCha8Rng,
) -> candle_core::Result<(Vec<Tensor>, f64, StepTiming)> {
    let n = micro.len() as f64;
    let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
    let (mut ids, mut row_grads) = (Vec::new(), Vec::new());
    let mut loss_sum = 0f64;
    let mut timing = StepTiming::default();
    for mb in micro {
        let start = Instant::now();
        let (logits, tokens) = net.forward_train(&mb.ids, Some(&mb.mask), rng)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &mb.labels)?;
        loss_sum += f64::from(loss.to_scalar::<f32>()?);
        let forward_done = Instant::now();
        timing.forward_s += (forward_done - start).as_secs_f64();
        let store = (loss / n)?.backward()?;
        for ((_, var), acc) in vars.iter().zip(grads.iter_mut()) {
            if let Some(g) = store.get(var.as_tensor()) {
                *acc = Some(match acc.take() {
                    Some(a) => (a + g)?,
                    None => g.clone(),
                });
            }
        }
        if let Some(g) = store.get(tokens.as_tensor()) {
            ids.push(mb.ids.clone());
            row_grads.push(g.clone());
        }
        timing.backward_s += forward_done.elapsed().as_secs_f64();
    }
    let scatter_start = Instant::now();
    let grads = grads
        .into_iter()
        .zip(vars)
        .map(|(g, (name, v))| match g {
            Some(g) => Ok(g),
            None if name == "transformer.wte.weight" && !ids.is_empty() => {
                embedding_gradient(v.as_tensor(), &ids, &row_grads)
            }
            None => v.zeros_like(),
        })
        .collect::<candle_core::Result<_>>()?;
    timing.backward_s += scatter_start.elapsed().as_secs_f64();
    Ok((grads, loss_sum / n, timing))
}
