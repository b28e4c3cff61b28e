//! Labelled text datasets for training and evaluation.
//!
//! A [`Dataset`] is a list of [`Example`]s (text + label id) and the label map
//! (`id2label`). It is parsed from JSONL or CSV bytes ([`Dataset::from_bytes`], for an
//! uploaded body) or a file ([`Dataset::from_path`]), with validation that reports
//! every problem found, up to a cap, each with its 1-based line, field and message
//! ([`RowError`]). Hub dataset splits are fetched with [`fetch_hub_split`]; seeded
//! shuffles and the recipe's subsets are [`Dataset::shuffle`] and [`Dataset::select`].
//!
//! Formats:
//! * JSONL — one object per line with `text` and `label` (an integer id or a name);
//!   `label_text` names integer ids, as in `mteb/tweet_sentiment_extraction`
//!   (`{"id","idx","text","label":1,"label_text":"neutral"}`). Blank lines skipped.
//! * CSV — a header row with a `text` column and a `label` (or `sentiment`) column,
//!   optionally `label_text`; column names are matched case-insensitively.
//!
//! Texts are kept verbatim (leading spaces included); labels and `label_text` are
//! trimmed. Label maps are described in the `labels` module: names sorted, ids
//! contiguous from 0, or the caller's map.

mod csv_rows;
mod error;
mod format;
mod hub;
mod jsonl;
mod labels;
mod raw;
mod sample;

use std::path::Path;

pub use error::{DatasetError, RowError, DEFAULT_MAX_ERRORS};
pub use format::DatasetFormat;
pub use hub::{fetch_hub_split, load_hub_split};
pub use labels::default_label;
pub use sample::{select_indices, shuffled_indices_in_stream};

use raw::ParseState;

/// One labelled text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Example {
    /// The text, verbatim.
    pub text: String,
    /// The label id, an index into [`Dataset::labels`].
    pub label: usize,
    /// The row's index in the full split it comes from (the `idx` field or
    /// column, else its position among the file's records), so subsets pick
    /// the same rows as Python's `datasets` even from a file that left rows
    /// out; `None` for examples made in code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idx: Option<usize>,
}

/// Labelled examples and their label map.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dataset {
    /// The examples, in file order until shuffled.
    pub examples: Vec<Example>,
    /// `id2label`: the name of each label id.
    pub labels: Vec<String>,
    /// Lines of the source dropped while parsing because their text was empty
    /// ([`ParseOptions::drop_empty_text`]); `.len()` is the count to report.
    /// Shuffles and subsets keep it: it describes the source.
    pub dropped: Vec<usize>,
}

/// How to parse a dataset.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions<'a> {
    /// The label map (`id2label`) to use instead of building one from the data:
    /// label names must be among it and integer ids below its length.
    pub labels: Option<&'a [String]>,
    /// Drop rows whose text is empty or whitespace only (counted in
    /// [`Dataset::dropped`]) instead of reporting them as errors.
    pub drop_empty_text: bool,
    /// How many row errors to report at most (at least one is always kept).
    pub max_errors: usize,
}

impl Default for ParseOptions<'_> {
    fn default() -> Self {
        Self {
            labels: None,
            drop_empty_text: false,
            max_errors: DEFAULT_MAX_ERRORS,
        }
    }
}

impl Dataset {
    /// A dataset from examples and a label map, checking that the map is usable and
    /// every label id is below its length.
    pub fn new(examples: Vec<Example>, labels: Vec<String>) -> Result<Self, DatasetError> {
        labels::check_given(&labels)?;
        if let Some((index, ex)) = examples
            .iter()
            .enumerate()
            .find(|(_, ex)| ex.label >= labels.len())
        {
            return Err(DatasetError::BadLabelMap {
                reason: format!(
                    "example {index} has label {} but the map has {} labels",
                    ex.label,
                    labels.len()
                ),
            });
        }
        Ok(Self {
            examples,
            labels,
            dropped: Vec::new(),
        })
    }

