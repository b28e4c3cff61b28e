//! The normalised copy of a dataset on disk: one `{"text", "label"}` JSON
//! object per line, `label` an id into the dataset's labels (kept in the store).

use std::io::{BufRead, Write};
use std::path::Path;

use crate::data::Example;

#[derive(serde::Serialize, serde::Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    text: std::borrow::Cow<'a, str>,
    label: usize,
}

/// Writes `examples` to `path` (through a temporary file renamed into place).
pub fn write_examples(path: &Path, examples: &[Example]) -> std::io::Result<()> {
    let tmp = path.with_extension("jsonl.tmp");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        for e in examples {
            let line = Line {
                text: e.text.as_str().into(),
                label: e.label,
            };
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Reads a normalised dataset back.
pub fn read_examples(path: &Path) -> std::io::Result<Vec<Example>> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut examples = Vec::new();
    for line in file.lines() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line)?;
        examples.push(Example {
            text: parsed.text.into_owned(),
            label: parsed.label,
        });
    }
    Ok(examples)
}
