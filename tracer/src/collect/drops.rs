//! Kernel drops on `kfree_skb`, counted by (netns, ifindex, reason, protocol): with the kernel's
//! drop reason where it has them (5.17 on), else with the code location that freed the skb,
//! named through /proc/kallsyms. Only drops at the watched places keep their namespace and
//! interface; the rest of the machine is counted as totals.

use std::{
    collections::{BTreeSet, HashMap},
    path::Path,
    sync::OnceLock,
};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapError, PerCpuArray, PerCpuHashMap},
    programs::{BtfTracePoint, RawTracePoint},
};
use log::info;
use serde::{Deserialize, Serialize};
use tracer_common::{DropKey, InterfaceName, KernelOffsets, WatchedPlace, interface_name};
use tracer_evidence::{DropCount, protocol_name, reasons::DropReason};

use crate::{btf::Btf, collect::loader, error::UsageError, kallsyms::Kallsyms, place::PlaceKey};

static DROPS_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-drops"));

const DROP_REASON_PREFIX: &str = "SKB_DROP_REASON_";
/// The typedef a tp_btf program on the kfree_skb tracepoint names.
const TRACE_KFREE_SKB: &str = "btf_trace_kfree_skb";

/// The maps kept on bpffs when a pin directory is given: the counts, nothing else.
pub const PINNED_MAPS: [&str; 2] = ["DROP_COUNTERS", "LOST_EVENTS"];

/// What the kernel tells about a drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropDetail {
    /// `enum skb_drop_reason` (kernels 5.17 and newer), through tp_btf.
    Reason,
    /// Only where the skb was freed (older kernels), through the raw tracepoint; netfilter
    /// and neighbour drops are still recognised by the function that freed the skb.
    Location,
}

/// The running kernel's struct layout and drop-reason names, from its BTF.
pub struct KernelLayout {
    pub offsets: KernelOffsets,
    /// `None` on kernels without `enum skb_drop_reason`.
    pub reasons: Option<HashMap<u32, String>>,
    /// The BTF id of `typedef btf_trace_kfree_skb`, which the tp_btf program attaches by.
    pub trace_kfree_skb: Option<u32>,
}

impl KernelLayout {
    /// The running kernel's, read from its BTF once per process and kept (a few kilobytes):
    /// every later attachment reuses it.
    pub fn running() -> Result<&'static Self, UsageError> {
        static RUNNING: OnceLock<KernelLayout> = OnceLock::new();
        if let Some(layout) = RUNNING.get() {
            return Ok(layout);
        }
        let btf = Btf::from_sys_fs().map_err(|err| UsageError::KernelLayout(err.to_string()))?;
        let layout = Self::from_btf(&btf)?;
        Ok(RUNNING.get_or_init(|| layout))
    }

    pub fn from_btf(btf: &Btf) -> Result<Self, UsageError> {
        let offset = |strukt: &str, path: &[&str]| {
            btf.member_offset(strukt, path)
                .map_err(|err| UsageError::KernelLayout(err.to_string()))
        };
        let offsets = KernelOffsets {
            skb_dev: offset("sk_buff", &["dev"])?,
            skb_protocol: offset("sk_buff", &["protocol"])?,
            dev_ifindex: offset("net_device", &["ifindex"])?,
            dev_net: offset("net_device", &["nd_net", "net"])?,
            net_inum: offset("net", &["ns", "inum"])?,
            skb_sk: offset("sk_buff", &["sk"])?,
            sock_net: offset("sock", &["__sk_common", "skc_net", "net"])?,
            dev_name: offset("net_device", &["name"])?,
        };
        let reasons = btf.enum_variants("skb_drop_reason").ok().map(|variants| {
            variants
                .into_iter()
                .map(|(name, value)| {
                    let name = name.strip_prefix(DROP_REASON_PREFIX).unwrap_or(&name);
                    (value as u32, name.to_owned())
                })
                .collect()
        });
        Ok(Self {
            offsets,
            reasons,
            trace_kfree_skb: btf.typedef_id(TRACE_KFREE_SKB).ok(),
        })
    }
}

