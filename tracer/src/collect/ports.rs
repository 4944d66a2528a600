//! Packet counters on one watched port: tc on ingress (first in the chain) and egress (last),
//! or XDP on ingress when asked for; optionally a capture of the frames that explain a failure.
//!
//! tc programs attach as tcx links from 6.6 on, and as filters of a `clsact` qdisc before that
//! (tracer creates the qdisc when it is missing, and removes it again when it created it).

use std::{path::Path, time::Instant};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{
        LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
        tc::{self, NlOptions, TcAttachOptions},
    },
    util::KernelVersion,
};
use log::{debug, warn};
use serde::{Deserialize, Serialize};
use tracer_common::{Direction, DirectionCounters, PacketKind};

use crate::{
    collect::loader,
    error::UsageError,
    netlink::{ClsactHook, RouteSocket},
    netns::{self, NetnsGuard},
    place::PlaceKey,
    spec::PortSpec,
};
use tracer_evidence::{InterfaceCounters, KindCounts};

static PORTS_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ports"));

/// The maps kept on bpffs when a pin directory is given: the counts, nothing else.
pub const PINNED_MAPS: [&str; 1] = ["PACKET_COUNTERS"];

/// clsact filter priorities (lower runs first): ingress ahead of every other filter, egress
/// after them, as with tcx.
const CLSACT_INGRESS_PRIORITY: u16 = 1;
const CLSACT_EGRESS_PRIORITY: u16 = u16::MAX;

/// How a port is watched.
#[derive(Debug, Clone, Copy)]
pub struct PortOptions {
    /// TCP port counted as `tcp_port`.
    pub tcp_port: u16,
    /// Copy ARP, ICMP, port, cable-map and LLDP frames to user space.
    pub capture: bool,
    /// aya-log level for the kernel programs.
    pub log_level: u8,
    /// The ingress hook asked for. XDP falls back to tc whenever it cannot be attached.
    pub ingress: IngressHook,
}

/// Which hook counts a port's ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum IngressHook {
    /// XDP: every frame as it arrives, before GRO. Native XDP may change the port: on a veth
    /// pair it turns off the peer's segmentation offload, on some NICs it reconfigures rings.
    Xdp,
    /// tc ingress, first in the chain: after GRO, no effect on MTU, offloads or queues.
    Tc,
}

impl IngressHook {
    /// The hook's name in logs, timelines and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Xdp => "xdp",
            Self::Tc => "tc",
        }
    }
}

/// How tc programs are attached on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TcAttachment {
    /// tcx links (6.6 and newer): ordered, and gone with the process.
    Tcx,
    /// Filters of a clsact qdisc (older kernels).
    Clsact,
}

impl TcAttachment {
    pub fn of_running_kernel() -> Self {
        match KernelVersion::current() {
            Ok(version) if version < KernelVersion::new(6, 6, 0) => Self::Clsact,
            _ => Self::Tcx,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Tcx => "tcx",
            Self::Clsact => "clsact",
        }
    }
}

/// A port's programs and maps, loaded (made and verified) but attached nowhere yet: kept ready
/// while a port is awaited, so that it is counted within milliseconds of appearing.
pub struct LoadedPrograms {
    ebpf: Ebpf,
}

impl LoadedPrograms {
    /// Loads the object, and the tc programs the options ask for (XDP, when asked, is loaded
    /// as it is attached: whether it can be depends on the port).
    pub fn load(options: &PortOptions, pin_directory: Option<&Path>) -> anyhow::Result<Self> {
        let capture = u8::from(options.capture);
        let mut loader = loader(&options.log_level);
        loader
            .override_global("WATCHED_PORT", &options.tcp_port, true)
            .override_global("CAPTURE", &capture, true);
        if let Some(directory) = pin_directory {
            for name in PINNED_MAPS {
                loader.map_pin_path(name, directory.join(name));
            }
        }
        let mut ebpf = loader
            .load(PORTS_OBJECT)
            .context("loading the port counting programs")?;
        let tc_programs = match options.ingress {
            IngressHook::Tc => &["tracer_ingress_tc", "tracer_egress"][..],
            IngressHook::Xdp => &["tracer_egress"][..],
        };
        for name in tc_programs {
            let program: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} missing from the object"))?
                .try_into()?;
            program.load().with_context(|| format!("loading {name}"))?;
        }
        Ok(Self { ebpf })
    }
}

