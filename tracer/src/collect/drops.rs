//! Kernel drops: `kfree_skb` with its reason, counted by (netns, ifindex, reason, protocol).

use std::{collections::HashMap, path::Path};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{MapError, PerCpuArray, PerCpuHashMap},
    programs::BtfTracePoint,
};
use tracer_common::{DropKey, KernelOffsets};

use crate::{btf::Btf, collect::loader, error::UsageError};

static DROPS_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-drops"));

const DROP_REASON_PREFIX: &str = "SKB_DROP_REASON_";

/// The maps kept on bpffs when a pin directory is given: the counts, nothing else.
pub const PINNED_MAPS: [&str; 2] = ["DROP_COUNTERS", "LOST_EVENTS"];

/// The running kernel's struct layout and drop-reason names, from its BTF.
pub struct KernelLayout {
    pub offsets: KernelOffsets,
    pub reasons: HashMap<u32, String>,
}

impl KernelLayout {
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
        };
        let reasons = btf
            .enum_variants("skb_drop_reason")
            .map_err(|err| UsageError::KernelLayout(err.to_string()))?
            .iter()
            .map(|(name, value)| {
                let name = name.strip_prefix(DROP_REASON_PREFIX).unwrap_or(name);
                (*value as u32, name.to_owned())
            })
            .collect();
        Ok(Self { offsets, reasons })
    }

    /// The kernel's name for a drop reason, without the SKB_DROP_REASON_ prefix.
    pub fn reason_name(&self, reason: u32) -> String {
        self.reasons
            .get(&reason)
            .cloned()
            .unwrap_or_else(|| format!("REASON_{reason}"))
    }
}

/// One (netns, ifindex, reason, protocol) drop site and how often it dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDrop {
    pub key: DropKey,
    pub count: u64,
}

/// The kfree_skb probe, attached. Dropping it detaches.
pub struct DropProbe {
    ebpf: Ebpf,
    /// What the probe was built for: it names the reasons it counts.
    pub layout: KernelLayout,
}

impl DropProbe {
    /// Reads the running kernel's layout from its BTF, then attaches.
    pub fn attach(log_level: &u8) -> anyhow::Result<Self> {
        Self::attach_pinned(log_level, None)
    }

    /// [`Self::attach`], with the counters pinned in `pin_directory` (which must exist on
    /// bpffs): maps already pinned there are reused, so that counts continue across runs.
    pub fn attach_pinned(log_level: &u8, pin_directory: Option<&Path>) -> anyhow::Result<Self> {
        let layout =
            KernelLayout::from_btf(&Btf::from_sys_fs().context("reading the kernel's BTF")?)?;
        let kernel_btf = aya::Btf::from_sys_fs().context("reading the kernel's BTF")?;
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
        let program: &mut BtfTracePoint = ebpf
            .program_mut("tracer_kfree_skb")
            .ok_or_else(|| anyhow!("program tracer_kfree_skb missing from the object"))?
            .try_into()?;
        // The kernel's BTF has no kfree_skb tracepoint, or refuses tp_btf programs: the
        // machine's to fix, not a tracer bug.
        program.load("kfree_skb", &kernel_btf).map_err(|err| {
            UsageError::KernelLayout(format!(
                "cannot load a tp_btf program on the kfree_skb tracepoint ({err}); tracer needs BPF tracing (tp_btf) and the kfree_skb tracepoint"
            ))
        })?;
        program
            .attach()
            .context("attaching the kfree_skb probe (tp_btf)")?;
        Ok(Self { ebpf, layout })
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
            match counters.remove(key) {
                Ok(()) => {}
                // Gone already: nothing to forget.
                Err(MapError::SyscallError(syscall))
                    if syscall.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(err) => return Err(err).context("deleting from DROP_COUNTERS"),
            }
        }
        Ok(())
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
            .program("tracer_kfree_skb")
            .ok_or_else(|| anyhow!("program tracer_kfree_skb missing"))?;
        Ok(uncounted + super::recursion_misses(program)?)
    }
}
