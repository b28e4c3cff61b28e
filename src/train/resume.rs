//! Where a run starts: from scratch, from a named checkpoint, or from the
//! newest checkpoint in its folder that loads, skipping (and reporting) any
//! newer one that is broken — a truncated file must not fail every retry of a
//! job while an intact older checkpoint exists.
//!
//! A checkpoint is checked whole before anything is applied: its state file,
//! every weight (names and shapes) and the optimizer's moments, so a
//! checkpoint that fails half-way leaves the run as it was.

use std::path::{Path, PathBuf};

use candle_core::{Tensor, Var};

use super::checkpoint::{list_checkpoints, read_trainer_state, TrainerState};
use super::optim::{AdamW, SavedMoments};
use super::{Hyperparameters, Observer, TrainError, TrainEvent};

/// Which checkpoint, if any, a run continues from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Resume {
    /// Start at step 0.
    #[default]
    No,
    /// Continue from this `step-N` folder; an error if it does not load.
    From(PathBuf),
    /// Continue from the newest checkpoint in the run's checkpoint folder that
    /// loads (skipping broken ones with a [`TrainEvent::CheckpointSkipped`]);
    /// start at step 0 when there is none.
    Latest,
}

/// A checkpoint read and checked, not yet applied.
struct Loaded {
    dir: PathBuf,
    state: TrainerState,
    weights: Vec<Tensor>,
    moments: SavedMoments,
}

/// Applies the checkpoint `resume` names to `vars` and `optimizer`; returns
/// its state (and reports the resume with its history), or `None` when the
/// run starts fresh.
pub(super) fn resume(
    resume: &Resume,
    checkpoint_dir: &Path,
    h: &Hyperparameters,
    vars: &[(String, Var)],
    optimizer: &mut AdamW,
    observer: &mut dyn Observer,
) -> Result<Option<TrainerState>, TrainError> {
    let loaded = match resume {
        Resume::No => return Ok(None),
        Resume::From(dir) => read(dir, h, vars, optimizer)?,
        Resume::Latest => {
            let newest_first = list_checkpoints(checkpoint_dir).into_iter().rev();
            let mut found = None;
            for (_, dir) in newest_first {
                match read(&dir, h, vars, optimizer) {
                    Ok(loaded) => {
                        found = Some(loaded);
                        break;
                    }
                    Err(e) => observer.on_event(&TrainEvent::CheckpointSkipped {
                        path: dir,
                        reason: e.to_string(),
                    }),
                }
            }
            match found {
                Some(loaded) => loaded,
                None => return Ok(None),
            }
        }
    };
    for ((_, var), tensor) in vars.iter().zip(&loaded.weights) {
        var.set(tensor)?;
    }
    optimizer.restore(loaded.moments)?;
    observer.on_event(&TrainEvent::Resumed {
        path: loaded.dir,
        step: loaded.state.step,
        history: loaded.state.history.clone(),
    });
    Ok(Some(loaded.state))
}

/// Reads the checkpoint in `dir` and checks it against the run.
fn read(
    dir: &Path,
    h: &Hyperparameters,
    vars: &[(String, Var)],
    optimizer: &AdamW,
) -> Result<Loaded, TrainError> {
    let state = read_trainer_state(dir)?;
    if &state.hyperparameters != h {
        return Err(TrainError::Checkpoint(format!(
            "{}: written with other hyperparameters; resume needs the same",
            dir.display()
        )));
    }
    let device = vars.first().map(|(_, v)| v.device().clone());
    let saved = crate::model::read_trained(dir, &device.unwrap_or(candle_core::Device::Cpu))
        .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    let bad = |why: String| TrainError::Checkpoint(format!("{}: {why}", dir.display()));
    let weights = vars
        .iter()
        .map(|(name, var)| match saved.get(name) {
            Some(t) if t.shape() == var.shape() => Ok(t.clone()),
            Some(t) => Err(bad(format!(
                "tensor `{name}` has shape {:?}, the run's is {:?}",
                t.dims(),
                var.dims()
            ))),
            None => Err(bad(format!("no tensor `{name}`"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let moments = optimizer.read(&dir.join("optimizer.safetensors"))?;
    Ok(Loaded {
        dir: dir.to_path_buf(),
        state,
        weights,
        moments,
    })
}
