//! The training loop.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::batches::{encode, epoch_batches, evaluate, subset, tokenize};
use super::checkpoint::{self, TrainerState};
use super::clip::{clip_scale, global_norm};
use super::optim::{AdamConfig, AdamW};
use super::schedule::learning_rate;
use super::step::{step_gradients, MicroBatch};
use super::{
    BestMetric, EvalLog, EvalMetrics, Finish, History, Hyperparameters, InvalidHyperparameter,
    Observer, StepLog, Strategy, TrainError, TrainEvent, TrainOutcome,
};
use crate::data::Example;
use crate::model::{parameter_shapes, LoadedModel};

/// Everything a run needs.
pub struct TrainSpec<'a> {
    /// The starting model; its `config.labels` must cover every example's label.
    /// Taken by value: once the trainable copy of its weights exists, these are
    /// dropped, so a caller that hands over its only copy does not hold a second
    /// model in memory for the whole run (500 MB for `gpt2`).
    pub model: LoadedModel,
    /// Training examples (subset and shuffled by the hyperparameters).
    pub train: &'a [Example],
    /// Evaluation examples, if any.
    pub eval: Option<&'a [Example]>,
    /// The run's settings.
    pub hyperparameters: &'a Hyperparameters,
    /// Where `step-N/` checkpoints go.
    pub checkpoint_dir: PathBuf,
    /// A checkpoint folder to continue from.
    pub resume_from: Option<PathBuf>,
}

/// Higher is better for every metric (the loss is negated).
fn score(m: &EvalMetrics, which: BestMetric) -> f64 {
    match which {
        BestMetric::Accuracy => m.accuracy,
        BestMetric::MacroF1 => m.macro_f1,
        BestMetric::EvalLoss => -m.loss,
    }
}

