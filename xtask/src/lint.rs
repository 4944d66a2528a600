//! `cargo xtask lint`: formatting and clippy, the eBPF crate included (it builds only for the
//! BPF target, with the pinned nightly, so the workspace's clippy run leaves it out).

use std::process::Command;

use crate::{
    setup::EBPF_TOOLCHAIN,
    util::{run_checked, workspace_root},
};

pub fn run() -> anyhow::Result<()> {
    let cargo = || {
        let mut command = Command::new("cargo");
        command.current_dir(workspace_root());
        command
    };
    run_checked(cargo().args(["fmt", "--all", "--check"]))?;
    run_checked(cargo().args([
        "clippy",
        "--workspace",
        "--exclude",
        "tracer-ebpf",
        "--all-targets",
        "--release",
        "--",
        "-D",
        "warnings",
    ]))?;
    run_checked(
        cargo()
            .current_dir(workspace_root().join("tracer-ebpf"))
            .arg(format!("+{EBPF_TOOLCHAIN}"))
            .args([
                "clippy",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--release",
                "--bins",
                "--",
                "-D",
                "warnings",
            ]),
    )
}
