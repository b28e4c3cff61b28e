//! Rows as read from a file, before labels are mapped to ids, and the state the
//! format parsers share (errors, dropped rows).

use std::collections::HashMap;

use super::error::ErrorSink;
use super::ParseOptions;

/// A label as written in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawLabel {
    /// A JSON integer.
    Id(u64),
    /// A string (every CSV label is one); a string of digits may still mean an id,
    /// see [`super::labels`].
    Name(String),
}

impl std::fmt::Display for RawLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::Name(name) => write!(f, "`{name}`"),
        }
    }
}

/// One well-formed row.
#[derive(Debug, Clone)]
pub(crate) struct RawRow {
    /// 1-based line where the row starts.
    pub line: usize,
    /// The text, verbatim.
    pub text: String,
    /// The label as written (a JSON integer or a string), resolved to a class id by
    /// [`super::labels`].
    pub label: RawLabel,
    /// The `label_text` field, trimmed, when present and not empty.
    pub label_text: Option<String>,
    /// The row's index in the full split: its `idx` field, else its 0-based
    /// position among the file's records (rows dropped or refused count too).
    pub idx: usize,
}

/// What the parsers build: rows, errors, dropped lines.
#[derive(Debug)]
pub(crate) struct ParseState {
    pub rows: Vec<RawRow>,
    pub errors: ErrorSink,
    pub dropped: Vec<usize>,
    drop_empty_text: bool,
    /// Records started so far: the next record's position.
    records: usize,
    /// The line each `idx` was first seen on.
    idx_lines: HashMap<usize, usize>,
}

/// The verdict on a row's text.
pub(crate) enum TextCheck {
    /// Use the row.
    Keep,
    /// Empty and `drop_empty_text` is on: skip the row silently (it is counted).
    Drop,
    /// Empty, and that is an error (recorded).
    Bad,
}

impl ParseState {
    pub(crate) fn new(opts: &ParseOptions<'_>) -> Self {
        Self {
            rows: Vec::new(),
            errors: ErrorSink::new(opts.max_errors),
            dropped: Vec::new(),
            drop_empty_text: opts.drop_empty_text,
            records: 0,
            idx_lines: HashMap::new(),
        }
    }

    /// Starts a record: returns its position (0-based, in file order).
    pub(crate) fn next_record(&mut self) -> usize {
        self.records += 1;
        self.records - 1
    }

    /// The record's `idx`: `given` (the row's `idx` field, if it has one) or
    /// its `position`; `None`, with the error recorded, when it repeats an
    /// earlier row's.
    pub(crate) fn idx(
        &mut self,
        line: usize,
        given: Option<u64>,
        position: usize,
    ) -> Option<usize> {
        let idx = given.map_or(position, |i| usize::try_from(i).unwrap_or(usize::MAX));
        match self.idx_lines.insert(idx, line) {
            None => Some(idx),
            Some(first) => {
                self.idx_lines.insert(idx, first);
                self.error(
                    line,
                    "idx",
                    format!("{idx} is also the idx of line {first}"),
                );
                None
            }
        }
    }

    /// Records an error.
    pub(crate) fn error(&mut self, line: usize, field: &str, message: impl Into<String>) {
        self.errors.push(line, field, message);
    }

    /// Checks that `text` is not empty or whitespace only; drops or flags it.
    pub(crate) fn check_text(&mut self, line: usize, text: &str) -> TextCheck {
        if !text.trim().is_empty() {
            return TextCheck::Keep;
        }
        if self.drop_empty_text {
            self.dropped.push(line);
            return TextCheck::Drop;
        }
        let message = if text.is_empty() {
            "is empty"
        } else {
            "is empty (whitespace only)"
        };
        self.error(line, "text", message);
        TextCheck::Bad
    }
}

/// Removes a UTF-8 byte-order mark. A UTF-16 mark is an encoding error (`Err`).
pub(crate) fn strip_bom(bytes: &[u8]) -> Result<&[u8], &'static str> {
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return Err("wrong encoding: the file is UTF-16; save it as UTF-8");
    }
    Ok(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes))
}

/// The message for bytes that are not UTF-8; `what` is `line` or `field`.
pub(crate) fn utf8_message(err: &std::str::Utf8Error, what: &str) -> String {
    format!(
        "wrong encoding: not valid UTF-8 (at byte {} of the {what}); save the file as UTF-8",
        err.valid_up_to() + 1
    )
}
