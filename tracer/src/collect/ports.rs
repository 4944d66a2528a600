//! Packet counters on one watched port: XDP on ingress (tc ingress when another program holds
//! the XDP hook), tcx on egress; optionally a capture of the ARP, ICMP and port frames.

use std::path::Path;

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode},
};
use log::warn;
use serde::Serialize;
use tracer_common::{Direction, PacketKind, counter_index};

use crate::{
    collect::loader,
    error::UsageError,
    evidence::{InterfaceCounters, KindCounts},
    netns::{self, NetnsGuard},
    spec::PortSpec,
};

static PORTS_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ports"));

/// The maps kept on bpffs when a pin directory is given: the counts, nothing else.
pub const PINNED_MAPS: [&str; 1] = ["PACKET_COUNTERS"];

/// How a port is watched.
#[derive(Debug, Clone, Copy)]
pub struct PortOptions {
    /// TCP port counted as `tcp_port`.
    pub watched_port: u16,
    /// Copy ARP, ICMP and port frames to user space.
    pub capture: bool,
    /// aya-log level for the kernel programs.
    pub log_level: u8,
    /// The ingress hook to use. XDP falls back to tc when another program holds it.
    pub ingress: IngressHook,
}

/// Which hook counts a port's ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum IngressHook {
    /// XDP: every frame as it arrives, before GRO. On a veth pair, native XDP turns off the
    /// peer's segmentation offload, which costs bulk throughput.
    Xdp,
    /// tc (tcx) ingress: after GRO, no effect on offloads. Also where XDP is held by another
    /// program (tracer never replaces it).
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

/// One port with its counting programs attached. Dropping it detaches them.
pub struct PortProbe {
    pub spec: PortSpec,
    pub netns_inode: u32,
    pub ifindex: u32,
    pub ingress_hook: IngressHook,
    ebpf: Ebpf,
}

fn xdp_taken(err: &ProgramError) -> bool {
    matches!(err, ProgramError::SyscallError(syscall)
        if matches!(syscall.io_error.raw_os_error(), Some(libc::EBUSY | libc::EEXIST)))
}

impl PortProbe {
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
        let netns_inode = netns::netns_inode(&spec.netns).map_err(UsageError::from)?;
        let capture = u8::from(options.capture);
        let mut loader = loader(&options.log_level);
        loader
            .override_global("WATCHED_PORT", &options.watched_port, true)
            .override_global("CAPTURE", &capture, true);
        if let Some(directory) = pin_directory {
            for name in PINNED_MAPS {
                loader.map_pin_path(name, directory.join(name));
            }
        }
        let mut ebpf = loader
            .load(PORTS_OBJECT)
            .context("loading the port counting programs")?;

        let _inside = NetnsGuard::enter(&spec.netns).map_err(UsageError::from)?;
        let ifindex = netns::ifindex(&spec.interface)
            .ok_or_else(|| UsageError::unknown_interface(&spec.interface, &spec.netns))?;

        let ingress_hook = match options.ingress {
            IngressHook::Xdp => {
                let xdp: &mut Xdp = program(&mut ebpf, "tracer_ingress")?.try_into()?;
                xdp.load().context("loading the XDP program")?;
                match xdp.attach_to_if_index(ifindex, XdpMode::default()) {
                    Ok(_) => IngressHook::Xdp,
                    Err(err) if xdp_taken(&err) => {
                        warn!(
                            "XDP on {spec} is held by another program: counting ingress with tc instead"
                        );
                        IngressHook::Tc
                    }
                    Err(err) => {
                        return Err(
                            anyhow::Error::from(err).context(format!("attaching XDP to {spec}"))
                        );
                    }
                }
            }
            IngressHook::Tc => IngressHook::Tc,
        };
        if ingress_hook == IngressHook::Tc {
            let tc: &mut SchedClassifier = program(&mut ebpf, "tracer_ingress_tc")?.try_into()?;
            tc.load().context("loading the tc ingress program")?;
            tc.attach(&spec.interface, TcAttachType::Ingress)
                .with_context(|| format!("attaching tc ingress to {spec}"))?;
        }

        let egress: &mut SchedClassifier = program(&mut ebpf, "tracer_egress")?.try_into()?;
        egress.load().context("loading the tc program")?;
        egress
            .attach(&spec.interface, TcAttachType::Egress)
            .with_context(|| format!("attaching tc egress to {spec}"))?;

        Ok(Self {
            spec: spec.clone(),
            netns_inode,
            ifindex,
            ingress_hook,
            ebpf,
        })
    }

    /// The counts so far, summed over CPUs.
    pub fn counters(&self) -> anyhow::Result<InterfaceCounters> {
        let map = self
            .ebpf
            .map("PACKET_COUNTERS")
            .ok_or_else(|| anyhow!("PACKET_COUNTERS map missing"))?;
        let counters = PerCpuArray::<_, u64>::try_from(map)?;
        let read = |direction| -> anyhow::Result<KindCounts> {
            let mut counts = KindCounts::default();
            for kind in PacketKind::ALL {
                let per_cpu = counters.get(&counter_index(direction, kind), 0)?;
                counts.set(kind, per_cpu.iter().sum());
            }
            Ok(counts)
        };
        Ok(InterfaceCounters {
            netns: self.spec.netns.clone(),
            interface: self.spec.interface.clone(),
            ingress: read(Direction::Ingress)?,
            egress: read(Direction::Egress)?,
        })
    }

    /// The kernel's id of the egress program: a device that no longer lists it among its tcx
    /// egress programs is not the one this probe was attached to.
    pub fn egress_program_id(&self) -> anyhow::Result<u32> {
        let program = self
            .ebpf
            .program("tracer_egress")
            .ok_or_else(|| anyhow!("program tracer_egress missing from the object"))?;
        Ok(program.info()?.id())
    }

    /// The capture ring buffer, for a reader to own (once).
    pub fn take_capture(&mut self) -> Option<RingBuf<MapData>> {
        self.ebpf
            .take_map("CAPTURED_FRAMES")
            .and_then(|map| RingBuf::try_from(map).ok())
    }

    /// Frames not captured because the ring buffer was full.
    pub fn capture_lost(&self) -> anyhow::Result<u64> {
        let map = self
            .ebpf
            .map("CAPTURE_LOST")
            .ok_or_else(|| anyhow!("CAPTURE_LOST map missing"))?;
        let lost = PerCpuArray::<_, u64>::try_from(map)?;
        Ok(lost.get(&0, 0)?.iter().sum())
    }
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut aya::programs::Program> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing from the object"))
}
