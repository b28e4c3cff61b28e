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
use rand_chacha::ChaCha8Rng;

use super::adapted::{covers, Adapted, LoraNet, RowGroup};
use super::config::{Activation, Gpt2Config};
use super::input::BatchInput;
use super::layers::{dropout, Conv1D, LayerNorm, Mode};
use super::ops::{self, GradSink};
use super::packed::PackedLayers;
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

/// What one forward pass runs with, handed down the blocks.
struct Pass<'p, 'r> {
    precision: Precision,
    mode: &'p mut Mode<'r>,
    adapted: Adapted<'p>,
    /// Index of the block being run (0-based): it picks each adapter's matrices.
    layer: usize,
}

impl Pass<'_, '_> {
    /// `conv` (the block's module `module`, an index into `lora::MODULES`)
    /// applied to `x`, plus the adapters' updates of that module.
    fn conv(&mut self, conv: &Conv1D, module: usize, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = conv.forward(x, self.precision)?;
        let n_out = y.dim(1)?;
        let how = (self.precision, &mut *self.mode);
        match self.adapted.delta((self.layer, module), x, n_out, how)? {
            Some(delta) => y + delta,
            None => Ok(y),
        }
    }
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
        pass: &mut Pass,
    ) -> candle_core::Result<Tensor> {
        let e = x.dim(1)?;
        let d = e / self.n_head;
        let qkv = pass
            .conv(&self.c_attn, 0, x)?
            .reshape((b, t, 3, self.n_head, d))?;
        let head = |i: usize| qkv.narrow(2, i, 1)?.squeeze(2)?.transpose(1, 2);
        let q = (head(0)?.contiguous()? * self.scale)?;
        let k_t = head(1)?.transpose(2, 3)?.contiguous()?;
        let v = head(2)?.contiguous()?;
        let probs = ops::masked_softmax(&to_f32(&q.matmul(&k_t)?)?, mask)?;
        let probs = pass.precision.cast(&dropout(&probs, pdrop.0, pass.mode)?)?;
        let y = probs.matmul(&v)?.transpose(1, 2)?.reshape((b * t, e))?;
        dropout(&pass.conv(&self.c_proj, 1, &y)?, pdrop.1, pass.mode)
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
    fn new(
        vb: VarBuilder,
        cfg: &Gpt2Config,
        layer: usize,
        packed: Option<&PackedLayers>,
    ) -> candle_core::Result<Self> {
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
                c_attn: Conv1D::new(vb.pp("attn.c_attn"), (e, 3 * e), packed)?,
                c_proj: Conv1D::new(vb.pp("attn.c_proj"), (e, e), packed)?,
                n_head: cfg.n_head,
                scale,
            },
            ln_2: LayerNorm::new(vb.pp("ln_2"), e, cfg.layer_norm_epsilon)?,
            c_fc: Conv1D::new(vb.pp("mlp.c_fc"), (e, cfg.n_inner), packed)?,
            c_proj: Conv1D::new(vb.pp("mlp.c_proj"), (cfg.n_inner, e), packed)?,
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
        pass: &mut Pass,
    ) -> candle_core::Result<Tensor> {
        let a = self.ln_1.forward(x)?;
        let pdrop = (cfg.attn_pdrop, cfg.resid_pdrop);
        let attn = self.attn.forward(&a, bt, mask, pdrop, pass)?;
        let x = (x + to_f32(&attn)?)?;
        let h = pass.conv(&self.c_fc, 2, &self.ln_2.forward(&x)?)?;
        let h = match self.activation {
            Activation::GeluTanh => ops::gelu_tanh(&h)?,
            Activation::GeluErf => h.gelu_erf()?,
            Activation::Relu => h.relu()?,
        };
        let h = dropout(&pass.conv(&self.c_proj, 3, &h)?, cfg.resid_pdrop, pass.mode)?;
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
    /// The LoRA adapter every row goes through, if the model has one.
    adapter: Option<Arc<LoraNet>>,
}

impl Gpt2ForSequenceClassification {
    /// Builds the model from tensors named as in [`parameter_shapes`].
    ///
    /// The builder decides where the weights come from: a map of loaded tensors
    /// for inference, a `VarMap` for training (so gradients reach its variables).
    pub fn new(cfg: &Gpt2Config, vb: VarBuilder) -> candle_core::Result<Self> {
        Self::new_packed(cfg, vb, None)
    }

