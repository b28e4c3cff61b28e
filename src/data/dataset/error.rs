//! Errors of dataset parsing and loading, and the capped collector of row errors.

use std::path::PathBuf;

use crate::hub::HubError;

/// How many row errors a parse reports at most, unless told otherwise.
pub const DEFAULT_MAX_ERRORS: usize = 100;

/// How many row errors the `Display` of [`DatasetError::Invalid`] spells out.
const SHOWN_IN_MESSAGE: usize = 5;

/// One problem with one row (or the header) of a dataset file.
///
/// Serialises as `{"line": 3, "field": "text", "message": "is empty"}`, which is
/// what the HTTP API returns in its 422 answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RowError {
    /// 1-based line of the file where the row starts. For CSV the header is line 1;
    /// a quoted field with line breaks makes a row span several lines.
    pub line: usize,
    /// The field concerned (`text`, `label`, `label_text`, a CSV column name), or
    /// `row` when the whole row is at fault (bad JSON, wrong column count, …).
    pub field: String,
    /// What is wrong, in words.
    pub message: String,
}

impl RowError {
    /// A row error at `line` about `field`.
    pub fn new(line: usize, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            line,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.field, self.message)
    }
}

/// Everything that can go wrong reading, validating or fetching a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// Rows (or the header) are malformed: every problem found, in line order, up
    /// to the parse's error cap.
    #[error("{}", invalid_message(errors, *truncated))]
    Invalid {
        /// The problems, sorted by line; at most the cap.
        errors: Vec<RowError>,
        /// True when there were more problems than the cap and some are not listed.
        truncated: bool,
    },
    /// The data holds no example at all.
    #[error(
        "the dataset has no rows{}",
        if *dropped > 0 {
            format!(" ({dropped} with empty text were dropped)")
        } else {
            String::new()
        }
    )]
    NoRows {
        /// Rows dropped for empty text (`drop_empty_text`).
        dropped: usize,
    },
    /// Every example has the same label.
    #[error(
        "every row has the label `{label}`: a classifier needs examples of at least two classes"
    )]
    SingleClass {
        /// The only label present.
        label: String,
    },
    /// Integer labels built into a label map do not run from 0 without gaps.
    #[error(
        "integer labels must run from 0 to n-1 without gaps; the largest is {max} but {} missing",
        list_missing(missing)
    )]
    LabelGaps {
        /// The largest id found.
        max: u64,
        /// Some of the ids absent (at most five).
        missing: Vec<u64>,
    },
    /// The label map given by the caller is unusable.
    #[error("invalid label map: {reason}")]
    BadLabelMap {
        /// What is wrong with it.
        reason: String,
    },
    /// A format name other than `jsonl` or `csv`.
    #[error("unknown dataset format `{0}`: expected `jsonl` or `csv`")]
    UnknownFormat(String),
    /// Reading a dataset file failed.
    #[error("{}: cannot read dataset: {source}", path.display())]
    Read {
        /// The file [`super::Dataset::from_path`] was given (a stored copy, a Hub download).
        path: PathBuf,
        /// The OS error; its kind tells whether a job's retry may help
        /// ([`crate::fault::io_cause`]).
        source: std::io::Error,
    },
    /// The text given as a dataset repository is not a Hub id.
    #[error(
        "`{0}` is not a Hugging Face dataset id (expected `owner/name`, optionally `@revision`)"
    )]
    BadRepo(String),
    /// The split name cannot name a file of the repository.
    #[error(
        "`{0}` is not a split name (use letters, digits, `-`, `_` or `.`, e.g. `train`, `test`)"
    )]
    BadSplit(String),
    /// None of the files that could hold the split could be fetched.
    #[error(
        "could not get split `{split}` of Hub dataset `{repo}` (tried {}): {source}",
        tried.join(", ")
    )]
    Hub {
        /// The repository as given (`owner/name`, optionally `@revision`).
        repo: String,
        /// The split as given (`train`, `test`, …); the files tried are named after it.
        split: String,
        /// The files tried, in order.
        tried: Vec<String>,
        /// The failure for the first file tried (offline, network, not found).
        source: Box<HubError>,
    },
}

impl DatasetError {
    /// The row errors of an [`DatasetError::Invalid`] error; empty for the others.
    pub fn row_errors(&self) -> &[RowError] {
        match self {
            Self::Invalid { errors, .. } => errors,
            _ => &[],
        }
    }
}

fn invalid_message(errors: &[RowError], truncated: bool) -> String {
    let count = if truncated {
        format!("more than {} problems", errors.len())
    } else if errors.len() == 1 {
        "1 problem".to_string()
    } else {
        format!("{} problems", errors.len())
    };
    let shown: Vec<String> = errors
        .iter()
        .take(SHOWN_IN_MESSAGE)
        .map(ToString::to_string)
        .collect();
    let mut text = format!("invalid dataset, {count}: {}", shown.join("; "));
    if errors.len() > SHOWN_IN_MESSAGE || truncated {
        text.push_str("; …");
    }
    text
}

fn list_missing(missing: &[u64]) -> String {
    let ids: Vec<String> = missing.iter().map(u64::to_string).collect();
    match ids.as_slice() {
        [one] => format!("{one} is"),
        _ => format!("{} are", ids.join(", ")),
    }
}

/// Collects row errors, keeping the `cap` earliest by line with bounded memory.
#[derive(Debug)]
pub(crate) struct ErrorSink {
    errors: Vec<RowError>,
    cap: usize,
    truncated: bool,
}

impl ErrorSink {
    /// A sink keeping at most `cap` errors (at least one).
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            errors: Vec::new(),
            cap: cap.max(1),
            truncated: false,
        }
    }

    /// Records a problem.
    pub(crate) fn push(&mut self, line: usize, field: &str, message: impl Into<String>) {
        self.errors.push(RowError::new(line, field, message));
        if self.errors.len() >= 2 * self.cap {
            self.trim();
        }
    }

    fn trim(&mut self) {
        // Stable: problems on one line keep the order they were found in.
        self.errors.sort_by_key(|e| e.line);
        if self.errors.len() > self.cap {
            self.errors.truncate(self.cap);
            self.truncated = true;
        }
    }

    /// `Ok(())` when nothing was recorded, else the [`DatasetError::Invalid`] error.
    pub(crate) fn into_result(mut self) -> Result<(), DatasetError> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.trim();
        Err(DatasetError::Invalid {
            errors: self.errors,
            truncated: self.truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_keeps_the_earliest_lines_up_to_the_cap() {
        let mut sink = ErrorSink::new(3);
        for line in (1..=20).rev() {
            sink.push(line, "text", "is empty");
        }
        let Err(DatasetError::Invalid { errors, truncated }) = sink.into_result() else {
            panic!("expected Invalid");
        };
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 2, 3]);
        assert!(truncated);
    }

    #[test]
    fn sink_without_errors_is_ok_and_at_cap_is_not_truncated() {
        assert!(ErrorSink::new(2).into_result().is_ok());
        let mut sink = ErrorSink::new(2);
        sink.push(4, "label", "is missing");
        sink.push(2, "text", "is empty");
        let err = sink.into_result().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid dataset, 2 problems: line 2: text: is empty; line 4: label: is missing"
        );
    }
}
