//! Label maps: mapping each row's label to an id, and naming the ids.
//!
//! Without a given map the names come from the data:
//! * only names (strings) → the sorted unique names, ids in that order;
//! * integer ids → ids must run from 0 to n-1 without gaps, named by the rows'
//!   `label_text` when present (it must be consistent: one name per id, one id per
//!   name), else `LABEL_i` as Hugging Face does; a name label is then accepted only
//!   when some `label_text` gives it an id.
//!
//! With a given map (`id2label`), names must be among its names and ids below its
//! length; a `label_text` must agree with the map.
//!
//! A string label made only of ASCII digits (every CSV label is a string) counts as
//! an integer id, unless the given map has it as a name.

use std::collections::{BTreeSet, HashMap};

use super::error::ErrorSink;
use super::raw::{RawLabel, RawRow};
use super::DatasetError;

/// How many names an "unknown label" message lists.
const LISTED_NAMES: usize = 10;

/// Ids per row (`None` where a row error was recorded) and the id → name map.
pub(crate) type Resolved = (Vec<Option<usize>>, Vec<String>);

/// Checks a caller's id2label: not empty, names not blank, no duplicates.
pub(crate) fn check_given(names: &[String]) -> Result<(), DatasetError> {
    let bad = |reason: String| Err(DatasetError::BadLabelMap { reason });
    if names.is_empty() {
        return bad("it has no labels".to_string());
    }
    let mut seen = HashMap::new();
    for (id, name) in names.iter().enumerate() {
        if name.trim().is_empty() {
            return bad(format!("label {id} has an empty name"));
        }
        if let Some(first) = seen.insert(name.as_str(), id) {
            return bad(format!("`{name}` names both label {first} and label {id}"));
        }
    }
    Ok(())
}

/// Maps every row's label to an id. Row-level problems go to `errors` (and win
/// over the `Err` of a gap in integer labels, which the caller checks second).
pub(crate) fn resolve(
    rows: &[RawRow],
    given: Option<&[String]>,
    errors: &mut ErrorSink,
) -> Result<Resolved, DatasetError> {
    match given {
        Some(names) => Ok((resolve_given(rows, names, errors), names.to_vec())),
        None => resolve_from_data(rows, errors),
    }
}

fn digits_id(name: &str) -> Option<u64> {
    if name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
}

fn known_list(names: &[String]) -> String {
    let mut listed: Vec<String> = names
        .iter()
        .take(LISTED_NAMES)
        .map(|n| format!("`{n}`"))
        .collect();
    if names.len() > LISTED_NAMES {
        listed.push("…".to_string());
    }
    listed.join(", ")
}

fn resolve_given(rows: &[RawRow], names: &[String], errors: &mut ErrorSink) -> Vec<Option<usize>> {
    let by_name: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(id, name)| (name.as_str(), id))
        .collect();
    let n = names.len();
    let unknown = || {
        format!(
            "(known labels: {}, or ids 0 to {})",
            known_list(names),
            n - 1
        )
    };
    let mut ids = Vec::with_capacity(rows.len());
    for row in rows {
        let id = match &row.label {
            RawLabel::Name(name) => by_name.get(name.as_str()).copied().or_else(|| {
                digits_id(name)
                    .and_then(|id| usize::try_from(id).ok())
                    .filter(|&id| id < n)
            }),
            RawLabel::Id(id) => usize::try_from(*id).ok().filter(|&id| id < n),
        };
        let Some(id) = id else {
            errors.push(
                row.line,
                "label",
                format!("unknown label {} {}", row.label, unknown()),
            );
            ids.push(None);
            continue;
        };
        if let Some(text) = row.label_text.as_deref() {
            if text != names[id] {
                errors.push(
                    row.line,
                    "label_text",
                    format!(
                        "`{text}` does not match label {id}, which the label map names `{}`",
                        names[id]
                    ),
                );
                ids.push(None);
                continue;
            }
        }
        ids.push(Some(id));
    }
    ids
}

/// A label with digit strings read as ids.
enum Kind<'a> {
    Id(u64),
    Name(&'a str),
}

fn kind(label: &RawLabel) -> Kind<'_> {
    match label {
        RawLabel::Id(id) => Kind::Id(*id),
        RawLabel::Name(name) => digits_id(name).map_or(Kind::Name(name), Kind::Id),
    }
}