/// One direction's counts in the programs' `PACKET_COUNTERS`, summed over CPUs.
pub fn packet_counts(ebpf: &Ebpf, direction: Direction) -> anyhow::Result<KindCounts> {
    let map = ebpf
        .map("PACKET_COUNTERS")
        .ok_or_else(|| anyhow!("PACKET_COUNTERS map missing"))?;
    let per_cpu =
        PerCpuArray::<_, DirectionCounters>::try_from(map)?.get(&(direction as u32), 0)?;
    let mut counts = KindCounts::default();
    for kind in PacketKind::ALL {
        counts.set(kind, per_cpu.iter().map(|row| row[kind as usize]).sum());
    }
    Ok(counts)
}

/// One port with its counting programs attached. Dropping it detaches them.
pub struct PortPrograms {
    pub spec: PortSpec,
    pub netns_inode: u32,
    pub ifindex: u32,
    pub ingress_hook: IngressHook,
    pub tc_attachment: TcAttachment,
    /// The clsact qdisc tracer added to the port, to remove again.
    created_clsact: bool,
    /// The port was up when tracer attached: frames may have crossed it before.
    pub attached_while_up: bool,
    /// When attaching began.
    pub attached_at: Instant,
    /// Taken on drop, to detach inside the port's namespace.
    ebpf: Option<Ebpf>,
}

impl PortPrograms {
    /// Attaches to `spec`, entering its namespace on this thread for the duration.
    pub fn attach(spec: &PortSpec, options: &PortOptions) -> anyhow::Result<Self> {
        Self::attach_pinned(spec, options, None)
    }

    /// [`Self::attach`], with the counters pinned in `pin_directory` (which must exist on
    /// bpffs): a map already pinned there is reused, so that counts continue across runs.
    pub fn attach_pinned(
        spec: &PortSpec,
        options: &PortOptions,
        pin_directory: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let loaded = LoadedPrograms::load(options, pin_directory)?;
        Self::attach_loaded(spec, options, loaded)
    }

    /// Attaches programs loaded beforehand: what is left to do when a port appears is the
    /// attachment itself.
    pub fn attach_loaded(
        spec: &PortSpec,
        options: &PortOptions,
        loaded: LoadedPrograms,
    ) -> anyhow::Result<Self> {
        let netns_inode = netns::netns_inode(&spec.netns).map_err(UsageError::from)?;
        let _inside = NetnsGuard::enter(&spec.netns).map_err(UsageError::from)?;
        let ifindex = netns::ifindex(&spec.interface)
            .ok_or_else(|| UsageError::unknown_interface(&spec.interface, &spec.netns))?;
        let tc_attachment = TcAttachment::of_running_kernel();
        let attached_while_up = RouteSocket::open()
            .and_then(|socket| socket.link(&spec.interface))
            .ok()
            .flatten()
            .is_some_and(|link| link.admin_up);
        let mut probe = Self {
            spec: spec.clone(),
            netns_inode,
            ifindex,
            ingress_hook: IngressHook::Tc,
            tc_attachment,
            created_clsact: false,
            attached_while_up,
            attached_at: Instant::now(),
            ebpf: Some(loaded.ebpf),
        };
        if tc_attachment == TcAttachment::Clsact {
            probe.created_clsact = add_clsact(&spec.interface)
                .with_context(|| format!("adding a clsact qdisc to {spec}"))?;
        }
        if options.ingress == IngressHook::Xdp {
            match probe.attach_xdp() {
                Ok(()) => probe.ingress_hook = IngressHook::Xdp,
                Err(err) => warn!("XDP on {spec}: {err:#}; counting ingress with tc instead"),
            }
        }
        if probe.ingress_hook == IngressHook::Tc {
            probe.attach_tc("tracer_ingress_tc", TcAttachType::Ingress)?;
        }
        probe.attach_tc("tracer_egress", TcAttachType::Egress)?;
        Ok(probe)
    }

