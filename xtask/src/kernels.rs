//! `cargo xtask kernels`: the root integration tests on other kernels. Each Debian kernel of the
//! matrix boots under QEMU with the host's root shared read-only over 9p and a tmpfs overlay on
//! top, so the guest runs the very test binaries and tracer the host built; a second, writable
//! 9p share carries each test binary's output and exit code out. Package lists, packages,
//! extracted kernels and initramfs images are cached under target/kernels/ (XTASK_KERNELS_DIR
//! moves the cache).

use std::{
    collections::BTreeSet,
    fs,
    io::Write as _,
    os::{fd::AsRawFd as _, unix::fs::PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, anyhow, bail, ensure};
use serde_json::Value;

use crate::util::{cargo, describe, run_checked, target_dir, tracer_binary, workspace_root};

/// A kernel of the matrix: the newest `linux-image-amd64` among its suites.
struct Kernel {
    name: &'static str,
    suites: &'static [&'static str],
}

const KERNELS: &[Kernel] = &[
    Kernel {
        name: "5.10",
        suites: &["bullseye"],
    },
    Kernel {
        name: "6.1",
        suites: &["bookworm"],
    },
    Kernel {
        name: "6.12",
        suites: &["bookworm-backports"],
    },
    // 7.x at the time of writing.
    Kernel {
        name: "newest",
        suites: &["trixie", "trixie-backports"],
    },
];

/// Package lists younger than this are used as they are: a second run downloads nothing.
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// What the initramfs loads before it can mount the shares and the overlay; the rest comes from
/// the kernel's own modules once the guest runs from the host's root.
const INITRAMFS_MODULES: &[&str] = &["virtio_pci", "virtio_rng", "9pnet_virtio", "9p", "overlay"];

/// Where the results share is mounted in the guest (by INIT).
const GUEST_RESULTS: &str = "/xtask-results";

