//! Counters pinned on the BPF filesystem, so that `tracer monitor`'s counts outlive the process
//! (a restart, an upgrade), and the command that removes them again.
//!
//! Under the pin root (default /sys/fs/bpf/tracer):
//!
//! ```text
//! ports/NETNS:IFNAME/PACKET_COUNTERS    one port's counters, named by its configured spec
//! ports/IFNAME/PACKET_COUNTERS          (a port in tracer's own namespace)
//! drops/DROP_COUNTERS, drops/LOST_EVENTS
//! ```
//!
//! Only maps are pinned, never programs or links: nothing stays attached after tracer exits.

use std::{
    ffi::CString,
    fs::File,
    io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::{
    maps::{Map, MapData, MapInfo, MapType, PerCpuArray, PerCpuHashMap, PerCpuValues},
    util::nr_cpus,
};
use log::{info, warn};
use tracer_common::{Direction, DirectionCounters, DropKey, PacketKind};

use crate::{
    collect::{drops, ports},
    error::UsageError,
    lock,
    spec::PortSpec,
};

pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/tracer";
/// Where systemd mounts bpffs at boot; minimal VMs and containers leave it unmounted.
pub const BPF_FS_MOUNT_POINT: &str = "/sys/fs/bpf";
/// `statfs.f_type` of a BPF filesystem.
const BPF_FS_MAGIC: u64 = 0xcafe_4a11;
/// Longest file name bpffs (and Linux) accepts.
const NAME_MAX: usize = 255;

pub fn on_bpffs(path: &Path) -> bool {
    let Ok(path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct it is given; `path` is NUL-terminated.
    unsafe {
        let mut stats: libc::statfs = std::mem::zeroed();
        libc::statfs(path.as_ptr(), &mut stats) == 0 && stats.f_type as u64 == BPF_FS_MAGIC
    }
}

fn mount_bpffs() -> io::Result<()> {
    let target = c"/sys/fs/bpf";
    let source = c"bpf";
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let status = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            source.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if status != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `root` a directory on a BPF filesystem, mounting bpffs at /sys/fs/bpf first when
/// `root` lies beneath it and nothing is mounted there yet.
pub fn prepare_root(root: &Path) -> anyhow::Result<()> {
    let mount_point = Path::new(BPF_FS_MOUNT_POINT);
    if root.starts_with(mount_point) && !on_bpffs(mount_point) {
        mount_bpffs().map_err(|err| {
            UsageError::Argument(format!(
                "cannot mount a BPF filesystem at {BPF_FS_MOUNT_POINT} for the pinned counters: \
                 {err}; mount it yourself (`mount -t bpf bpf {BPF_FS_MOUNT_POINT}`)"
            ))
        })?;
        info!("mounted a BPF filesystem at {BPF_FS_MOUNT_POINT}");
    }
    // Checked before anything is created: a mistyped --pin-dir must leave no directories.
    let absolute = std::path::absolute(root).unwrap_or_else(|_| root.to_owned());
    if let Some(existing) = absolute.ancestors().find(|path| path.exists())
        && !on_bpffs(existing)
    {
        return Err(not_bpffs(root).into());
    }
    std::fs::create_dir_all(root).map_err(|err| {
        UsageError::Argument(format!(
            "cannot create the pin directory {}: {err}",
            root.display()
        ))
    })?;
    if !on_bpffs(root) {
        return Err(not_bpffs(root).into());
    }
    Ok(())
}

fn not_bpffs(root: &Path) -> UsageError {
    UsageError::Argument(format!(
        "pin directory {} is not on a BPF filesystem: use one under {BPF_FS_MOUNT_POINT}",
        root.display()
    ))
}

/// A directory where tracer pins a map: never removed, the user is told.
fn directory_in_the_way(path: &Path) -> UsageError {
    UsageError::Argument(format!(
        "{} is a directory where tracer pins a map: tracer removes only maps it pinned; \
         remove it yourself (rmdir) if it is not needed",
        path.display()
    ))
}

/// Whether `path` is a map pinned the way tracer pins the map `name`.
fn is_our_pin(path: &Path, name: &str) -> bool {
    let Some(expected) = expected_shape(name) else {
        return false;
    };
    MapInfo::from_pin(path)
        .ok()
        .as_ref()
        .and_then(MapShape::of)
        .is_some_and(|pinned| expected.accepts(&pinned) || is_previous_layout(name, &pinned))
}

/// Held while a monitor uses a pin root: two monitors sharing counters would count every frame
/// twice. The kernel releases it when the process ends, however it ends.
pub struct PinLock {
    _directory: File,
}

/// How long a monitor or `--unpin` waits for the pin root's lock before naming another monitor.
/// The lock of a monitor just killed can outlive its process by a moment: right after
/// `kill -9` and `wait`, `--unpin` found it held in 1 of 5 runs here, and a restart can follow
/// a kill as fast.
const PIN_LOCK_WAIT: Duration = Duration::from_secs(2);

impl PinLock {
    pub fn acquire(root: &Path) -> anyhow::Result<Self> {
        let directory = File::open(root)
            .with_context(|| format!("opening the pin directory {}", root.display()))?;
        let locked = lock::flock_until(&directory, Instant::now() + PIN_LOCK_WAIT, || {
            log::debug!("the pin directory {} is locked: waiting", root.display());
        })
        .with_context(|| format!("locking {}", root.display()))?;
        if !locked {
            return Err(UsageError::Argument(format!(
                "another tracer monitor uses the counters pinned in {}: stop it first, or \
                 give this one its own --pin-dir",
                root.display()
            ))
            .into());
        }
        Ok(Self {
            _directory: directory,
        })
    }
}

/// A spec as one file name, `NETNS:IFNAME` or `IFNAME`: interface names hold neither ':' nor
/// '/' and namespace names no '/', so two specs never share a name.
pub fn pin_name(spec: &PortSpec) -> String {
    if spec.netns.is_empty() {
        spec.interface.clone()
    } else {
        format!("{}:{}", spec.netns, spec.interface)
    }
}

/// Where the counters of the port configured as `spec` are pinned.
pub fn port_directory(root: &Path, spec: &PortSpec) -> Result<PathBuf, UsageError> {
    let name = pin_name(spec);
    if name.len() > NAME_MAX {
        return Err(UsageError::Argument(format!(
            "port spec `{spec}` is too long to name its pinned counters (at most {NAME_MAX} \
             bytes as NETNS:IFNAME)"
        )));
    }
    Ok(root.join("ports").join(name))
}

/// Where the drop probe's counters are pinned.
pub fn drops_directory(root: &Path) -> PathBuf {
    root.join("drops")
}

/// What a pinned map must look like to be reused: a tracer of another version may have pinned
/// another layout, and a program given the wrong map would count wrongly or not at all.
#[derive(Debug, Clone, Copy, PartialEq)]
struct MapShape {
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: Option<u32>,
}

impl MapShape {
    fn of(info: &MapInfo) -> Option<Self> {
        Some(Self {
            map_type: info.map_type().ok()?,
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: Some(info.max_entries()),
        })
    }

    fn accepts(&self, pinned: &Self) -> bool {
        self.map_type == pinned.map_type
            && self.key_size == pinned.key_size
            && self.value_size == pinned.value_size
            && self
                .max_entries
                .is_none_or(|max| Some(max) == pinned.max_entries)
    }
}

const COUNTER_SIZE: u32 = size_of::<u64>() as u32;
const INDEX_SIZE: u32 = size_of::<u32>() as u32;

fn expected_shape(name: &str) -> Option<MapShape> {
    let shape = match name {
        "PACKET_COUNTERS" => MapShape {
            map_type: MapType::PerCpuArray,
            key_size: INDEX_SIZE,
            value_size: size_of::<DirectionCounters>() as u32,
            max_entries: Some(Direction::COUNT),
        },
        // Its capacity may grow between versions without harm: not compared.
        "DROP_COUNTERS" => MapShape {
            map_type: MapType::PerCpuHash,
            key_size: size_of::<DropKey>() as u32,
            value_size: COUNTER_SIZE,
            max_entries: None,
        },
        "LOST_EVENTS" => MapShape {
            map_type: MapType::PerCpuArray,
            key_size: INDEX_SIZE,
            value_size: COUNTER_SIZE,
            max_entries: Some(1),
        },
        _ => return None,
    };
    Some(shape)
}

impl std::fmt::Display for MapShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} map, key {} bytes, value {} bytes",
            self.map_type, self.key_size, self.value_size
        )?;
        match self.max_entries {
            Some(entries) => write!(f, ", {entries} entries"),
            None => Ok(()),
        }
    }
}

