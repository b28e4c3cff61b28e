//! LoRA adapters in the forward pass, several in one batch.
//!
//! A batch is cut into consecutive [`RowGroup`]s, each with its own adapter
//! (or none: the base model's own head). Every row goes through the base's
//! matrix products together; each group then adds its own low-rank update
//! `scaling · dropout(x)·Aᵀ·Bᵀ` to the rows it owns and takes its logits from
//! its own head, so adapters with different label sets share one forward pass.

use candle_core::Tensor;

use super::layers::{dropout, Mode};
use super::lora::{lora_names, LoraConfig, MODULES};
use super::precision::Precision;
use super::{Gpt2Config, ModelError, Weights};

/// An adapter's tensors laid out for the forward pass.
#[derive(Debug, Clone)]
pub struct LoraNet {
    /// Per block, per module of [`MODULES`]: its `(A [r, in], B [out, r])`.
    layers: Vec<[Option<(Tensor, Tensor)>; 4]>,
    /// `[num_labels, n_embd]`.
    score: Tensor,
    config: LoraConfig,
}

impl LoraNet {
    /// Arranges `weights` (named as `lora::adapter_parameter_shapes`) for a
    /// model of shape `cfg`; a missing or misshapen tensor is an error naming it.
    pub fn new(cfg: &Gpt2Config, lora: &LoraConfig, weights: &Weights) -> Result<Self, ModelError> {
        let get = |name: &str, shape: &[usize]| -> Result<Tensor, ModelError> {
            let t = weights.get(name).ok_or_else(|| ModelError::Adapter {
                reason: format!("missing tensor `{name}`"),
            })?;
            if t.dims() != shape {
                return Err(ModelError::Adapter {
                    reason: format!("tensor `{name}` is {:?}, expected {shape:?}", t.dims()),
                });
            }
            Ok(t.clone())
        };
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for layer in 0..cfg.n_layer {
            let mut modules: [Option<(Tensor, Tensor)>; 4] = Default::default();
            for (slot, module) in modules.iter_mut().zip(MODULES) {
                if lora.adapts(module) {
                    let (n_in, n_out) = super::lora::module_dims(cfg, module);
                    let (a, b) = lora_names(layer, module);
                    *slot = Some((get(&a, &[lora.r, n_in])?, get(&b, &[n_out, lora.r])?));
                }
            }
            layers.push(modules);
        }
        let score = weights
            .get("score.weight")
            .ok_or_else(|| ModelError::Adapter {
                reason: "missing tensor `score.weight`".into(),
            })?;
        if score.rank() != 2 || score.dim(1)? != cfg.n_embd {
            return Err(ModelError::Adapter {
                reason: format!(
                    "score.weight is {:?}, expected [labels, {}]",
                    score.dims(),
                    cfg.n_embd
                ),
            });
        }
        Ok(Self {
            layers,
            score: score.clone(),
            config: lora.clone(),
        })
    }

    /// Its rank, scaling, dropout and target layers.
    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// `[num_labels, n_embd]`.
    pub(super) fn score(&self) -> &Tensor {
        &self.score
    }

    /// The number of classes of the adapter's head.
    pub fn score_rows(&self) -> usize {
        self.score.dims()[0]
    }
}

/// Consecutive rows of a batch that share an adapter.
#[derive(Debug, Clone, Copy)]
pub struct RowGroup<'a> {
    /// Rows of the batch (texts, not tokens).
    pub rows: usize,
    /// Their adapter; `None` for the base model with its own head.
    pub adapter: Option<&'a LoraNet>,
}

/// The row groups of one forward pass over sequences of `seq` tokens.
#[derive(Debug, Clone, Copy)]
pub(super) struct Adapted<'a> {
    pub groups: &'a [RowGroup<'a>],
    pub seq: usize,
}

impl<'a> Adapted<'a> {
    /// The low-rank update of block `layer`'s module `module` (an index into
    /// [`MODULES`]) for `x` `[rows·seq, in]`, in `precision`'s dtype; `None`
    /// when no group adapts that module.
    pub fn delta(
        &self,
        (layer, module): (usize, usize),
        x: &Tensor,
        n_out: usize,
        (precision, mode): (Precision, &mut Mode),
    ) -> candle_core::Result<Option<Tensor>> {
        fn lora<'g>(
            g: &RowGroup<'g>,
            at: (usize, usize),
        ) -> Option<(&'g LoraNet, &'g (Tensor, Tensor))> {
            let a = g.adapter?;
            Some((a, a.layers.get(at.0)?[at.1].as_ref()?))
        }
        let lora = |g: &RowGroup<'a>| lora(g, (layer, module));
        if self.groups.iter().all(|g| lora(g).is_none()) {
            return Ok(None);
        }
        let dtype = precision.compute_dtype();
        let mut parts = Vec::with_capacity(self.groups.len());
        let mut start = 0;
        let whole = self.groups.len() == 1; // packed texts: one group, every row
        for g in self.groups {
            let n = if whole { x.dim(0)? } else { g.rows * self.seq };
            parts.push(match lora(g) {
                Some((net, (a, b))) => {
                    let x = dropout(&x.narrow(0, start, n)?, net.config.dropout as f32, mode)?;
                    let (a, b) = (precision.cast(a)?, precision.cast(b)?);
                    let low = precision.cast(&x)?.matmul(&a.t()?)?;
                    (low.matmul(&b.t()?)? * net.config.scaling())?
                }
                None => Tensor::zeros((n, n_out), dtype, x.device())?,
            });
            start += n;
        }
        if parts.len() == 1 {
            return Ok(parts.pop());
        }
        Ok(Some(Tensor::cat(&parts, 0)?))
    }
}

/// Whether every group's rows add up to the batch.
pub(super) fn covers(groups: &[RowGroup], batch: usize) -> bool {
    groups.iter().map(|g| g.rows).sum::<usize>() == batch
}