    /// tracer added the clsact qdisc to the port while it was up: the kernel stops an up
    /// device's transmit queues while a qdisc is added, and drops the frames leaving it then
    /// (QDISC_DROP).
    pub fn qdisc_added_while_up(&self) -> bool {
        self.created_clsact && self.attached_while_up
    }

    fn ebpf(&self) -> &Ebpf {
        self.ebpf
            .as_ref()
            .expect("the object stays loaded until drop")
    }

    fn program(&mut self, name: &str) -> anyhow::Result<&mut aya::programs::Program> {
        self.ebpf
            .as_mut()
            .expect("the object stays loaded until drop")
            .program_mut(name)
            .ok_or_else(|| anyhow!("program {name} missing from the object"))
    }

    /// Native XDP, frags-aware, or on a kernel without multi-buffer XDP (before 5.18) the
    /// single-buffer program; any failure (held by another program, an MTU the program cannot
    /// take, a driver without XDP) is the caller's cue to use tc.
    fn attach_xdp(&mut self) -> anyhow::Result<()> {
        let ifindex = self.ifindex;
        let mut loaded = None;
        for name in ["tracer_ingress", "tracer_ingress_single_buffer"] {
            let xdp: &mut Xdp = self.program(name)?.try_into()?;
            match xdp.load() {
                Ok(()) => {
                    loaded = Some(name);
                    break;
                }
                Err(err) => debug!("loading {name}: {err}"),
            }
        }
        let name = loaded.ok_or_else(|| anyhow!("no XDP program loads on this kernel"))?;
        let xdp: &mut Xdp = self.program(name)?.try_into()?;
        xdp.attach_to_if_index(ifindex, XdpMode::default())
            .context("attaching")?;
        Ok(())
    }

    /// Ingress first in the chain, so that a frame another program consumes is counted;
    /// egress last, so that what leaves is what the others let through.
    fn attach_tc(&mut self, name: &str, hook: TcAttachType) -> anyhow::Result<()> {
        let options = match (self.tc_attachment, hook) {
            (TcAttachment::Tcx, TcAttachType::Ingress) => {
                TcAttachOptions::TcxOrder(LinkOrder::first())
            }
            (TcAttachment::Tcx, _) => TcAttachOptions::TcxOrder(LinkOrder::last()),
            (TcAttachment::Clsact, hook) => TcAttachOptions::Netlink(NlOptions {
                priority: if hook == TcAttachType::Ingress {
                    CLSACT_INGRESS_PRIORITY
                } else {
                    CLSACT_EGRESS_PRIORITY
                },
                ..NlOptions::default()
            }),
        };
        let interface = self.spec.interface.clone();
        let spec = self.spec.to_string();
        let program: &mut SchedClassifier = self.program(name)?.try_into()?;
        if program.fd().is_err() {
            program.load().with_context(|| format!("loading {name}"))?;
        }
        program
            .attach_with_options(&interface, hook, options)
            .with_context(|| format!("attaching {name} to {spec}"))?;
        Ok(())
    }

    /// The counts so far, summed over CPUs.
    pub fn counters(&self) -> anyhow::Result<InterfaceCounters> {
        let ebpf = self.ebpf();
        Ok(InterfaceCounters {
            netns: self.spec.netns.clone(),
            interface: self.spec.interface.clone(),
            ingress_hook: self.ingress_hook.name().to_owned(),
            ingress: packet_counts(ebpf, Direction::Ingress)?,
            egress: packet_counts(ebpf, Direction::Egress)?,
        })
    }

    /// The kernel's id of the egress program: a device that no longer lists it among its
    /// egress programs is not the one this probe was attached to.
    pub fn egress_program_id(&self) -> anyhow::Result<u32> {
        let program = self
            .ebpf()
            .program("tracer_egress")
            .ok_or_else(|| anyhow!("program tracer_egress missing from the object"))?;
        Ok(program.info()?.id())
    }