/// `DROP_COUNTERS` as the first monitor pinned it: its key had no `location` yet (netns,
/// ifindex, reason, protocol, padding: 16 bytes). A newer tracer reads its counts on.
const PREVIOUS_DROP_KEY_SIZE: u32 = 16;

fn is_previous_drop_counters(name: &str, pinned: &MapShape) -> bool {
    name == "DROP_COUNTERS"
        && pinned.map_type == MapType::PerCpuHash
        && pinned.key_size == PREVIOUS_DROP_KEY_SIZE
        && pinned.value_size == COUNTER_SIZE
}

/// `PACKET_COUNTERS` as monitors before the row layout pinned it: one counter an entry, at
/// direction × kinds + kind.
const PREVIOUS_PACKET_COUNTER_ENTRIES: u32 = Direction::COUNT * PacketKind::COUNT;

fn is_previous_packet_counters(name: &str, pinned: &MapShape) -> bool {
    name == "PACKET_COUNTERS"
        && pinned.map_type == MapType::PerCpuArray
        && pinned.key_size == INDEX_SIZE
        && pinned.value_size == COUNTER_SIZE
        && pinned.max_entries == Some(PREVIOUS_PACKET_COUNTER_ENTRIES)
}

/// A map of `name` as an earlier tracer pinned it.
fn is_previous_layout(name: &str, pinned: &MapShape) -> bool {
    is_previous_drop_counters(name, pinned) || is_previous_packet_counters(name, pinned)
}

