//! Where the pair's ports are really cabled, for both ways of gathering: when frames left one
//! port and never reached the other, tracer's own frames (EtherType 0x88B5, no IP) from both
//! ports and from the ports named with `--cable-ports` (by default every physical port that is
//! up, but the machine's way out) say where each arrives. IP traffic is not touched; a port that is down is not set up here.

use std::time::Duration;

use tracer_evidence::{CableMap, Evidence, Finding, diagnose};

use super::Pair;
use crate::{
    collect::{
        cables::{self, CableOptions},
        ebpf_log_level,
    },
    spec::PortSpec,
};

/// Maps the cabling into `evidence.cables` when the evidence so far says frames were lost.
/// What was already observed of the pair's ports (their LLDP partners, carrier downs over the
/// whole run) is kept over the map's own shorter look.
pub(super) fn look_when_frames_lost(pair: &Pair, evidence: &mut Evidence, verbosity: u8) {
    if !matches!(diagnose(evidence).finding, Finding::FramesLost(_)) {
        return;
    }
    match map(pair, verbosity) {
        Ok(mut map) => {
            if let Some(observed) = evidence.cables.take() {
                keep_observed(&mut map, observed);
            }
            evidence.cables = Some(map);
        }
        Err(err) => evidence
            .environment
            .limitations
            .push(format!("the cabling could not be looked at: {err:#}")),
    }
}

fn map(pair: &Pair, verbosity: u8) -> anyhow::Result<CableMap> {
    map_around(
        &[pair.initiator.clone(), pair.target.clone()],
        &pair.cable_ports,
        verbosity,
    )
}

/// Maps `ports` first, then `beside` them, or, when none is named, every other physical port but
/// the one the machine's default route leaves by (named ports keep tracer's frames off the
/// machine's other ports); none is set up.
/// The caller holds the ports' run locks, or runs where it holds none (a lock is per open file:
/// taking it again here would wait for ourselves).
pub fn map_around(
    ports: &[PortSpec],
    beside: &[PortSpec],
    verbosity: u8,
) -> anyhow::Result<CableMap> {
    let (others, limitations) = if beside.is_empty() {
        cables::physical_ports_beside_a_test()
    } else {
        (beside.to_vec(), Vec::new())
    };
    let mut ports: Vec<PortSpec> = ports.to_vec();
    for port in others {
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    let options = CableOptions {
        listen: Duration::ZERO,
        bring_up: false,
        log_level: ebpf_log_level(verbosity),
    };
    let mut map = cables::map(&ports, &options)?;
    map.limitations.extend(limitations);
    Ok(map)
}

/// Fills the map's ports with what was observed of them before: an LLDP partner the map's
/// short look did not see, and carrier downs counted over the whole run.
fn keep_observed(map: &mut CableMap, observed: CableMap) {
    for seen in observed.ports {
        let Some(port) = map.ports.iter_mut().find(|port| port.port == seen.port) else {
            continue;
        };
        if port.partner.is_none() {
            port.partner = seen.partner;
        }
        if seen.link.carrier_downs_during_run.is_some() {
            port.link.carrier_downs_during_run = seen.link.carrier_downs_during_run;
        }
    }
    map.limitations.extend(observed.limitations);
}

#[cfg(test)]
mod tests {
    use tracer_evidence::{CablePort, LinkPartner, PortLinkState, PortRef};

    use super::*;

    fn port(interface: &str, downs: Option<u32>, partner: Option<&str>) -> CablePort {
        CablePort {
            port: PortRef {
                netns: String::new(),
                interface: interface.to_owned(),
            },
            sent: 0,
            left: 0,
            reaches: Vec::new(),
            reached_by: Vec::new(),
            partner: partner.map(|name| LinkPartner {
                system_name: Some(name.to_owned()),
                ..LinkPartner::default()
            }),
            link: PortLinkState {
                carrier_downs_during_run: downs,
                ..PortLinkState::default()
            },
            brought_up: false,
            skipped: None,
        }
    }

    #[test]
    fn the_runs_carrier_downs_and_partners_outlast_the_maps_look() {
        let mut map = CableMap {
            ports: vec![port("a", Some(0), None), port("c", Some(0), Some("map"))],
            ..CableMap::default()
        };
        let observed = CableMap {
            ports: vec![
                port("a", Some(4), Some("tor")),
                port("c", None, Some("seen")),
            ],
            ..CableMap::default()
        };
        keep_observed(&mut map, observed);
        assert_eq!(map.ports[0].link.carrier_downs_during_run, Some(4));
        assert_eq!(
            map.ports[0]
                .partner
                .as_ref()
                .unwrap()
                .system_name
                .as_deref(),
            Some("tor")
        );
        // The map's own partner and count stand where nothing longer was observed.
        assert_eq!(map.ports[1].link.carrier_downs_during_run, Some(0));
        assert_eq!(
            map.ports[1]
                .partner
                .as_ref()
                .unwrap()
                .system_name
                .as_deref(),
            Some("map")
        );
    }
}
