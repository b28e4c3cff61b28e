//! CSV: a header row naming a `text` column and a `label` (or `sentiment`) column,
//! optionally `label_text` and `idx` (the row's index in the full split); other
//! columns are ignored.
//!
//! Parsed with the `csv` crate, which never rejects malformed quoting on its own;
//! each record's raw bytes are therefore checked here for the two RFC 4180
//! violations that garble rows: characters after a closing quote, and a quote
//! that never closes (which swallows the rest of the file).

use csv::{ByteRecord, ReaderBuilder};

use super::raw::{strip_bom, utf8_message, ParseState, RawLabel, RawRow, TextCheck};

/// The header's columns that matter.
struct Columns {
    names: Vec<String>,
    text: usize,
    label: usize,
    label_text: Option<usize>,
    idx: Option<usize>,
}

/// Parses CSV `bytes` into `state`.
pub(crate) fn parse(bytes: &[u8], state: &mut ParseState) {
    let bytes = match strip_bom(bytes) {
        Ok(bytes) => bytes,
        Err(message) => return state.error(1, "row", message),
    };
    let mut reader = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut record = ByteRecord::new();
    let mut columns: Option<Columns> = None;
    let mut lines = LineCounter::default();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                // Only I/O and UTF-8 failures are possible here, neither on bytes.
                let line = e.position().map_or(0, |p| to_usize(p.line()));
                state.error(line, "row", format!("unreadable CSV: {e}"));
                break;
            }
        }
        // The reader's record position is where the previous record ended (before
        // any blank lines, and after the `\r` of a `\r\n`), and its line count
        // ignores `\r\n` and quoted line breaks: skip the terminators and count
        // lines here.
        let end = to_usize(reader.position().byte()).min(bytes.len());
        let mut start = record.position().map_or(0, |p| to_usize(p.byte())).min(end);
        while matches!(bytes.get(start), Some(b'\r' | b'\n')) && start < end {
            start += 1;
        }
        let line = lines.line_at(bytes, start);
        let raw = &bytes[start..end];
        match &columns {
            None => match header(line, raw, &record, state) {
                Some(found) => columns = Some(found),
                None => return,
            },
            Some(columns) => row(line, raw, &record, columns, state),
        }
    }
}

/// 1-based line numbers of byte offsets, counted forward (`\n`, `\r\n` and a lone
/// `\r` each end a line, as for the CSV reader).
#[derive(Default)]
struct LineCounter {
    offset: usize,
    breaks: usize,
}

