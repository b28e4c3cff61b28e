//! Parsing uploaded datasets (JSONL or CSV with `text` and `label`) into
//! examples and a label map, with line-numbered errors.
//!
//! A small stand-in kept behind one function, [`parse`], so that the data
//! module's full parser can replace it without touching the handlers.

use std::collections::BTreeMap;

use crate::data::Example;

/// Errors reported at most (the rest are counted).
const MAX_ERRORS: usize = 20;

/// Upload formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated with a header row.
    Csv,
}

impl Format {
    /// The name used in `?format=` and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
        }
    }
}

/// One problem in one row.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct RowError {
    /// 1-based line of the upload.
    pub line: usize,
    /// The field at fault, if one.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// A parsed upload.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// Examples, labels as ids into `labels`.
    pub examples: Vec<Example>,
    /// Class names by id.
    pub labels: Vec<String>,
}

#[derive(Debug, Clone)]
enum RawLabel {
    Id(usize),
    Name(String),
}

struct Row {
    line: usize,
    text: String,
    label: RawLabel,
    label_text: Option<String>,
}

fn row_error(line: usize, field: Option<&str>, message: impl Into<String>) -> RowError {
    RowError {
        line,
        field: field.map(str::to_string),
        message: message.into(),
    }
}

/// Parses `body`; on failure, the first [`MAX_ERRORS`] row errors.
pub fn parse(body: &[u8], format: Format) -> Result<Parsed, Vec<RowError>> {
    let text = std::str::from_utf8(body)
        .map_err(|e| vec![row_error(1, None, format!("the upload is not UTF-8: {e}"))])?;
    if text.trim().is_empty() {
        return Err(vec![row_error(1, None, "the dataset has no rows")]);
    }
    let mut errors = Vec::new();
    let rows = match format {
        Format::Jsonl => jsonl_rows(text, &mut errors),
        Format::Csv => csv_rows(text, &mut errors),
    };
    if errors.is_empty() && rows.is_empty() {
        errors.push(row_error(1, None, "the dataset has no rows"));
    }
    if !errors.is_empty() {
        errors.truncate(MAX_ERRORS);
        return Err(errors);
    }
    label_rows(rows)
}

fn check_row(
    line: usize,
    text: Option<String>,
    label: Option<RawLabel>,
) -> Result<(String, RawLabel), RowError> {
    let text = text.ok_or_else(|| row_error(line, Some("text"), "missing `text` (a string)"))?;
    if text.trim().is_empty() {
        return Err(row_error(line, Some("text"), "`text` is empty"));
    }
    let label = label.ok_or_else(|| {
        row_error(
            line,
            Some("label"),
            "missing `label` (a non-negative integer or a string)",
        )
    })?;
    if let RawLabel::Name(n) = &label {
        if n.trim().is_empty() {
            return Err(row_error(line, Some("label"), "`label` is empty"));
        }
    }
    Ok((text, label))
}

fn jsonl_rows(text: &str, errors: &mut Vec<RowError>) -> Vec<Row> {
    let mut rows = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(e) => {
                errors.push(row_error(line, None, format!("invalid JSON: {e}")));
                continue;
            }
        };
        let Some(obj) = value.as_object() else {
            errors.push(row_error(line, None, "expected a JSON object"));
            continue;
        };
        let text = obj.get("text").and_then(|v| v.as_str()).map(str::to_string);
        let label = match obj.get("label") {
            Some(serde_json::Value::Number(n)) => match n.as_u64() {
                Some(id) => Some(RawLabel::Id(id as usize)),
                None => {
                    errors.push(row_error(
                        line,
                        Some("label"),
                        "must be a non-negative integer",
                    ));
                    continue;
                }
            },
            Some(serde_json::Value::String(s)) => Some(RawLabel::Name(s.clone())),
            Some(_) => {
                errors.push(row_error(
                    line,
                    Some("label"),
                    "must be an integer or a string",
                ));
                continue;
            }
            None => None,
        };
        match check_row(line, text, label) {
            Ok((text, label)) => rows.push(Row {
                line,
                text,
                label,
                label_text: obj
                    .get("label_text")
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
            }),
            Err(e) => errors.push(e),
        }
    }
    rows
}

