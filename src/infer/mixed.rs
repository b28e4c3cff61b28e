//! One forward pass for requests to different LoRA adapters of one base.
//!
//! Rows of every request go through the base's matrix products together;
//! each adapter's rows form a consecutive group that adds its own low-rank
//! updates and takes its logits from its own head (see `model::RowGroup`), so
//! adapters with different label sets share the pass. Rows are packed by
//! length as [`Classifier::classify_ids`] packs them, then grouped by adapter
//! within each pass.

use crate::model::RowGroup;

use super::{BatchLimits, Classifier, InferError, Prediction};

/// Whether requests to `a` and `b` can share forward passes: both are
/// adapters on the very same loaded base.
pub fn shares_pass(a: &Classifier, b: &Classifier) -> bool {
    let (na, nb) = (a.network(), b.network());
    na.adapter().is_some() && nb.adapter().is_some() && na.shares_base(nb)
}

/// Classifies each part's rows (encoded by its own classifier) with its own
/// adapter, in shared passes of at most `limits`; the parts must pairwise
/// [`shares_pass`]. Results come back per part, in input order.
pub fn classify_adapters(
    parts: &[(&Classifier, &[Vec<u32>])],
    limits: BatchLimits,
) -> Result<Vec<Vec<Prediction>>, InferError> {
    let Some((lead, _)) = parts.first() else {
        return Ok(Vec::new());
    };
    // (part, row) of every row, shortest first.
    let mut order: Vec<(usize, usize)> = parts
        .iter()
        .enumerate()
        .flat_map(|(p, (_, rows))| (0..rows.len()).map(move |r| (p, r)))
        .collect();
    let len = |&(p, r): &(usize, usize)| parts[p].1[r].len();
    order.sort_by_key(len);
    let mut out: Vec<Vec<Option<Prediction>>> = parts
        .iter()
        .map(|(_, rows)| vec![None; rows.len()])
        .collect();
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len()
            && end - start < limits.texts.max(1)
            && (end - start + 1) * len(&order[end]) <= limits.tokens
        {
            end += 1;
        }
        let chunk = &mut order[start..end];
        chunk.sort_by_key(|&(p, _)| p); // stable: each adapter's rows together
        let rows: Vec<&[u32]> = chunk
            .iter()
            .map(|&(p, r)| parts[p].1[r].as_slice())
            .collect();
        let logits = pass(lead, parts, chunk, &rows)?;
        for (&(p, r), row) in chunk.iter().zip(logits) {
            out[p][r] = Some(parts[p].0.prediction(row));
        }
        start = end;
    }
    Ok(out
        .into_iter()
        .map(|preds| preds.into_iter().flatten().collect())
        .collect())
}

/// The logits of `rows` (ordered by part, as `chunk` says) in one pass.
fn pass(
    lead: &Classifier,
    parts: &[(&Classifier, &[Vec<u32>])],
    chunk: &[(usize, usize)],
    rows: &[&[u32]],
) -> Result<Vec<Vec<f32>>, InferError> {
    let mut groups: Vec<RowGroup> = Vec::new();
    let mut last = None;
    for &(p, _) in chunk {
        match groups.last_mut() {
            Some(g) if last == Some(p) => g.rows += 1,
            _ => groups.push(RowGroup {
                rows: 1,
                adapter: parts[p].0.network().adapter(),
            }),
        }
        last = Some(p);
    }
    let enc = lead.tokenizer().pad(rows)?;
    let input = crate::model::BatchInput::new(&enc, lead.device())?;
    let mut logits = Vec::with_capacity(rows.len());
    for group in lead.network().forward_groups(&input, &groups)? {
        logits.extend(group.to_vec2::<f32>()?);
    }
    Ok(logits)
}
