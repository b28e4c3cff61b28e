//! Records the git commit the binary is built from, for the
//! `tuneserve_build_info` metric: `TUNESERVE_COMMIT` when set (a build
//! without the repository, such as the Docker image's), else what git says
//! of the checkout, else `unknown`. Standard library only.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=TUNESERVE_COMMIT");
    let commit = std::env::var("TUNESERVE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TUNESERVE_COMMIT={commit}");
    // Built again when HEAD moves: a checkout changes HEAD, a commit the
    // branch's ref (loose, or packed).
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    let refs = ["HEAD", "packed-refs"].into_iter().map(str::to_string);
    for name in refs.chain(branch) {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}
