//! GPT-2 with a sequence-classification head, in candle, matching Hugging Face's
//! `GPT2ForSequenceClassification` number for number.
//!
//! Pre-LayerNorm blocks, learned positions, causal self-attention, `gelu_new`,
//! Conv1D weights stored `[in, out]`. The head is `score = Linear(n_embd,
//! num_labels, bias=False)` applied at each row's last non-pad token: the
//! rightmost position whose id is not the pad id, or position 0 when every id is
//! the pad id (Hugging Face takes `argmax` of `position * (id != pad)`).
//!
//! The weights are f32; under [`Precision::Bf16`] the matrix products run in
//! bf16 (see `precision.rs` for what stays f32).
//!
//! Parameter names are those of Hugging Face's classifier layout
//! (`transformer.h.0.attn.c_attn.weight`, …, `score.weight`); [`parameter_shapes`]
//! lists them all, and every other part of the crate goes through it.

use std::sync::Arc;

use candle_core::{Device, Module, Tensor, Var};
use candle_nn::VarBuilder;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::config::{Activation, Gpt2Config};
use super::input::BatchInput;
use super::ops::{self, GradSink};
use super::precision::{to_f32, Precision};

/// Every parameter of the classifier with its shape, in a stable order.
pub fn parameter_shapes(cfg: &Gpt2Config) -> Vec<(String, Vec<usize>)> {
    let e = cfg.n_embd;
    let mut out = vec![
        (
            "transformer.wte.weight".to_string(),
            vec![cfg.vocab_size, e],
        ),
        (
            "transformer.wpe.weight".to_string(),
            vec![cfg.n_positions, e],
        ),
    ];
    for i in 0..cfg.n_layer {
        let p = format!("transformer.h.{i}");
        let block = [
            ("ln_1.weight", vec![e]),
            ("ln_1.bias", vec![e]),
            ("attn.c_attn.weight", vec![e, 3 * e]),
            ("attn.c_attn.bias", vec![3 * e]),
            ("attn.c_proj.weight", vec![e, e]),
            ("attn.c_proj.bias", vec![e]),
            ("ln_2.weight", vec![e]),
            ("ln_2.bias", vec![e]),
            ("mlp.c_fc.weight", vec![e, cfg.n_inner]),
            ("mlp.c_fc.bias", vec![cfg.n_inner]),
            ("mlp.c_proj.weight", vec![cfg.n_inner, e]),
            ("mlp.c_proj.bias", vec![e]),
        ];
        out.extend(block.into_iter().map(|(n, s)| (format!("{p}.{n}"), s)));
    }
    out.push(("transformer.ln_f.weight".to_string(), vec![e]));
    out.push(("transformer.ln_f.bias".to_string(), vec![e]));
    out.push(("score.weight".to_string(), vec![cfg.num_labels(), e]));
    out
}

/// Whether a forward pass trains (dropout on, drawn from a seeded generator) or
/// evaluates (dropout off).
pub enum Mode<'a> {
    /// Inference: deterministic, no dropout.
    Eval,
    /// Training: dropout masks drawn from this generator.
    Train(&'a mut ChaCha8Rng),
}

/// LayerNorm that trains (candle-nn's fused one has no backward).
#[derive(Debug, Clone)]
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn new(vb: VarBuilder, size: usize, eps: f64) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get(size, "weight")?,
            bias: vb.get(size, "bias")?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// Hugging Face's Conv1D: `y = x @ W + b` with `W` stored `[in, out]`.
#[derive(Debug, Clone)]
struct Conv1D {
    weight: Tensor,
    bias: Tensor,
    /// Takes the weight gradients, when the model trains with one.
    sink: Option<Arc<GradSink>>,
}

impl Conv1D {
    fn new(vb: VarBuilder, n_in: usize, n_out: usize) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get((n_in, n_out), "weight")?,
            bias: vb.get(n_out, "bias")?,
            sink: None,
        })
    }
}

impl Conv1D {
    /// `x` is `[rows, in]`; the product runs in `precision`'s dtype, and so
    /// does the result.
    fn forward(&self, x: &Tensor, precision: Precision) -> candle_core::Result<Tensor> {
        let cast = |t: &Tensor| precision.cast(t);
        let (w, b) = (cast(&self.weight)?, cast(&self.bias)?);
        // A cast copy is not the variable: its gradient must reach the variable
        // through candle's autograd.
        let sink = self.sink.as_ref().filter(|_| w.id() == self.weight.id());
        ops::linear(&cast(x)?, &w, &b, sink)
    }
}

