//! `tuneserve bench --recipe`: the recipe's real shape — optimizer steps of
//! batch 1 × gradient accumulation 4 over real tweets, dropout as configured,
//! gradient clipping at 1.0 and AdamW — timed step by step and phase by phase
//! through the training library's public API, with the process's peak memory.
//!
//! `reference/hf_train.py --max-steps N --n-train 4N --padding dynamic` trains
//! the same tweets (rows chosen by the same seeded permutation of the split's
//! `idx`) through PyTorch's `Trainer`; `scripts/bench_ab.sh recipe` runs both.

use std::time::Instant;

use anyhow::Context;
use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::{median, peak_rss_mib, trainable, BenchArgs};
use crate::data::numpy_rng::numpy_permutation;
use crate::data::{Encoded, Padding};
use crate::model::{Adapter, BatchInput, LoadedModel, LoraConfig, Mode};
use crate::train::{
    clip_scale, evaluation_network, global_norm, step_gradients, AdamConfig, AdamW, MicroBatch,
};

/// One labelled row of the JSONL file.
#[derive(serde::Deserialize)]
struct Row {
    text: String,
    label: u32,
    idx: Option<usize>,
}

/// `n` rows in the order `hf_train.py` selects them: numpy's
/// `default_rng(seed).permutation(full_n)` over the split's `idx`, skipping the
/// indices the file lacks (`full_n` is the largest `idx` plus one).
fn select_rows(path: &std::path::Path, n: usize, seed: u64) -> anyhow::Result<Vec<Row>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut by_idx = std::collections::HashMap::new();
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let row: Row = serde_json::from_str(line).with_context(|| format!("line {}", i + 1))?;
        by_idx.insert(row.idx.unwrap_or(i), row);
    }
    let full_n = by_idx.keys().max().map_or(0, |m| m + 1);
    let rows: Vec<Row> = numpy_permutation(full_n, seed)
        .into_iter()
        .filter_map(|i| by_idx.remove(&i))
        .filter(|r| !r.text.is_empty())
        .take(n)
        .collect();
    anyhow::ensure!(
        rows.len() == n,
        "{} has {} usable rows; {n} needed",
        path.display(),
        rows.len()
    );
    Ok(rows)
}

/// Resident memory of this process now (Linux `VmRSS`), in MiB.
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

/// Seconds of each phase of one optimizer step.
#[derive(Default, Clone, Copy)]
struct Phases {
    forward: f64,
    backward: f64,
    clip: f64,
    optimizer: f64,
    total: f64,
}

