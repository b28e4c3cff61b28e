//! GPT-2 with a sequence-classification head, in candle, matching Hugging Face's
//! `GPT2ForSequenceClassification` number for number.
//!
//! Pre-LayerNorm blocks, learned positions, causal self-attention, `gelu_new`,
//! Conv1D weights stored `[in, out]`. The head is `score = Linear(n_embd,
//! num_labels, bias=False)` applied at each row's last non-pad token: the
//! rightmost position whose id is not the pad id, or position 0 when every id is
//! the pad id (Hugging Face takes `argmax` of `position * (id != pad)`).
//!
//! Parameter names are those of Hugging Face's classifier layout
//! (`transformer.h.0.attn.c_attn.weight`, …, `score.weight`); [`parameter_shapes`]
//! lists them all, and every other part of the crate goes through it.

use candle_core::{Device, Module, Tensor, Var};
use candle_nn::VarBuilder;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::config::{Activation, Gpt2Config};
use super::ops;
use crate::data::Encoded;

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
}

impl Conv1D {
    fn new(vb: VarBuilder, n_in: usize, n_out: usize) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get((n_in, n_out), "weight")?,
            bias: vb.get(n_out, "bias")?,
        })
    }
}

impl Module for Conv1D {
    /// `x` is `[rows, in]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        ops::linear(x, &self.weight, &self.bias)
    }
}

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
    /// `x` is `[b*t, e]`, `mask` is additive `[b, 1, t, t]`; returns `[b*t, e]`.
    fn forward(
        &self,
        x: &Tensor,
        (b, t): (usize, usize),
        mask: &Tensor,
        pdrop: (f32, f32),
        mode: &mut Mode,
    ) -> candle_core::Result<Tensor> {
        let e = x.dim(1)?;
        let d = e / self.n_head;
        let qkv = self.c_attn.forward(x)?.reshape((b, t, 3, self.n_head, d))?;
        let head = |i: usize| qkv.narrow(2, i, 1)?.squeeze(2)?.transpose(1, 2);
        let q = (head(0)?.contiguous()? * self.scale)?;
        let k_t = head(1)?.transpose(2, 3)?.contiguous()?;
        let v = head(2)?.contiguous()?;
        let probs = ops::masked_softmax(&q.matmul(&k_t)?, mask)?;
        let probs = dropout(&probs, pdrop.0, mode)?;
        let y = probs.matmul(&v)?.transpose(1, 2)?.reshape((b * t, e))?;
        dropout(&self.c_proj.forward(&y)?, pdrop.1, mode)
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

    fn forward(
        &self,
        x: &Tensor,
        bt: (usize, usize),
        mask: &Tensor,
        cfg: &Gpt2Config,
        mode: &mut Mode,
    ) -> candle_core::Result<Tensor> {
        let a = self.ln_1.forward(x)?;
        let pdrop = (cfg.attn_pdrop, cfg.resid_pdrop);
        let x = (x + self.attn.forward(&a, bt, mask, pdrop, mode)?)?;
        let h = self.c_fc.forward(&self.ln_2.forward(&x)?)?;
        let h = match self.activation {
            Activation::GeluTanh => ops::gelu_tanh(&h)?,
            Activation::GeluErf => h.gelu_erf()?,
            Activation::Relu => h.relu()?,
        };
        let h = dropout(&self.c_proj.forward(&h)?, cfg.resid_pdrop, mode)?;
        x + h
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
        })
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.wte.device()
    }

    /// Classification logits `[batch, num_labels]` of one padded batch, pooled
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
        let mask = input.mask.to_dtype(x.dtype())?;
        for block in &self.blocks {
            x = block.forward(&x, (b, t), &mask, &self.config, mode)?;
        }
        let pooled = self.ln_f.forward(&x.index_select(&input.pool_rows, 0)?)?;
        pooled.matmul(&self.score.t()?)
    }
}

/// One padded batch on the model's device, built from what the host already
/// knows about it ([`Encoded`]): the forward pass never copies anything back
/// from the device to find out.
#[derive(Debug, Clone)]
pub struct BatchInput {
    /// Token ids `[batch, seq]` (u32, right-padded).
    pub ids: Tensor,
    /// Additive attention mask `[batch, 1, seq, seq]`: 0 where query `q` may
    /// attend to key `k` (`k <= q` and the key is a real token), the most
    /// negative float elsewhere (finite, so a fully masked row yields uniform
    /// attention instead of NaN).
    pub mask: Tensor,
    /// Row of the flattened `[batch·seq]` activations each text is classified
    /// at (`row · seq + pool index`, see [`Encoded::pool`]).
    pub pool_rows: Tensor,
}

impl BatchInput {
    /// Uploads `enc` to `dev`.
    pub fn new(enc: &Encoded, dev: &Device) -> candle_core::Result<Self> {
        let (b, t) = (enc.batch, enc.seq_len);
        let mut mask = Vec::with_capacity(b * t * t);
        for keys in enc.attention_mask.chunks(t.max(1)).take(b) {
            for q in 0..t {
                mask.extend((0..t).map(|k| {
                    if k <= q && keys[k] != 0 {
                        0.0
                    } else {
                        f32::MIN
                    }
                }));
            }
        }
        let rows: Vec<u32> = enc
            .pool
            .iter()
            .enumerate()
            .map(|(i, &p)| (i * t + p) as u32)
            .collect();
        Ok(Self {
            ids: Tensor::from_slice(&enc.ids, (b, t), dev)?,
            mask: Tensor::from_vec(mask, (b, 1, t, t), dev)?,
            pool_rows: Tensor::from_vec(rows, b, dev)?,
        })
    }
}

/// The gradient of `wte.weight` (`[vocab, n_embd]`) from the token ids of a step's
/// micro-batches and the gradients of their [`Gpt2ForSequenceClassification::forward_train`]
/// leaves: each row's gradient added onto its token's row.
///
/// On the host the rows are added straight into one fresh buffer; candle's
/// `zeros_like().index_add(..)` would fill a dense buffer with zeros and then
/// copy it whole before adding (the embedding is most of a small model).
pub fn embedding_gradient(
    wte: &Tensor,
    ids: &[Tensor],
    row_grads: &[Tensor],
) -> candle_core::Result<Tensor> {
    let ids = Tensor::cat(
        &ids.iter()
            .map(|t| t.flatten_all())
            .collect::<candle_core::Result<Vec<_>>>()?,
        0,
    )?;
    let grads = Tensor::cat(row_grads, 0)?;
    if !crate::simd::host_f32(wte) {
        return wte.zeros_like()?.index_add(&ids, &grads, 0);
    }
    let (vocab, e) = wte.dims2()?;
    let mut out = vec![0f32; vocab * e];
    let rows = grads.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    for (id, g) in ids.to_vec1::<u32>()?.into_iter().zip(rows.chunks_exact(e)) {
        let Some(dst) = out.get_mut(id as usize * e..(id as usize + 1) * e) else {
            candle_core::bail!("token id {id} is outside the vocabulary of {vocab}");
        };
        dst.iter_mut().zip(g).for_each(|(d, s)| *d += s);
    }
    Tensor::from_vec(out, (vocab, e), wte.device())
}