impl LineCounter {
    /// The line of the byte at `pos`; `pos` must not decrease between calls.
    fn line_at(&mut self, bytes: &[u8], pos: usize) -> usize {
        let pos = pos.clamp(self.offset, bytes.len());
        let span = bytes.get(self.offset..pos).unwrap_or_default();
        for (i, &b) in span.iter().enumerate() {
            let next = bytes.get(self.offset + i + 1);
            if b == b'\n' || (b == b'\r' && next != Some(&b'\n')) {
                self.breaks += 1;
            }
        }
        self.offset = pos;
        self.breaks + 1
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn header(line: usize, raw: &[u8], record: &ByteRecord, state: &mut ParseState) -> Option<Columns> {
    if let Some((column, message)) = quoting_problem(raw) {
        state.error(line, "header", format!("column {}: {message}", column + 1));
        return None;
    }
    let mut names = Vec::with_capacity(record.len());
    for field in record {
        match std::str::from_utf8(field) {
            Ok(name) => names.push(name.trim().to_string()),
            Err(e) => {
                state.error(line, "header", utf8_message(&e, "field"));
                return None;
            }
        }
    }
    let find = |wanted: &str| names.iter().position(|n| n.eq_ignore_ascii_case(wanted));
    for wanted in ["text", "label", "sentiment", "label_text", "idx"] {
        let columns: Vec<String> = (0..names.len())
            .filter(|&i| names[i].eq_ignore_ascii_case(wanted))
            .map(|i| (i + 1).to_string())
            .collect();
        if columns.len() > 1 {
            let message = format!(
                "the header has {} `{wanted}` columns (columns {}); keep one",
                columns.len(),
                columns.join(", ")
            );
            state.error(line, wanted, message);
            return None;
        }
    }
    let text = find("text");
    let label = find("label").or_else(|| find("sentiment"));
    let found = || format!("found: {}", names.join(", "));
    if text.is_none() {
        state.error(
            line,
            "text",
            format!("the header has no `text` column ({})", found()),
        );
    }
    if label.is_none() {
        state.error(
            line,
            "label",
            format!(
                "the header has no `label` or `sentiment` column ({})",
                found()
            ),
        );
    }
    Some(Columns {
        text: text?,
        label: label?,
        label_text: find("label_text"),
        idx: find("idx"),
        names,
    })
}

fn row(line: usize, raw: &[u8], record: &ByteRecord, columns: &Columns, state: &mut ParseState) {
    let position = state.next_record();
    if let Some((column, message)) = quoting_problem(raw) {
        let field = columns
            .names
            .get(column)
            .map_or_else(|| format!("column {}", column + 1), Clone::clone);
        return state.error(line, &field, message);
    }
    if record.len() != columns.names.len() {
        let message = format!(
            "wrong column count: expected {} fields ({}), found {}",
            columns.names.len(),
            columns.names.join(", "),
            record.len()
        );
        return state.error(line, "row", message);
    }
    let mut field = |index: usize, name: &str| -> Option<&str> {
        let bytes = record.get(index).unwrap_or_default();
        match std::str::from_utf8(bytes) {
            Ok(value) => Some(value),
            Err(e) => {
                state.error(line, name, utf8_message(&e, "field"));
                None
            }
        }
    };
    let text = field(columns.text, "text");
    let label = field(columns.label, "label");
    let label_text = match columns.label_text {
        Some(index) => field(index, "label_text").map(Some),
        None => Some(None),
    };
    let idx = columns.idx.map(|i| field(i, "idx").map(str::trim));
    let idx = match idx {
        None | Some(Some("")) => Ok(None),
        Some(Some(text)) => text.parse::<u64>().map(Some).map_err(|_| text.to_string()),
        Some(None) => Err(String::new()),
    };
    let idx = idx.map_err(|text| {
        if !text.is_empty() {
            let message = format!("must be a whole number from 0, found `{text}`");
            state.error(line, "idx", message);
        }
    });
    let text = match text {
        Some(text) => match state.check_text(line, text) {
            TextCheck::Keep => Some(text),
            TextCheck::Drop => return,
            TextCheck::Bad => None,
        },
        None => None,
    };
    let label = match label.map(str::trim) {
        Some("") => {
            state.error(line, "label", "is missing (empty)");
            None
        }
        other => other,
    };
    if let (Some(text), Some(label), Some(label_text), Ok(idx)) = (text, label, label_text, idx) {
        let Some(idx) = state.idx(line, idx, position) else {
            return;
        };
        state.rows.push(RawRow {
            line,
            text: text.to_string(),
            label: RawLabel::Name(label.to_string()),
            label_text: label_text
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string),
            idx,
        });
    }
}

/// Checks one record's raw bytes (terminator included) for broken quoting.
/// Returns the 0-based column and the problem.
fn quoting_problem(raw: &[u8]) -> Option<(usize, &'static str)> {
    #[derive(PartialEq)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut state = State::FieldStart;
    let mut column = 0;
    for &b in raw {
        state = match (state, b) {
            (State::FieldStart | State::Unquoted | State::QuoteInQuoted, b',') => {
                column += 1;
                State::FieldStart
            }
            (State::FieldStart | State::Unquoted | State::QuoteInQuoted, b'\r' | b'\n') => {
                return None;
            }
            (State::FieldStart, b'"') => State::Quoted,
            (State::FieldStart | State::Unquoted, _) => State::Unquoted,
            (State::Quoted, b'"') => State::QuoteInQuoted,
            (State::Quoted, _) => State::Quoted,
            (State::QuoteInQuoted, b'"') => State::Quoted,
            (State::QuoteInQuoted, _) => {
                return Some((
                    column,
                    "bad CSV quoting: text after the closing quote of a quoted field \
                     (a `\"` inside a quoted field must be doubled as `\"\"`)",
                ));
            }
        };
    }
    if state == State::Quoted {
        return Some((
            column,
            "bad CSV quoting: a quoted field is never closed (the rest of the file was read \
             into it); a `\"` inside a quoted field must be doubled as `\"\"`",
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::quoting_problem;

    #[test]
    fn accepts_well_formed_and_lenient_quoting() {
        for raw in [
            &b"a,b,c\n"[..],
            b"\"a, b\",\"say \"\"hi\"\"\",c\r\n",
            b"\"multi\nline\",x\n",
            b"it's \"fine\" unquoted,x\n",
            b"a,\"\"\n",
            b"last,row",
        ] {
            assert_eq!(
                quoting_problem(raw),
                None,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn flags_text_after_closing_quote_and_unclosed_quotes() {
        let (column, message) = quoting_problem(b"id,\"hello\" world,x\n").unwrap();
        assert_eq!(column, 1);
        assert!(message.contains("after the closing quote"), "{message}");
        let (column, message) = quoting_problem(b"id,x,\"never closed\nmore\n").unwrap();
        assert_eq!(column, 2);
        assert!(message.contains("never closed"), "{message}");
    }
}