fn csv_rows(text: &str, errors: &mut Vec<RowError>) -> Vec<Row> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            errors.push(row_error(1, None, format!("unreadable header: {e}")));
            return Vec::new();
        }
    };
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    let (Some(text_col), Some(label_col)) = (column("text"), column("label")) else {
        errors.push(row_error(
            1,
            None,
            "the header must name the columns `text` and `label`",
        ));
        return Vec::new();
    };
    let label_text_col = column("label_text");
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                errors.push(row_error(line, None, format!("malformed CSV: {e}")));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        let text = record.get(text_col).map(str::to_string);
        let label = record
            .get(label_col)
            .map(|l| match l.trim().parse::<usize>() {
                Ok(id) => RawLabel::Id(id),
                Err(_) => RawLabel::Name(l.trim().to_string()),
            });
        match check_row(line, text, label) {
            Ok((text, label)) => rows.push(Row {
                line,
                text,
                label,
                label_text: label_text_col
                    .and_then(|c| record.get(c))
                    .map(str::to_string),
            }),
            Err(e) => errors.push(e),
        }
    }
    rows
}

/// Integer labels keep their ids (named by `label_text` when given); string
/// labels get ids in sorted order. Mixing the two is an error.
fn label_rows(rows: Vec<Row>) -> Result<Parsed, Vec<RowError>> {
    let first_is_id = matches!(rows[0].label, RawLabel::Id(_));
    let mixed: Vec<RowError> = rows
        .iter()
        .filter(|r| matches!(r.label, RawLabel::Id(_)) != first_is_id)
        .take(MAX_ERRORS)
        .map(|r| row_error(r.line, Some("label"), "mixes integer and string labels"))
        .collect();
    if !mixed.is_empty() {
        return Err(mixed);
    }
    if first_is_id {
        let max = rows
            .iter()
            .filter_map(|r| match r.label {
                RawLabel::Id(id) => Some(id),
                RawLabel::Name(_) => None,
            })
            .max()
            .unwrap_or(0);
        if max >= 1000 {
            return Err(vec![row_error(
                1,
                Some("label"),
                "label ids must be below 1000",
            )]);
        }
        let mut names: Vec<Option<String>> = vec![None; max + 1];
        for r in &rows {
            if let (RawLabel::Id(id), Some(name)) = (&r.label, &r.label_text) {
                names[*id].get_or_insert_with(|| name.clone());
            }
        }
        let labels = names
            .into_iter()
            .enumerate()
            .map(|(i, n)| n.unwrap_or_else(|| i.to_string()))
            .collect();
        let examples = rows
            .into_iter()
            .map(|r| Example {
                text: r.text,
                label: match r.label {
                    RawLabel::Id(id) => id,
                    RawLabel::Name(_) => unreachable!("checked above"),
                },
            })
            .collect();
        return Ok(Parsed { examples, labels });
    }
    let ids: BTreeMap<String, usize> = rows
        .iter()
        .filter_map(|r| match &r.label {
            RawLabel::Name(n) => Some(n.clone()),
            RawLabel::Id(_) => None,
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, i))
        .collect();
    let labels = ids.keys().cloned().collect();
    let examples = rows
        .into_iter()
        .map(|r| {
            let label = match &r.label {
                RawLabel::Name(n) => ids[n],
                RawLabel::Id(_) => unreachable!("checked above"),
            };
            Example {
                text: r.text,
                label,
            }
        })
        .collect();
    Ok(Parsed { examples, labels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_with_label_text_and_errors_by_line() {
        let ok = "{\"text\":\"a\",\"label\":2,\"label_text\":\"positive\"}\n\n{\"text\":\"b\",\"label\":0}\n";
        let p = parse(ok.as_bytes(), Format::Jsonl).unwrap();
        assert_eq!(p.labels, ["0", "1", "positive"]);
        assert_eq!(p.examples[1].label, 0);
        let bad =
            "{\"text\":\"a\",\"label\":1}\n{\"text\":\"\",\"label\":1}\nnot json\n{\"label\":1}\n";
        let errs = parse(bad.as_bytes(), Format::Jsonl).unwrap_err();
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4]);
        assert_eq!(errs[0].field.as_deref(), Some("text"));
    }

    #[test]
    fn csv_string_labels_sorted() {
        let p = parse(b"text,label\nhi,pos\n\"x, y\",neg\n", Format::Csv).unwrap();
        assert_eq!(p.labels, ["neg", "pos"]);
        assert_eq!(p.examples[0].label, 1);
        let errs = parse(b"text,label\nhi,pos\n,neg\n", Format::Csv).unwrap_err();
        assert_eq!((errs[0].line, errs[0].field.as_deref()), (3, Some("text")));
    }
}
