//! Padded batches of token ids.

/// How a batch is padded.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// Pad to the longest row of the batch (same maths, far less work).
    #[default]
    Longest,
    /// Pad every row to `max_length`, as the recipe's `padding="max_length"`.
    MaxLength,
}

/// A tokenized, padded batch (row-major `[batch, seq_len]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, right-padded with the pad id.
    pub ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
    /// Rows: one per text.
    pub batch: usize,
    /// Columns: every row's padded length (the longest row's, or `max_length`).
    pub seq_len: usize,
    /// The position each row is classified at: its last token whose id is not
    /// the pad id, or 0 when every id is the pad id (Hugging Face takes `argmax`
    /// of `position · (id != pad)`), so a text ending in a literal
    /// `<|endoftext|>` is pooled before it.
    pub pool: Vec<usize>,
}

impl Encoded {
    /// Right-pads `rows` (each at most `max_length` long) with `pad_id`.
    pub fn pad(rows: &[&[u32]], pad_id: u32, padding: Padding, max_length: usize) -> Self {
        let seq_len = match padding {
            Padding::Longest => rows.iter().map(|r| r.len()).max().unwrap_or(0),
            Padding::MaxLength => max_length,
        };
        let mut out = Self {
            ids: Vec::with_capacity(rows.len() * seq_len),
            attention_mask: Vec::with_capacity(rows.len() * seq_len),
            batch: rows.len(),
            seq_len,
            pool: Vec::with_capacity(rows.len()),
        };
        for row in rows {
            let row = &row[..row.len().min(seq_len)];
            out.pool.push(pool_index(row, pad_id));
            out.ids.extend_from_slice(row);
            out.ids.resize(out.ids.len() + seq_len - row.len(), pad_id);
            out.attention_mask.extend(std::iter::repeat_n(1, row.len()));
            out.attention_mask
                .resize(out.attention_mask.len() + seq_len - row.len(), 0);
        }
        out
    }

    /// Real (unpadded) tokens in the whole batch.
    pub fn real_tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m != 0).count()
    }
}

/// Where a row of token ids is classified (see [`Encoded::pool`]).
pub fn pool_index(row: &[u32], pad_id: u32) -> usize {
    row.iter().rposition(|&id| id != pad_id).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_right_to_longest_or_fixed() {
        let rows: [&[u32]; 2] = [&[1, 2, 3], &[4]];
        let e = Encoded::pad(&rows, 9, Padding::Longest, 8);
        assert_eq!((e.batch, e.seq_len), (2, 3));
        assert_eq!(e.ids, [1, 2, 3, 4, 9, 9]);
        assert_eq!(e.attention_mask, [1, 1, 1, 1, 0, 0]);
        assert_eq!(e.real_tokens(), 4);
        let e = Encoded::pad(&rows, 9, Padding::MaxLength, 4);
        assert_eq!(e.ids, [1, 2, 3, 9, 4, 9, 9, 9]);
    }

    #[test]
    fn pools_at_last_non_pad_token() {
        let pad = 50256;
        let rows: [&[u32]; 4] = [&[5, 6, 7], &[5, 6, pad, 7], &[pad, pad], &[1, 2, 3, 4, 5]];
        let e = Encoded::pad(&rows, pad, Padding::Longest, 8);
        assert_eq!(e.pool, [2, 3, 0, 4]);
        assert_eq!(
            pool_index(&[5, 6, 7, pad], pad),
            2,
            "a literal <|endoftext|> at the end"
        );
    }
}