/// One (netns, ifindex, reason, protocol) drop site and how often it dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDrop {
    pub key: DropKey,
    pub count: u64,
}

/// The kfree_skb probe, attached. Dropping it detaches.
pub struct DropPrograms {
    ebpf: Ebpf,
    program: &'static str,
    pub detail: DropDetail,
    reasons: HashMap<u32, String>,
    /// Resolved on the first drop that needs it: only kernels without drop reasons do.
    symbols: OnceLock<Option<Kallsyms>>,
    /// What `WATCHED_PLACES` holds.
    watched: BTreeSet<WatchedPlace>,
    /// What `WATCHED_NAMES` holds.
    watched_names: BTreeSet<InterfaceName>,
}

impl DropPrograms {
    /// Reads the running kernel's layout from its BTF, then attaches.
    pub fn attach(log_level: &u8) -> anyhow::Result<Self> {
        Self::attach_pinned(log_level, None)
    }

    /// [`Self::attach`], with the counters pinned in `pin_directory` (which must exist on
    /// bpffs): maps already pinned there are reused, so that counts continue across runs.
    pub fn attach_pinned(log_level: &u8, pin_directory: Option<&Path>) -> anyhow::Result<Self> {
        let layout = KernelLayout::running()?;
        let mut loader = loader(log_level);
        loader.override_global("KERNEL_OFFSETS", &layout.offsets, true);
        if let Some(directory) = pin_directory {
            for name in PINNED_MAPS {
                loader.map_pin_path(name, directory.join(name));
            }
        }
        let mut ebpf = loader
            .load(DROPS_OBJECT)
            .context("loading the drop probe")?;
        let (detail, program) = match (&layout.reasons, layout.trace_kfree_skb) {
            (Some(_), Some(type_id)) => match attach_with_reason(&mut ebpf, type_id) {
                Ok(()) => (DropDetail::Reason, "tracer_kfree_skb"),
                Err(err) => {
                    info!(
                        "tp_btf on kfree_skb is not available ({err:#}): drops are counted by location"
                    );
                    attach_with_location(&mut ebpf)?;
                    (DropDetail::Location, "tracer_kfree_skb_location")
                }
            },
            _ => {
                info!("this kernel has no drop reasons (5.17 on): drops are counted by location");
                attach_with_location(&mut ebpf)?;
                (DropDetail::Location, "tracer_kfree_skb_location")
            }
        };
        Ok(Self {
            ebpf,
            program,
            detail,
            reasons: layout.reasons.clone().unwrap_or_default(),
            symbols: OnceLock::new(),
            watched: BTreeSet::new(),
            watched_names: BTreeSet::new(),
        })
    }

    /// What this kernel cannot tell about drops, for the verdict's limitations.
    pub fn limitation(&self) -> Option<String> {
        (self.detail == DropDetail::Location).then(|| {
            "drop reasons: this kernel has none (they came in 5.17); drops are named by the kernel function that freed the packet (nf_hook_slow: netfilter; neigh_*: neighbour; others: NOT_SPECIFIED)".to_owned()
        })
    }

    /// Keeps apart the drops each port [holds](PlaceKey::holds); every other drop is a total
    /// from now on.
    pub fn watch_ports(&mut self, ports: impl IntoIterator<Item = PlaceKey>) -> anyhow::Result<()> {
        let places: BTreeSet<WatchedPlace> = ports
            .into_iter()
            .flat_map(|PlaceKey { netns, ifindex }| {
                [
                    WatchedPlace { netns, ifindex },
                    WatchedPlace { netns, ifindex: 0 },
                ]
            })
            .collect();
        sync_map(&mut self.ebpf, "WATCHED_PLACES", &mut self.watched, places)
    }

