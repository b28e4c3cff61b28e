//! Checkpoints: `step-N/` folders holding what trains (the whole model in
//! Hugging Face's classifier layout, or an adapter in PEFT's: either way a
//! checkpoint also serves as a model), `optimizer.safetensors` for those
//! tensors alone, and `trainer_state.json`. Each is built under a temporary name, fsynced and renamed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::optim::AdamW;
use super::{History, Hyperparameters, Observer, TrainError, TrainEvent};
use crate::atomic;
use crate::model::{write_trained, LoadedModel, Trained};

/// Where a run stands, saved with each checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub step: usize,
    /// Epoch (0-based) the next step belongs to.
    pub epoch: usize,
    /// Micro-batches of that epoch already consumed (position in its shuffled order).
    pub micro_batches_done: usize,
    /// Optimizer steps of the whole run.
    pub total_steps: usize,
    /// The seed: epoch orders derive from `(seed, epoch)`, dropout from `(seed, step)`,
    /// so this and the position are the whole generator state.
    pub seed: u64,
    /// Real training tokens seen.
    pub tokens: u64,
    /// Best value of `metric_for_best_model` so far.
    pub best_metric: Option<f64>,
    /// The step `best_metric` was reached at; a checkpoint there is never pruned.
    pub best_step: Option<usize>,
    /// Evaluations since the best one (early stopping's counter).
    pub evals_without_improvement: usize,
    /// The hyperparameters of the run (a resume must use the same).
    pub hyperparameters: Hyperparameters,
    /// Every logged step and evaluation so far.
    pub history: History,
}

fn ckpt_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint(format!("{}: {e}", path.display()))
}

/// Writes `dir/step-N` for the state's step.
pub(crate) fn write(
    dir: &Path,
    model: &LoadedModel,
    trained: Trained,
    optimizer: &AdamW,
    state: &TrainerState,
) -> Result<PathBuf, TrainError> {
    let out = dir.join(format!("step-{}", state.step));
    let written = atomic::write_dir(&out, |tmp| -> Result<(), TrainError> {
        write_trained(&model.config, &model.tokenizer, trained, tmp)?;
        optimizer.save(&tmp.join("optimizer.safetensors"))?;
        let path = tmp.join("trainer_state.json");
        let json = serde_json::to_string_pretty(state).map_err(|e| ckpt_err(&path, e))?;
        std::fs::write(&path, json).map_err(|e| atomic::IoError::new(&path, e))?;
        Ok(())
    });
    written.map_err(|e| TrainError::WritingCheckpoint {
        step: state.step,
        source: Box::new(e),
    })?;
    Ok(out)
}

/// Reads `trainer_state.json` of a checkpoint folder.
pub fn read_trainer_state(dir: &Path) -> Result<TrainerState, TrainError> {
    let path = dir.join("trainer_state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| ckpt_err(&path, e))?;
    serde_json::from_str(&text).map_err(|e| ckpt_err(&path, e))
}

/// The complete checkpoints (`step-N` folders with a state file) in `dir`, by step.
pub fn list_checkpoints(dir: &Path) -> Vec<(usize, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(usize, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            let path = e.path();
            path.join("trainer_state.json")
                .is_file()
                .then_some((step, path))
        })
        .collect();
    found.sort();
    found
}

/// Deletes the oldest checkpoints beyond `limit`, never the best one, and
/// reports each deletion.
pub(crate) fn prune(
    checkpoints: &mut Vec<(usize, PathBuf)>,
    limit: usize,
    best_step: Option<usize>,
    observer: &mut dyn Observer,
) -> Result<(), TrainError> {
    while checkpoints.len() > limit {
        let Some(pos) = checkpoints.iter().position(|(s, _)| Some(*s) != best_step) else {
            break;
        };
        let (step, path) = checkpoints.remove(pos);
        std::fs::remove_dir_all(&path).map_err(|e| ckpt_err(&path, e))?;
        observer.on_event(&TrainEvent::CheckpointRemoved { step, path });
    }
    Ok(())
}

impl TrainerState {
    /// The state of a run at step 0.
    pub(super) fn fresh(total_steps: usize, h: &Hyperparameters) -> Self {
        Self {
            step: 0,
            epoch: 0,
            micro_batches_done: 0,
            total_steps,
            seed: h.seed,
            tokens: 0,
            best_metric: None,
            best_step: None,
            evals_without_improvement: 0,
            hyperparameters: h.clone(),
            history: History::default(),
        }
    }
}
