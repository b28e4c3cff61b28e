//! The `tuneserve` command line (clap). Every option can also be set through a
//! `TUNESERVE_*` environment variable.

mod bench;
mod classify;
mod health;
mod hyperparameter_flags;
mod init_model;
mod merge;
mod migrate_store;
mod serve;
mod train;
mod train_tracking;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Fine-tune GPT-2-family models for text classification and serve them.
#[derive(Debug, Parser)]
#[command(name = "tuneserve", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (tracing's EnvFilter syntax, e.g. `info` or `tuneserve=debug`).
    #[arg(long, global = true, env = "TUNESERVE_LOG", default_value = "info")]
    pub log: String,
    /// Log lines as text (coloured only on a terminal) or as JSON objects, one a line.
    #[arg(long, global = true, env = "TUNESERVE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// For people.
    Text,
    /// For log shippers: one JSON object a line.
    Json,
}

/// The subcommands: each variant's doc comment is its line in `tuneserve --help`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a random GPT-2 of a named shape in the Hub's base layout (offline stand-in for `gpt2`).
    InitModel(init_model::InitModelArgs),
    /// Classify texts with a model folder or Hub id; prints one JSON object per text.
    Classify(classify::ClassifyArgs),
    /// Fine-tune a classifier: the recipe offline, with a progress bar and metrics.
    Train(Box<train::TrainArgs>),
    /// Time a training step (8×64) and a forward pass (32×64), as reference/hf_bench.py does for PyTorch.
    Bench(bench::BenchArgs),
    /// Run the HTTP service: datasets, fine-tuning jobs, models, /classify.
    Serve(Box<crate::api::ServeConfig>),
    /// Merge a LoRA adapter into its base and write a plain Hugging Face classifier.
    Merge(merge::MergeArgs),
    /// Copy every row of one store into another, empty one (SQLite to PostgreSQL, or back).
    MigrateStore(migrate_store::MigrateStoreArgs),
    /// Ask a running service's /health; exit 0 only when it says ok (the Docker health check).
    Health(health::HealthArgs),
}

/// Parses the command line, runs it, and maps errors to a message and exit code 1.
pub fn main() -> ExitCode {
    fix_thread_counts();
    let cli = parse();
    init_tracing(&cli.log, cli.log_format);
    keep_freed_memory();
    let result = match cli.command {
        Command::InitModel(args) => init_model::run(args),
        Command::Classify(args) => classify::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Train(args) => train::run(*args),
        Command::Serve(args) => serve::run(*args),
        Command::Merge(args) => merge::run(args),
        Command::MigrateStore(args) => migrate_store::run(args),
        Command::Health(args) => health::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The whole command line: the derived commands plus `train`'s
/// hyperparameter flags (see [`hyperparameter_flags`]).
fn command() -> clap::Command {
    Cli::command().mut_subcommand("train", hyperparameter_flags::add)
}

/// The parsed command line; exits with clap's message on a bad one.
fn parse() -> Cli {
    let matches = command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let (Command::Train(args), Some(sub)) =
        (&mut cli.command, matches.subcommand_matches("train"))
    {
        args.hyperparameters = hyperparameter_flags::read(sub).unwrap_or_else(|e| {
            let mut cmd = Cli::command();
            cmd.error(clap::error::ErrorKind::ValueValidation, e).exit()
        });
    }
    cli
}

/// Fixes candle's thread counts once, before any thread of ours exists (so no
/// one reads the environment meanwhile):
///
/// * element-wise ops run on the calling thread unless the user set
///   `CANDLE_NUM_THREADS`: its second, busy-waiting pool fights the matmul pool
///   for the same cores, and on short batches the hand-offs cost more than the
///   work (README → Performance has the measurement);
/// * `RAYON_NUM_THREADS` gets candle's default (the physical cores) unless set:
///   without it candle counts the cores again for every matmul by reading and
///   parsing `/proc/cpuinfo`, a visible share of a small model's training time.
fn fix_thread_counts() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let cores = candle_core::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", cores.to_string());
    }
}

/// Tells glibc's allocator to keep freed memory instead of handing big blocks
/// back to the kernel: candle frees and reallocates tensors of the same sizes
/// every step, and fresh pages cost a page fault and zeroing each time.
/// Trimming is off altogether (-1), not just above 2 GiB: a `gpt2`-sized step
/// frees more than that at once, and trimming it had runs fault more than a
/// gigabyte of pages back in every step (README → Performance).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before any threads
    // of ours allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        // One arena: worker threads' arenas are trimmed on their own terms.
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Logs to stderr: text with colours only when stderr is a terminal and
/// `NO_COLOR` is not set, or JSON lines.
fn init_tracing(filter: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).init()
        }
    }
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB; `None` where
/// the kernel does not say.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_train_flag_has_its_environment_variable() {
        let cli = super::command();
        let train = cli.find_subcommand("train").expect("a train command");
        let missing: Vec<_> = train
            .get_arguments()
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
            .filter(|a| a.get_env().is_none())
            .map(|a| a.get_id().to_string())
            .collect();
        assert!(missing.is_empty(), "flags without TUNESERVE_*: {missing:?}");
    }
}
