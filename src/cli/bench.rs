//! `tuneserve bench`: speed of the classifier on this machine, on the same
//! shapes as `reference/hf_bench.py` (train step 8×64 with dropout on, forward
//! 32×64 in eval mode, both settable), as medians after warm-up runs, on the
//! CPU or a GPU (every timed run waits for the device), in fp32 or bf16;
//! `--recipe` times the recipe's own shape instead (see `recipe.rs`),
//! `--matmul` the matrix products alone (see `matmul.rs`).

mod matmul;
mod recipe;

use std::time::Instant;

use anyhow::Context;
use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::peak_rss_mib;
use crate::data::{Encoded, Padding, TextTokenizer, TokenizerFiles};
use crate::model::{
    load, parse_device, random_weights, BatchInput, Gpt2ForSequenceClassification, LoadOptions,
    LoadedModel, Mode, ModelSource, Precision, Preset,
};
use crate::train::{step_gradients, AdamConfig, AdamW, MicroBatch};

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Model folders or Hub ids to time (random weights of --preset when absent).
    #[arg(long, num_args = 1..)]
    pub model: Vec<String>,
    /// Presets to time with random weights when no --model is given.
    #[arg(long, value_enum, num_args = 1.., default_values_t = [Preset::Small])]
    pub preset: Vec<Preset>,
    /// Tokenizer folder for --preset models (default: GPT-2's, built in; the
    /// bench itself feeds random token ids).
    #[arg(long)]
    pub tokenizer: Option<std::path::PathBuf>,
    /// Untimed runs before timing.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed runs (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Also time this text as `/classify` would run it: one bare forward pass of
    /// it alone, and of a batch of 32 copies (the server's throughput ceiling).
    #[arg(long)]
    pub text: Option<String>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// `cpu` or `cuda:N`.
    #[arg(long, default_value = "cpu", env = "TUNESERVE_DEVICE")]
    pub device: String,
    /// Arithmetic of the timed passes (bf16: autocast, f32 weights and AdamW).
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// BATCHxSEQ of the train step.
    #[arg(long, default_value = "8x64", value_parser = parse_shape)]
    pub train_shape: (usize, usize),
    /// BATCHxSEQ of the forward pass.
    #[arg(long, default_value = "32x64", value_parser = parse_shape)]
    pub forward_shape: (usize, usize),
    /// Time the recipe's shape instead: --steps optimizer steps of batch 1 ×
    /// --accumulation micro-batches over the tweets of --data.
    #[arg(long)]
    pub recipe: bool,
    /// Optimizer steps of --recipe.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Micro-batches (one text each) per optimizer step of --recipe.
    #[arg(long, default_value_t = 4)]
    pub accumulation: usize,
    /// JSONL file of `{"text", "label", "idx"}` rows for --recipe.
    #[arg(long, default_value = "tests/fixtures/tweets/train.jsonl")]
    pub data: std::path::PathBuf,
    /// Seed of --recipe's row selection (numpy's permutation, as hf_train.py) and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// After --recipe's steps, also time evaluation forwards over this many of its
    /// rows in batches of 8.
    #[arg(long, default_value_t = 0)]
    pub eval_rows: usize,
    /// Time only the matrix products (our sgemm per kernel and the `gemm` crate)
    /// on the model's shapes.
    #[arg(long)]
    pub matmul: bool,
    /// With --recipe: train a LoRA adapter (r 8, alpha 16, dropout 0.1 on
    /// `c_attn`, PEFT's defaults for GPT-2) and the head instead of every weight.
    #[arg(long, requires = "recipe")]
    pub lora: bool,
}

/// `8x64` → `(8, 64)`.
fn parse_shape(text: &str) -> Result<(usize, usize), String> {
    let parsed = text
        .split_once(['x', 'X'])
        .and_then(|(b, t)| Some((b.parse().ok()?, t.parse().ok()?)));
    match parsed {
        Some((b, t)) if b > 0 && t > 0 => Ok((b, t)),
        _ => Err(format!("`{text}`: expected BATCHxSEQ, such as 8x64")),
    }
}

struct Timing {
    median: f64,
    min: f64,
}

fn time(
    warmup: usize,
    iters: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Timing> {
    for _ in 0..warmup {
        f()?;
    }
    let mut ts = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        f()?;
        ts.push(t.elapsed().as_secs_f64());
    }
    Ok(Timing {
        median: median(&mut ts),
        min: ts.iter().copied().fold(f64::INFINITY, f64::min),
    })
}

fn median(ts: &mut [f64]) -> f64 {
    ts.sort_by(f64::total_cmp);
    ts[ts.len() / 2]
}

