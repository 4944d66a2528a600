//! `cargo xtask kernels` from a clone under /tmp, where the guest mounts a fresh tmpfs: the
//! guest must still find the checkout. The clone builds into a target directory of its own,
//! seeded with a copy of this checkout's builds (so only the workspace crates are compiled
//! again), and boots from this checkout's kernel cache (XTASK_KERNELS_DIR), so nothing is
//! downloaded twice. Never this checkout's target directory itself: cargo names a workspace
//! crate's builds by its path inside the workspace, so the clone's would replace this
//! checkout's, and later runs here would take them, pointing at the deleted clone, as fresh.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// `cargo xtask kernels`'s exit code when a kernel could not be downloaded (kernels.rs).
const UNAVAILABLE_EXIT: i32 = 3;

/// One short test on the oldest kernel: enough to show the guest booted, found the test
/// binaries' crate directory and ran tracer.
const KERNEL: &str = "5.10";
const TEST: &str = "five_pings_counted_exactly_on_both_ports";

/// A directory removed on drop, on failure too.
struct Clone(PathBuf);

impl Drop for Clone {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn checked(command: &mut Command) -> String {
    let out = command.output().expect("running a command");
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn the_kernel_matrix_runs_from_a_clone_under_tmp() {
    // SAFETY: geteuid has no preconditions.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "needs root, as `cargo xtask kernels` does: run it with `cargo xtask test`"
    );
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace");
    let head = checked(
        Command::new("git")
            .arg("-C")
            .arg(workspace)
            .args(["rev-parse", "HEAD"]),
    );
    let clone = Clone(PathBuf::from(format!(
        "/tmp/tracer-kernels-anywhere-{}",
        std::process::id()
    )));
    let _ = std::fs::remove_dir_all(&clone.0);
    // --shared: the objects stay in this repository, nothing is copied but the checkout.
    checked(
        Command::new("git")
            .args(["clone", "--quiet", "--shared", "--no-checkout"])
            .arg(workspace)
            .arg(&clone.0),
    );
    checked(
        Command::new("git")
            .arg("-C")
            .arg(&clone.0)
            .args(["checkout", "--quiet", "--detach", &head]),
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let clone_target = clone.0.join("target");
    std::fs::create_dir_all(&clone_target).expect("creating the clone's target directory");
    // A copy, not links: nothing the clone builds may write into this checkout's files.
    for profile in ["release", "debug"] {
        if target.join(profile).is_dir() {
            checked(
                Command::new("cp")
                    .arg("-a")
                    .arg(target.join(profile))
                    .arg(&clone_target),
            );
        }
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["run", "--quiet", "--package", "xtask", "--"])
        .args(["kernels", "--kernel", KERNEL, "--timeout", "900", "--"])
        .args(["--exact", TEST])
        .current_dir(&clone.0)
        .env("CARGO_TARGET_DIR", &clone_target)
        .env("XTASK_KERNELS_DIR", target.join("kernels"))
        .output()
        .expect("running cargo xtask kernels in the clone");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(UNAVAILABLE_EXIT) {
        eprintln!(
            "SKIPPED: kernel {KERNEL} could not be downloaded here, so the matrix cannot run \
             from a clone under /tmp: {}",
            stderr.lines().last().unwrap_or_default()
        );
        return;
    }
    assert!(
        out.status.success(),
        "cargo xtask kernels from {} failed ({}):\n{stdout}\n{}",
        clone.0.display(),
        out.status,
        stderr
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("{stdout}");
    // The run's table: one kernel, the one test passed.
    let row = stdout
        .lines()
        .find(|line| line.starts_with(KERNEL))
        .unwrap_or_else(|| panic!("no {KERNEL} row in:\n{stdout}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        (columns[2], columns[3], columns.last().copied()),
        ("1", "0", Some("ok")),
        "{stdout}"
    );
}
