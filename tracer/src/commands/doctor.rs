//! `tracer doctor`: what this kernel offers tracer, and what tracer uses where something lacks.

use std::path::Path;

use serde::Serialize;

use crate::{
    btf::{Btf, VMLINUX_BTF},
    cli::DoctorArgs,
    collect::{
        drops::{DropDetail, DropPrograms},
        ebpf_log_level,
        ports::TcAttachment,
    },
    error::UsageError,
    output, pins, preflight,
};

/// One capability: whether the kernel has it, and what tracer does about it.
#[derive(Debug, Serialize)]
pub struct Capability {
    pub name: &'static str,
    /// `None`: not probed, because tracer does not use it.
    pub present: Option<bool>,
    /// What tracer uses: the capability itself, or its stand-in.
    pub tracer_uses: String,
}

#[derive(Debug, Serialize)]
pub struct DoctorReport {
    pub kernel: String,
    pub capabilities: Vec<Capability>,
}

pub fn run(args: &DoctorArgs, verbosity: u8) -> anyhow::Result<u8> {
    preflight::check()?;
    let report = examine(verbosity)?;
    if args.json {
        output::print_line(&serde_json::to_string(&report)?)?;
    } else {
        let mut out = format!("kernel {}\n", report.kernel);
        for capability in &report.capabilities {
            out.push_str(&format!(
                "  {:<22} {:<4} {}\n",
                capability.name,
                match capability.present {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "-",
                },
                capability.tracer_uses
            ));
        }
        output::print(&out)?;
    }
    Ok(0)
}

fn examine(verbosity: u8) -> anyhow::Result<DoctorReport> {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_owned())
        .unwrap_or_default();
    let btf = Btf::from_sys_fs().ok();
    let drop_reasons = btf
        .as_ref()
        .is_some_and(|btf| btf.enum_variants("skb_drop_reason").is_ok());
    // The real test of the drop probe is attaching it: it says which program this kernel took.
    let drop_programs = DropPrograms::attach(&ebpf_log_level(verbosity)).map_err(|err| {
        UsageError::KernelLayout(format!("the kfree_skb probe cannot be attached: {err:#}"))
    })?;
    let tp_btf = drop_programs.detail == DropDetail::Reason;
    drop(drop_programs);
    let tcx = TcAttachment::of_running_kernel() == TcAttachment::Tcx;
    let capabilities = vec![
        Capability {
            name: "BTF",
            present: Some(btf.is_some()),
            tracer_uses: format!("{VMLINUX_BTF}: struct offsets for the drop probe"),
        },
        Capability {
            name: "tcx",
            present: Some(tcx),
            tracer_uses: if tcx {
                "tcx links: ingress first, egress last".to_owned()
            } else {
                "clsact qdisc filters (the qdisc is added when missing and removed on exit; after SIGKILL it stays)".to_owned()
            },
        },
        Capability {
            name: "XDP",
            present: Some(true),
            tracer_uses:
                "only with --ingress-hook xdp (frags-aware); tc wherever XDP cannot attach"
                    .to_owned(),
        },
        Capability {
            name: "tp_btf kfree_skb",
            present: Some(tp_btf),
            tracer_uses: if tp_btf {
                "tp_btf on kfree_skb".to_owned()
            } else {
                "the kfree_skb raw tracepoint".to_owned()
            },
        },
        Capability {
            name: "drop reasons",
            present: Some(drop_reasons),
            tracer_uses: if drop_reasons {
                "enum skb_drop_reason names".to_owned()
            } else {
                "the function that freed the packet, from /proc/kallsyms".to_owned()
            },
        },
        Capability {
            name: "bpffs",
            present: Some(pins::on_bpffs(Path::new(pins::BPF_FS_MOUNT_POINT))),
            tracer_uses: "monitor's pinned counters (tracer mounts it when missing)".to_owned(),
        },
        Capability {
            name: "fentry",
            present: None,
            tracer_uses: "not needed: netfilter rules are found from their counters".to_owned(),
        },
    ];
    Ok(DoctorReport {
        kernel,
        capabilities,
    })
}
