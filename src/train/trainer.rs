//! The training loop as a [`Trainer`]: [`Trainer::new`] prepares a run (data,
//! trainable weights, optimizer, resume), [`Trainer::step`] takes one optimizer
//! step with what is due after it (logging, evaluation, checkpoint),
//! [`Trainer::evaluate`] and [`Trainer::checkpoint`] do one thing each, and
//! [`Trainer::finish`] hands the trained weights back. [`run`] drives them.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Var;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::batches::{encode, epoch_batches, evaluate, subset, tokenize, Tokenized};
use super::checkpoint::{self, TrainerState};
use super::clip::{clip_scale, global_norm};
use super::optim::{AdamConfig, AdamW};
use super::resume::{resume, Resume};
use super::schedule::learning_rate;
use super::setup::{configure, current_weights, evaluation_network, trainable};
use super::step::{step_gradients, MicroBatch};
use super::{
    EvalLog, EvalMetrics, Finish, Hyperparameters, Observer, RunTiming, StepLog, Strategy,
    TrainError, TrainEvent, TrainOutcome,
};
use crate::data::{Example, TextTokenizer};
use crate::model::{Adapter, Gpt2ForSequenceClassification, LoadedModel, Trained};

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
    /// The run's hyperparameters; [`Trainer::new`] checks them, for the model's device
    /// too, before anything else.
    pub hyperparameters: &'a Hyperparameters,
    /// Where `step-N/` checkpoints go.
    pub checkpoint_dir: PathBuf,
    /// Which checkpoint to continue from.
    pub resume: Resume,
}

/// The run's size in micro-batches and optimizer steps.
#[derive(Debug, Clone, Copy)]
struct Plan {
    micro_per_epoch: usize,
    steps_per_epoch: usize,
    total_steps: usize,
}

/// The training loss and tokens of the current logging window.
struct Window {
    loss: f64,
    steps: usize,
    tokens: u64,
    /// Training time in the window (evaluations and checkpoints excluded).
    seconds: f64,
}

/// A run in progress; see the module docs.
pub struct Trainer<'a> {
    h: &'a Hyperparameters,
    /// Configuration and tokenizer of the model (its weights live in `vars`).
    model: LoadedModel,
    net: Gpt2ForSequenceClassification,
    vars: Vec<(String, Var)>,
    /// The adapter being trained (`method` `lora`); its tensors are `vars`.
    adapter: Option<Adapter>,
    optimizer: AdamW,
    tok: TextTokenizer,
    train: Tokenized,
    eval: Option<Tokenized>,
    plan: Plan,
    state: TrainerState,
    checkpoint_dir: PathBuf,
    /// Checkpoints on disk, by step (for `save_total_limit`).
    checkpoints: Vec<(usize, PathBuf)>,
    /// The current epoch's micro-batches, as indices into `train`.
    epoch_order: Option<(usize, Vec<Vec<usize>>)>,
    window: Window,
    /// The newest evaluation of this run or of the checkpoint it resumed.
    last_eval: Option<EvalLog>,
    timing: RunTiming,
}

/// Trains `spec.model` on `spec.train`; see the docs of [`crate::train`].
pub fn run(spec: TrainSpec, observer: &mut dyn Observer) -> Result<TrainOutcome, TrainError> {
    let mut trainer = Trainer::new(spec, observer)?;
    if trainer.state.step == 0 && trainer.eval.is_some() {
        let (metrics, seconds) = trainer.evaluate_timed()?;
        trainer.record_eval(metrics, seconds, observer);
    }
    let mut finish = Finish::Completed;
    while trainer.state.step < trainer.plan.total_steps {
        if observer.should_stop() {
            finish = Finish::Stopped;
            break;
        }
        if trainer.step(observer)? {
            finish = Finish::EarlyStopped;
            break;
        }
    }
    trainer.finish(finish)
}

