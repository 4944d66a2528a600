//! tracer-testkit: what the integration tests play "another tool" with. Not installed.
//!
//! `drop-icmp NETNS/IFNAME READY_FILE`: attaches a tc ingress program that drops IPv4 ICMP,
//! first in the port's chain (as a tool attached before tracer would be), writes READY_FILE,
//! and holds it until killed: its tcx link goes with the process.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    programs::{
        LinkOrder, SchedClassifier, TcAttachType,
        tc::{self, NlOptions, TcAttachOptions},
    },
};
use tracer::{collect::ports::TcAttachment, netns::NetnsGuard, spec::PortSpec};

static DROP_ICMP_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-test-drop-icmp"));

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [command, spec, ready] if command == "drop-icmp" => spec
            .parse::<PortSpec>()
            .map_err(|err| anyhow!("{err}"))
            .and_then(|spec| drop_icmp(&spec, &PathBuf::from(ready))),
        _ => Err(anyhow!(
            "usage: tracer-testkit drop-icmp NETNS/IFNAME READY_FILE"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tracer-testkit: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn drop_icmp(spec: &PortSpec, ready: &PathBuf) -> anyhow::Result<()> {
    let mut ebpf = Ebpf::load(DROP_ICMP_OBJECT).context("loading test_drop_icmp")?;
    let program: &mut SchedClassifier = ebpf
        .program_mut("test_drop_icmp")
        .ok_or_else(|| anyhow!("test_drop_icmp missing"))?
        .try_into()?;
    program.load()?;
    let options = match TcAttachment::of_running_kernel() {
        TcAttachment::Tcx => TcAttachOptions::TcxOrder(LinkOrder::first()),
        TcAttachment::Clsact => TcAttachOptions::Netlink(NlOptions::default()),
    };
    {
        let _inside = NetnsGuard::enter(&spec.netns)?;
        if TcAttachment::of_running_kernel() == TcAttachment::Clsact {
            match tc::qdisc_add_clsact(&spec.interface) {
                Ok(()) => {}
                Err(tc::TcError::NetlinkError(err)) if err.raw_os_error() == Some(libc::EEXIST) => {
                }
                Err(err) => return Err(err).context("adding a clsact qdisc"),
            }
        }
        program
            .attach_with_options(&spec.interface, TcAttachType::Ingress, options)
            .with_context(|| format!("attaching to {spec}"))?;
    }
    std::fs::write(ready, b"").context("writing the ready file")?;
    loop {
        std::thread::park();
    }
}
