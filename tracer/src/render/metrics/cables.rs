//! The monitor's cabling series: each port's carrier history (rtnetlink's counts, read at every
//! look) and what the last cable map found (whether the pair's ports reach each other, what
//! each reaches instead, its speed), so that a fleet dashboard shows a miscabled node.

use super::{Family, Format, Type, identity};
use crate::render::metrics::MonitoredPort;

/// What the last cable map found of one monitored port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortCable {
    /// Its frames arrived at the other port of its pair.
    pub reaches_peer: bool,
    /// Where its frames arrived, and the far end its LLDP frames named: (seen by, far end),
    /// seen by "frames" or "lldp".
    pub far_ends: Vec<(&'static str, String)>,
    pub speed_mbps: Option<u32>,
}

const CARRIER_UP: Family = Family {
    name: "tracer_link_carrier_up",
    kind: Type::Counter,
    help: "Times a configured port's (role, pair, port) carrier came up, since its device \
           appeared (rtnetlink's IFLA_CARRIER_UP_COUNT; a device created anew starts over).",
};
const CARRIER_DOWN: Family = Family {
    name: "tracer_link_carrier_down",
    kind: Type::Counter,
    help: "Times a configured port's (role, pair, port) carrier went down, since its device \
           appeared (IFLA_CARRIER_DOWN_COUNT): a port that flaps counts up here.",
};
const REACHES_PEER: Family = Family {
    name: "tracer_cable_reaches_peer",
    kind: Type::Gauge,
    help: "1 when tracer's own frames (EtherType 0x88B5) from a configured port (role, pair, \
           port) arrived at the other port of its pair at the last cable map, 0 when they did \
           not: the ports are not cabled to each other. Absent until a map ran.",
};
const FAR_END: Family = Family {
    name: "tracer_cable_far_end",
    kind: Type::Info,
    help: "What a configured port (role, pair, port) reached at the last cable map: a local \
           port its frames arrived at (seen_by frames), or the switch port its LLDP frames \
           named (seen_by lldp).",
};
const SPEED: Family = Family {
    name: "tracer_link_speed_mbps",
    kind: Type::Gauge,
    help: "A configured port's (role, pair, port) speed in Mb/s as ethtool reported it at the \
           last cable map.",
};
const MAPPED_AT: Family = Family {
    name: "tracer_cable_map_timestamp_seconds",
    kind: Type::Gauge,
    help: "When the last cable map ran (Unix time): at start and on SIGHUP.",
};

/// The cabling series of `ports`; `mapped_at` is when the last map ran, if one did.
pub(super) fn write(
    out: &mut String,
    format: Format,
    ports: &[MonitoredPort],
    mapped_at: Option<u64>,
) {
    let counts: Vec<_> = ports
        .iter()
        .filter_map(|port| Some((port, port.attached.as_ref()?.carrier_counts?)))
        .collect();
    let up: Vec<_> = counts
        .iter()
        .map(|(port, (up, _))| (identity(port), u64::from(*up)))
        .collect();
    CARRIER_UP.write(out, format, &up);
    let down: Vec<_> = counts
        .iter()
        .map(|(port, (_, down))| (identity(port), u64::from(*down)))
        .collect();
    CARRIER_DOWN.write(out, format, &down);

    let mapped: Vec<(&MonitoredPort, &PortCable)> = ports
        .iter()
        .filter_map(|port| Some((port, port.cable.as_ref()?)))
        .collect();
    let reaches: Vec<_> = mapped
        .iter()
        .map(|(port, cable)| (identity(port), u64::from(cable.reaches_peer)))
        .collect();
    REACHES_PEER.write(out, format, &reaches);
    let far_ends: Vec<_> = mapped
        .iter()
        .flat_map(|(port, cable)| {
            cable.far_ends.iter().map(|(seen_by, far_end)| {
                let mut labels = identity(port);
                labels.extend([("far_end", far_end.as_str()), ("seen_by", *seen_by)]);
                (labels, 1)
            })
        })
        .collect();
    FAR_END.write(out, format, &far_ends);
    let speeds: Vec<_> = mapped
        .iter()
        .filter_map(|(port, cable)| Some((identity(port), u64::from(cable.speed_mbps?))))
        .collect();
    SPEED.write(out, format, &speeds);
    if let Some(at) = mapped_at {
        MAPPED_AT.write(out, format, &[(vec![], at)]);
    }
}