    /// Parses and validates `bytes` in `format`.
    ///
    /// Every row problem (and header problem) is reported at once, up to
    /// `opts.max_errors`, as [`DatasetError::Invalid`]; then the whole dataset is
    /// checked: at least one row ([`DatasetError::NoRows`]), integer labels without
    /// gaps ([`DatasetError::LabelGaps`]), at least two classes
    /// ([`DatasetError::SingleClass`]).
    pub fn from_bytes(
        bytes: &[u8],
        format: DatasetFormat,
        opts: &ParseOptions<'_>,
    ) -> Result<Self, DatasetError> {
        if let Some(names) = opts.labels {
            labels::check_given(names)?;
        }
        let mut state = ParseState::new(opts);
        match format {
            DatasetFormat::Jsonl => jsonl::parse(bytes, &mut state),
            DatasetFormat::Csv => csv_rows::parse(bytes, &mut state),
        }
        let resolved = labels::resolve(&state.rows, opts.labels, &mut state.errors);
        let ParseState {
            rows,
            errors,
            dropped,
            ..
        } = state;
        errors.into_result()?;
        let (ids, names) = resolved?;
        let examples: Vec<Example> = rows
            .into_iter()
            .zip(ids)
            .filter_map(|(row, id)| {
                id.map(|label| Example {
                    text: row.text,
                    label,
                    idx: Some(row.idx),
                })
            })
            .collect();
        let dataset = Self {
            examples,
            labels: names,
            dropped,
        };
        dataset.check_classes()?;
        Ok(dataset)
    }

    /// Reads and parses the file at `path`; the format is `format`, else the one the
    /// extension names, else the content's ([`DatasetFormat::guess`]). The file is
    /// read into memory whole.
    pub fn from_path(
        path: &Path,
        format: Option<DatasetFormat>,
        opts: &ParseOptions<'_>,
    ) -> Result<Self, DatasetError> {
        let bytes = std::fs::read(path).map_err(|source| DatasetError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let format = format.unwrap_or_else(|| DatasetFormat::guess(Some(path), &bytes));
        Self::from_bytes(&bytes, format, opts)
    }

    fn check_classes(&self) -> Result<(), DatasetError> {
        let Some(first) = self.examples.first() else {
            return Err(DatasetError::NoRows {
                dropped: self.dropped.len(),
            });
        };
        if self.examples.iter().all(|ex| ex.label == first.label) {
            let label = self.labels.get(first.label).cloned();
            return Err(DatasetError::SingleClass {
                label: label.unwrap_or_else(|| first.label.to_string()),
            });
        }
        Ok(())
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// The id of the label called `name`.
    pub fn label_id(&self, name: &str) -> Option<usize> {
        self.labels.iter().position(|n| n == name)
    }

    /// Examples per label id (index = id; labels absent from the data count 0).
    pub fn label_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.labels.len()];
        for ex in &self.examples {
            if let Some(count) = counts.get_mut(ex.label) {
                *count += 1;
            }
        }
        counts
    }

    /// `(name, count)` per label, in id order.
    pub fn named_label_counts(&self) -> Vec<(&str, usize)> {
        self.labels
            .iter()
            .map(String::as_str)
            .zip(self.label_counts())
            .collect()
    }

    /// The label ids, in order.
    pub fn label_ids(&self) -> Vec<usize> {
        self.examples.iter().map(|ex| ex.label).collect()
    }

    /// The normalised JSONL form: `{"text","label","label_text","idx"}` per
    /// line with integer ids and their names (`idx` when known), which
    /// [`Dataset::from_bytes`] reads back (pass the label map when some label
    /// has no example).
    pub fn to_jsonl(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for ex in &self.examples {
            let mut line = serde_json::json!({
                "text": ex.text,
                "label": ex.label,
                "label_text": self.labels.get(ex.label),
            });
            if let Some(idx) = ex.idx {
                line["idx"] = idx.into();
            }
            out.extend_from_slice(line.to_string().as_bytes());
            out.push(b'\n');
        }
        out
    }
}
