//! Files from the Hugging Face Hub, through `hf-hub`'s standard cache.
//!
//! The cache location follows `HF_HOME` (default `~/.cache/huggingface`), the
//! token `HF_TOKEN`, the endpoint `HF_ENDPOINT`. With `HF_HUB_OFFLINE=1` only the
//! cache is consulted, as the Python libraries do.

use std::path::PathBuf;
use std::time::Duration;

use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

/// A failure to obtain a file from the Hub.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The file could not be fetched (network, authentication, missing file).
    #[error("could not fetch `{file}` from the Hugging Face Hub repo `{repo}`: {reason}")]
    Fetch {
        /// `owner/name` of the repository.
        repo: String,
        /// The file inside the repository.
        file: String,
        /// What went wrong, in words.
        reason: String,
    },
    /// The repository or the file does not exist (or is private to others).
    #[error("`{file}` was not found in the Hugging Face Hub repo `{repo}` (no such repo or file)")]
    NotFound {
        /// `owner/name` of the repository.
        repo: String,
        /// The file inside the repository.
        file: String,
    },
    /// Offline mode is on and the file is not in the local cache.
    #[error(
        "`{file}` of Hub repo `{repo}` is not in the local cache and HF_HUB_OFFLINE is set; \
         download it once with network access or pass a local directory"
    )]
    NotCached {
        /// `owner/name` of the repository.
        repo: String,
        /// The file inside the repository.
        file: String,
    },
}

impl HubError {
    /// A repo or file that does not exist stays so; a Hub out of reach (or a
    /// file not cached while offline) may come back.
    pub fn cause(&self) -> crate::fault::Cause {
        match self {
            Self::NotFound { .. } => crate::fault::Cause::Permanent,
            Self::Fetch { .. } | Self::NotCached { .. } => crate::fault::Cause::Transient,
        }
    }
}

/// Which kind of repository a file lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    /// A model repository (`gpt2`, `distilgpt2`, `owner/name`).
    Model,
    /// A dataset repository (`mteb/tweet_sentiment_extraction`).
    Dataset,
}

/// A Hub repository at an optional revision (branch, tag or commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRepo {
    /// `owner/name` or a bare canonical name such as `gpt2`.
    pub id: String,
    /// Branch, tag or commit; `main` when absent.
    pub revision: Option<String>,
    /// Model or dataset.
    pub kind: RepoKind,
}

impl HubRepo {
    /// Parses `name`, `owner/name` or either followed by `@revision`.
    ///
    /// Returns `None` when the text cannot be a Hub id (empty parts, more than one
    /// `/`, characters the Hub does not allow).
    pub fn parse(text: &str, kind: RepoKind) -> Option<Self> {
        let (id, revision) = match text.split_once('@') {
            Some((id, rev)) if !rev.is_empty() => (id, Some(rev.to_string())),
            Some(_) => return None,
            None => (text, None),
        };
        let parts: Vec<&str> = id.split('/').collect();
        if parts.len() > 2 || !parts.iter().all(|p| is_name(p)) {
            return None;
        }
        Some(Self {
            id: id.to_string(),
            revision,
            kind,
        })
    }

    fn repo(&self) -> Repo {
        let kind = match self.kind {
            RepoKind::Model => RepoType::Model,
            RepoKind::Dataset => RepoType::Dataset,
        };
        match &self.revision {
            Some(rev) => Repo::with_revision(self.id.clone(), kind, rev.clone()),
            None => Repo::new(self.id.clone(), kind),
        }
    }

    /// The local path of `file` when it is in the cache already (nothing is
    /// downloaded).
    pub fn cached(&self, file: &str) -> Option<PathBuf> {
        Cache::from_env().repo(self.repo()).get(file)
    }

    /// Returns the local path of `file`, downloading it into the cache if needed.
    pub fn get(&self, file: &str) -> Result<PathBuf, HubError> {
        if let Some(path) = self.cached(file) {
            return Ok(path);
        }
        let api = self.api(file)?;
        api.repo(self.repo())
            .get(file)
            .map_err(|e| self.classify(file, e))
    }

    /// Asks the Hub whether the repository exists at its revision, waiting at
    /// most `timeout`: `Ok` when it does, [`HubError::NotFound`] when the Hub
    /// says there is no such repo or revision, another error when it cannot be
    /// asked (offline, unreachable, slow). Downloads nothing.
    pub fn exists(&self, timeout: Duration) -> Result<(), HubError> {
        const WHAT: &str = "(repository info)";
        let api = self.api(WHAT)?;
        let answer = api.repo(self.repo()).info_request().timeout(timeout).call();
        match answer {
            Ok(_) => Ok(()),
            Err(e) => Err(self.classify(WHAT, ApiError::RequestError(Box::new(e)))),
        }
    }

    /// A client for `file`'s request, refused while offline.
    fn api(&self, file: &str) -> Result<Api, HubError> {
        if offline() {
            return Err(HubError::NotCached {
                repo: self.id.clone(),
                file: file.to_string(),
            });
        }
        let token = std::env::var("HF_TOKEN")
            .ok()
            .or_else(|| Cache::from_env().token());
        ApiBuilder::from_env()
            .with_token(token)
            .with_progress(false)
            .build()
            .map_err(|e| self.fetch_error(file, e.to_string()))
    }

    /// A missing repo, revision or file (404, or the Hub's `RepoNotFound` /
    /// `RevisionNotFound` error code, which it sends with 401 to anonymous
    /// callers) is [`HubError::NotFound`]; anything else may pass.
    fn classify(&self, file: &str, error: ApiError) -> HubError {
        if let ApiError::RequestError(r) = &error {
            if let ureq::Error::Status(status, resp) = r.as_ref() {
                let code = resp.header("x-error-code").unwrap_or_default();
                if *status == 404 || code == "RepoNotFound" || code == "RevisionNotFound" {
                    return HubError::NotFound {
                        repo: self.id.clone(),
                        file: file.to_string(),
                    };
                }
            }
        }
        self.fetch_error(file, error.to_string())
    }

    fn fetch_error(&self, file: &str, reason: String) -> HubError {
        HubError::Fetch {
            repo: self.id.clone(),
            file: file.to_string(),
            reason,
        }
    }
}

/// Whether `text` is one part of a Hub name (an owner, a repository, a
/// split): letters, digits, `-`, `_` and `.`, not empty, not starting with `.`
/// (so never `..` or a hidden file).
pub fn is_name(text: &str) -> bool {
    !text.is_empty()
        && !text.starts_with('.')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "yes" | "ON" | "on"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hub_ids() {
        let r = HubRepo::parse("gpt2", RepoKind::Model).unwrap();
        assert_eq!((r.id.as_str(), r.revision), ("gpt2", None));
        let r = HubRepo::parse("openai-community/gpt2@v1.0", RepoKind::Model).unwrap();
        assert_eq!(r.id, "openai-community/gpt2");
        assert_eq!(r.revision.as_deref(), Some("v1.0"));
        for bad in ["", "a/b/c", "a//b", "gpt2@", "../x", "x y"] {
            assert!(HubRepo::parse(bad, RepoKind::Model).is_none(), "{bad}");
        }
    }
}
