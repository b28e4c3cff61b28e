//! `tuneserve classify`: predictions for texts, one JSON object per line.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::infer::Classifier;
use crate::model::parse_device;
use crate::model::{load, InferPrecision, LoadOptions, ModelSource};

/// Arguments of `classify`.
#[derive(Debug, clap::Args)]
pub struct ClassifyArgs {
    /// Model folder (HF layout) or Hub id (`gpt2`, `owner/name[@revision]`).
    #[arg(long, env = "TUNESERVE_MODEL")]
    pub model: String,
    /// JSONL file of texts: one `{"text": ...}` object (or JSON string) per line.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Texts to classify (after those of --input).
    pub texts: Vec<String>,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32, env = "TUNESERVE_BATCH_SIZE")]
    pub batch_size: usize,
    /// Truncate inputs to this many tokens (default: the model's n_positions).
    #[arg(long, env = "TUNESERVE_MAX_LENGTH")]
    pub max_length: Option<usize>,
    /// `cpu` or `cuda:N`.
    #[arg(long, default_value = "cpu", env = "TUNESERVE_DEVICE")]
    pub device: String,
    /// What the Conv1D products run in: `fp32`, `int8` (weights quantized per
    /// output channel at load, activations per row) or `bf16`; int8 and bf16
    /// on the CPU only.
    #[arg(long, value_enum, default_value_t = InferPrecision::Fp32, env = "TUNESERVE_PRECISION")]
    pub precision: InferPrecision,
    /// Print one JSON line of timings to stderr when done: `texts`,
    /// `load_s` (reading and packing the model), `classify_s` (tokenizing
    /// and the forward passes) and `texts_per_s` (over `classify_s`).
    #[arg(long)]
    pub timings: bool,
}

/// Runs `classify`.
pub fn run(args: ClassifyArgs) -> anyhow::Result<()> {
    let mut texts = match &args.input {
        Some(path) => read_texts(path)?,
        None => Vec::new(),
    };
    texts.extend(args.texts.iter().cloned());
    anyhow::ensure!(
        !texts.is_empty(),
        "nothing to classify: give texts as arguments or --input FILE.jsonl"
    );
    let source: ModelSource = args.model.parse()?;
    let opts = LoadOptions {
        device: parse_device(&args.device).map_err(anyhow::Error::msg)?,
        ..LoadOptions::default()
    };
    let started = std::time::Instant::now();
    let loaded = load(&source, &opts)
        .and_then(|m| m.pack(args.precision))
        .with_context(|| format!("loading model {source}"))?;
    if loaded.new_head {
        tracing::warn!("{source} has no classification head: predictions come from a random one");
    }
    let classifier = Classifier::new(&loaded, args.max_length)?;
    drop(loaded);
    let load_s = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let rows = classifier.encode(&refs, true)?;
    let limits = crate::infer::BatchLimits {
        texts: args.batch_size,
        tokens: usize::MAX,
    };
    let predictions = classifier.classify_ids(&rows, limits)?;
    let classify_s = started.elapsed().as_secs_f64();
    if args.timings {
        let timings = serde_json::json!({
            "texts": predictions.len(),
            "precision": args.precision,
            "load_s": load_s,
            "classify_s": classify_s,
            "texts_per_s": predictions.len() as f64 / classify_s,
        });
        eprintln!("{timings}");
    }
    let mut out = std::io::stdout().lock();
    for p in predictions {
        serde_json::to_writer(&mut out, &p)?;
        writeln!(out)?;
    }
    Ok(())
}

fn read_texts(path: &Path) -> anyhow::Result<Vec<String>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut texts = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line =
            line.with_context(|| format!("{}:{}: cannot read line", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: invalid JSON", path.display(), i + 1))?;
        let text = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Object(mut obj) => match obj.remove("text") {
                Some(serde_json::Value::String(s)) => s,
                _ => anyhow::bail!("{}:{}: no string field `text`", path.display(), i + 1),
            },
            _ => anyhow::bail!(
                "{}:{}: expected an object with `text`",
                path.display(),
                i + 1
            ),
        };
        texts.push(text);
    }
    Ok(texts)
}
