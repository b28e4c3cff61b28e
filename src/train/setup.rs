//! Setting a run up: the run's settings applied to the model (dropout, length
//! limit), the trainable network over its weights, and the weights handed
//! back as plain tensors without a copy (and as a network that evaluates
//! without autograd).

use candle_core::{DType, Var};
use candle_nn::VarBuilder;

use super::{Hyperparameters, InvalidHyperparameter, Method, TrainError};
use crate::data::TextTokenizer;
use crate::model::{Adapter, Gpt2ForSequenceClassification, LoadedModel, LoraConfig, LoraNet};

/// Applies the run's settings to `model` (dropout, length limit) and returns
/// the tokenizer configured for it.
pub(super) fn configure(
    model: &mut LoadedModel,
    h: &Hyperparameters,
) -> Result<TextTokenizer, TrainError> {
    let n_positions = model.config.n_positions;
    let max_length = h.max_length.unwrap_or(n_positions);
    if max_length > n_positions {
        return Err(InvalidHyperparameter {
            field: "max_length",
            reason: format!("must be at most the model's n_positions ({n_positions})"),
        }
        .into());
    }
    if let Some(p) = h.dropout {
        let c = &mut model.config;
        (c.attn_pdrop, c.embd_pdrop, c.resid_pdrop) = (p, p, p);
    }
    let pad = model.config.pad_id();
    Ok(model.tokenizer.with_settings(pad, max_length, h.padding))
}

/// The trainable network over `model`'s weights, and its variables in
/// order (the optimizer's and the checkpoints'). Full fine-tuning trains every
/// weight, and `model`'s own copy of them is dropped; `lora` trains the
/// adapter `model` has (continued fine-tuning: it must have the run's rank,
/// scaling and targets) or a new one, with the base frozen — then the
/// returned adapter is the one trained, whose tensors the variables replace.
pub(super) fn trainable(
    model: &mut LoadedModel,
    h: &Hyperparameters,
) -> Result<(Gpt2ForSequenceClassification, Vars, Option<Adapter>), TrainError> {
    if h.method == Method::Full {
        let merged = model.merged()?;
        *model = merged;
        let (net, vars) = model.build_trainable_ordered()?;
        drop(std::mem::take(&mut model.weights));
        return Ok((net, vars, None));
    }
    let adapter = match model.adapter.take() {
        Some(a) if !a.lora.same_shape(&h.lora) => {
            return Err(InvalidHyperparameter {
                field: "lora",
                reason: format!(
                    "the model is an adapter of rank {} on {:?} (scaling {}); continuing it needs \
                     the same r, alpha, target_modules and use_rslora",
                    a.lora.r,
                    a.lora.target_modules,
                    a.lora.scaling()
                ),
            }
            .into())
        }
        Some(a) => Adapter {
            lora: LoraConfig {
                dropout: h.lora.dropout,
                ..a.lora
            },
            ..a
        },
        None => {
            let score = model.weights["score.weight"].clone();
            let device = score.device().clone();
            Adapter::init(
                &model.config,
                &h.lora,
                score,
                model.origin.clone(),
                h.seed,
                &device,
            )?
        }
    };
    let (net, vars) = model.build_adapter_trainable(&adapter)?;
    Ok((net, vars, Some(adapter)))
}

/// A run's trainable variables, named, in order.
pub(super) type Vars = Vec<(String, Var)>;

/// The parameters as plain tensors sharing the variables' storage (no copy: a
/// `gpt2` copy is 500 MB at every checkpoint). Valid as a snapshot only until
/// the next optimizer step writes the variables in place, so callers use it
/// before that (a checkpoint) or after the last step (the outcome).
pub(super) fn current_weights(
    vars: &[(String, Var)],
) -> candle_core::Result<crate::model::Weights> {
    Ok(vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
        .collect())
}

/// The network `net` over its variables' current values with autograd off:
/// the same storage (no copy), but forward passes record no graph. An
/// evaluation through `net` itself would keep every layer's activations of a
/// batch alive until its logits are dropped (at GPT-2 size, a batch of 32 rows
/// of 100 tokens: about 1 GB).
pub fn evaluation_network(
    net: &Gpt2ForSequenceClassification,
    vars: &[(String, Var)],
) -> candle_core::Result<Gpt2ForSequenceClassification> {
    let weights = current_weights(vars)?;
    if let Some(adapter) = net.adapter() {
        let lora = LoraNet::new(net.config(), adapter.config(), &weights)
            .map_err(candle_core::Error::wrap)?;
        return Ok(net.base().with_adapter(lora));
    }
    let vb = VarBuilder::from_tensors(weights, DType::F32, net.device());
    Ok(Gpt2ForSequenceClassification::new(net.config(), vb)?.with_precision(net.precision()))
}