/// Inverted dropout with the mask drawn on the host from the step's seeded
/// generator, on every device: a run's masks are the same on a CPU and a GPU
/// (so are its losses, up to rounding), and no device random-number library is
/// needed. On a GPU the mask is an upload, never a copy back.
fn dropout(x: &Tensor, p: f32, mode: &mut Mode) -> candle_core::Result<Tensor> {
    let Mode::Train(rng) = mode else {
        return Ok(x.clone());
    };
    if p == 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| if rng.random::<f32>() < p { 0.0 } else { keep })
        .collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
    x.mul(&mask)
}

#[derive(Debug, Clone)]
struct Attention {
    c_attn: Conv1D,
    c_proj: Conv1D,
    n_head: usize,
    /// Multiplies the queries: `1/sqrt(head_dim)` and optionally `1/(layer+1)`.
    scale: f64,
}

impl Attention {
    /// `x` is `[b*t, e]`, `mask` is additive `[b, 1, t, t]` (f32); returns
    /// `[b*t, e]` in the compute dtype. The softmax runs in f32.
    fn forward(
        &self,
        x: &Tensor,
        (b, t): (usize, usize),
        mask: &Tensor,
        pdrop: (f32, f32),
        (precision, mode): (Precision, &mut Mode),
    ) -> candle_core::Result<Tensor> {
        let e = x.dim(1)?;
        let d = e / self.n_head;
        let qkv = self
            .c_attn
            .forward(x, precision)?
            .reshape((b, t, 3, self.n_head, d))?;
        let head = |i: usize| qkv.narrow(2, i, 1)?.squeeze(2)?.transpose(1, 2);
        let q = (head(0)?.contiguous()? * self.scale)?;
        let k_t = head(1)?.transpose(2, 3)?.contiguous()?;
        let v = head(2)?.contiguous()?;
        let probs = ops::masked_softmax(&to_f32(&q.matmul(&k_t)?)?, mask)?;
        let probs = precision.cast(&dropout(&probs, pdrop.0, mode)?)?;
        let y = probs.matmul(&v)?.transpose(1, 2)?.reshape((b * t, e))?;
        dropout(&self.c_proj.forward(&y, precision)?, pdrop.1, mode)
    }
}

#[derive(Debug, Clone)]
struct Block {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    c_fc: Conv1D,
    c_proj: Conv1D,
    activation: Activation,
}

impl Block {
    fn new(vb: VarBuilder, cfg: &Gpt2Config, layer: usize) -> candle_core::Result<Self> {
        let e = cfg.n_embd;
        let mut scale = 1.0;
        if cfg.scale_attn_weights {
            scale /= (cfg.head_dim() as f64).sqrt();
        }
        if cfg.scale_attn_by_inverse_layer_idx {
            scale /= (layer + 1) as f64;
        }
        Ok(Self {
            ln_1: LayerNorm::new(vb.pp("ln_1"), e, cfg.layer_norm_epsilon)?,
            attn: Attention {
                c_attn: Conv1D::new(vb.pp("attn.c_attn"), e, 3 * e)?,
                c_proj: Conv1D::new(vb.pp("attn.c_proj"), e, e)?,
                n_head: cfg.n_head,
                scale,
            },
            ln_2: LayerNorm::new(vb.pp("ln_2"), e, cfg.layer_norm_epsilon)?,
            c_fc: Conv1D::new(vb.pp("mlp.c_fc"), e, cfg.n_inner)?,
            c_proj: Conv1D::new(vb.pp("mlp.c_proj"), cfg.n_inner, e)?,
            activation: cfg.activation,
        })
    }

    /// `x` is the f32 residual stream `[b*t, e]`.
    fn forward(
        &self,
        x: &Tensor,
        bt: (usize, usize),
        mask: &Tensor,
        cfg: &Gpt2Config,
        (precision, mode): (Precision, &mut Mode),
    ) -> candle_core::Result<Tensor> {
        let a = self.ln_1.forward(x)?;
        let pdrop = (cfg.attn_pdrop, cfg.resid_pdrop);
        let attn = self.attn.forward(&a, bt, mask, pdrop, (precision, mode))?;
        let x = (x + to_f32(&attn)?)?;
        let h = self.c_fc.forward(&self.ln_2.forward(&x)?, precision)?;
        let h = match self.activation {
            Activation::GeluTanh => ops::gelu_tanh(&h)?,
            Activation::GeluErf => h.gelu_erf()?,
            Activation::Relu => h.relu()?,
        };
        let h = dropout(&self.c_proj.forward(&h, precision)?, cfg.resid_pdrop, mode)?;
        x + to_f32(&h)?
    }
}

/// GPT-2 body plus a linear classification head over the last non-pad token.
#[derive(Debug, Clone)]
pub struct Gpt2ForSequenceClassification {
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    /// `[num_labels, n_embd]`.
    score: Tensor,
    config: Gpt2Config,
    precision: Precision,
    /// Where the Conv1D layers' weight gradients go, if not to candle's autograd.
    sink: Option<Arc<GradSink>>,
}