/// The initramfs's /init: mounts the host's root read-only with a tmpfs overlay on top, and the
/// results share, then hands over to the guest script the host wrote there. The root is cached
/// in the guest (`cache=loose`): a process the tests start reads its binary and libraries from
/// the guest's memory, not over 9p again (240 starts of ip, nft, iptables and ping took 40%
/// less time), and what the guest runs of the host's build is a snapshot that does not change.
/// Any failure ends init: the kernel panics and, with panic=-1 and -no-reboot, QEMU exits.
const INIT: &str = r#"#!/bin/busybox sh
set -e
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /lower /rw /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in /modules/*.ko; do insmod "$module"; done
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro hostroot /lower
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot
mkdir -p /newroot/xtask-results
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results /newroot/xtask-results
for fs in proc sys dev; do mount --move /$fs /newroot/$fs; done
exec switch_root /newroot /bin/sh /xtask-results/guest.sh
"#;

/// `cargo xtask kernels` exits with this when a kernel it needs could not be downloaded (the
/// mirror unreachable, nothing cached), so a caller tells "cannot run here" from a failed run.
pub const UNAVAILABLE_EXIT: u8 = 3;

/// The package lists or a kernel's packages could not be downloaded.
#[derive(Debug)]
pub struct Unavailable(anyhow::Error);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kernels not downloadable: {:#}", self.0)
    }
}

impl std::error::Error for Unavailable {}

/// The guest's PATH, which is also where [`hot_files`] looks on the host (the guest's root is
/// the host's).
const GUEST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The programs the tests and tracer start most. Starting a program is the guests' main cost:
/// its binary, libraries and their attributes come over 9p (a static binary starts in 48 ms
/// from there, 11 ms from the guest's memory, on 5.10 under TCG).
const HOT_PROGRAMS: &[&str] = &[
    "sh",
    "bash",
    "ip",
    "nft",
    "iptables",
    "iptables-save",
    "iptables-nft",
    "iptables-nft-save",
    "iptables-legacy",
    "iptables-legacy-save",
    "ip6tables-nft-save",
    "ip6tables-legacy-save",
    "arptables",
    "arptables-nft",
    "arptables-nft-save",
    "arptables-legacy",
    "tc",
    "ethtool",
    "ping",
    "sysctl",
    "iperf3",
    "tcpdump",
    "unshare",
    "setpriv",
    "timeout",
    "cat",
    "sleep",
    "date",
    "grep",
    "seq",
    "kill",
];

/// The files of [`HOT_PROGRAMS`] found on the host, and the shared libraries `ldd` names for
/// them, resolved.
fn hot_files() -> Vec<PathBuf> {
    let mut files = BTreeSet::new();
    for program in HOT_PROGRAMS {
        let Some(path) = GUEST_PATH
            .split(':')
            .map(|dir| Path::new(dir).join(program))
            .find(|path| path.is_file())
        else {
            continue;
        };
        let libraries = Command::new("ldd")
            .arg(&path)
            .stderr(Stdio::null())
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default();
        let named = libraries
            .split_whitespace()
            .filter(|word| word.starts_with('/'))
            .map(PathBuf::from);
        files.extend(
            std::iter::once(path)
                .chain(named)
                .filter_map(|file| fs::canonicalize(file).ok()),
        );
    }
    files.into_iter().collect()
}

/// Work timed on the host before each boot and in the guest before the tests, with the host's
/// own tools: the ratio is TRACER_TESTS_TIME_SCALE, by which the tests scale their hang guards.
const SPEED_PROBE: &str = "dd if=/dev/zero bs=1M count=32 2>/dev/null | sha256sum >/dev/null";

/// Nanoseconds SPEED_PROBE takes on the host.
fn host_probe_nanos() -> anyhow::Result<u128> {
    let start = Instant::now();
    let status = Command::new("sh")
        .args(["-c", SPEED_PROBE])
        .status()
        .context("timing the speed probe on the host")?;
    ensure!(status.success(), "`{SPEED_PROBE}` failed on the host");
    Ok(start.elapsed().as_nanos().max(1))
}

/// Lines of a failing test's output shown, from its start: the panic message comes first.
const FAILURE_LINES: usize = 15;
/// Lines of the console shown when a guest ended without a result.
const CONSOLE_LINES: usize = 40;

/// The kernel cache: XTASK_KERNELS_DIR when set (a clone building into a target directory of
/// its own shares another checkout's downloads), else the target directory's kernels/.
fn kernels_dir() -> PathBuf {
    match std::env::var_os("XTASK_KERNELS_DIR") {
        Some(dir) => std::path::absolute(&dir).unwrap_or_else(|_| PathBuf::from(dir)),
        None => target_dir().join("kernels"),
    }
}

/// Copies of tracer, its helper binaries and the test binaries the guests run: the guests read
/// files from the host as they go, and a build during the run must not swap them underneath.
fn snapshot_dir() -> PathBuf {
    kernels_dir().join("bin")
}

/// Held while a run uses the kernel cache: two runs would share the snapshot and the results.
fn lock() -> anyhow::Result<fs::File> {
    fs::create_dir_all(kernels_dir())
        .with_context(|| format!("creating {}", kernels_dir().display()))?;
    let path = kernels_dir().join("lock");
    let file = fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns; the lock goes with the file.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        eprintln!("kernels: waiting for another `cargo xtask kernels` to finish");
        // SAFETY: as above.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("locking {}", path.display()));
        }
    }
    Ok(file)
}

/// apt-get and apt-cache on a source list of their own, with their own package lists and
/// caches under `dir`: the host's apt configuration is read, never changed.
pub struct PrivateApt {
    dir: PathBuf,
    /// Only the private sources, and an empty dpkg status: what the host has installed plays
    /// no part in which package a suite resolves to.
    isolated: bool,
}

impl PrivateApt {
    /// `suites` of the host's Debian mirror, and nothing else.
    fn isolated(dir: &Path, suites: &[&str]) -> anyhow::Result<Self> {
        Self::new(dir, suites, true)
    }

    /// The host's sources plus `suites` of its Debian mirror, for installing on the host.
    pub fn extending_host(dir: &Path, suites: &[&str]) -> anyhow::Result<Self> {
        Self::new(dir, suites, false)
    }

    fn new(dir: &Path, suites: &[&str], isolated: bool) -> anyhow::Result<Self> {
        for sub in ["lists/partial", "cache/archives/partial", "preferences.d"] {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let (uri, key) = host_mirror()?;
        let sources: String = suites
            .iter()
            .map(|suite| format!("deb [signed-by={key}] {uri} {suite} main\n"))
            .collect();
        let list = dir.join("sources.list");
        if fs::read_to_string(&list).ok().as_deref() != Some(&sources) {
            fs::write(&list, &sources).with_context(|| format!("writing {}", list.display()))?;
            // Other sources: the lists on disk no longer answer for them.
            let _ = fs::remove_file(dir.join("updated"));
        }
        if isolated {
            let status = dir.join("status");
            if !status.exists() {
                fs::write(&status, "").with_context(|| format!("writing {}", status.display()))?;
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            isolated,
        })
    }

    pub fn command(&self, program: &str) -> Command {
        let dir = self.dir.display();
        let mut options = vec![
            format!("Dir::Etc::SourceList={dir}/sources.list"),
            format!("Dir::State::Lists={dir}/lists"),
            format!("Dir::Cache={dir}/cache"),
            // Kept between calls (the host may switch them off): each query would otherwise
            // parse every suite's package list again, seconds each.
            "Dir::Cache::pkgcache=pkgcache.bin".to_owned(),
            "Dir::Cache::srcpkgcache=srcpkgcache.bin".to_owned(),
            // The _apt user may not write under target/.
            "APT::Sandbox::User=root".to_owned(),
            "Acquire::Languages=none".to_owned(),
            // AppStream metadata: megabytes nobody here reads.
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".to_owned(),
        ];
        if self.isolated {
            options.extend([
                "Dir::Etc::SourceParts=/dev/null".to_owned(),
                format!("Dir::State::status={dir}/status"),
                format!("Dir::Etc::Preferences={dir}/preferences"),
                format!("Dir::Etc::PreferencesParts={dir}/preferences.d"),
                // The guests are amd64 whatever foreign architectures the host has.
                "APT::Architectures=amd64".to_owned(),
            ]);
        }
        let mut command = Command::new(program);
        for option in options {
            command.arg("-o").arg(option);
        }
        command.env("DEBIAN_FRONTEND", "noninteractive");
        command
    }

    pub fn update(&self) -> anyhow::Result<()> {
        run_checked(self.command("apt-get").args(["update", "-q"]))
            .context("updating the private package lists (is the Debian mirror reachable?)")?;
        fs::write(self.dir.join("updated"), "").context("stamping the package lists")
    }

    /// How long ago the lists were updated; None if never (or for other sources).
    fn lists_age(&self) -> Option<Duration> {
        let modified = fs::metadata(self.dir.join("updated"))
            .and_then(|meta| meta.modified())
            .ok()?;
        SystemTime::now().duration_since(modified).ok()
    }

    /// stdout of an apt-cache or apt-get query; fails with its stderr.
    fn query(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut command = self.command(program);
        command.args(args);
        let out = command
            .output()
            .with_context(|| format!("running `{}`", describe(&command)))?;
        if !out.status.success() {
            bail!(
                "`{program} {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The Debian mirror and archive key the host's own sources use: the private configuration
/// then goes where the host already goes (mirrors, proxies, firewalls).
fn host_mirror() -> anyhow::Result<(String, String)> {
    const SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";
    const DEFAULT_KEY: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
    let text = fs::read_to_string(SOURCES).with_context(|| format!("reading {SOURCES}"))?;
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) else {
            continue;
        };
        // The security archive carries the same suites' fixes only, no backports.
        if suites
            .split_whitespace()
            .all(|suite| suite.ends_with("-security"))
        {
            continue;
        }
        let uri = uris
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        let key = field("Signed-By").unwrap_or(DEFAULT_KEY).to_owned();
        return Ok((uri, key));
    }
    bail!("{SOURCES} names no Debian mirror (a stanza with URIs and non-security Suites)")
}

/// One kernel's packages, as a suite has them.
#[derive(Clone)]
struct Resolved {
    kernel: &'static Kernel,
    suite: &'static str,
    /// `uname -r`: `linux-image-RELEASE` is the package it comes in.
    release: String,
    /// `NAME=VERSION` of every package `linux-image-amd64` pins to its own version.
    packages: Vec<String>,
}

/// A package record's Version and Depends, as `apt-cache show SPEC` prints them.
fn show(apt: &PrivateApt, spec: &str) -> anyhow::Result<(String, String)> {
    let record = apt.query("apt-cache", &["show", "--no-all-versions", spec])?;
    let field = |name: &str| {
        record
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
            .unwrap_or_default()
            .to_owned()
    };
    let version = field("Version");
    ensure!(!version.is_empty(), "no package record for {spec}");
    Ok((version, field("Depends")))
}

/// Dependencies pinned to one version (`name (= version)`) on other kernel packages: the
/// packages one kernel build is split into (7.x: linux-binary-*, linux-modules-*, linux-base-*).
fn pinned_dependencies(depends: &str) -> Vec<(String, String)> {
    depends
        .split(',')
        .map(str::trim)
        // Alternatives are never parts of the kernel itself (initramfs-tools | dracut …).
        .filter(|item| !item.contains('|'))
        .filter_map(|item| {
            let (name, version) = item.split_once(" (= ")?;
            Some((name.to_owned(), version.strip_suffix(')')?.to_owned()))
        })
        .filter(|(name, _)| name.starts_with("linux-"))
        .collect()
}

fn dpkg_version_greater(a: &str, b: &str) -> anyhow::Result<bool> {
    Ok(Command::new("dpkg")
        .args(["--compare-versions", a, "gt", b])
        .status()
        .context("running dpkg --compare-versions")?
        .success())
}

fn resolve(apt: &PrivateApt, kernel: &'static Kernel) -> anyhow::Result<Resolved> {
    let mut newest: Option<(&'static str, String, String)> = None;
    let mut missing = None;
    for &suite in kernel.suites {
        // A backports suite may carry no kernel for a while.
        let (version, depends) = match show(apt, &format!("linux-image-amd64/{suite}")) {
            Ok(found) => found,
            Err(err) => {
                missing = Some(err);
                continue;
            }
        };
        if match &newest {
            Some((_, best, _)) => dpkg_version_greater(&version, best)?,
            None => true,
        } {
            newest = Some((suite, version, depends));
        }
    }
    let Some((suite, _, depends)) = newest else {
        return Err(missing.unwrap_or_else(|| anyhow!("no suites"))).context(format!(
            "no linux-image-amd64 in {}",
            kernel.suites.join(", ")
        ));
    };
    let release = pinned_dependencies(&depends)
        .into_iter()
        .find_map(|(name, _)| name.strip_prefix("linux-image-").map(str::to_owned))
        .with_context(|| format!("linux-image-amd64/{suite} depends on no linux-image-*"))?;
    // linux-image-amd64 and the packages it pins, and theirs in turn.
    let mut packages = BTreeSet::new();
    let mut pending = pinned_dependencies(&depends);
    while let Some((name, version)) = pending.pop() {
        let spec = format!("{name}={version}");
        if packages.insert(spec.clone()) {
            pending.extend(pinned_dependencies(&show(apt, &spec)?.1));
        }
    }
    Ok(Resolved {
        kernel,
        suite,
        release,
        packages: packages.into_iter().collect(),
    })
}

/// The kernels `selection` names (all when empty), in its order: by matrix name (`6.1`), by
/// suite (`bookworm`), or by the start of a release (`7.3`, `6.12.95`).
fn select(apt: &PrivateApt, selection: &[String]) -> anyhow::Result<Vec<Resolved>> {
    let resolve_all = || KERNELS.iter().map(|kernel| resolve(apt, kernel)).collect();
    if selection.is_empty() {
        return resolve_all();
    }
    // Resolved once, for the first item that names a release.
    let mut all: Option<Vec<Resolved>> = None;
    let mut chosen: Vec<Resolved> = Vec::new();
    for item in selection {
        let named = KERNELS
            .iter()
            .find(|kernel| kernel.name == item || kernel.suites.contains(&item.as_str()));
        let resolved = match named {
            Some(kernel) => resolve(apt, kernel)?,
            None => {
                let all = match &mut all {
                    Some(all) => all,
                    None => all.insert(resolve_all()?),
                };
                let starts = |release: &str| {
                    release
                        .strip_prefix(item.as_str())
                        .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_alphanumeric()))
                };
                let Some(index) = all.iter().position(|r| starts(&r.release)) else {
                    bail!(
                        "no kernel {item}: name one of {}, a suite ({}), or the start of a \
                         release ({})",
                        KERNELS
                            .iter()
                            .map(|k| k.name)
                            .collect::<Vec<_>>()
                            .join(", "),
                        KERNELS
                            .iter()
                            .flat_map(|k| k.suites.iter().copied())
                            .collect::<Vec<_>>()
                            .join(", "),
                        all.iter()
                            .map(|r| r.release.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                };
                all[index].clone()
            }
        };
        if !chosen.iter().any(|c| c.release == resolved.release) {
            chosen.push(resolved);
        }
    }
    Ok(chosen)
}

/// A kernel ready to boot.
struct Prepared {
    resolved: Resolved,
    vmlinuz: PathBuf,
    /// The extracted `lib/modules/RELEASE`, bound over the guest's own.
    modules: PathBuf,
    initrd: PathBuf,
    dir: PathBuf,
}

/// The .deb `apt-get download` saves for `NAME=VERSION`, if it is there already.
fn downloaded(debs: &Path, spec: &str) -> Option<PathBuf> {
    let (name, version) = spec.split_once('=')?;
    let prefix = format!("{name}_{}_", version.replace(':', "%3a"));
    fs::read_dir(debs)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
}

/// Downloads, extracts, runs depmod and builds the initramfs, unless an earlier run did.
fn prepare(apt: &PrivateApt, resolved: Resolved) -> anyhow::Result<Prepared> {
    let release = resolved.release.clone();
    let dir = kernels_dir().join(&release);
    let root = dir.join("root");
    let modules = root.join("lib/modules").join(&release);
    let initrd = dir.join("initrd.cpio");
    let ready = dir.join("ready");
    if !ready.exists() {
        let debs = kernels_dir().join("debs");
        fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
        let missing: Vec<&String> = resolved
            .packages
            .iter()
            .filter(|spec| downloaded(&debs, spec).is_none())
            .collect();
        if !missing.is_empty() {
            eprintln!("kernels: downloading {release} from {}", resolved.suite);
            run_checked(
                apt.command("apt-get")
                    .arg("download")
                    .args(&missing)
                    .current_dir(&debs),
            )
            .map_err(Unavailable)?;
        }
        eprintln!("kernels: unpacking {release}");
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        for spec in &resolved.packages {
            let deb = downloaded(&debs, spec).with_context(|| format!("{spec} not downloaded"))?;
            run_checked(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        }
        // Newer packages ship /usr/lib/modules only; depmod and modprobe look in /lib.
        if !root.join("lib").exists() {
            std::os::unix::fs::symlink("usr/lib", root.join("lib"))
                .context("linking lib to usr/lib")?;
        }
        ensure!(
            modules.is_dir(),
            "{} holds no lib/modules/{release}",
            root.display()
        );
        run_checked(Command::new("depmod").arg("-b").arg(&root).arg(&release))?;
        fs::write(&ready, "").context("stamping the prepared kernel")?;
    }
    // Built again when /init changed since.
    let stage = dir.join("initramfs");
    if fs::read_to_string(stage.join("init")).ok().as_deref() != Some(INIT) || !initrd.exists() {
        build_initramfs(&root, &release, &stage, &initrd)?;
    }
    // Debian's older packages keep the kernel in /boot, 7.x next to its modules.
    let vmlinuz = [
        root.join("boot").join(format!("vmlinuz-{release}")),
        modules.join("vmlinuz"),
    ]
    .into_iter()
    .find(|path| path.exists())
    .with_context(|| format!("no vmlinuz for {release} in {}", root.display()))?;
    Ok(Prepared {
        resolved,
        vmlinuz,
        modules: modules
            .canonicalize()
            .with_context(|| format!("resolving {}", modules.display()))?,
        initrd,
        dir,
    })
}

/// Static busybox, the modules the shares and the overlay need (decompressed: busybox's insmod
/// takes plain .ko), and an /init that mounts the host's root and switches to it.
fn build_initramfs(root: &Path, release: &str, stage: &Path, initrd: &Path) -> anyhow::Result<()> {
    if stage.exists() {
        fs::remove_dir_all(stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    for sub in ["bin", "modules"] {
        fs::create_dir_all(stage.join(sub))
            .with_context(|| format!("creating {}", stage.join(sub).display()))?;
    }
    fs::copy("/bin/busybox", stage.join("bin/busybox"))
        .context("copying /bin/busybox (busybox-static; run `cargo xtask setup`)")?;

    let mut show = Command::new("modprobe");
    show.arg("-d")
        .arg(root)
        .args(["-S", release, "--show-depends", "-a"])
        .args(INITRAMFS_MODULES);
    let out = show
        .output()
        .with_context(|| format!("running `{}`", describe(&show)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            describe(&show),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // `insmod PATH` lines come in load order, a shared dependency once per module that needs
    // it; built-in modules say `builtin NAME`. /init loads them in file name order.
    let listed = String::from_utf8_lossy(&out.stdout);
    let mut seen = BTreeSet::new();
    for (index, path) in listed
        .lines()
        .filter_map(|line| line.strip_prefix("insmod ")?.split_whitespace().next())
        .filter(|path| seen.insert(*path))
        .enumerate()
    {
        decompress_module(
            Path::new(path),
            &stage.join("modules").join(format!("{index:02}.ko")),
        )?;
    }

    let init_path = stage.join("init");
    fs::write(&init_path, INIT).context("writing the initramfs /init")?;
    fs::set_permissions(&init_path, fs::Permissions::from_mode(0o755))
        .context("making /init executable")?;

    let mut entries = vec![".".to_owned()];
    for sub in ["bin", "modules"] {
        entries.push(sub.to_owned());
        for entry in fs::read_dir(stage.join(sub))? {
            entries.push(format!("{sub}/{}", entry?.file_name().to_string_lossy()));
        }
    }
    entries.push("init".to_owned());
    let file =
        fs::File::create(initrd).with_context(|| format!("creating {}", initrd.display()))?;
    let mut cpio = Command::new("cpio");
    cpio.args(["--quiet", "-o", "-H", "newc", "-R", "0:0"])
        .current_dir(stage)
        .stdin(Stdio::piped())
        .stdout(file);
    let mut child = cpio
        .spawn()
        .context("starting cpio (run `cargo xtask setup`)")?;
    child
        .stdin
        .take()
        .context("cpio's stdin")?
        .write_all((entries.join("\n") + "\n").as_bytes())
        .context("listing the initramfs for cpio")?;
    let status = child.wait().context("waiting for cpio")?;
    ensure!(status.success(), "cpio failed ({status})");
    Ok(())
}

fn decompress_module(from: &Path, to: &Path) -> anyhow::Result<()> {
    let tool = match from.extension().and_then(|e| e.to_str()) {
        Some("ko") => {
            fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
            return Ok(());
        }
        Some("xz") => "xz",
        Some("zst") => "zstd",
        Some("gz") => "gzip",
        _ => bail!("{}: not a kernel module this task knows", from.display()),
    };
    let out = fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    let status = Command::new(tool)
        .arg("-dc")
        .arg(from)
        .stdout(out)
        .status()
        .with_context(|| format!("running {tool}"))?;
    ensure!(status.success(), "{tool} -dc {} failed", from.display());
    Ok(())
}

/// A fresh snapshot directory holding tracer and its helpers (`tracer-testkit`): the tests look
/// for the helpers beside TRACER_BIN.
fn snapshot_bins() -> anyhow::Result<PathBuf> {
    let snapshot = snapshot_dir();
    if snapshot.exists() {
        fs::remove_dir_all(&snapshot)
            .with_context(|| format!("removing {}", snapshot.display()))?;
    }
    fs::create_dir_all(&snapshot).with_context(|| format!("creating {}", snapshot.display()))?;
    let release = tracer_binary()
        .parent()
        .context("tracer's directory")?
        .to_owned();
    for entry in fs::read_dir(&release).with_context(|| format!("listing {}", release.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            fs::copy(entry.path(), snapshot.join(entry.file_name()))
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    ensure!(
        snapshot.join("tracer").exists(),
        "no {} (build it first)",
        tracer_binary().display()
    );
    Ok(snapshot)
}

/// A test binary of the tests crate, with the number of tests the filter leaves in it.
struct TestBinary {
    name: String,
    path: PathBuf,
    /// The crate's directory, where cargo would run it.
    dir: PathBuf,
    tests: usize,
}

/// The tests crate's test binaries, built if need be, that hold tests `harness_args` select;
/// copied into the snapshot directory.
fn test_binaries(harness_args: &[String]) -> anyhow::Result<Vec<TestBinary>> {
    let snapshot = snapshot_bins()?;
    let mut build = cargo();
    build
        .args([
            "test",
            "--release",
            "--package",
            "tracer-tests",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit());
    eprintln!("+ {}", describe(&build));
    let out = build
        .output()
        .with_context(|| format!("running `{}`", describe(&build)))?;
    ensure!(
        out.status.success(),
        "`{}` failed ({})",
        describe(&build),
        out.status
    );
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let (Some(executable), Some(name)) = (
            message["executable"].as_str(),
            message["target"]["name"].as_str(),
        ) else {
            continue;
        };
        if message["profile"]["test"] != true {
            continue;
        }
        let dir = Path::new(message["manifest_path"].as_str().unwrap_or_default())
            .parent()
            .context("a test binary's crate directory")?
            .to_owned();
        let path = snapshot.join(name);
        fs::copy(executable, &path).with_context(|| format!("copying {executable}"))?;
        let mut list = Command::new(&path);
        list.args(harness_args)
            .args(["--list", "--format", "terse"]);
        let listed = list
            .output()
            .with_context(|| format!("running `{}`", describe(&list)))?;
        ensure!(
            listed.status.success(),
            "`{}` failed: {}",
            describe(&list),
            String::from_utf8_lossy(&listed.stderr).trim()
        );
        let tests = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter(|line| line.ends_with(": test"))
            .count();
        if tests > 0 {
            binaries.push(TestBinary {
                name: name.to_owned(),
                path,
                dir,
                tests,
            });
        }
    }
    ensure!(
        !binaries.is_empty(),
        "no test of the tests crate matches `{}`",
        harness_args.join(" ")
    );
    Ok(binaries)
}

/// Where the guest mounts a fresh tmpfs (with its mode): the host's namespaces, locks and files
/// must not leak in.
const FRESH_DIRS: &[(&str, &str)] = &[("/run", "0755"), ("/tmp", "1777")];

/// Of the host directories the guest reads (the checkout, the kernel cache with the snapshot,
/// the modules), those a fresh tmpfs would hide, outermost only.
fn kept_dirs(needed: impl Iterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut hidden: Vec<PathBuf> = needed
        // A symbolic link in the way (/tmp to elsewhere) is resolved as the guest's mount would.
        .map(|dir| dir.canonicalize().unwrap_or(dir))
        .filter(|dir| FRESH_DIRS.iter().any(|(fresh, _)| dir.starts_with(fresh)))
        .collect();
    hidden.sort();
    hidden.dedup();
    let outermost: Vec<PathBuf> = hidden
        .iter()
        .filter(|dir| {
            !hidden
                .iter()
                .any(|other| other != *dir && dir.starts_with(other))
        })
        .cloned()
        .collect();
    outermost
}

/// The guest script's lines that mount FRESH_DIRS, with each of `kept` bound aside before and
/// moved back on top after: a checkout under /tmp stays where the test binaries look for it.
fn fresh_mounts(kept: &[PathBuf]) -> String {
    let mut lines = String::from("mkdir -p /xtask-kept\n");
    for (index, dir) in kept.iter().enumerate() {
        lines += &format!(
            "mkdir /xtask-kept/{index}\nmount --bind {dir} /xtask-kept/{index}\n",
            dir = quote(&dir.to_string_lossy())
        );
    }
    for (dir, mode) in FRESH_DIRS {
        lines += &format!("mount -t tmpfs -o mode={mode} tmpfs {dir}\n");
    }
    lines += "mkdir -p /run/lock\n";
    for (index, dir) in kept.iter().enumerate() {
        let dir = quote(&dir.to_string_lossy());
        lines += &format!("mkdir -p {dir}\nmount --move /xtask-kept/{index} {dir}\n");
    }
    lines
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The guest's PID 1 after switch_root: the host's `/bin/sh` on the overlay.
fn guest_script(
    kernel: &Prepared,
    binaries: &[TestBinary],
    harness_args: &[String],
    host_nanos: u128,
) -> String {
    let release = &kernel.resolved.release;
    let harness: String = harness_args
        .iter()
        .map(|arg| format!(" {}", quote(arg)))
        .collect();
    let mut runs = String::new();
    for binary in binaries {
        let name = &binary.name;
        // Run where cargo runs it; a crate directory the guest cannot see fails the binary.
        runs += &format!(
            "echo \"guest: {name}\"\n\
             if cd {dir}; then\n\
             \x20   TRACER_BIN={tracer} {path}{harness} > {GUEST_RESULTS}/{name}.log 2>&1\n\
             \x20   rc=$?\n\
             else\n\
             \x20   echo \"guest: cannot enter {dir}\" > {GUEST_RESULTS}/{name}.log\n\
             \x20   rc=1\n\
             fi\n\
             echo $rc > {GUEST_RESULTS}/{name}.rc\n\
             [ $rc -eq 0 ] || status=1\n",
            tracer = quote(&snapshot_dir().join("tracer").to_string_lossy()),
            path = quote(&binary.path.to_string_lossy()),
            dir = quote(&binary.dir.to_string_lossy()),
        );
    }
    format!(
        r#"#!/bin/sh
# Written by `cargo xtask kernels` for {release}.
set -eu
export PATH={GUEST_PATH} HOME=/root LANG=C.UTF-8
# Fresh /run and /tmp, so the host's namespaces, locks and files do not leak in; what the guest
# reads from under them (a checkout in /tmp) is bound aside first and moved back on top.
{fresh}mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
# This kernel's modules where modprobe looks (veth, bridge, netfilter).
mkdir -p /lib/modules/{release}
mount --bind {modules} /lib/modules/{release}
# Debian builds br_netfilter as a module that nothing the tests run loads (Docker and
# kube-proxy do on real hosts): without it no bridged frame meets the FORWARD chain, and the
# tests that drop there say they cannot make their fault.
modprobe br_netfilter || echo "guest: no br_netfilter"
# The failing-disk tests put a file system on a loop device; Debian builds loop as a module.
modprobe loop || echo "guest: no loop"
# A test writes frames through a tap (Debian builds tun as a module; loading it makes /dev/net/tun).
modprobe tun || echo "guest: no tun"
ip link set lo up
# The programs started most, their libraries, tracer and the test binaries, copied up into the
# overlay's memory once (opening a file to append copies it up and changes nothing in it): a
# start then reads nothing over 9p.
for file in {hot} {snapshot}/*; do
    {{ true >> "$file"; }} 2>/dev/null || echo "guest: $file not copied up"
done
uname -r > {GUEST_RESULTS}/uname
# How many times slower than the host this guest runs, rounded up: the tests' hang guards.
start=$(date +%s%N)
{SPEED_PROBE}
end=$(date +%s%N)
export TRACER_TESTS_TIME_SCALE=$(( (end - start + {host_nanos} - 1) / {host_nanos} ))
echo $TRACER_TESTS_TIME_SCALE > {GUEST_RESULTS}/time_scale
set +e
status=0
{runs}echo $status > {GUEST_RESULTS}/done
sync
echo o > /proc/sysrq-trigger
# Power-off is asynchronous: PID 1 must not exit (a panic) before it happens.
sleep 60
"#,
        modules = quote(&kernel.modules.to_string_lossy()),
        snapshot = quote(&snapshot_dir().to_string_lossy()),
        hot = hot_files()
            .iter()
            .map(|file| quote(&file.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" "),
        fresh = fresh_mounts(&kept_dirs(
            [workspace_root(), kernels_dir(), kernel.modules.clone()]
                .into_iter()
                .chain(binaries.iter().map(|binary| binary.dir.clone()))
        )),
    )
}

/// How one kernel's run ended.
enum Ending {
    Finished,
    TimedOut,
    /// QEMU exited without the guest's final word: boot or set-up failed.
    NoResult,
}

struct BinaryResult {
    name: String,
    exit: Option<i32>,
    passed: u64,
    failed: u64,
    log: String,
}

struct KernelRun {
    name: &'static str,
    release: String,
    guest_release: Option<String>,
    /// TRACER_TESTS_TIME_SCALE as the guest measured it.
    time_scale: Option<String>,
    seconds: u64,
    ending: Ending,
    binaries: Vec<BinaryResult>,
    console: PathBuf,
}

impl KernelRun {
    fn passed(&self) -> u64 {
        self.binaries.iter().map(|b| b.passed).sum()
    }

    fn failed(&self) -> u64 {
        self.binaries.iter().map(|b| b.failed).sum()
    }

    fn ok(&self) -> bool {
        matches!(self.ending, Ending::Finished)
            && self.guest_release.as_deref() == Some(self.release.as_str())
            && self.binaries.iter().all(|b| b.exit == Some(0))
    }

    fn result(&self) -> &'static str {
        match self.ending {
            _ if self.ok() => "ok",
            Ending::TimedOut => "timed out",
            Ending::NoResult => "no result",
            Ending::Finished if self.guest_release.as_deref() != Some(&self.release) => {
                "wrong kernel"
            }
            Ending::Finished => "failed",
        }
    }
}

/// QEMU's -virtfs and -kernel options split on commas; a doubled comma is a literal one.
fn qemu_path(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

fn boot(
    kernel: &Prepared,
    binaries: &[TestBinary],
    harness_args: &[String],
    timeout: Duration,
) -> anyhow::Result<KernelRun> {
    let release = &kernel.resolved.release;
    let results = kernel.dir.join("results");
    if results.exists() {
        fs::remove_dir_all(&results).with_context(|| format!("removing {}", results.display()))?;
    }
    fs::create_dir_all(&results).with_context(|| format!("creating {}", results.display()))?;
    fs::write(
        results.join("guest.sh"),
        guest_script(kernel, binaries, harness_args, host_probe_nanos()?),
    )
    .context("writing the guest script")?;
    let console = kernel.dir.join("console.log");
    let console_file =
        fs::File::create(&console).with_context(|| format!("creating {}", console.display()))?;

    let mut qemu = Command::new("qemu-system-x86_64");
    // TCG: /dev/kvm on these machines is a nested hypervisor that cannot run these guests.
    qemu.args([
        "-accel",
        "tcg,thread=multi",
        "-cpu",
        "max",
        "-smp",
        "2",
        "-m",
        "2048",
    ])
    .arg("-kernel")
    .arg(&kernel.vmlinuz)
    .arg("-initrd")
    .arg(&kernel.initrd)
    .args([
        "-append",
        "console=ttyS0 panic=-1 quiet tsc=reliable mitigations=off",
    ])
    .args(["-display", "none", "-no-reboot", "-nodefaults"])
    .args(["-serial", "stdio", "-device", "virtio-rng-pci"])
    .arg("-virtfs")
    .arg("local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap")
    .arg("-virtfs")
    .arg(format!(
        "local,path={},mount_tag=results,security_model=none,multidevs=remap",
        qemu_path(&results)
    ))
    .stdin(Stdio::null())
    .stdout(console_file.try_clone()?)
    .stderr(console_file);
    eprintln!(
        "kernels: booting {release} ({} from {}); console in {}",
        kernel.resolved.kernel.name,
        kernel.resolved.suite,
        console.display()
    );
    eprintln!("+ {}", describe(&qemu));
    let start = Instant::now();
    let mut child = qemu
        .spawn()
        .context("starting qemu-system-x86_64 (run `cargo xtask setup`)")?;
    let ending = loop {
        if child.try_wait().context("waiting for QEMU")?.is_some() {
            break if results.join("done").exists() {
                Ending::Finished
            } else {
                Ending::NoResult
            };
        }
        if start.elapsed() > timeout {
            // Kill, not ask: a hung guest answers nothing.
            let _ = child.kill();
            let _ = child.wait();
            break Ending::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let read = |name: &str| fs::read_to_string(results.join(name)).ok();
    let binaries = binaries
        .iter()
        .map(|binary| {
            let log = read(&format!("{}.log", binary.name)).unwrap_or_default();
            let (passed, failed) = test_counts(&log);
            BinaryResult {
                name: binary.name.clone(),
                exit: read(&format!("{}.rc", binary.name)).and_then(|rc| rc.trim().parse().ok()),
                passed,
                failed,
                log,
            }
        })
        .collect();
    Ok(KernelRun {
        name: kernel.resolved.kernel.name,
        release: release.clone(),
        guest_release: read("uname").map(|r| r.trim().to_owned()),
        time_scale: read("time_scale").map(|scale| scale.trim().to_owned()),
        seconds: start.elapsed().as_secs(),
        ending,
        binaries,
        console,
    })
}

/// Passed and failed tests, summed over the harness's `test result:` lines.
fn test_counts(log: &str) -> (u64, u64) {
    let count = |line: &str, what: &str| -> u64 {
        line.split(';')
            .find_map(|part| {
                part.trim()
                    .strip_suffix(what)?
                    .split_whitespace()
                    .last()?
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    log.lines()
        .filter(|line| line.starts_with("test result:"))
        .fold((0, 0), |(p, f), line| {
            (p + count(line, " passed"), f + count(line, " failed"))
        })
}

/// The start of each failed test's captured output (`---- NAME stdout ----` blocks), or the
/// log's end when the harness itself never got that far.
fn failure_excerpt(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let mut excerpt = Vec::new();
    let is_header = |line: &str| line.starts_with("---- ") && line.ends_with(" ----");
    for (index, line) in lines.iter().enumerate() {
        if is_header(line) {
            excerpt.push(*line);
            excerpt.extend(
                lines[index + 1..]
                    .iter()
                    .take_while(|l| !is_header(l) && **l != "failures:")
                    .filter(|l| !l.is_empty())
                    .take(FAILURE_LINES),
            );
        }
    }
    if excerpt.is_empty() {
        excerpt = lines[lines.len().saturating_sub(CONSOLE_LINES)..].to_vec();
    }
    excerpt.join("\n")
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn report(runs: &[KernelRun]) {
    println!(
        "\n{:<8} {:<24} {:>7} {:>7} {:>8}  RESULT",
        "KERNEL", "RELEASE", "PASSED", "FAILED", "SECONDS"
    );
    for run in runs {
        println!(
            "{:<8} {:<24} {:>7} {:>7} {:>8}  {}",
            run.name,
            run.release,
            run.passed(),
            run.failed(),
            run.seconds,
            run.result()
        );
    }
    for run in runs.iter().filter(|run| !run.ok()) {
        println!("\n=== {} ({}): {}", run.name, run.release, run.result());
        if let Some(guest) = &run.guest_release
            && guest != &run.release
        {
            println!("the guest ran {guest}");
        }
        let mut shown = false;
        // Failed, or cut short while running (a timeout): its log says how far it got.
        for binary in run
            .binaries
            .iter()
            .filter(|b| b.exit != Some(0) && !b.log.is_empty())
        {
            let ended = binary
                .exit
                .map_or("did not finish".to_owned(), |code| format!("exit {code}"));
            println!(
                "--- {} ({ended}):\n{}",
                binary.name,
                failure_excerpt(&binary.log)
            );
            shown = true;
        }
        if !shown {
            println!(
                "--- console ({}), last lines:\n{}",
                run.console.display(),
                tail(&run.console, CONSOLE_LINES)
            );
        }
    }
}

/// Runs `boot` on every kernel, `jobs` at a time, and gives the runs in the kernels' order.
fn boot_all(
    kernels: &[Prepared],
    jobs: usize,
    boot: impl Fn(&Prepared) -> anyhow::Result<KernelRun> + Sync,
) -> anyhow::Result<Vec<KernelRun>> {
    let next = AtomicUsize::new(0);
    let runs: Mutex<Vec<(usize, KernelRun)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.clamp(1, kernels.len().max(1)))
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(kernel) = kernels.get(index) else {
                            return Ok(());
                        };
                        let run = boot(kernel)?;
                        runs.lock().expect("no worker panics").push((index, run));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|worker| worker.join().expect("no worker panics"))
    })?;
    let mut runs = runs.into_inner().expect("no worker panics");
    runs.sort_by_key(|(index, _)| *index);
    Ok(runs.into_iter().map(|(_, run)| run).collect())
}

pub fn run(
    selection: &[String],
    timeout: Duration,
    jobs: usize,
    harness_args: &[String],
) -> anyhow::Result<()> {
    let _lock = lock()?;
    let binaries = test_binaries(harness_args)?;
    eprintln!(
        "kernels: tests to run: {} (in {})",
        binaries.iter().map(|b| b.tests).sum::<usize>(),
        binaries
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let suites: Vec<&str> = KERNELS
        .iter()
        .flat_map(|kernel| kernel.suites.iter().copied())
        .collect();
    let apt = PrivateApt::isolated(&kernels_dir().join("apt"), &suites)?;
    match apt.lists_age() {
        Some(age) if age <= LISTS_MAX_AGE => {}
        // Old lists still name kernels that are cached: better than no run without a mirror.
        Some(_) => {
            if let Err(err) = apt.update() {
                eprintln!("kernels: {err:#}; going on with the old package lists");
            }
        }
        None => apt.update().map_err(Unavailable)?,
    }
    let kernels = select(&apt, selection)?
        .into_iter()
        .map(|resolved| prepare(&apt, resolved))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let runs = boot_all(&kernels, jobs, |kernel| {
        let run = boot(kernel, &binaries, harness_args, timeout)?;
        eprintln!(
            "kernels: {}: {} passed, {} failed, {} s, time scale {}: {}",
            run.release,
            run.passed(),
            run.failed(),
            run.seconds,
            run.time_scale.as_deref().unwrap_or("unmeasured"),
            run.result()
        );
        Ok(run)
    })?;
    report(&runs);
    let failed: Vec<String> = runs
        .iter()
        .filter(|run| !run.ok())
        .map(|run| format!("{} ({})", run.name, run.release))
        .collect();
    if !failed.is_empty() {
        bail!("tests failed on {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_dependencies_follow_the_split_packages_of_7x() {
        let depends = "dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, \
                       linux-base-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1), \
                       linux-binary-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1), kmod";
        assert_eq!(
            pinned_dependencies(depends),
            [
                (
                    "linux-base-7.3.4+deb13-amd64".into(),
                    "7.3.4-1~bpo13+1".into()
                ),
                (
                    "linux-binary-7.3.4+deb13-amd64".into(),
                    "7.3.4-1~bpo13+1".into()
                ),
            ]
        );
    }

    #[test]
    fn the_hot_files_are_the_programs_and_their_libraries_resolved() {
        let files = hot_files();
        let ip = fs::canonicalize("/usr/sbin/ip").or_else(|_| fs::canonicalize("/sbin/ip"));
        assert!(
            files.contains(&ip.expect("ip on this machine")),
            "{files:?}"
        );
        assert!(
            files
                .iter()
                .any(|file| file.to_string_lossy().contains("/libc.so")),
            "{files:?}"
        );
        assert!(
            files
                .iter()
                .all(|file| file.is_file() && fs::canonicalize(file).ok().as_ref() == Some(file)),
            "{files:?}"
        );
    }

    #[test]
    fn only_what_a_fresh_tmpfs_hides_is_kept_outermost_first() {
        let needed = [
            "/tmp/xtask-no-such-clone/target/kernels",
            "/work/elsewhere",
            "/tmp/xtask-no-such-clone",
            "/run/xtask-no-such-dir",
            "/tmpfoo/xtask-no-such-dir",
        ]
        .map(PathBuf::from);
        assert_eq!(
            kept_dirs(needed.into_iter()),
            ["/run/xtask-no-such-dir", "/tmp/xtask-no-such-clone"].map(PathBuf::from)
        );
        let lines = fresh_mounts(&[PathBuf::from("/tmp/a b")]);
        let bind = lines.find("mount --bind '/tmp/a b' /xtask-kept/0").unwrap();
        let fresh = lines
            .find("mount -t tmpfs -o mode=1777 tmpfs /tmp")
            .unwrap();
        let moved = lines.find("mount --move /xtask-kept/0 '/tmp/a b'").unwrap();
        assert!(bind < fresh && fresh < moved, "{lines}");
    }

    #[test]
    fn test_counts_add_up_every_harness() {
        let log = "test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 9 filtered out; \
                   finished in 1.00s\n\
                   test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered \
                   out; finished in 2.00s\n";
        assert_eq!(test_counts(log), (4, 2));
    }

    #[test]
    fn failure_excerpt_shows_each_failed_test_from_its_start() {
        let log = "running 2 tests\nfailures:\n\n---- a stdout ----\n\nthread 'a' panicked at \
                   x.rs:1:1:\nboom\n\n---- b stdout ----\nthread 'b' panicked\n\nfailures:\n    \
                   a\n    b\n\ntest result: FAILED. 0 passed; 2 failed;\n";
        assert_eq!(
            failure_excerpt(log),
            "---- a stdout ----\nthread 'a' panicked at x.rs:1:1:\nboom\n\
             ---- b stdout ----\nthread 'b' panicked"
        );
    }
}
