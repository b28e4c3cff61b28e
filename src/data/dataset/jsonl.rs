//! JSONL: one JSON object per line with `text`, `label` and optionally
//! `label_text` and `idx` (the row's index in the full split).
//!
//! Lines are numbered from 1; blank lines are skipped (and still counted), a
//! trailing `\r` is ignored.

use serde_json::{Map, Value};

use super::raw::{strip_bom, utf8_message, ParseState, RawLabel, RawRow, TextCheck};

/// Parses JSONL `bytes` into `state`.
pub(crate) fn parse(bytes: &[u8], state: &mut ParseState) {
    let bytes = match strip_bom(bytes) {
        Ok(bytes) => bytes,
        Err(message) => return state.error(1, "row", message),
    };
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line = match std::str::from_utf8(line) {
            Ok(line) => line,
            Err(e) => {
                state.error(number, "row", utf8_message(&e, "line"));
                continue;
            }
        };
        let position = state.next_record();
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(object)) => parse_object(number, position, &object, state),
            Ok(other) => state.error(
                number,
                "row",
                format!("expected a JSON object, found {}", kind(&other)),
            ),
            Err(e) => state.error(number, "row", json_message(&e)),
        }
    }
}

fn parse_object(line: usize, position: usize, object: &Map<String, Value>, state: &mut ParseState) {
    let text = match object.get("text") {
        Some(Value::String(text)) => match state.check_text(line, text) {
            TextCheck::Keep => Some(text.clone()),
            TextCheck::Drop => return,
            TextCheck::Bad => None,
        },
        None | Some(Value::Null) => {
            state.error(line, "text", "is missing");
            None
        }
        Some(other) => {
            state.error(
                line,
                "text",
                format!("must be a string, found {}", kind(other)),
            );
            None
        }
    };
    let label = match object.get("label") {
        Some(value) => label_of(line, value, state),
        None => {
            state.error(line, "label", "is missing");
            None
        }
    };
    let label_text = match object.get("label_text") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name)) if name.trim().is_empty() => Ok(None),
        Some(Value::String(name)) => Ok(Some(name.trim().to_string())),
        Some(other) => {
            state.error(
                line,
                "label_text",
                format!("must be a string, found {}", kind(other)),
            );
            Err(())
        }
    };
    let idx = match object.get("idx") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(other) => {
            let message = format!("must be a whole number from 0, found {other}");
            state.error(line, "idx", message);
            Err(())
        }
    };
    if let (Some(text), Some(label), Ok(label_text), Ok(idx)) = (text, label, label_text, idx) {
        if let Some(idx) = state.idx(line, idx, position) {
            state.rows.push(RawRow {
                line,
                text,
                label,
                label_text,
                idx,
            });
        }
    }
}

fn label_of(line: usize, value: &Value, state: &mut ParseState) -> Option<RawLabel> {
    match value {
        Value::Number(n) => match n.as_u64() {
            Some(id) => Some(RawLabel::Id(id)),
            None => {
                state.error(
                    line,
                    "label",
                    format!("{n} is not a label id (ids are whole numbers from 0)"),
                );
                None
            }
        },
        Value::String(name) if name.trim().is_empty() => {
            state.error(line, "label", "is missing (empty)");
            None
        }
        Value::String(name) => Some(RawLabel::Name(name.trim().to_string())),
        Value::Null => {
            state.error(line, "label", "is missing (null)");
            None
        }
        other => {
            state.error(
                line,
                "label",
                format!("must be an integer id or a name, found {}", kind(other)),
            );
            None
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// serde_json's message without its ` at line 1 column N` suffix (the line is
/// ours), with the column put first.
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let reason = text
        .rfind(" at line ")
        .map_or(text.as_str(), |at| &text[..at]);
    format!("bad JSON at column {}: {reason}", e.column())
}
