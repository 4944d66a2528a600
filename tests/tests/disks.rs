//! Reports on a disk that refuses them: a full one (a small tmpfs, filled), a read-only one,
//! and a failing one (writes fail with EIO). `tracer watch` still exits with its command's code
//! and says what was not written and where the partial bundle is; `tracer diagnose --report`
//! exits 2 with the reason.
//!
//! Each disk is mounted in a private mount namespace (`unshare -m`) around one tracer run: it
//! goes away with that namespace, on failure too, and no other process ever sees it. The
//! failing disk's loop device is global: its guard detaches it.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use tracer_tests::{Lab, TempDir, check, output, tracer_bin};

/// Where a report goes, mounted in the private mount namespace of one tracer run.
enum Disk {
    /// A 64 KiB tmpfs with 56 KiB taken before tracer runs: the first files fit, then ENOSPC.
    Full,
    /// A 64 KiB read-only tmpfs: EROFS.
    ReadOnly,
    /// A disk whose writes fail with EIO: see [`FailingDisk`].
    Failing(FailingDisk),
}

/// An ext4 file system of 64 MiB (1 KiB blocks, no journal, so no error remounts it read-only)
/// in a sparse file, on a loop device. Once mounted, the report directory is made and the
/// device is cut to its first block group (8 MiB): the metadata and the directories' blocks
/// stay on it, so files are still created, but their data is placed beyond its end and its
/// writes fail with EIO, which only reaches tracer when it syncs what it wrote (the mount is
/// an ordinary one). A fresh disk per tracer run, as the cut cannot be undone mounted.
struct FailingDisk {
    device: String,
    backing: PathBuf,
    _dir: TempDir,
}

impl FailingDisk {
    fn new(tag: &str) -> Self {
        let dir = TempDir::new(tag);
        let backing = dir.path.join("disk.img");
        std::fs::File::create(&backing)
            .and_then(|file| file.set_len(64 << 20))
            .unwrap_or_else(|err| panic!("creating {}: {err}", backing.display()));
        check(
            Command::new("mkfs.ext4")
                .args(["-q", "-b", "1024", "-O", "^has_journal"])
                .arg(&backing),
        );
        let out = check(
            Command::new("losetup")
                .args(["--find", "--show"])
                .arg(&backing),
        );
        let device = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(device.starts_with("/dev/loop"), "losetup gave {device:?}");
        Self {
            device,
            backing,
            _dir: dir,
        }
    }
}

impl Drop for FailingDisk {
    fn drop(&mut self) {
        let _ = Command::new("losetup")
            .args(["--detach", &self.device])
            .status();
    }
}

impl Disk {
    /// Shell commands that mount the disk at `mount` and make it refuse writes under `dir`.
    fn mount(&self, mount: &str, dir: &str) -> String {
        match self {
            Disk::Full => format!(
                "mount -t tmpfs -o size=64k tracer-test-disk {mount}; \
                 head -c 56k /dev/zero > {mount}/filler"
            ),
            Disk::ReadOnly => format!("mount -t tmpfs -o ro,size=64k tracer-test-disk {mount}"),
            Disk::Failing(disk) => format!(
                "mount {device} {mount}; mkdir {dir}; sync -f {dir}; \
                 truncate -s 8M {backing}; losetup --set-capacity {device}",
                device = disk.device,
                backing = disk.backing.display(),
            ),
        }
    }
}

/// Runs tracer with `args` (where `{DIR}` stands for the report directory, on the disk) while
/// the disk is mounted at `mount`; after tracer, the files of the report directory are listed
/// on stdout under a line `--- left:`.
fn on_disk(disk: &Disk, mount: &Path, args: &[&str]) -> (Output, Vec<String>) {
    let mount = mount.display().to_string();
    let dir = format!("{mount}/report");
    let script = format!(
        "set -e; {}; set +e; \"$@\"; code=$?; echo '--- left:'; \
         (cd {dir} 2>/dev/null && find . -type f | sort); exit $code",
        disk.mount(&mount, &dir),
    );
    let args: Vec<String> = args.iter().map(|arg| arg.replace("{DIR}", &dir)).collect();
    let out = output(
        Command::new("unshare")
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

/// watch on a disk that took what fit (`reason` for the rest): the command's code, the reason,
/// where the bundle is; what is named as missing is missing, what is there is whole (a cut
/// file is removed).
fn assert_partial_bundle(out: &Output, left: &[String], dir: &str, reason: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains(reason), "{stderr}");
    assert!(
        stderr.contains(&format!("the partial bundle is in {dir}"))
            || stderr.contains(&format!("nothing was written to {dir}")),
        "{stderr}"
    );
    let missing = not_written(&stderr);
    assert!(!missing.is_empty(), "{stderr}");
    for file in &missing {
        assert!(
            !left.iter().any(|left| left == file),
            "{file} named missing but left: {left:?}"
        );
    }
    if !left.is_empty() {
        assert!(stderr.contains("the partial bundle is in"), "{stderr}");
    }
}

#[test]
fn watch_exits_with_the_commands_code_when_the_bundle_does_not_fit() {
    let lab = Lab::up("dkw");
    let mount = TempDir::new("dkw");
    let mut ports = lab.port_args();
    ports.extend(["--report", "{DIR}", "--always", "--", "sh", "-c", "exit 3"].map(String::from));
    let mut args = vec!["watch"];
    args.extend(ports.iter().map(String::as_str));
    let dir = format!("{}/report", mount.path.display());

    let (out, left) = on_disk(&Disk::Full, &mount.path, &args);
    assert_partial_bundle(&out, &left, &dir, "No space left on device");

    let (out, left) = on_disk(&Disk::Failing(FailingDisk::new("dkwf")), &mount.path, &args);
    assert_partial_bundle(&out, &left, &dir, "Input/output error");

    let (out, left) = on_disk(&Disk::ReadOnly, &mount.path, &args);
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
fn diagnose_report_on_a_full_read_only_or_failing_disk_exits_2_with_the_reason() {
    let lab = Lab::up("dkd");
    let mount = TempDir::new("dkd");
    let ports = lab.port_args();
    let mut args = vec!["diagnose", "--report", "{DIR}"];
    args.extend(ports.iter().map(String::as_str));
    for (disk, reason) in [
        (Disk::Full, "No space left on device"),
        (Disk::ReadOnly, "Read-only file system"),
        (
            Disk::Failing(FailingDisk::new("dkdf")),
            "Input/output error",
        ),
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

/// `--svg` and `--html` name files outside a report directory: synced like the report's, so
/// that a disk that fails to keep them is an exit 2 with the reason and no file cut short.
#[test]
fn diagnose_pictures_on_a_failing_disk_exit_2_and_leave_no_file_cut_short() {
    let lab = Lab::up("dks");
    let mount = TempDir::new("dks");
    let ports = lab.port_args();
    for option in ["--svg", "--html"] {
        let mut args = vec!["diagnose", option, "{DIR}/picture"];
        args.extend(ports.iter().map(String::as_str));
        let (out, left) = on_disk(&Disk::Failing(FailingDisk::new("dksf")), &mount.path, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{option}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            stderr.contains("Input/output error") && stderr.contains("picture"),
            "{option}: {stderr}"
        );
        assert!(left.is_empty(), "{option}: {left:?}");
    }
}
