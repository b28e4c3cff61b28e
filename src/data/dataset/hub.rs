//! Dataset splits from the Hugging Face Hub, through [`crate::hub::HubRepo`] and
//! its cache (so `HF_HOME`, `HF_TOKEN`, `HF_ENDPOINT` and `HF_HUB_OFFLINE` apply).

use std::path::PathBuf;

use crate::hub::{HubRepo, RepoKind};

use super::{Dataset, DatasetError, ParseOptions};

/// The files that may hold `split`, in the order they are tried.
fn split_candidates(split: &str) -> Vec<String> {
    vec![
        format!("{split}.jsonl"),
        format!("data/{split}.jsonl"),
        format!("{split}.csv"),
    ]
}

/// Downloads (or finds in the cache) the file of `split` in the dataset repository
/// `repo` (`owner/name`, optionally `@revision`), trying `{split}.jsonl`, then
/// `data/{split}.jsonl`, then `{split}.csv`; returns its local path.
///
/// When none can be had, the error names the files tried and the failure for the
/// first one: with `HF_HUB_OFFLINE=1` and an empty cache that says the file is not
/// cached and offline mode is on.
pub fn fetch_hub_split(repo: &str, split: &str) -> Result<PathBuf, DatasetError> {
    let hub = HubRepo::parse(repo, RepoKind::Dataset)
        .ok_or_else(|| DatasetError::BadRepo(repo.to_string()))?;
    if !crate::hub::is_name(split) {
        return Err(DatasetError::BadSplit(split.to_string()));
    }
    let tried = split_candidates(split);
    let mut first_error = None;
    for file in &tried {
        match hub.get(file) {
            Ok(path) => return Ok(path),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(source) => Err(DatasetError::Hub {
            repo: repo.to_string(),
            split: split.to_string(),
            tried,
            source: Box::new(source),
        }),
        None => Err(DatasetError::BadSplit(split.to_string())),
    }
}

/// [`fetch_hub_split`], then [`Dataset::from_path`] with the format from the file's
/// extension.
pub fn load_hub_split(
    repo: &str,
    split: &str,
    opts: &ParseOptions<'_>,
) -> Result<Dataset, DatasetError> {
    let path = fetch_hub_split(repo, split)?;
    Dataset::from_path(&path, None, opts)
}