/// Trains `spec.model` on `spec.train`; see the module docs of [`crate::train`].
pub fn run(spec: TrainSpec, observer: &mut dyn Observer) -> Result<TrainOutcome, TrainError> {
    let h = spec.hyperparameters;
    h.validate()?;
    let mut model = spec.model;
    let n_positions = model.config.n_positions;
    let max_length = h.max_length.unwrap_or(n_positions);
    if max_length > n_positions {
        return Err(InvalidHyperparameter {
            field: "max_length",
            reason: format!("must be at most the model's n_positions ({n_positions})"),
        }
        .into());
    }
    if let Some(p) = h.dropout {
        (
            model.config.attn_pdrop,
            model.config.embd_pdrop,
            model.config.resid_pdrop,
        ) = (p, p, p);
    }
    let tok = model
        .tokenizer
        .with_settings(model.config.pad_id(), max_length, h.padding);
    let n_labels = model.config.num_labels();
    let train = tokenize(&tok, &subset(spec.train, h.train_subset, h.seed), n_labels)?;
    if train.ids.is_empty() {
        return Err(TrainError::Data("the training set is empty".into()));
    }
    let eval = match spec.eval {
        Some(e) if h.eval_strategy != Strategy::No && !e.is_empty() => {
            Some(tokenize(&tok, &subset(e, h.eval_subset, h.seed), n_labels)?)
        }
        _ => None,
    };

    let micro_per_epoch = train.ids.len().div_ceil(h.batch_size);
    let steps_per_epoch = micro_per_epoch.div_ceil(h.gradient_accumulation_steps);
    let total_steps = steps_per_epoch * h.epochs;

    let (net, varmap) = model.build_trainable()?;
    drop(std::mem::take(&mut model.weights));
    let vars: Vec<(String, Var)> = {
        let map = varmap.data().lock().expect("varmap lock");
        parameter_shapes(&model.config)
            .into_iter()
            .map(|(name, _)| (map[&name].clone(), name))
            .map(|(v, n)| (n, v))
            .collect()
    };
    let mut optimizer = AdamW::new(
        vars.clone(),
        AdamConfig {
            weight_decay: h.weight_decay,
            ..AdamConfig::default()
        },
    )?;

    let mut state = TrainerState {
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
    };
    if let Some(dir) = &spec.resume_from {
        state = checkpoint::read_trainer_state(dir)?;
        if &state.hyperparameters != h {
            return Err(TrainError::Checkpoint(format!(
                "{}: written with other hyperparameters; resume needs the same",
                dir.display()
            )));
        }
        let saved = candle_core::safetensors::load(dir.join("model.safetensors"), net.device())?;
        for (name, var) in &vars {
            let t = saved.get(name).ok_or_else(|| {
                TrainError::Checkpoint(format!("{}: no tensor `{name}`", dir.display()))
            })?;
            var.set(t)?;
        }
        optimizer.load(&dir.join("optimizer.safetensors"))?;
    }

    observer.on_event(&TrainEvent::Started {
        total_steps,
        steps_per_epoch,
        train_examples: train.ids.len(),
        eval_examples: eval.as_ref().map_or(0, |e| e.ids.len()),
        start_step: state.step,
    });

    let mut last_eval: Option<EvalMetrics> = state.history.evals.last().map(|e| e.metrics.clone());
    if let (Some(data), 0) = (&eval, state.step) {
        let metrics = evaluate(&net, data, &tok, h)?;
        record_eval(&mut state, &metrics, 0, 0.0, h, observer);
        last_eval = Some(metrics);
    }

    let mut batches: Option<(usize, Vec<Vec<usize>>)> = None;
    let (mut window_loss, mut window_steps, mut window_tokens) = (0f64, 0usize, 0u64);
    let mut step_tokens;
    let mut window_start = Instant::now();
    let mut finish = Finish::Completed;
    let mut checkpoints: Vec<(usize, PathBuf)> = checkpoint::list_checkpoints(&spec.checkpoint_dir)
        .into_iter()
        .filter(|(s, _)| *s <= state.step)
        .collect();
    while state.step < total_steps {
        if observer.should_stop() {
            finish = Finish::Stopped;
            break;
        }
        let step = state.step + 1;
        let epoch = (step - 1) / steps_per_epoch;
        let first = ((step - 1) % steps_per_epoch) * h.gradient_accumulation_steps;
        if batches.as_ref().is_none_or(|(e, _)| *e != epoch) {
            batches = Some((epoch, epoch_batches(&train, h, epoch)));
        }
        let epoch_plan = &batches.as_ref().expect("set above").1;
        let micro =
            &epoch_plan[first..(first + h.gradient_accumulation_steps).min(micro_per_epoch)];

        let mut rng = ChaCha8Rng::seed_from_u64(h.seed);
        rng.set_stream(1 << 32 | step as u64);
        step_tokens = 0u64;
        let batches = micro
            .iter()
            .map(|rows| {
                let (enc, labels) = encode(&train, rows, &tok, h);
                step_tokens += enc.real_tokens() as u64;
                let (ids, mask) = enc.to_tensors(net.device())?;
                let labels = Tensor::new(labels, net.device())?;
                Ok(MicroBatch { ids, mask, labels })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let (grads, step_loss, _timing) = step_gradients(&net, &vars, &batches, &mut rng)?;
        if !step_loss.is_finite() {
            return Err(TrainError::NonFiniteLoss { step });
        }
        let grad_norm = global_norm(&grads)?;
        let lr = learning_rate(
            h.lr_scheduler,
            h.learning_rate,
            h.warmup_steps,
            total_steps,
            step,
        );
        optimizer.step(&grads, lr, clip_scale(grad_norm, h.max_grad_norm))?;

        state.step = step;
        state.micro_batches_done = first + micro.len();
        state.epoch = epoch;
        if state.micro_batches_done == micro_per_epoch {
            (state.epoch, state.micro_batches_done) = (epoch + 1, 0);
        }
        state.tokens += step_tokens;
        window_tokens += step_tokens;
        let epoch_f = step as f64 / steps_per_epoch as f64;
        window_loss += step_loss;
        window_steps += 1;
        if step.is_multiple_of(h.logging_steps) || step == total_steps {
            let secs = window_start.elapsed().as_secs_f64();
            let log = StepLog {
                step,
                epoch: epoch_f,
                loss: window_loss / window_steps as f64,
                learning_rate: lr,
                grad_norm,
                tokens: state.tokens,
                tokens_per_second: if secs > 0.0 {
                    window_tokens as f64 / secs
                } else {
                    0.0
                },
            };
            state.history.steps.push(log.clone());
            observer.on_event(&TrainEvent::Step(log));
            (window_loss, window_steps, window_tokens) = (0.0, 0, 0);
            window_start = Instant::now();
        }

        let epoch_end = step.is_multiple_of(steps_per_epoch);
        let due = |strategy: Strategy, every: Option<usize>| match strategy {
            Strategy::Epoch => epoch_end,
            Strategy::Steps => every.is_some_and(|n| step.is_multiple_of(n)),
            Strategy::No => false,
        };
        let mut stop_early = false;
        if let (Some(data), true) = (&eval, due(h.eval_strategy, h.eval_steps)) {
            let metrics = evaluate(&net, data, &tok, h)?;
            record_eval(&mut state, &metrics, step, epoch_f, h, observer);
            last_eval = Some(metrics);
            stop_early = h
                .early_stopping_patience
                .is_some_and(|p| state.evals_without_improvement >= p);
        }
        if due(h.save_strategy, h.save_steps) || stop_early {
            let weights = current_weights(&vars)?;
            let path =
                checkpoint::write(&spec.checkpoint_dir, &model, &weights, &optimizer, &state)?;
            observer.on_event(&TrainEvent::Checkpoint {
                step,
                path: path.clone(),
            });
            checkpoints.push((step, path));
            prune(
                &mut checkpoints,
                h.save_total_limit,
                state.best_step,
                observer,
            )?;
        }
        if stop_early {
            observer.on_event(&TrainEvent::EarlyStopped { step });
            finish = Finish::EarlyStopped;
            break;
        }
    }

    let best_checkpoint = state
        .best_step
        .and_then(|b| checkpoints.iter().find(|(s, _)| *s == b))
        .map(|(_, p)| p.clone());
    Ok(TrainOutcome {
        finish,
        step: state.step,
        weights: current_weights(&vars)?,
        final_metrics: last_eval,
        best_checkpoint,
        history: state.history,
    })
}

fn record_eval(
    state: &mut TrainerState,
    metrics: &EvalMetrics,
    step: usize,
    epoch: f64,
    h: &Hyperparameters,
    observer: &mut dyn Observer,
) {
    let value = score(metrics, h.metric_for_best_model);
    if state.best_metric.is_none_or(|b| value > b) {
        (state.best_metric, state.best_step) = (Some(value), Some(step));
        state.evals_without_improvement = 0;
    } else {
        state.evals_without_improvement += 1;
    }
    let log = EvalLog {
        step,
        epoch,
        metrics: metrics.clone(),
    };
    state.history.evals.push(log.clone());
    observer.on_event(&TrainEvent::Eval(log));
}

/// The parameters as plain tensors sharing the variables' storage (no copy: a
/// `gpt2` copy is 500 MB at every checkpoint). Valid as a snapshot only until
/// the next optimizer step writes the variables in place, so callers use it
/// before that (a checkpoint) or after the last step (the outcome).
fn current_weights(vars: &[(String, Var)]) -> candle_core::Result<crate::model::Weights> {
    Ok(vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
        .collect())
}

/// Deletes the oldest checkpoints beyond `limit`, never the best one.
fn prune(
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
        std::fs::remove_dir_all(&path)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
        observer.on_event(&TrainEvent::CheckpointRemoved { step, path });
    }
    Ok(())
}