    /// Keeps apart the drops on devices of these names, in whichever namespace: a followed
    /// port's drops count from its first one in a namespace it moves to.
    pub fn watch_names<'a>(
        &mut self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> anyhow::Result<()> {
        let names: BTreeSet<InterfaceName> = names.into_iter().filter_map(interface_name).collect();
        sync_map(
            &mut self.ebpf,
            "WATCHED_NAMES",
            &mut self.watched_names,
            names,
        )
    }

    /// The drop's reason for people and the classifier: the kernel's name, or on kernels
    /// without reasons the one the freeing function stands for (`nf_hook_slow`: a netfilter
    /// drop; `neigh_*`: a failed neighbour), else NOT_SPECIFIED, as such a kernel's
    /// `kfree_skb()` would say.
    pub fn reason_of(&self, key: &DropKey) -> String {
        match self.detail {
            DropDetail::Reason => self
                .reasons
                .get(&key.reason)
                .cloned()
                .unwrap_or_else(|| format!("REASON_{}", key.reason)),
            DropDetail::Location => {
                let symbol = self.location_of(key);
                reason_at(symbol.as_deref().unwrap_or("")).to_owned()
            }
        }
    }

    /// A counted drop with the names people know: `netns`, the namespace's name, and
    /// `interface`, the port's when the drop was on its device.
    pub fn name(&self, drop: &RawDrop, netns: String, interface: Option<&str>) -> DropCount {
        DropCount {
            netns,
            interface: interface
                .filter(|_| drop.key.ifindex != 0)
                .unwrap_or_default()
                .to_owned(),
            ifindex: drop.key.ifindex,
            reason: self.reason_of(&drop.key),
            location: self.location_of(&drop.key),
            protocol: protocol_name(drop.key.protocol),
            count: drop.count,
        }
    }

    /// Where the skb was freed, as SYMBOL+0xOFFSET; `None` where the kernel gives reasons or
    /// /proc/kallsyms cannot name it.
    pub fn location_of(&self, key: &DropKey) -> Option<String> {
        if key.location == 0 {
            return None;
        }
        self.symbols
            .get_or_init(|| Kallsyms::read().ok())
            .as_ref()?
            .name(key.location)
    }

