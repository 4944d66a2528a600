//! `cargo xtask fuzz`: every cargo-fuzz target in fuzz/ for a few seconds each, starting from
//! the seed inputs in fuzz/seeds/TARGET and growing fuzz/corpus/TARGET (not in git).

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{
    setup::EBPF_TOOLCHAIN,
    util::{describe, run_checked, workspace_root},
};

/// A single input taking longer than this is a failure (a hang), not something to wait out.
const INPUT_TIMEOUT_SECS: u64 = 10;

/// cargo on the pinned nightly (cargo-fuzz needs nightly flags), run from the workspace root.
fn nightly_cargo() -> Command {
    let mut command = Command::new("rustup");
    command
        .args(["run", EBPF_TOOLCHAIN, "cargo"])
        .current_dir(workspace_root());
    // What the stable cargo running xtask exported would point cargo-fuzz at the wrong cargo.
    for variable in [
        "CARGO",
        "RUSTC",
        "RUSTDOC",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
    ] {
        command.env_remove(variable);
    }
    command
}

/// The targets fuzz/Cargo.toml declares, as `cargo fuzz list` prints them.
fn targets() -> anyhow::Result<Vec<String>> {
    let mut list = nightly_cargo();
    list.args(["fuzz", "list"]);
    let out = list
        .output()
        .with_context(|| format!("running `{}`", describe(&list)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            describe(&list),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let targets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    if targets.is_empty() {
        bail!("`{}` lists no fuzz targets", describe(&list));
    }
    Ok(targets)
}

pub fn run(seconds: u64) -> anyhow::Result<()> {
    let fuzz_dir = workspace_root().join("fuzz");
    let targets = targets()?;
    // One build for all targets (it also builds the eBPF objects tracer embeds).
    run_checked(nightly_cargo().args(["fuzz", "build"]))?;
    for target in &targets {
        let corpus = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        let seeds = fuzz_dir.join("seeds").join(target);
        let mut fuzz = nightly_cargo();
        fuzz.args(["fuzz", "run", target])
            .arg(&corpus)
            .args(seeds.is_dir().then_some(&seeds))
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                &format!("-timeout={INPUT_TIMEOUT_SECS}"),
            ]);
        run_checked(&mut fuzz).with_context(|| {
            format!(
                "fuzz target `{target}` failed; an input that makes it fail is kept in \
                 fuzz/artifacts/{target}/: replay it with \
                 `cargo +{EBPF_TOOLCHAIN} fuzz run {target} fuzz/artifacts/{target}/FILE`"
            )
        })?;
    }
    eprintln!(
        "fuzz: {} targets ran {seconds} s each without a failure: {}",
        targets.len(),
        targets.join(", ")
    );
    Ok(())
}