/// Replaces the [`PREVIOUS_PACKET_COUNTER_ENTRIES`] map pinned at `path` with one in today's
/// layout that holds its counts (on the first CPU): the port's programs then reuse it.
fn repin_previous_packet_counters(path: &Path) -> anyhow::Result<()> {
    let previous = PerCpuArray::<_, u64>::try_from(Map::from_map_data(MapData::from_pin(path)?)?)?;
    let mut rows = [DirectionCounters::default(); Direction::COUNT as usize];
    for (direction, row) in rows.iter_mut().enumerate() {
        for (kind, count) in row.iter_mut().enumerate() {
            let index = direction as u32 * PacketKind::COUNT + kind as u32;
            *count = previous.get(&index, 0)?.iter().sum();
        }
    }
    let cpus = nr_cpus()
        .map_err(|(_, err)| err)
        .context("counting the CPUs")?;
    let mut today = PerCpuArray::<MapData, DirectionCounters>::create(Direction::COUNT, 0)?;
    for (index, row) in (0..).zip(rows) {
        let mut per_cpu = vec![DirectionCounters::default(); cpus];
        per_cpu[0] = row;
        today.set(index, PerCpuValues::try_from(per_cpu)?, 0)?;
    }
    std::fs::remove_file(path).with_context(|| format!("removing the pin {}", path.display()))?;
    today.pin(path)?;
    Ok(())
}

/// Counts read from maps an earlier tracer pinned, in this tracer's keys: the maps that
/// replace them start with these.
#[derive(Debug, Default)]
pub struct CarriedCounts {
    pub drops: Vec<(DropKey, u64)>,
}