    /// Gives the probe's log ring buffer to the caller, who polls it (absent when the object
    /// logs nothing).
    pub fn take_logger(&mut self) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
        aya_log::EbpfLogger::init(&mut self.ebpf).ok()
    }

    /// Every drop site counted so far, summed over CPUs.
    pub fn drops(&self) -> anyhow::Result<Vec<RawDrop>> {
        let map = self
            .ebpf
            .map("DROP_COUNTERS")
            .ok_or_else(|| anyhow!("DROP_COUNTERS map missing"))?;
        let counters = PerCpuHashMap::<_, DropKey, u64>::try_from(map)?;
        let mut drops = Vec::new();
        for entry in counters.iter() {
            let (key, per_cpu) = entry.context("reading DROP_COUNTERS")?;
            drops.push(RawDrop {
                key,
                count: per_cpu.iter().sum(),
            });
        }
        drops.sort_by_key(|drop| drop.key);
        Ok(drops)
    }

    /// Deletes these drop sites from the counters: a long-running reader forgets the sites it
    /// does not report, so that the map never fills with them.
    pub fn forget(&mut self, keys: &[DropKey]) -> anyhow::Result<()> {
        let map = self
            .ebpf
            .map_mut("DROP_COUNTERS")
            .ok_or_else(|| anyhow!("DROP_COUNTERS map missing"))?;
        let mut counters = PerCpuHashMap::<_, DropKey, u64>::try_from(map)?;
        for key in keys {
            gone_already(counters.remove(key)).context("deleting from DROP_COUNTERS")?;
        }
        Ok(())
    }

    /// Adds `count` to the counts of `key`, a key the kernel never writes: for a reader that
    /// carries counts on in the map under keys of its own, so that they are pinned with it.
    pub fn add(&mut self, key: DropKey, count: u64) -> anyhow::Result<()> {
        let map = self
            .ebpf
            .map_mut("DROP_COUNTERS")
            .ok_or_else(|| anyhow!("DROP_COUNTERS map missing"))?;
        let mut counters = PerCpuHashMap::<_, DropKey, u64>::try_from(map)?;
        let held: u64 = match counters.get(&key, 0) {
            Ok(per_cpu) => per_cpu.iter().sum(),
            Err(MapError::KeyNotFound) => 0,
            Err(err) => return Err(err).context("reading DROP_COUNTERS"),
        };
        let cpus = aya::util::nr_cpus().map_err(|(what, err)| anyhow!("{what}: {err}"))?;
        // The sum is all that is read: it goes to the first CPU's slot.
        let per_cpu: Vec<u64> = (0..cpus)
            .map(|cpu| if cpu == 0 { held + count } else { 0 })
            .collect();
        counters
            .insert(key, per_cpu.try_into()?, 0)
            .context("writing DROP_COUNTERS")
    }

    /// Drops the probe saw but could not count, and drops it never saw because the kernel
    /// skipped a re-entered run (BPF recursion misses).
    pub fn lost_events(&self) -> anyhow::Result<u64> {
        let map = self
            .ebpf
            .map("LOST_EVENTS")
            .ok_or_else(|| anyhow!("LOST_EVENTS map missing"))?;
        let lost = PerCpuArray::<_, u64>::try_from(map)?;
        let uncounted: u64 = lost.get(&0, 0)?.iter().sum();
        let program = self
            .ebpf
            .program(self.program)
            .ok_or_else(|| anyhow!("program {} missing", self.program))?;
        Ok(uncounted + super::recursion_misses(program)?)
    }
}

/// Makes the hash map `name` hold exactly `wanted` (with value 1); `held` is what it holds.
fn sync_map<K: aya::Pod + Ord>(
    ebpf: &mut Ebpf,
    name: &str,
    held: &mut BTreeSet<K>,
    wanted: BTreeSet<K>,
) -> anyhow::Result<()> {
    if *held == wanted {
        return Ok(());
    }
    let map = ebpf
        .map_mut(name)
        .ok_or_else(|| anyhow!("{name} map missing"))?;
    let mut map = BpfHashMap::<_, K, u8>::try_from(map)?;
    for gone in held.difference(&wanted) {
        gone_already(map.remove(gone)).with_context(|| format!("updating {name}"))?;
    }
    for new in wanted.difference(held) {
        map.insert(new, 1, 0)
            .with_context(|| format!("updating {name}"))?;
    }
    *held = wanted;
    Ok(())
}