impl Gpt2ForSequenceClassification {
    /// Builds the model from tensors named as in [`parameter_shapes`].
    ///
    /// The builder decides where the weights come from: a map of loaded tensors
    /// for inference, a `VarMap` for training (so gradients reach its variables).
    pub fn new(cfg: &Gpt2Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let t = vb.pp("transformer");
        let blocks = (0..cfg.n_layer)
            .map(|i| Block::new(t.pp(format!("h.{i}")), cfg, i))
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            wte: t.get((cfg.vocab_size, cfg.n_embd), "wte.weight")?,
            wpe: t.get((cfg.n_positions, cfg.n_embd), "wpe.weight")?,
            blocks,
            ln_f: LayerNorm::new(t.pp("ln_f"), cfg.n_embd, cfg.layer_norm_epsilon)?,
            score: vb.get((cfg.num_labels(), cfg.n_embd), "score.weight")?,
            config: cfg.clone(),
            precision: Precision::Fp32,
            sink: None,
        })
    }

    /// The model running its matrix products in `precision` (the weights stay
    /// f32; see [`Precision`]).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The model with its Conv1D layers' weight gradients summed by a
    /// [`GradSink`] instead of candle's autograd (on the host in f32; elsewhere
    /// they stay with autograd): a backward pass then leaves them out of its
    /// gradient store, and [`Self::gradient_sink`] has them. For training loops
    /// that read gradients once per step, as `train::step_gradients` does.
    pub fn with_gradient_sink(mut self) -> Self {
        let sink = Arc::new(GradSink::default());
        for block in &mut self.blocks {
            let attn = &mut block.attn;
            for layer in [
                &mut attn.c_attn,
                &mut attn.c_proj,
                &mut block.c_fc,
                &mut block.c_proj,
            ] {
                layer.sink = Some(sink.clone());
            }
        }
        self.sink = Some(sink);
        self
    }

    /// The sink of [`Self::with_gradient_sink`], if the model has one.
    pub fn gradient_sink(&self) -> Option<&GradSink> {
        self.sink.as_deref()
    }

    /// The arithmetic the model runs in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.wte.device()
    }

    /// Classification logits `[batch, num_labels]` (f32) of one padded batch, pooled
    /// as the module docs say (the pooling rows come from the host, see
    /// [`BatchInput`]).
    pub fn forward(&self, input: &BatchInput, mode: &mut Mode) -> candle_core::Result<Tensor> {
        let tokens = self.wte.embedding(&input.ids.flatten_all()?)?;
        self.forward_from_tokens(input, tokens, mode)
    }

    /// A training forward pass whose token embeddings `[batch·seq, n_embd]` are a
    /// leaf variable of their own, cut from `wte.weight`.
    ///
    /// The leaf's gradient is all the embedding matrix needs: scattered onto its
    /// rows once per optimizer step (see [`embedding_gradient`]), it replaces the
    /// dense `vocab × n_embd` gradient candle's autograd would build, zero and
    /// accumulate for every micro-batch — most of a short batch's step.
    pub fn forward_train(
        &self,
        input: &BatchInput,
        rng: &mut ChaCha8Rng,
    ) -> candle_core::Result<(Tensor, Var)> {
        let ids = input.ids.flatten_all()?;
        let tokens = Var::from_tensor(&self.wte.detach().embedding(&ids)?)?;
        let logits =
            self.forward_from_tokens(input, tokens.as_tensor().clone(), &mut Mode::Train(rng))?;
        Ok((logits, tokens))
    }

    fn forward_from_tokens(
        &self,
        input: &BatchInput,
        tokens: Tensor,
        mode: &mut Mode,
    ) -> candle_core::Result<Tensor> {
        let (b, t) = input.ids.dims2()?;
        if t > self.config.n_positions {
            candle_core::bail!(
                "sequence of {t} tokens is longer than the model's {} positions",
                self.config.n_positions
            );
        }
        let dev = self.device();
        let positions = Tensor::arange(0u32, t as u32, dev)?;
        let pos = self.wpe.embedding(&positions)?.repeat((b, 1))?;
        let mut x = dropout(&(tokens + pos)?, self.config.embd_pdrop, mode)?;
        let p = self.precision;
        for block in &self.blocks {
            x = block.forward(&x, (b, t), &input.mask, &self.config, (p, mode))?;
        }
        let pooled = self.ln_f.forward(&x.index_select(&input.pool_rows, 0)?)?;
        to_f32(&p.cast(&pooled)?.matmul(&p.cast(&self.score)?.t()?)?)
    }
}
