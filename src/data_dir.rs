//! The layout of the service's data folder (`--data-dir`), in one place:
//!
//! ```text
//! tuneserve.db                      SQLite: datasets, jobs, metrics, events, checkpoints, models
//! datasets/{id}.jsonl               the normalised copy of each uploaded dataset
//! jobs/{id}/checkpoints/step-N/     a job's checkpoints (each also a model folder)
//! models/{id}/                      fine-tuned models, Hugging Face classifier layout
//! ```
//!
//! Paths kept in the database are relative to the folder ([`DataDir::relative`]),
//! so the same database works wherever the folder is mounted; [`DataDir::resolve`]
//! turns them back into paths (absolute ones, written by older versions, are
//! taken as they are).

use std::path::{Path, PathBuf};

/// The service's data folder (`--data-dir`): the one place that knows its layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

/// The datasets' folder, under the root.
const DATASETS: &str = "datasets";
/// The jobs' folders' folder, under the root.
const JOBS: &str = "jobs";
/// The models' folder, under the root.
const MODELS: &str = "models";
/// A job's checkpoints' folder, under its folder.
const CHECKPOINTS: &str = "checkpoints";
/// The folders directly under the root that hold files.
const SUBDIRS: [&str; 3] = [DATASETS, JOBS, MODELS];

impl DataDir {
    /// The folder at `root` (nothing is created yet: see [`DataDir::create`]).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Creates the folder and its subfolders when missing.
    pub fn create(&self) -> std::io::Result<()> {
        for sub in SUBDIRS {
            std::fs::create_dir_all(self.root.join(sub))?;
        }
        Ok(())
    }

    /// The folder's path as given (`--data-dir`); stored paths are relative to it.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `tuneserve.db` in the folder: the SQLite file used when `--database-url` is not given.
    pub fn database(&self) -> PathBuf {
        self.root.join("tuneserve.db")
    }

    /// The folder of the datasets' normalised copies (and of uploads while
    /// they arrive).
    pub fn datasets(&self) -> PathBuf {
        self.root.join(DATASETS)
    }

    /// The normalised copy of dataset `id`.
    pub fn dataset(&self, id: &str) -> PathBuf {
        self.datasets().join(format!("{id}.jsonl"))
    }

    /// Job `id`'s folder (its checkpoints are in `checkpoints/` under it).
    pub fn job(&self, job_id: &str) -> PathBuf {
        self.root.join(JOBS).join(job_id)
    }

    /// Where job `id` keeps its checkpoints.
    pub fn checkpoints(&self, job_id: &str) -> PathBuf {
        self.job(job_id).join(CHECKPOINTS)
    }

    /// The folder of fine-tuned model `id`.
    pub fn model(&self, id: &str) -> PathBuf {
        self.root.join(MODELS).join(id)
    }

    /// `path` as stored in the database: relative to the folder when inside it.
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// `text` (an error message, say) with this folder's location replaced by
    /// `<data>`: clients see where a file is within the data folder, never
    /// where the folder is on the server.
    pub fn scrub(&self, text: &str) -> String {
        let root = self.root.display().to_string();
        let root = root.trim_end_matches('/');
        if root.is_empty() {
            return text.to_string();
        }
        text.replace(root, "<data>")
    }

    /// A path read from the database, as a path on this machine.
    pub fn resolve(&self, stored: &str) -> PathBuf {
        let path = Path::new(stored);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.root.join(path)
        }
    }

    /// The model folders (not temporaries) untouched for `min_age`, by name.
    pub fn model_folders(&self, min_age: std::time::Duration) -> Vec<(String, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(self.root.join(MODELS)) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter(|e| {
                let age = e.metadata().and_then(|m| m.modified()).ok();
                age.and_then(|t| t.elapsed().ok())
                    .is_some_and(|a| a >= min_age)
            })
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .filter(|(name, _)| !name.starts_with('.'))
            .collect()
    }

    /// Removes what interrupted writes left behind (temporary files and
    /// folders untouched for `min_age`) in the dataset, model and checkpoint
    /// folders; returns how many.
    pub fn sweep_temporaries(&self, min_age: std::time::Duration) -> std::io::Result<usize> {
        let mut dirs = vec![self.datasets(), self.root.join(MODELS)];
        if let Ok(jobs) = std::fs::read_dir(self.root.join(JOBS)) {
            dirs.extend(jobs.flatten().map(|job| job.path().join(CHECKPOINTS)));
        }
        let mut removed = 0;
        for dir in dirs {
            removed += crate::atomic::sweep_temporaries(&dir, min_age)?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_paths_are_relative_and_resolve_back() {
        let dir = DataDir::new("/srv/data");
        let model = dir.model("model-a");
        assert_eq!(dir.relative(&model), "models/model-a");
        assert_eq!(dir.resolve("models/model-a"), model);
        assert_eq!(dir.resolve("/old/abs/path"), Path::new("/old/abs/path"));
        assert_eq!(
            dir.relative(&dir.checkpoints("job-1").join("step-3")),
            "jobs/job-1/checkpoints/step-3"
        );
        assert_eq!(
            dir.dataset("ds-1"),
            Path::new("/srv/data/datasets/ds-1.jsonl")
        );
    }
}
