//! The `tuneserve` binary: everything lives in the library; this only hands over.

fn main() -> std::process::ExitCode {
    tuneserve::cli::main()
}
