//! Packet counters on one watched port: XDP on ingress, tcx on egress.

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::PerCpuArray,
    programs::{ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode},
};
use tracer_common::{Direction, PacketKind, counter_index};

use crate::{
    collect::loader,
    error::UsageError,
    evidence::{InterfaceCounters, KindCounts},
    netns::{self, NetnsGuard},
    spec::PortSpec,
};

static PORTS_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ports"));

/// One port with its counting programs attached. Dropping it detaches them.
pub struct PortProbe {
    pub spec: PortSpec,
    pub netns_inode: u32,
    pub ifindex: u32,
    ebpf: Ebpf,
}

impl PortProbe {
    /// Attaches to `spec`, entering its namespace on this thread for the duration.
    pub fn attach(spec: &PortSpec, watched_port: u16, log_level: &u8) -> anyhow::Result<Self> {
        let netns_inode = netns::netns_inode(&spec.netns).map_err(UsageError::from)?;
        let mut ebpf = loader(log_level)
            .override_global("WATCHED_PORT", &watched_port, true)
            .load(PORTS_OBJECT)
            .context("loading the port counting programs")?;

        let _inside = NetnsGuard::enter(&spec.netns).map_err(UsageError::from)?;
        let ifindex = netns::ifindex(&spec.interface)
            .ok_or_else(|| UsageError::unknown_interface(&spec.interface, &spec.netns))?;

        let ingress: &mut Xdp = program(&mut ebpf, "tracer_ingress")?.try_into()?;
        ingress.load().context("loading the XDP program")?;
        ingress
            .attach_to_if_index(ifindex, XdpMode::default())
            .map_err(|err| match err {
                ProgramError::SyscallError(ref syscall)
                    if syscall.io_error.raw_os_error() == Some(libc::EBUSY) =>
                {
                    UsageError::XdpTaken {
                        port: spec.to_string(),
                        reason: "another XDP program is attached there".to_owned(),
                    }
                    .into()
                }
                err => anyhow::Error::from(err).context(format!("attaching XDP to {spec}")),
            })?;

        let egress: &mut SchedClassifier = program(&mut ebpf, "tracer_egress")?.try_into()?;
        egress.load().context("loading the tc program")?;
        egress
            .attach(&spec.interface, TcAttachType::Egress)
            .with_context(|| format!("attaching tc egress to {spec}"))?;

        Ok(Self {
            spec: spec.clone(),
            netns_inode,
            ifindex,
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
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut aya::programs::Program> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing from the object"))
}