    /// [`Self::new`] with the Conv1D weights `packed` holds taken from it
    /// (int8 or bf16 inference; see [`PackedLayers`]) instead of `vb`.
    pub fn new_packed(
        cfg: &Gpt2Config,
        vb: VarBuilder,
        packed: Option<&PackedLayers>,
    ) -> candle_core::Result<Self> {
        let t = vb.pp("transformer");
        let blocks = (0..cfg.n_layer)
            .map(|i| Block::new(t.pp(format!("h.{i}")), cfg, i, packed))
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
            adapter: None,
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

    /// The model with `adapter` on every row: its low-rank updates on the
    /// layers it adapts and its head instead of the base's.
    pub fn with_adapter(mut self, adapter: LoraNet) -> Self {
        self.adapter = Some(Arc::new(adapter));
        self
    }

    /// The adapter of [`Self::with_adapter`], if any.
    pub fn adapter(&self) -> Option<&LoraNet> {
        self.adapter.as_deref()
    }

    /// Whether `other` runs on the very same base weights (not a copy), so
    /// one forward pass can serve rows of both through their adapters.
    pub fn shares_base(&self, other: &Self) -> bool {
        self.wte.id() == other.wte.id()
            && self.blocks.len() == other.blocks.len()
            && self.precision == other.precision
    }

    /// The model without its adapter: the base every adapter of it shares.
    pub fn base(&self) -> Self {
        Self {
            adapter: None,
            ..self.clone()
        }
    }

    /// Classification logits `[batch, num_labels]` (f32) of one padded batch, pooled
    /// as the module docs say (the pooling rows come from the host, see
    /// [`BatchInput`]).
    pub fn forward(&self, input: &BatchInput, mode: &mut Mode) -> candle_core::Result<Tensor> {
        let tokens = self.wte.embedding(&input.ids.flatten_all()?)?;
        self.forward_own(input, tokens, mode)
    }

    /// The logits of each group of consecutive rows, each through its own
    /// adapter (and head), in one forward pass with dropout off: the groups'
    /// rows must add up to the batch. The model's own adapter, if any, is not
    /// used: a group without one gets the base's head.
    pub fn forward_groups(
        &self,
        input: &BatchInput,
        groups: &[RowGroup],
    ) -> candle_core::Result<Vec<Tensor>> {
        let tokens = self.wte.embedding(&input.ids.flatten_all()?)?;
        self.forward_from_tokens(input, tokens, &mut Mode::Eval, groups)
    }

    /// A training forward pass. When the token embeddings train (full
    /// fine-tuning), they are a leaf variable of their own `[batch·seq,
    /// n_embd]`, cut from `wte.weight`, and returned.
    ///
    /// The leaf's gradient is all the embedding matrix needs: scattered onto its
    /// rows once per optimizer step (see [`embedding_gradient`]), it replaces the
    /// dense `vocab × n_embd` gradient candle's autograd would build, zero and
    /// accumulate for every micro-batch — most of a short batch's step. A frozen
    /// `wte` (an adapter trains) gets no leaf, and the backward pass stops at the
    /// first adapted layer.
    pub fn forward_train(
        &self,
        input: &BatchInput,
        rng: &mut ChaCha8Rng,
    ) -> candle_core::Result<(Tensor, Option<Var>)> {
        let ids = input.ids.flatten_all()?;
        let mut mode = Mode::Train(rng);
        if !self.wte.is_variable() {
            let tokens = self.wte.embedding(&ids)?;
            return Ok((self.forward_own(input, tokens, &mut mode)?, None));
        }
        let tokens = Var::from_tensor(&self.wte.detach().embedding(&ids)?)?;
        let logits = self.forward_own(input, tokens.as_tensor().clone(), &mut mode)?;
        Ok((logits, Some(tokens)))
    }

    /// The forward pass with the model's own adapter (if any) on every row.
    fn forward_own(
        &self,
        input: &BatchInput,
        tokens: Tensor,
        mode: &mut Mode,
    ) -> candle_core::Result<Tensor> {
        let group = [RowGroup {
            rows: input.texts()?,
            adapter: self.adapter.as_deref(),
        }];
        let mut logits = self.forward_from_tokens(input, tokens, mode, &group)?;
        Ok(logits.pop().expect("one group, one result"))
    }

    fn forward_from_tokens(
        &self,
        input: &BatchInput,
        tokens: Tensor,
        mode: &mut Mode,
        groups: &[RowGroup],
    ) -> candle_core::Result<Vec<Tensor>> {
        let (b, t) = input.ids.dims2()?;
        if t > self.config.n_positions && input.positions.is_none() {
            candle_core::bail!(
                "sequence of {t} tokens is longer than the model's {} positions",
                self.config.n_positions
            );
        }
        let texts = input.texts()?;
        if !covers(groups, texts) {
            candle_core::bail!("adapter groups do not cover the batch of {texts} texts");
        }
        let pos = match &input.positions {
            Some(positions) => self.wpe.embedding(positions)?,
            None => {
                let positions = Tensor::arange(0u32, t as u32, self.device())?;
                self.wpe.embedding(&positions)?.repeat((b, 1))?
            }
        };
        let mut x = dropout(&(tokens + pos)?, self.config.embd_pdrop, mode)?;
        let p = self.precision;
        let adapted = Adapted { groups, seq: t };
        for (layer, block) in self.blocks.iter().enumerate() {
            let mut pass = Pass {
                precision: p,
                mode: &mut *mode,
                adapted,
                layer,
            };
            x = block.forward(&x, (b, t), &input.mask, &self.config, &mut pass)?;
        }
        let pooled = p.cast(&self.ln_f.forward(&x.index_select(&input.pool_rows, 0)?)?)?;
        let mut start = 0;
        let mut logits = Vec::with_capacity(groups.len());
        for g in groups {
            let score = g.adapter.map_or(&self.score, |a| a.score());
            let rows = pooled.narrow(0, start, g.rows)?;
            logits.push(to_f32(&rows.matmul(&p.cast(score)?.t()?)?)?);
            start += g.rows;
        }
        Ok(logits)
    }
}