impl<'a> Trainer<'a> {
    /// Validates the settings, tokenizes the data, makes the weights trainable
    /// and resumes as `spec.resume` says; reports [`TrainEvent::Started`].
    pub fn new(spec: TrainSpec<'a>, observer: &mut dyn Observer) -> Result<Self, TrainError> {
        let h = spec.hyperparameters;
        h.validate()?;
        let mut model = spec.model;
        let device = model.weights.values().next().map(|w| w.device().clone());
        h.validate_for_device(&device.unwrap_or(candle_core::Device::Cpu))?;
        let tok = configure(&mut model, h)?;
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
        let plan = Plan {
            micro_per_epoch,
            steps_per_epoch,
            total_steps: steps_per_epoch * h.epochs,
        };
        let (net, vars, adapter) = trainable(&mut model, h)?;
        let net = net.with_precision(h.precision);
        let adam = AdamConfig {
            weight_decay: h.weight_decay,
            ..AdamConfig::default()
        };
        let mut optimizer = AdamW::new(vars.clone(), adam)?;
        let dir = spec.checkpoint_dir;
        let resumed = resume(&spec.resume, &dir, h, &vars, &mut optimizer, observer)?;
        let state = resumed.unwrap_or_else(|| TrainerState::fresh(plan.total_steps, h));
        let checkpoints = checkpoint::list_checkpoints(&dir)
            .into_iter()
            .filter(|(s, _)| *s <= state.step)
            .collect();
        observer.on_event(&TrainEvent::Started {
            total_steps: plan.total_steps,
            steps_per_epoch,
            train_examples: train.ids.len(),
            eval_examples: eval.as_ref().map_or(0, |e| e.ids.len()),
            start_step: state.step,
        });
        Ok(Self {
            h,
            last_eval: state.history.evals.last().cloned(),
            model,
            net,
            vars,
            adapter,
            optimizer,
            tok,
            train,
            eval,
            plan,
            state,
            checkpoint_dir: dir,
            checkpoints,
            epoch_order: None,
            window: Window::new(),
            timing: RunTiming::default(),
        })
    }

    /// Takes the next optimizer step, then logs, evaluates and checkpoints as
    /// due. `true` when early stopping ends the run here.
    pub fn step(&mut self, observer: &mut dyn Observer) -> Result<bool, TrainError> {
        let started = Instant::now();
        let h = self.h;
        let step = self.state.step + 1;
        let (micro, first) = self.micro_batches(step)?;
        let mut rng = ChaCha8Rng::seed_from_u64(h.seed);
        rng.set_stream(1 << 32 | step as u64);
        let tokens = micro.iter().map(|(_, t)| *t).sum::<u64>();
        let count = micro.len();
        let batches: Vec<MicroBatch> = micro.into_iter().map(|(b, _)| b).collect();
        let (grads, loss, _) = step_gradients(&self.net, &self.vars, &batches, &mut rng)?;
        if !loss.is_finite() {
            return Err(TrainError::NonFiniteLoss { step });
        }
        let grad_norm = global_norm(&grads)?;
        let p = self.plan;
        let lr = learning_rate(
            h.lr_scheduler,
            h.learning_rate,
            h.warmup_steps,
            p.total_steps,
            step,
        );
        self.optimizer
            .step(&grads, lr, clip_scale(grad_norm, h.max_grad_norm))?;
        self.advance(step, first + count, tokens);
        let seconds = started.elapsed().as_secs_f64();
        self.timing.train_seconds += seconds;
        self.timing.steps += 1;
        self.window.add(loss, tokens, seconds);
        if step.is_multiple_of(h.logging_steps) || step == p.total_steps {
            self.log_window(step, lr, grad_norm, observer);
        }
        self.after_step(step, observer)
    }