/// A removal whose key was not there any more is done too.
fn gone_already(removed: Result<(), MapError>) -> Result<(), MapError> {
    match removed {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(syscall))
            if syscall.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// tp_btf with the drop reason; fails on kernels that refuse tp_btf or lack the tracepoint.
fn attach_with_reason(ebpf: &mut Ebpf, type_id: u32) -> anyhow::Result<()> {
    let kernel_btf = btf_naming_at(type_id, TRACE_KFREE_SKB)?;
    let program: &mut BtfTracePoint = ebpf
        .program_mut("tracer_kfree_skb")
        .ok_or_else(|| anyhow!("program tracer_kfree_skb missing from the object"))?
        .try_into()?;
    program.load("kfree_skb", &kernel_btf)?;
    program.attach()?;
    Ok(())
}

/// A stand-in for the kernel's BTF with the typedef `name` at `type_id`, everything before it a
/// placeholder: all `BtfTracePoint::load` reads of the BTF it is given is the id of
/// `typedef btf_trace_EVENT`, and the kernel checks that id against its own BTF. aya's full
/// parse of vmlinux would cost 20 MB and 20 ms for that one number; this costs aya's 72 bytes
/// a type up to the typedef, freed once the program is loaded.
fn btf_naming_at(type_id: u32, name: &str) -> anyhow::Result<aya::Btf> {
    const RECORD_LEN: u32 = 12;
    const KIND_PTR: u32 = 2;
    const KIND_TYPEDEF: u32 = 8;
    let placeholders = type_id
        .checked_sub(1)
        .ok_or_else(|| anyhow!("type id 0 is void, not {name}"))?;
    let type_len = (placeholders + 1) * RECORD_LEN;
    let mut strings = vec![0u8];
    strings.extend_from_slice(name.as_bytes());
    strings.push(0);
    let mut raw = Vec::with_capacity(24 + type_len as usize + strings.len());
    raw.extend_from_slice(&0xeb9f_u16.to_le_bytes());
    raw.extend_from_slice(&[1, 0]); // version, flags
    for word in [24, 0, type_len, type_len, strings.len() as u32] {
        raw.extend_from_slice(&u32::to_le_bytes(word));
    }
    for _ in 0..placeholders {
        // An anonymous pointer to void.
        for word in [0, KIND_PTR << 24, 0] {
            raw.extend_from_slice(&u32::to_le_bytes(word));
        }
    }
    for word in [1, KIND_TYPEDEF << 24, 0] {
        raw.extend_from_slice(&u32::to_le_bytes(word));
    }
    raw.extend_from_slice(&strings);
    aya::Btf::parse(&raw, aya::Endianness::default()).context("building the tracepoint's BTF id")
}

/// The raw tracepoint, on every kernel since 4.17; it needs no BTF of its own.
fn attach_with_location(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    let program: &mut RawTracePoint = ebpf
        .program_mut("tracer_kfree_skb_location")
        .ok_or_else(|| anyhow!("program tracer_kfree_skb_location missing from the object"))?
        .try_into()?;
    // The kernel has no kfree_skb tracepoint, or refuses tracing programs: the machine's to
    // fix, not a tracer bug.
    program.load().map_err(|err| {
        UsageError::KernelLayout(format!(
            "cannot load a program on the kfree_skb tracepoint ({err}); tracer needs BPF tracing and the kfree_skb tracepoint"
        ))
    })?;
    program
        .attach("kfree_skb")
        .context("attaching the kfree_skb probe (raw tracepoint)")?;
    Ok(())
}

/// The drop reason a freeing function stands for, on kernels without reasons.
fn reason_at(location: &str) -> &'static str {
    let function = location.split('+').next().unwrap_or("");
    let reason = if function == "nf_hook_slow" {
        DropReason::NetfilterDrop
    } else if function.starts_with("neigh_") || function.starts_with("__neigh_") {
        DropReason::NeighFailed
    } else {
        DropReason::NotSpecified
    };
    reason.name().unwrap_or("NOT_SPECIFIED")
}

#[cfg(test)]
mod tests {
    use super::{TRACE_KFREE_SKB, btf_naming_at, reason_at};

    #[test]
    fn the_stand_in_btf_names_the_typedef_at_its_id() {
        let btf = btf_naming_at(38122, TRACE_KFREE_SKB).unwrap();
        assert_eq!(
            btf.id_by_type_name_kind(TRACE_KFREE_SKB, aya_obj::btf::BtfKind::Typedef)
                .unwrap(),
            38122
        );
        assert!(btf_naming_at(0, TRACE_KFREE_SKB).is_err());
    }

    #[test]
    fn freeing_functions_name_their_class() {
        assert_eq!(reason_at("nf_hook_slow+0x9c"), "NETFILTER_DROP");
        assert_eq!(reason_at("neigh_invalidate+0x8e"), "NEIGH_FAILED");
        assert_eq!(reason_at("__neigh_event_send+0x1f0"), "NEIGH_FAILED");
        assert_eq!(reason_at("tcp_v4_rcv+0x12"), "NOT_SPECIFIED");
        assert_eq!(reason_at(""), "NOT_SPECIFIED");
    }
}