/// `b` rows of `t` random token ids (none of them the pad id), on `dev`.
fn random_batch(
    rng: &mut ChaCha8Rng,
    b: usize,
    t: usize,
    dev: &Device,
) -> candle_core::Result<BatchInput> {
    let rows: Vec<Vec<u32>> = (0..b)
        .map(|_| (0..t).map(|_| rng.random_range(0..50256)).collect())
        .collect();
    batch_of(&rows, dev)
}

fn batch_of(rows: &[Vec<u32>], dev: &Device) -> candle_core::Result<BatchInput> {
    let rows: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
    let enc = Encoded::pad(&rows, 50256, Padding::Longest, usize::MAX);
    BatchInput::new(&enc, dev)
}

/// The trainable network of `loaded` and its parameters in the optimizer's order.
fn trainable(
    loaded: &LoadedModel,
) -> anyhow::Result<(Gpt2ForSequenceClassification, Vec<(String, Var)>)> {
    Ok(loaded.build_trainable_ordered()?)
}

fn bench_model(
    name: &str,
    loaded: &LoadedModel,
    args: &BenchArgs,
) -> anyhow::Result<serde_json::Value> {
    let dev = parse_device(&args.device).map_err(anyhow::Error::msg)?;
    let loaded = &loaded.clone().to_device(&dev)?;
    let cfg = &loaded.config;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let ((b, t), (fb, ft)) = (args.train_shape, args.forward_shape);

    // Train step: forward + cross-entropy + backward + AdamW, dropout on.
    let (net, vars) = trainable(loaded)?;
    let net = net.with_precision(args.precision);
    let mut opt = AdamW::new(vars.clone(), AdamConfig::default())?;
    let rows: Vec<Vec<u32>> = (0..b)
        .map(|_| (0..t).map(|_| rng.random_range(0..50256)).collect())
        .collect();
    let rows: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
    let enc = Encoded::pad(&rows, 50256, Padding::Longest, usize::MAX);
    let labels: Vec<u32> = (0..b)
        .map(|_| rng.random_range(0..cfg.num_labels() as u32))
        .collect();
    let mut phases: [Vec<f64>; 3] = Default::default();
    let mut drop_rng = ChaCha8Rng::seed_from_u64(1);
    let train = time(args.warmup, args.iters, || {
        let batch = [MicroBatch::new(enc.clone(), labels.clone(), &dev)?];
        let (grads, _loss, timing) = step_gradients(&net, &vars, &batch, &mut drop_rng)?;
        let t = Instant::now();
        opt.step(&grads, 5e-5, 1.0)?;
        dev.synchronize()?;
        let optimizer_s = t.elapsed().as_secs_f64();
        for (p, d) in phases
            .iter_mut()
            .zip([timing.forward_s, timing.backward_s, optimizer_s])
        {
            p.push(d);
        }
        Ok(())
    })?;
    let phase: Vec<f64> = phases
        .iter_mut()
        .map(|p| median(&mut p[args.warmup..]))
        .collect();

    // Forward only, eval mode.
    let infer = loaded.build()?.with_precision(args.precision);
    let input32 = random_batch(&mut rng, fb, ft, &dev)?;
    let fwd = time(args.warmup, args.iters, || {
        infer.forward(&input32, &mut Mode::Eval)?.to_vec2::<f32>()?;
        Ok(())
    })?;

    let (train_tokens, fwd_tokens) = ((b * t) as f64, (fb * ft) as f64);
    println!(
        "{name}: L={} E={} {} {} | train step {b}x{t} {:.1} ms (min {:.1}; fwd {:.1} / bwd {:.1} / adamw {:.1}) {:.0} tok/s | fwd {fb}x{ft} {:.1} ms (min {:.1}) {:.0} tok/s",
        cfg.n_layer, cfg.n_embd, args.device, args.precision.as_str(),
        train.median * 1e3, train.min * 1e3, phase[0] * 1e3, phase[1] * 1e3, phase[2] * 1e3,
        train_tokens / train.median, fwd.median * 1e3, fwd.min * 1e3, fwd_tokens / fwd.median,
    );
    let text = match &args.text {
        Some(text) => Some(bench_text(&infer, loaded, text, args)?),
        None => None,
    };
    Ok(json!({
        "model": name, "n_layer": cfg.n_layer, "n_embd": cfg.n_embd,
        "device": args.device, "precision": args.precision.as_str(),
        "train_step": {"batch": b, "seq": t, "median_s": train.median, "min_s": train.min,
            "tokens_per_s": train_tokens / train.median,
            "phase_median_s": {"forward": phase[0], "backward": phase[1], "optimizer": phase[2]}},
        "forward": {"batch": fb, "seq": ft, "median_s": fwd.median, "min_s": fwd.min,
            "tokens_per_s": fwd_tokens / fwd.median},
        "text": text,
    }))
}