/// Reads a [`PREVIOUS_DROP_KEY_SIZE`] drop map, summed over CPUs, in today's keys (location 0:
/// that tracer kept none).
fn read_previous_drops(path: &Path) -> anyhow::Result<Vec<(DropKey, u64)>> {
    let data = MapData::from_pin(path)?;
    let map = PerCpuHashMap::<_, [u8; PREVIOUS_DROP_KEY_SIZE as usize], u64>::try_from(
        Map::from_map_data(data)?,
    )?;
    let mut drops = Vec::new();
    for entry in map.iter() {
        let (key, per_cpu) = entry?;
        let word = |at: usize| u32::from_ne_bytes([key[at], key[at + 1], key[at + 2], key[at + 3]]);
        let key = DropKey {
            netns: word(0),
            ifindex: word(4),
            reason: word(8),
            protocol: u16::from_ne_bytes([key[12], key[13]]),
            ..DropKey::default()
        };
        drops.push((key, per_cpu.iter().sum()));
    }
    Ok(drops)
}

/// Creates `directory` for the maps `names` and looks at any of them pinned there already:
/// one of this tracer's shape is reused; one an earlier tracer pinned is read into
/// [`CarriedCounts`] and unpinned, for the new map to start with its counts; anything else is
/// never used blindly nor removed: a usage error names it, unless `reset` (the user's
/// `--reset`) says to replace it.
pub fn prepare_directory(
    directory: &Path,
    names: &[&str],
    reset: bool,
) -> anyhow::Result<CarriedCounts> {
    std::fs::create_dir_all(directory)
        .with_context(|| format!("creating the pin directory {}", directory.display()))?;
    let mut carried = CarriedCounts::default();
    for name in names {
        let path = directory.join(name);
        match std::fs::symlink_metadata(&path) {
            Err(_) => continue,
            Ok(metadata) if metadata.is_dir() => return Err(directory_in_the_way(&path).into()),
            Ok(_) => {}
        }
        let pinned = MapInfo::from_pin(&path)
            .ok()
            .as_ref()
            .and_then(MapShape::of);
        let expected = expected_shape(name);
        match (expected, pinned) {
            (Some(expected), Some(pinned)) if expected.accepts(&pinned) => continue,
            (None, Some(_)) => continue,
            (_, Some(pinned)) if is_previous_packet_counters(name, &pinned) => {
                repin_previous_packet_counters(&path).with_context(|| {
                    format!("carrying the earlier tracer's {} over", path.display())
                })?;
                info!(
                    "{} held an earlier tracer's packet counters ({pinned}): they carry over \
                     into this tracer's layout",
                    path.display()
                );
                continue;
            }
            (_, Some(pinned)) if is_previous_drop_counters(name, &pinned) => {
                carried.drops = read_previous_drops(&path)
                    .with_context(|| format!("reading the earlier tracer's {}", path.display()))?;
                info!(
                    "{} holds an earlier tracer's drop counters ({pinned}): their {} sites carry \
                     over into this tracer's layout",
                    path.display(),
                    carried.drops.len()
                );
            }
            (expected, pinned) => {
                let found =
                    pinned.map_or_else(|| "not a map".to_owned(), |shape| shape.to_string());
                let wanted = expected.map_or_else(String::new, |shape| {
                    format!(" (this tracer pins a {shape} there)")
                });
                if !reset {
                    return Err(UsageError::Argument(format!(
                        "{} holds a pin tracer cannot use: {found}{wanted}. It was left as it \
                         is. Run the monitor with --reset to replace it (its counts are lost), \
                         or give it another --pin-dir",
                        path.display()
                    ))
                    .into());
                }
                warn!("--reset: replacing {} ({found}){wanted}", path.display());
            }
        }
        std::fs::remove_file(&path)
            .with_context(|| format!("removing the pin {}", path.display()))?;
    }
    Ok(carried)
}