fn resolve_from_data(rows: &[RawRow], errors: &mut ErrorSink) -> Result<Resolved, DatasetError> {
    // Pass 1: which ids and names occur, and what `label_text` says about ids.
    let mut ids_seen = BTreeSet::new();
    let mut first_id_line = None;
    let mut id_name: HashMap<u64, (&str, usize)> = HashMap::new();
    let mut name_id: HashMap<&str, (u64, usize)> = HashMap::new();
    let mut names_seen = BTreeSet::new();
    for row in rows {
        match (kind(&row.label), row.label_text.as_deref()) {
            (Kind::Id(id), text) => {
                ids_seen.insert(id);
                first_id_line.get_or_insert(row.line);
                if let Some(text) = text {
                    pair_id_name(row.line, id, text, &mut id_name, &mut name_id, errors);
                }
            }
            (Kind::Name(name), text) => {
                names_seen.insert(name);
                if let Some(text) = text.filter(|t| t != &name) {
                    errors.push(
                        row.line,
                        "label_text",
                        format!("`{text}` differs from the label `{name}`"),
                    );
                }
            }
        }
    }
    let Some(first_id_line) = first_id_line else {
        // Only names: sorted unique.
        let names: Vec<String> = names_seen.iter().map(|n| n.to_string()).collect();
        let ids = rows
            .iter()
            .map(|row| match &row.label {
                RawLabel::Name(name) => names.binary_search(name).ok(),
                RawLabel::Id(_) => None,
            })
            .collect();
        return Ok((ids, names));
    };
    // Pass 2: integer ids; names must be known from `label_text`.
    let mut ids = Vec::with_capacity(rows.len());
    for row in rows {
        let id = match kind(&row.label) {
            Kind::Id(id) => usize::try_from(id).ok(),
            Kind::Name(name) => match name_id.get(name) {
                Some(&(id, _)) => usize::try_from(id).ok(),
                None => {
                    let message = unknown_name(name, &name_id, first_id_line);
                    errors.push(row.line, "label", message);
                    None
                }
            },
        };
        ids.push(id);
    }
    let max = ids_seen.last().copied().unwrap_or(0);
    let contiguous = u64::try_from(ids_seen.len()).is_ok_and(|len| len == max.saturating_add(1));
    if !contiguous {
        let missing = (0..max)
            .filter(|id| !ids_seen.contains(id))
            .take(5)
            .collect();
        return Err(DatasetError::LabelGaps { max, missing });
    }
    let names = (0..=max)
        .map(|id| match id_name.get(&id) {
            Some((name, _)) => name.to_string(),
            None => default_label(id as usize),
        })
        .collect();
    Ok((ids, names))
}

/// Why a label name cannot be turned into an id when other rows use ids.
fn unknown_name(name: &str, name_id: &HashMap<&str, (u64, usize)>, first_id_line: usize) -> String {
    if name_id.is_empty() {
        return format!(
            "`{name}` is a name, but other rows use integer ids (first on line \
             {first_id_line}); use names or ids, not both"
        );
    }
    let mut known: Vec<String> = name_id.keys().map(|n| n.to_string()).collect();
    known.sort();
    format!(
        "unknown label `{name}`: the rows' label_text names only {}",
        known_list(&known)
    )
}

/// `LABEL_0`, `LABEL_1`, …: how Hugging Face names a class it was not told
/// the name of.
pub fn default_label(id: usize) -> String {
    format!("LABEL_{id}")
}

/// Records that row `line` pairs `id` with `name`, flagging contradictions.
fn pair_id_name<'a>(
    line: usize,
    id: u64,
    name: &'a str,
    id_name: &mut HashMap<u64, (&'a str, usize)>,
    name_id: &mut HashMap<&'a str, (u64, usize)>,
    errors: &mut ErrorSink,
) {
    if let Some(&(known, first)) = id_name.get(&id) {
        if known != name {
            let message = format!("`{name}` names label {id}, but line {first} named it `{known}`");
            errors.push(line, "label_text", message);
        }
        return;
    }
    if let Some(&(other, first)) = name_id.get(name) {
        let message =
            format!("`{name}` names label {id}, but line {first} gave it to label {other}");
        errors.push(line, "label_text", message);
        return;
    }
    id_name.insert(id, (name, line));
    name_id.insert(name, (id, line));
}
