//! Reports on a disk that refuses them: a full one (a small tmpfs, filled) and a read-only one.
//! `tracer watch` still exits with its command's code and says what was not written and where
//! the partial bundle is; `tracer diagnose --report` exits 2 with the reason.
//!
//! Each tmpfs is mounted in a private mount namespace (`unshare -m`) around one tracer run: it
//! goes away with that namespace, on failure too, and no other process ever sees it.

use std::process::Output;

use tracer_tests::{Lab, TempDir, output, tracer_bin};

/// The tmpfs: 64 KiB, of which `filled` KiB are taken before tracer runs.
struct Disk {
    read_only: bool,
    filled_kib: u32,
}

const FULL: Disk = Disk {
    read_only: false,
    filled_kib: 56,
};
const READ_ONLY: Disk = Disk {
    read_only: true,
    filled_kib: 0,
};

/// Runs tracer with `args` (where `{DIR}` stands for the report directory, inside the tmpfs)
/// while the tmpfs is mounted at `mount`; after tracer, the files of the report directory are
/// listed on stdout under a line `--- left:`.
fn on_disk(disk: &Disk, mount: &std::path::Path, args: &[&str]) -> (Output, Vec<String>) {
    let mount = mount.display().to_string();
    let dir = format!("{mount}/report");
    let options = if disk.read_only {
        "ro,size=64k"
    } else {
        "size=64k"
    };
    let script = format!(
        "set -e; mount -t tmpfs -o {options} tracer-test-disk {mount}; \
         if [ {filled} -gt 0 ]; then head -c {filled}k /dev/zero > {mount}/filler; fi; \
         set +e; \"$@\"; code=$?; echo '--- left:'; \
         (cd {dir} 2>/dev/null && find . -type f | sort); exit $code",
        filled = disk.filled_kib,
    );
    let args: Vec<String> = args.iter().map(|arg| arg.replace("{DIR}", &dir)).collect();
    let out = output(
        std::process::Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
                "sh",
            ])
            .arg(tracer_bin())
            .args(&args),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let left = stdout
        .split_once("--- left:\n")
        .map(|(_, files)| {
            files
                .lines()
                .map(|file| file.trim_start_matches("./").to_owned())
                .collect()
        })
        .unwrap_or_default();
    (out, left)
}

/// The files stderr names as not written, from tracer's line about the bundle.
fn not_written(stderr: &str) -> Vec<String> {
    let line = stderr
        .lines()
        .find(|line| line.contains("could not be written whole"))
        .unwrap_or_else(|| panic!("no line about the bundle: {stderr}"));
    let (_, rest) = line.split_once("): ").expect("the reason, then the files");
    let (files, _) = rest
        .split_once(" not written")
        .expect("what was not written");
    files.split(", ").map(str::to_owned).collect()
}

#[test]
fn watch_exits_with_the_commands_code_when_the_bundle_does_not_fit() {
    let lab = Lab::up("dkw");
    let mount = TempDir::new("dkw");
    let mut ports = lab.port_args();
    ports.extend(["--report", "{DIR}", "--always", "--", "sh", "-c", "exit 3"].map(String::from));
    let mut args = vec!["watch"];
    args.extend(ports.iter().map(String::as_str));

    let (out, left) = on_disk(&FULL, &mount.path, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    let dir = format!("{}/report", mount.path.display());
    assert!(
        stderr.contains(&format!("the partial bundle is in {dir}"))
            || stderr.contains(&format!("nothing was written to {dir}")),
        "{stderr}"
    );
    let missing = not_written(&stderr);
    assert!(!missing.is_empty(), "{stderr}");
    // What is named as missing is missing; what is there is whole (a cut file is removed).
    for file in &missing {
        assert!(
            !left.contains(file),
            "{file} named missing but left: {left:?}"
        );
    }
    for file in &left {
        assert!(!missing.contains(file), "{file}: {stderr}");
    }
    if !left.is_empty() {
        assert!(stderr.contains("the partial bundle is in"), "{stderr}");
    }

    let (out, left) = on_disk(&READ_ONLY, &mount.path, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Said before the command runs, and again at the end.
    assert!(
        stderr.contains("Read-only file system") && stderr.contains("the command runs"),
        "{stderr}"
    );
    assert_eq!(not_written(&stderr), ["the bundle"], "{stderr}");
    assert!(
        stderr.contains(&format!("nothing was written to {dir}")),
        "{stderr}"
    );
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn diagnose_report_on_a_full_or_read_only_disk_exits_2_with_the_reason() {
    let lab = Lab::up("dkd");
    let mount = TempDir::new("dkd");
    let ports = lab.port_args();
    let mut args = vec!["diagnose", "--report", "{DIR}"];
    args.extend(ports.iter().map(String::as_str));
    for (disk, reason) in [
        (FULL, "No space left on device"),
        (READ_ONLY, "Read-only file system"),
    ] {
        let (out, _) = on_disk(&disk, &mount.path, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{reason}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            stderr.contains(reason) && stderr.contains("report directory"),
            "{stderr}"
        );
    }
}