/// Removes the pin `path` of the map `name` when it is one tracer made: on bpffs, a pinned map
/// of the shape tracer gives it. Anything else is left where it is (and logged); a directory
/// there is refused.
fn remove_if_ours(path: &Path, name: &str, removed: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("looking at {}", path.display())),
    };
    if metadata.is_dir() {
        return Err(directory_in_the_way(path).into());
    }
    let on_bpffs = path.parent().is_some_and(on_bpffs);
    if metadata.file_type().is_symlink() || !on_bpffs || !is_our_pin(path, name) {
        warn!("{} is not a map tracer pinned: left alone", path.display());
        return Ok(());
    }
    match std::fs::remove_file(path) {
        Ok(()) => {
            removed.push(path.to_owned());
            Ok(())
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("unpinning {}", path.display())),
    }
}

fn remove_dir_if_empty(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir(path) {
        Err(err)
            if !matches!(
                err.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty
            ) =>
        {
            Err(err)
        }
        _ => Ok(()),
    }
}

/// Removes every map tracer pins under `root` and the directories it made for them once empty;
/// anything else found there is left alone. Returns the removed pins.
pub fn remove_all(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let ports_root = root.join("ports");
    if let Ok(entries) = std::fs::read_dir(&ports_root) {
        for entry in entries.flatten() {
            let directory = entry.path();
            // A link to elsewhere is not a directory tracer made: never followed.
            if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                continue;
            }
            for name in ports::PINNED_MAPS {
                remove_if_ours(&directory.join(name), name, &mut removed)?;
            }
            remove_dir_if_empty(&directory)
                .with_context(|| format!("removing {}", directory.display()))?;
        }
    }
    remove_dir_if_empty(&ports_root)
        .with_context(|| format!("removing {}", ports_root.display()))?;
    let drops_root = drops_directory(root);
    for name in drops::PINNED_MAPS {
        remove_if_ours(&drops_root.join(name), name, &mut removed)?;
    }
    remove_dir_if_empty(&drops_root)
        .with_context(|| format!("removing {}", drops_root.display()))?;
    Ok(removed)
}

/// `tracer monitor --unpin`: removes what tracer pinned under `root`, and `root` once empty.
/// Refused while a monitor uses it.
pub fn unpin(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    // Regular files elsewhere are never tracer's pins, whatever their names.
    if !on_bpffs(root) {
        return Err(not_bpffs(root).into());
    }
    let lock = PinLock::acquire(root)?;
    let removed = remove_all(root)?;
    drop(lock);
    remove_dir_if_empty(root).with_context(|| format!("removing {}", root.display()))?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> PortSpec {
        text.parse().unwrap()
    }

    #[test]
    fn pin_names_keep_specs_apart() {
        assert_eq!(pin_name(&spec("cvl_0_1")), "cvl_0_1");
        assert_eq!(
            pin_name(&spec("cvl_0_0_ns_spdk/cvl_0_0")),
            "cvl_0_0_ns_spdk:cvl_0_0"
        );
        // A ':' inside a namespace name is no ambiguity: the interface is after the last one.
        assert_eq!(pin_name(&spec("a:b/c")), "a:b:c");
        assert!("a/b:c".parse::<PortSpec>().is_err());
    }

    #[test]
    fn overlong_specs_are_refused() {
        let netns = "n".repeat(250);
        let long = spec(&format!("{netns}/abcdefghij"));
        assert!(port_directory(Path::new(DEFAULT_PIN_ROOT), &long).is_err());
        let path = port_directory(Path::new(DEFAULT_PIN_ROOT), &spec("ns/eth0")).unwrap();
        assert_eq!(path, Path::new("/sys/fs/bpf/tracer/ports/ns:eth0"));
    }

    #[test]
    fn shapes_compare_capacity_only_when_it_matters() {
        let drops = expected_shape("DROP_COUNTERS").unwrap();
        let bigger = MapShape {
            max_entries: Some(8192),
            ..drops
        };
        assert!(drops.accepts(&bigger));
        let packets = expected_shape("PACKET_COUNTERS").unwrap();
        let older = MapShape {
            max_entries: Some(Direction::COUNT - 1),
            ..packets
        };
        assert!(!packets.accepts(&older));
        let wrong_type = MapShape {
            map_type: MapType::Array,
            ..packets
        };
        assert!(!packets.accepts(&wrong_type));
    }
}
