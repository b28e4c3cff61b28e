//! The two file formats a dataset can come in, and guessing which one a file is.

use std::path::Path;
use std::str::FromStr;

use super::DatasetError;

/// A dataset file's format: JSONL or CSV (a stored copy is always JSONL).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum DatasetFormat {
    /// One JSON object per line with `text` and `label` (and optionally `label_text`).
    Jsonl,
    /// Comma-separated values with a header row naming a `text` column and a `label`
    /// (or `sentiment`) column.
    Csv,
}

impl DatasetFormat {
    /// The format implied by a file name's extension (`.jsonl`, `.ndjson`, `.json`,
    /// `.csv`, case-insensitive), if any.
    pub fn from_extension(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "ndjson" | "json" => Some(Self::Jsonl),
            "csv" => Some(Self::Csv),
            _ => None,
        }
    }

    /// The format suggested by the content: JSONL when the first non-blank byte
    /// (after a UTF-8 byte-order mark) is `{`, CSV otherwise.
    pub fn sniff(bytes: &[u8]) -> Self {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Self::Jsonl,
            _ => Self::Csv,
        }
    }

    /// The extension of `path` when it names a format, else the content's guess.
    pub fn guess(path: Option<&Path>, bytes: &[u8]) -> Self {
        path.and_then(Self::from_extension)
            .unwrap_or_else(|| Self::sniff(bytes))
    }
}

impl std::fmt::Display for DatasetFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str((*self).into())
    }
}

/// Also how the store reads the name it wrote (`jsonl`, `csv`).
impl FromStr for DatasetFormat {
    type Err = DatasetError;

    /// Parses `jsonl` (or `ndjson`, `json`) and `csv`, case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" | "json" => Ok(Self::Jsonl),
            "csv" => Ok(Self::Csv),
            _ => Err(DatasetError::UnknownFormat(s.to_string())),
        }
    }
}
