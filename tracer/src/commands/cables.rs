//! `tracer cables`: which port is cabled to which, from tracer's own frames, LLDP and the
//! ports' link state.

use std::time::Duration;

use tracer_evidence::{PortRef, cable_verdict, words::link_mismatch};

use crate::{
    cli::CablesArgs,
    collect::{
        cables::{self, CableOptions},
        ebpf_log_level,
    },
    error::UsageError,
    lock::{self, PortLocks},
    output, preflight,
    render::cables::{CablesReport, PairReport, PairVerdict, text},
    spec::PortSpec,
};

/// Returns the exit code: the first pair's `cable` class when it is not cabled to itself, else 0.
pub fn run(args: &CablesArgs, verbosity: u8) -> anyhow::Result<u8> {
    preflight::check()?;
    let (mut ports, limitations) = if args.ports.is_empty() && args.pairs.is_empty() {
        cables::physical_ports()
    } else {
        (args.ports.clone(), Vec::new())
    };
    for (a, b) in &args.pairs {
        for spec in [a, b] {
            if !ports.contains(spec) {
                ports.push(spec.clone());
            }
        }
    }
    if ports.is_empty() {
        return Err(UsageError::Argument(
            "no physical port found in any namespace: name the ports (tracer cables [NETNS/]IFNAME …)"
                .to_owned(),
        )
        .into());
    }
    let options = CableOptions {
        listen: Duration::from_secs(args.listen),
        bring_up: true,
        log_level: ebpf_log_level(verbosity),
    };
    // diagnose's probes and a map's frames on the same ports take turns.
    let _locks = PortLocks::acquire(&ports.iter().collect::<Vec<_>>(), lock::WAIT)?;
    let mut map = cables::map(&ports, &options)?;
    map.limitations.extend(limitations);
    let pairs: Vec<PairReport> = args
        .pairs
        .iter()
        .map(|(a, b)| {
            let (a, b) = (port_ref(a), port_ref(b));
            let verdict = cable_verdict(&map, &a, &b).map(PairVerdict::new);
            let speed_mismatch = map
                .port(&a)
                .zip(map.port(&b))
                .and_then(|(a, b)| link_mismatch(a, b));
            PairReport {
                a,
                b,
                verdict,
                speed_mismatch,
            }
        })
        .collect();
    let exit_code = pairs
        .iter()
        .find_map(|pair| pair.verdict.as_ref().map(|verdict| verdict.exit_code))
        .unwrap_or(0);
    let report = CablesReport { map: &map, pairs };
    if args.json {
        output::print_line(&serde_json::to_string(&report)?)?;
    } else {
        output::print(&text(&report))?;
    }
    Ok(exit_code)
}

fn port_ref(spec: &PortSpec) -> PortRef {
    PortRef {
        netns: spec.netns.clone(),
        interface: spec.interface.clone(),
    }
}
