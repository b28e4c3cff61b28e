//! What a forward pass reads besides the weights, and the embedding's gradient.
//!
//! [`BatchInput`] is built on the host from the encoded batch, which already
//! knows every text's length: the attention mask and the pooling rows go to
//! the device with the token ids, and nothing is copied back to find them.
//! [`embedding_gradient`] scatters a step's token-row gradients onto
//! `wte.weight`: one pass into a fresh buffer on the CPU, `index_add` on a GPU.

use candle_core::{Device, Tensor};

use crate::data::Encoded;

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
    /// Each token's position `[seq]` (u32) when several texts are packed into
    /// one row ([`BatchInput::packed`]); `None`: `0..seq` in every row.
    pub positions: Option<Tensor>,
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
            positions: None,
        })
    }

    /// The real tokens of every text of `batches`, packed one after another
    /// into a single row without padding: each text keeps its own positions
    /// (from 0) and attends only to itself, causally, so its activations are
    /// those of the padded batches — but each weight is read once for all of
    /// them. Texts are classified in order (batch by batch). `None` when a
    /// text has no real token (it could not be pooled on its own).
    pub fn packed(batches: &[&Encoded], dev: &Device) -> candle_core::Result<Option<Self>> {
        let mut segments = Vec::new();
        for enc in batches {
            let t = enc.seq_len;
            for (r, &pool) in enc.pool.iter().enumerate() {
                let keys = &enc.attention_mask[r * t..(r + 1) * t];
                let len = keys.iter().take_while(|&&m| m != 0).count();
                if len == 0 || pool >= len {
                    return Ok(None);
                }
                segments.push((&enc.ids[r * t..r * t + len], pool));
            }
        }
        let total: usize = segments.iter().map(|(ids, _)| ids.len()).sum();
        let (mut ids, mut positions, mut rows) = (Vec::new(), Vec::new(), Vec::new());
        let mut mask = vec![f32::MIN; total * total];
        for (seg, pool) in &segments {
            let start = ids.len();
            for q in 0..seg.len() {
                let row = (start + q) * total + start;
                mask[row..=row + q].fill(0.0);
            }
            rows.push((start + pool) as u32);
            ids.extend_from_slice(seg);
            positions.extend(0..seg.len() as u32);
        }
        Ok(Some(Self {
            ids: Tensor::from_vec(ids, (1, total), dev)?,
            mask: Tensor::from_vec(mask, (1, 1, total, total), dev)?,
            pool_rows: Tensor::from_vec(rows, segments.len(), dev)?,
            positions: Some(Tensor::from_vec(positions, total, dev)?),
        }))
    }

    /// Texts the batch classifies.
    pub fn texts(&self) -> candle_core::Result<usize> {
        self.pool_rows.dim(0)
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