    /// Where the port was when attached, as the kernel keys drops.
    pub fn key(&self) -> PlaceKey {
        PlaceKey {
            netns: self.netns_inode,
            ifindex: self.ifindex,
        }
    }

    /// The kernel's ids of this probe's loaded programs.
    pub fn program_ids(&self) -> Vec<u32> {
        self.ebpf()
            .programs()
            .filter_map(|(_, program)| program.info().ok())
            .map(|info| info.id())
            .collect()
    }

    /// The capture ring buffer, for a reader to own (once).
    pub fn take_capture(&mut self) -> Option<RingBuf<MapData>> {
        self.ebpf
            .as_mut()?
            .take_map("CAPTURED_FRAMES")
            .and_then(|map| RingBuf::try_from(map).ok())
    }

    /// Frames not captured because the ring buffer was full.
    pub fn capture_lost(&self) -> anyhow::Result<u64> {
        let map = self
            .ebpf()
            .map("CAPTURE_LOST")
            .ok_or_else(|| anyhow!("CAPTURE_LOST map missing"))?;
        let lost = PerCpuArray::<_, u64>::try_from(map)?;
        Ok(lost.get(&0, 0)?.iter().sum())
    }
}

impl Drop for PortPrograms {
    /// Detaches inside the port's namespace: clsact filters are found by interface index,
    /// which only means something there. A port that moved on keeps its clsact filters until
    /// the device or its qdisc goes; tcx links and XDP go with the object wherever it is.
    fn drop(&mut self) {
        let Ok(_inside) = NetnsGuard::enter(&self.spec.netns) else {
            return;
        };
        let still_here = self.tc_attachment == TcAttachment::Tcx
            || egress_program_ids(&self.spec.interface).is_some_and(|ids| {
                self.egress_program_id()
                    .is_ok_and(|ours| ids.contains(&ours))
            });
        if !still_here {
            // Another device may hold this index now: never detach from it.
            std::mem::forget(self.ebpf.take());
            return;
        }
        if self.created_clsact {
            let deleted = RouteSocket::open().and_then(|socket| socket.delete_clsact(self.ifindex));
            if let Err(err) = deleted {
                warn!(
                    "removing the clsact qdisc tracer added to {}: {err}",
                    self.spec
                );
            }
        }
        drop(self.ebpf.take());
    }
}

/// Adds a clsact qdisc to `interface` in the current namespace; `false` when it had one.
fn add_clsact(interface: &str) -> anyhow::Result<bool> {
    match tc::qdisc_add_clsact(interface) {
        Ok(()) => Ok(true),
        Err(tc::TcError::NetlinkError(err)) if err.raw_os_error() == Some(libc::EEXIST) => {
            Ok(false)
        }
        Err(err) => Err(err.into()),
    }
}

/// The ids of the programs on `interface`'s egress (in the current namespace), by whichever
/// attachment this kernel uses; `None` when the kernel cannot say.
pub fn egress_program_ids(interface: &str) -> Option<Vec<u32>> {
    match TcAttachment::of_running_kernel() {
        TcAttachment::Tcx => match SchedClassifier::query_tcx(interface, TcAttachType::Egress) {
            Ok((_, programs)) => Some(programs.iter().map(|program| program.id()).collect()),
            Err(err) => {
                debug!("querying tcx egress programs on {interface}: {err}");
                None
            }
        },
        TcAttachment::Clsact => {
            let ifindex = netns::ifindex(interface)?;
            let filters = RouteSocket::open()
                .and_then(|socket| socket.bpf_filters(ifindex, ClsactHook::Egress));
            match filters {
                Ok(filters) => Some(filters.iter().map(|filter| filter.program_id).collect()),
                // A device moved to another namespace loses its qdiscs, and with them the
                // filters: what cannot be listed there is not ours any more.
                Err(err) => {
                    debug!("listing the egress filters of {interface}: {err}");
                    Some(Vec::new())
                }
            }
        }
    }
}