/// `--text`: one bare forward of the text, and of 32 copies in one batch.
fn bench_text(
    net: &Gpt2ForSequenceClassification,
    loaded: &LoadedModel,
    text: &str,
    args: &BenchArgs,
) -> anyhow::Result<serde_json::Value> {
    let ids = loaded.tokenizer.encode(text)?;
    let tokens = ids.len();
    let dev = net.device();
    let one = batch_of(std::slice::from_ref(&ids), dev)?;
    let batch = batch_of(&vec![ids; 32], dev)?;
    let forward = |input: &BatchInput| -> anyhow::Result<()> {
        net.forward(input, &mut Mode::Eval)?.to_vec2::<f32>()?;
        Ok(())
    };
    let single = time(args.warmup, args.iters.max(30), || forward(&one))?;
    let batched = time(args.warmup, args.iters, || forward(&batch))?;
    println!(
        "  text of {tokens} tokens: bare forward {:.2} ms (median), batch of 32 {:.1} ms = {:.0} texts/s",
        single.median * 1e3,
        batched.median * 1e3,
        32.0 / batched.median
    );
    Ok(json!({"tokens": tokens, "single_median_s": single.median,
        "batch32_median_s": batched.median, "texts_per_s": 32.0 / batched.median}))
}

/// fp32 matmul 2048³ in GFLOP/s (median), as `hf_bench.py` probes the machine:
/// the speed of the gemm kernel every layer rests on.
fn matmul_gflops(args: &BenchArgs) -> anyhow::Result<f64> {
    const N: usize = 2048;
    let dev = parse_device(&args.device).map_err(anyhow::Error::msg)?;
    let a = Tensor::randn(0f32, 1.0, (N, N), &Device::Cpu)?.to_device(&dev)?;
    let b = Tensor::randn(0f32, 1.0, (N, N), &Device::Cpu)?.to_device(&dev)?;
    let t = time(args.warmup, args.iters, || {
        a.matmul(&b)?;
        dev.synchronize()?;
        Ok(())
    })?;
    Ok(2.0 * (N as f64).powi(3) / t.median / 1e9)
}

/// The models to time: --model folders, or random weights of each --preset.
fn models(args: &BenchArgs) -> anyhow::Result<Vec<(String, LoadedModel)>> {
    if !args.model.is_empty() {
        return args
            .model
            .iter()
            .map(|m| {
                let source: ModelSource = m.parse()?;
                let opts = LoadOptions {
                    labels: Some(crate::model::default_labels(3)),
                    ..LoadOptions::default()
                };
                let loaded = load(&source, &opts).with_context(|| format!("loading {m}"))?;
                Ok((m.clone(), loaded))
            })
            .collect();
    }
    let tokenizer = match &args.tokenizer {
        Some(dir) => TextTokenizer::load(&TokenizerFiles::in_dir(dir)?)?,
        None => TextTokenizer::gpt2()?,
    };
    args.preset
        .iter()
        .map(|preset| {
            let mut config = preset.config();
            config.labels = crate::model::default_labels(3);
            let loaded = LoadedModel {
                weights: random_weights(&config, 0, &Device::Cpu)?,
                config,
                tokenizer: tokenizer.clone(),
                layout: crate::model::WeightLayout::Classifier,
                new_head: true,
                adapter: None,
                origin: None,
                packed: None,
            };
            Ok((format!("{preset:?}").to_lowercase(), loaded))
        })
        .collect()
}

/// Runs `bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let threads = candle_core::utils::get_num_threads();
    anyhow::ensure!(
        !(args.recipe || args.matmul)
            || (args.device == "cpu" && args.precision == Precision::Fp32),
        "--recipe and --matmul time the CPU kernels in fp32; drop --device/--precision"
    );
    let json = if args.matmul {
        json!({"tuneserve": env!("CARGO_PKG_VERSION"), "matmul": matmul::run(&args)?})
    } else if args.recipe {
        let mut results = Vec::new();
        for (name, loaded) in models(&args)? {
            results.push(recipe::run(&name, loaded, &args)?);
        }
        json!({"tuneserve": env!("CARGO_PKG_VERSION"), "threads": threads,
            "peak_rss_mib": peak_rss_mib(), "recipe": results})
    } else {
        let matmul = matmul_gflops(&args)?;
        println!("matmul 2048^3 fp32: {matmul:.1} GFLOP/s median, {threads} threads");
        let mut results = Vec::new();
        for (name, loaded) in models(&args)? {
            results.push(bench_model(&name, &loaded, &args)?);
        }
        let peak = peak_rss_mib();
        println!(
            "peak RSS: {:.0} MiB; threads: {threads}",
            peak.unwrap_or(f64::NAN)
        );
        json!({"tuneserve": env!("CARGO_PKG_VERSION"), "threads": threads,
            "matmul_fp32_gflops": matmul, "peak_rss_mib": peak, "models": results})
    };
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&json)?)?;
    }
    Ok(())
}
