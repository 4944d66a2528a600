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
    /// Capabilities this process lacks: without them the attach test was not run.
    pub missing_privileges: Vec<&'static str>,
    /// One line: whether tracer can work here.
    pub summary: String,
}

/// Reads what any user can read; as root, also attaches the drop probe, the real test. Exit 0
/// when tracer can work here (as root), 2 when it cannot.
pub fn run(args: &DoctorArgs, verbosity: u8) -> anyhow::Result<u8> {
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
        out.push_str(&report.summary);
        out.push('\n');
        output::print(&out)?;
    }
    let btf = report
        .capabilities
        .iter()
        .any(|capability| capability.name == "BTF" && capability.present == Some(true));
    Ok(if btf { 0 } else { 2 })
}

fn examine(verbosity: u8) -> anyhow::Result<DoctorReport> {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_owned())
        .unwrap_or_default();
    let btf = Btf::from_sys_fs().ok();
    let drop_reasons = btf
        .as_ref()
        .is_some_and(|btf| btf.enum_variants("skb_drop_reason").is_ok());
    let missing_privileges = preflight::missing_capabilities();
    // The real test of the drop probe is attaching it: it says which program this kernel took.
    // Without the privileges to load it, the BTF tells instead (tp_btf needs drop reasons).
    let tp_btf = if missing_privileges.is_empty() && btf.is_some() {
        let drop_programs = DropPrograms::attach(&ebpf_log_level(verbosity)).map_err(|err| {
            UsageError::KernelLayout(format!("the kfree_skb probe cannot be attached: {err:#}"))
        })?;
        drop_programs.detail == DropDetail::Reason
    } else {
        drop_reasons
    };
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
    let summary = match (btf.is_some(), missing_privileges.is_empty()) {
        (false, _) => format!(
            "tracer cannot work here: this kernel has no BTF ({VMLINUX_BTF}); it needs CONFIG_DEBUG_INFO_BTF=y"
        ),
        (true, true) => format!(
            "tracer can work here: tc on {}, drops through {}",
            if tcx { "tcx" } else { "clsact" },
            if tp_btf {
                "tp_btf with reasons"
            } else {
                "the raw tracepoint"
            }
        ),
        (true, false) => format!(
            "tracer can work here as root (this user lacks {}; the drop probe was not attached)",
            missing_privileges.join(", ")
        ),
    };
    Ok(DoctorReport {
        kernel,
        capabilities,
        missing_privileges,
        summary,
    })
}
