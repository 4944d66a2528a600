//! `cargo xtask setup`: installs what is missing, idempotently, saying what it does.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{
    kernels::PrivateApt,
    util::{is_root, run_checked, target_dir},
};

/// Pinned: bpf-linker must share its LLVM major with this nightly's LLVM (22).
pub const EBPF_TOOLCHAIN: &str = "nightly-2026-05-20";
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// cargo-fuzz runs the targets in fuzz/ (on the pinned nightly); any version will do, this one
/// is what a fresh machine gets.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Debian packages: LLVM for bpf-linker; the tools the lab and the tests drive.
const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "iproute2",
    "iptables",
    "arptables",
    "nftables",
    "iputils-ping",
    "tcpdump",
    // `ethtool -k`: the tests check that attaching leaves the ports' offloads alone.
    "ethtool",
    // A real Prometheus server and promtool for `tracer monitor`'s tests.
    "prometheus",
    // A real LLDP agent at the far end of `tracer cables`'s tests.
    "lldpd",
    // Headless Chromium opens report.html in the tests (no network, DOM and console checked),
    // with the font the pictures are drawn for.
    "chromium",
    "fonts-dejavu-core",
    // The man page's test renders it with `man -l`.
    "man-db",
    // Throughput for `cargo xtask bench`.
    "iperf3",
    // The failing-disk tests: an ext4 image on a loop device (mkfs.ext4, losetup).
    "e2fsprogs",
    "mount",
    // `cargo xtask kernels`: the guests' initramfs (static busybox, modules listed by modprobe,
    // packed by cpio) and depmod for the extracted kernels.
    "busybox-static",
    "kmod",
    "cpio",
];

/// From the host release's backports, like the host's own qemu-utils: QEMU for `cargo xtask
/// kernels`.
const BACKPORTS_PACKAGES: &[&str] = &["qemu-system-x86"];

pub fn run() -> anyhow::Result<()> {
    install_packages()?;
    install_backports_packages()?;
    install_ebpf_toolchain()?;
    install_bpf_linker()?;
    install_cargo_fuzz()?;
    eprintln!("setup: everything is in place");
    Ok(())
}

fn package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
}

fn install_packages() -> anyhow::Result<()> {
    install_debian_packages(PACKAGES)
}

/// Installs those of `packages` that are missing, from the host's Debian sources.
pub fn install_debian_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| !package_installed(package))
        .collect();
    if missing.is_empty() {
        eprintln!("setup: Debian packages present ({})", packages.join(" "));
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {}: installing them needs root; run `sudo -E cargo xtask setup`",
            missing.join(" ")
        );
    }
    eprintln!("setup: installing Debian packages {}", missing.join(" "));
    run_checked(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| {
        format!(
            "installing {} (are Debian's repositories reachable?)",
            missing.join(" ")
        )
    })
}

/// Installs from `RELEASE-backports` through a private apt configuration that adds that suite to
/// the host's sources: the host's own apt configuration stays as it is.
fn install_backports_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = BACKPORTS_PACKAGES
        .iter()
        .copied()
        .filter(|package| !package_installed(package))
        .collect();
    if missing.is_empty() {
        eprintln!(
            "setup: Debian packages present ({})",
            BACKPORTS_PACKAGES.join(" ")
        );
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {}: installing them needs root; run `sudo -E cargo xtask setup`",
            missing.join(" ")
        );
    }
    let suite = format!("{}-backports", host_codename()?);
    eprintln!(
        "setup: installing Debian packages {} from {suite}",
        missing.join(" ")
    );
    let apt = PrivateApt::extending_host(&target_dir().join("kernels/apt-host"), &[&suite])?;
    apt.update()?;
    run_checked(
        apt.command("apt-get")
            .args([
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "-t",
                &suite,
            ])
            .args(&missing),
    )
    .with_context(|| format!("installing {} from {suite}", missing.join(" ")))
}

/// The host's Debian release name (`bookworm`), from /etc/os-release.
fn host_codename() -> anyhow::Result<String> {
    let os_release =
        std::fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    os_release
        .lines()
        .find_map(|line| line.strip_prefix("VERSION_CODENAME="))
        .map(|name| name.trim_matches('"').to_owned())
        .filter(|name| !name.is_empty())
        .context("/etc/os-release names no VERSION_CODENAME (is this Debian?)")
}

fn install_ebpf_toolchain() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            EBPF_TOOLCHAIN,
        ])
        .output()
        .context("running rustup (is it installed?)")?;
    let components = String::from_utf8_lossy(&installed.stdout);
    // rust-src to build core for the BPF target; clippy to lint the eBPF crate.
    let present = |name: &str| components.lines().any(|c| c.starts_with(name));
    if installed.status.success() && present("rust-src") && present("clippy") {
        eprintln!("setup: toolchain {EBPF_TOOLCHAIN} with rust-src and clippy present");
        return Ok(());
    }
    eprintln!("setup: installing toolchain {EBPF_TOOLCHAIN} with rust-src and clippy");
    run_checked(Command::new("rustup").args([
        "toolchain",
        "install",
        EBPF_TOOLCHAIN,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
        "--component",
        "clippy",
    ]))
}

fn install_bpf_linker() -> anyhow::Result<()> {
    let version = Command::new("bpf-linker").arg("--version").output();
    if version.is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(BPF_LINKER_VERSION)) {
        eprintln!("setup: bpf-linker {BPF_LINKER_VERSION} present");
        return Ok(());
    }
    eprintln!("setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about a minute)");
    run_checked(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--no-default-features",
                "--features",
                "llvm-22",
                "--locked",
            ])
            .env("LLVM_PREFIX", LLVM_PREFIX),
    )
}

fn install_cargo_fuzz() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let version = Command::new(&cargo).args(["fuzz", "--version"]).output();
    if let Ok(out) = version
        && out.status.success()
    {
        let version = String::from_utf8_lossy(&out.stdout);
        eprintln!("setup: {} present", version.trim());
        return Ok(());
    }
    eprintln!("setup: building cargo-fuzz {CARGO_FUZZ_VERSION} (about a minute)");
    run_checked(Command::new(cargo).args([
        "install",
        &format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"),
        "--locked",
    ]))
}