/// Runs the recipe's steps on `loaded`; prints a summary and returns JSON.
/// Its weights are dropped once the variables hold them, as the trainer does,
/// so the peak memory is the trainer's (with `--lora` they are the frozen base).
pub fn run(
    name: &str,
    mut loaded: LoadedModel,
    args: &BenchArgs,
) -> anyhow::Result<serde_json::Value> {
    let dev = Device::Cpu;
    let accum = args.accumulation.max(1);
    let rows = select_rows(&args.data, args.steps * accum, args.seed)?;
    let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    let ids = loaded.tokenizer.encode_many(&texts)?;
    let rss_loaded = rss_mib();
    let (net, vars) = if args.lora {
        // The base stays: it is the frozen half of the network.
        let score = loaded.weights["score.weight"].clone();
        let lora = LoraConfig::default();
        let adapter = Adapter::init(&loaded.config, &lora, score, None, args.seed, &dev)?;
        loaded.build_adapter_trainable(&adapter)?
    } else {
        let trainable = trainable(&loaded)?;
        drop(std::mem::take(&mut loaded.weights));
        trainable
    };
    let mut opt = AdamW::new(vars.clone(), AdamConfig::default())?;
    let mut steps = Vec::with_capacity(args.steps);
    let run_start = Instant::now();
    for (s, chunk) in ids.chunks(accum).zip(rows.chunks(accum)).enumerate() {
        let (chunk_ids, chunk_rows) = chunk;
        let start = Instant::now();
        let pad = loaded.config.pad_id();
        let micro = chunk_ids
            .iter()
            .zip(chunk_rows)
            .map(|(ids, row)| {
                let enc = Encoded::pad(&[ids.as_slice()], pad, Padding::Longest, usize::MAX);
                MicroBatch::new(enc, vec![row.label], &dev)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        rng.set_stream(1 << 32 | (s as u64 + 1));
        let (grads, _loss, timing) = step_gradients(&net, &vars, &micro, &mut rng)?;
        let t = Instant::now();
        let scale = clip_scale(global_norm(&grads)?, 1.0);
        let clip = t.elapsed().as_secs_f64();
        let t = Instant::now();
        opt.step(&grads, 5e-5, scale)?;
        drop(grads);
        steps.push(Phases {
            forward: timing.forward_s,
            backward: timing.backward_s,
            clip,
            optimizer: t.elapsed().as_secs_f64(),
            total: start.elapsed().as_secs_f64(),
        });
    }
    let train_s = run_start.elapsed().as_secs_f64();
    let eval_net = evaluation_network(&net, &vars)?;
    let eval = evaluate(&eval_net, &ids[..args.eval_rows.min(ids.len())], &loaded)?;
    summarize(
        name,
        &steps,
        train_s,
        eval,
        rss_loaded,
        ids.iter().map(Vec::len).sum(),
    )
}

/// Forward passes over `ids` in batches of 8, padded to each batch's longest
/// row, as the recipe's evaluation runs them; its seconds (None for no rows).
fn evaluate(
    net: &crate::model::Gpt2ForSequenceClassification,
    ids: &[Vec<u32>],
    loaded: &LoadedModel,
) -> anyhow::Result<Option<f64>> {
    if ids.is_empty() {
        return Ok(None);
    }
    let t = Instant::now();
    let pad = loaded.config.pad_id();
    for batch in ids.chunks(8) {
        let seqs: Vec<&[u32]> = batch.iter().map(Vec::as_slice).collect();
        let enc = Encoded::pad(&seqs, pad, Padding::Longest, usize::MAX);
        let input = BatchInput::new(&enc, &Device::Cpu)?;
        net.forward(&input, &mut Mode::Eval)?.to_vec2::<f32>()?;
    }
    Ok(Some(t.elapsed().as_secs_f64()))
}

fn summarize(
    name: &str,
    steps: &[Phases],
    train_s: f64,
    eval_s: Option<f64>,
    rss_loaded: Option<f64>,
    tokens: usize,
) -> anyhow::Result<serde_json::Value> {
    let pick = |f: fn(&Phases) -> f64| {
        let mut v: Vec<f64> = steps.iter().map(f).collect();
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        (median(&mut v), mean)
    };
    let total = pick(|p| p.total);
    let [fwd, bwd, clip, opt] = [
        pick(|p| p.forward),
        pick(|p| p.backward),
        pick(|p| p.clip),
        pick(|p| p.optimizer),
    ];
    let peak = peak_rss_mib();
    println!(
        "{name} recipe: {} steps, {tokens} tokens | {:.3} s/step median ({:.3} mean) | forward {:.3} / backward {:.3} / clip {:.3} / adamw {:.3} s (means) | eval {} | peak RSS {:.0} MiB (after load {:.0})",
        steps.len(), total.0, total.1, fwd.1, bwd.1, clip.1, opt.1,
        eval_s.map_or("-".into(), |e| format!("{e:.2} s")),
        peak.unwrap_or(f64::NAN), rss_loaded.unwrap_or(f64::NAN),
    );
    Ok(
        json!({"model": name, "steps": steps.len(), "tokens": tokens, "train_s": train_s,
        "step_median_s": total.0, "step_mean_s": total.1,
        "phase_mean_s": {"forward": fwd.1, "backward": bwd.1, "clip": clip.1, "optimizer": opt.1},
        "phase_median_s": {"forward": fwd.0, "backward": bwd.0, "clip": clip.0, "optimizer": opt.0},
        "step_s": steps.iter().map(|p| p.total).collect::<Vec<_>>(),
        "eval_s": eval_s, "peak_rss_mib": peak, "rss_after_load_mib": rss_loaded}),
    )
}
