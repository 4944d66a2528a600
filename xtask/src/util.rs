use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Cargo's target directory: CARGO_TARGET_DIR when set (relative to where cargo was started,
/// as cargo takes it), else the workspace's target/. A clone can so share another checkout's
/// builds and its kernel cache.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => std::path::absolute(&dir).unwrap_or_else(|_| PathBuf::from(dir)),
        None => workspace_root().join("target"),
    }
}

pub fn tracer_binary() -> PathBuf {
    target_dir().join("release/tracer")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn require_root(task: &str) -> anyhow::Result<()> {
    if !is_root() {
        bail!(
            "{task} needs root (it loads eBPF programs and builds network namespaces): run `sudo -E cargo xtask ...`"
        );
    }
    Ok(())
}

/// Runs a command, echoing it, and fails unless it succeeds.
pub fn run_checked(command: &mut Command) -> anyhow::Result<()> {
    eprintln!("+ {}", describe(command));
    let status = command
        .status()
        .with_context(|| format!("starting `{}`", describe(command)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(command));
    }
    Ok(())
}

pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

/// Everything is built once, in release: the binary the integration tests run is the one users
/// get, and unit tests share its dependency builds.
pub fn build_tracer() -> anyhow::Result<()> {
    run_checked(cargo().args(["build", "--release", "--package", "tracer"]))
}

/// tracer with its helper binaries (`tracer-bench`), for `cargo xtask bench`.
pub fn build_tracer_bins() -> anyhow::Result<()> {
    run_checked(cargo().args(["build", "--release", "--package", "tracer", "--bins"]))
}

pub fn run_tests(harness_args: &[String]) -> anyhow::Result<()> {
    run_checked(
        cargo()
            .args([
                "test",
                "--release",
                "--workspace",
                "--exclude",
                "tracer-ebpf",
                "--",
            ])
            .args(harness_args)
            .env("TRACER_BIN", tracer_binary()),
    )
}