    /// The micro-batches of optimizer step `step` (with their real tokens), and
    /// the position of the first one in its epoch.
    fn micro_batches(
        &mut self,
        step: usize,
    ) -> Result<(Vec<(MicroBatch, u64)>, usize), TrainError> {
        let (h, p) = (self.h, self.plan);
        let epoch = (step - 1) / p.steps_per_epoch;
        let first = ((step - 1) % p.steps_per_epoch) * h.gradient_accumulation_steps;
        if self.epoch_order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.epoch_order = Some((epoch, epoch_batches(&self.train, h, epoch)));
        }
        let order = &self.epoch_order.as_ref().expect("set above").1;
        let last = (first + h.gradient_accumulation_steps).min(p.micro_per_epoch);
        let device = self.net.device();
        let micro = order[first..last]
            .iter()
            .map(|rows| {
                let (enc, labels) = encode(&self.train, rows, &self.tok, h);
                let tokens = enc.real_tokens() as u64;
                Ok((MicroBatch::new(enc, labels, device)?, tokens))
            })
            .collect::<candle_core::Result<_>>()?;
        Ok((micro, first))
    }

    /// Moves the run's position past `step`, whose micro-batches end at
    /// `micro_done` within its epoch.
    fn advance(&mut self, step: usize, micro_done: usize, tokens: u64) {
        let p = self.plan;
        let s = &mut self.state;
        s.step = step;
        s.epoch = (step - 1) / p.steps_per_epoch;
        s.micro_batches_done = micro_done;
        if micro_done == p.micro_per_epoch {
            (s.epoch, s.micro_batches_done) = (s.epoch + 1, 0);
        }
        s.tokens += tokens;
    }

    fn log_window(&mut self, step: usize, lr: f64, grad_norm: f64, observer: &mut dyn Observer) {
        let w = std::mem::replace(&mut self.window, Window::new());
        let log = StepLog {
            step,
            epoch: self.epoch_at(step),
            loss: w.loss / w.steps as f64,
            learning_rate: lr,
            grad_norm,
            tokens: self.state.tokens,
            tokens_per_second: if w.seconds > 0.0 {
                w.tokens as f64 / w.seconds
            } else {
                0.0
            },
            seconds_per_step: w.seconds / w.steps.max(1) as f64,
        };
        self.state.history.steps.push(log.clone());
        observer.on_event(&TrainEvent::Step(log));
    }

    /// Evaluation and checkpoint, when due after `step`; `true` when early
    /// stopping ends the run.
    fn after_step(&mut self, step: usize, observer: &mut dyn Observer) -> Result<bool, TrainError> {
        let h = self.h;
        let epoch_end = step.is_multiple_of(self.plan.steps_per_epoch);
        let due = |strategy: Strategy, every: Option<usize>| match strategy {
            Strategy::Epoch => epoch_end,
            Strategy::Steps => every.is_some_and(|n| step.is_multiple_of(n)),
            Strategy::No => false,
        };
        let mut stop_early = false;
        if self.eval.is_some() && due(h.eval_strategy, h.eval_steps) {
            let (metrics, seconds) = self.evaluate_timed()?;
            self.record_eval(metrics, seconds, observer);
            stop_early = h
                .early_stopping_patience
                .is_some_and(|p| self.state.evals_without_improvement >= p);
        }
        if due(h.save_strategy, h.save_steps) || stop_early {
            self.checkpoint(observer)?;
        }
        if stop_early {
            observer.on_event(&TrainEvent::EarlyStopped { step });
        }
        Ok(stop_early)
    }

    /// Evaluates the current weights on the evaluation set (an error when the
    /// run has none).
    pub fn evaluate(&mut self) -> Result<EvalMetrics, TrainError> {
        Ok(self.evaluate_timed()?.0)
    }

    /// [`Self::evaluate`] and the seconds it took.
    fn evaluate_timed(&mut self) -> Result<(EvalMetrics, f64), TrainError> {
        let started = Instant::now();
        let data = self
            .eval
            .as_ref()
            .ok_or_else(|| TrainError::Data("no evaluation set".into()))?;
        let net = evaluation_network(&self.net, &self.vars)?;
        let metrics = evaluate(&net, data, &self.tok, self.h)?;
        let seconds = started.elapsed().as_secs_f64();
        self.timing.eval_seconds += seconds;
        Ok((metrics, seconds))
    }

    /// Records an evaluation at the current step: best-so-far bookkeeping,
    /// history, and the [`TrainEvent::Eval`] report.
    fn record_eval(&mut self, metrics: EvalMetrics, seconds: f64, observer: &mut dyn Observer) {
        let epoch = self.epoch_at(self.state.step);
        let s = &mut self.state;
        let value = metrics.score(self.h.metric_for_best_model);
        if s.best_metric.is_none_or(|b| value > b) {
            (s.best_metric, s.best_step) = (Some(value), Some(s.step));
            s.evals_without_improvement = 0;
        } else {
            s.evals_without_improvement += 1;
        }
        let log = EvalLog {
            step: s.step,
            epoch,
            metrics,
            seconds,
        };
        self.state.history.evals.push(log.clone());
        observer.on_event(&TrainEvent::Eval(log.clone()));
        self.last_eval = Some(log);
    }

    /// Writes `step-N/` for the current step (model, optimizer, state), reports
    /// it with the evaluation taken at that step, and prunes old checkpoints
    /// beyond `save_total_limit` (never the best one).
    pub fn checkpoint(&mut self, observer: &mut dyn Observer) -> Result<PathBuf, TrainError> {
        let started = Instant::now();
        let step = self.state.step;
        let weights = current_weights(&self.vars)?;
        let adapter = self.trained_adapter(&weights);
        let trained = match &adapter {
            Some(a) => Trained::Adapter(a),
            None => Trained::Full(&weights),
        };
        let path = checkpoint::write(
            &self.checkpoint_dir,
            &self.model,
            trained,
            &self.optimizer,
            &self.state,
        )?;
        let eval = self.last_eval.as_ref().filter(|e| e.step == step);
        observer.on_event(&TrainEvent::Checkpoint {
            step,
            path: path.clone(),
            eval: eval.map(|e| e.metrics.clone()),
        });
        self.checkpoints.push((step, path.clone()));
        let keep = (self.h.save_total_limit, self.state.best_step);
        checkpoint::prune(&mut self.checkpoints, keep.0, keep.1, observer)?;
        self.timing.checkpoint_seconds += started.elapsed().as_secs_f64();
        Ok(path)
    }

    /// Ends the run: the trained model and what the run measured.
    pub fn finish(self, finish: Finish) -> Result<TrainOutcome, TrainError> {
        let best = self
            .state
            .best_step
            .and_then(|b| self.checkpoints.iter().find(|(s, _)| *s == b))
            .cloned();
        let trained = current_weights(&self.vars)?;
        let adapter = self.trained_adapter(&trained);
        let weights = match &adapter {
            Some(a) => {
                let mut base = self.model.weights;
                base.insert("score.weight".into(), a.weights["score.weight"].clone());
                base
            }
            None => trained,
        };
        Ok(TrainOutcome {
            finish,
            step: self.state.step,
            weights,
            adapter,
            config: self.model.config,
            tokenizer: self.model.tokenizer,
            final_metrics: self.last_eval.map(|e| e.metrics),
            best_checkpoint: best.as_ref().map(|(_, p)| p.clone()),
            best_step: best.map(|(s, _)| s),
            history: self.state.history,
            timing: self.timing,
            hyperparameters: self.h.clone(),
        })
    }

    /// The adapter with `weights` (the variables' current values), when one trains.
    fn trained_adapter(&self, weights: &crate::model::Weights) -> Option<Adapter> {
        self.adapter.as_ref().map(|a| Adapter {
            weights: weights.clone(),
            ..a.clone()
        })
    }

    fn epoch_at(&self, step: usize) -> f64 {
        step as f64 / self.plan.steps_per_epoch as f64
    }
}

impl Window {
    fn new() -> Self {
        Self {
            loss: 0.0,
            steps: 0,
            tokens: 0,
            seconds: 0.0,
        }
    }

    fn add(&mut self, loss: f64, tokens: u64, seconds: f64) {
        self.loss += loss;
        self.steps += 1;
        self.tokens += tokens;
        self.seconds += seconds;
    }
}
