//! The watched ports' cabling as observed while the test ran, without sending anything: the
//! far end each port's arriving LLDP frames named, and how often its carrier went down.

use tracer_evidence::{CableMap, CablePort, PortRef};

use super::observe::WatchedPort;
use crate::collect::cables::port_link_state;

/// Each watched port with its LLDP partner and its link now, its carrier downs counted from
/// when watch first found it. No frame of tracer's was sent (`sent` is 0).
pub(super) fn observed(ports: &[WatchedPort], seconds: f64) -> CableMap {
    let ports = ports
        .iter()
        .map(|port| {
            let spec = port.current_spec();
            CablePort {
                port: PortRef {
                    netns: spec.netns.clone(),
                    interface: spec.interface.clone(),
                },
                sent: 0,
                left: 0,
                reaches: Vec::new(),
                reached_by: Vec::new(),
                partner: port.partner.clone(),
                link: port_link_state(&spec, port.first_carrier_downs, false),
                brought_up: false,
                skipped: None,
            }
        })
        .collect();
    CableMap {
        ports,
        duration_ms: (seconds * 1000.0) as u64,
        ..CableMap::default()
    }
}
