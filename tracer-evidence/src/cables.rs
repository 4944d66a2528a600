//! The cable map: which port's frames arrive at which port, each port's link partner as its
//! LLDP frames name it, and each port's link state and history. Plain data, saved by
//! `tracer cables --json` and in diagnose's evidence.

use serde::{Deserialize, Serialize};

use crate::verdict::PortRef;

/// What `tracer cables` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CableMap {
    pub ports: Vec<CablePort>,
    /// Milliseconds from the first frame sent to the last look at the ports.
    pub duration_ms: u64,
    /// How long LLDP frames were waited for beyond that, in seconds (`--listen`).
    pub listened_secs: u64,
    /// What could not be looked at, and why.
    pub limitations: Vec<String>,
}

impl CableMap {
    pub fn port(&self, port: &PortRef) -> Option<&CablePort> {
        self.ports.iter().find(|candidate| candidate.port == *port)
    }

    /// The ports `port`'s frames arrived at, in both directions of a crossed pair too.
    pub fn reaches(&self, port: &PortRef) -> &[PortRef] {
        self.port(port).map_or(&[], |port| port.reaches.as_slice())
    }
}

/// One port of the map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CablePort {
    pub port: PortRef,
    /// Frames tracer sent from the port.
    pub sent: u32,
    /// Of those, how many its tc egress program saw leave.
    pub left: u32,
    /// The ports where at least one of its frames arrived.
    pub reaches: Vec<PortRef>,
    /// The ports whose frames arrived here.
    pub reached_by: Vec<PortRef>,
    /// The far end, as its last LLDP frame named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<LinkPartner>,
    /// The port's link, read before and after the frames were sent.
    pub link: PortLinkState,
    /// tracer set the port up to send, and down again afterwards.
    pub brought_up: bool,
    /// Why no frame was sent from it, when none was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// The far end of a cable as its LLDP frames (IEEE 802.1AB) describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkPartner {
    /// Chassis ID, as text (a MAC address as aa:bb:cc:dd:ee:ff).
    pub chassis_id: String,
    /// Port ID, as text.
    pub port_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_description: Option<String>,
    /// Seconds the far end says the information holds.
    pub ttl_secs: u16,
    /// From the IEEE 802.3 MAC/PHY TLV: whether the far end autonegotiates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoneg: Option<bool>,
    /// From the same TLV: the far end's operational MAU type (RFC 4836).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mau_type: Option<u16>,
}

impl LinkPartner {
    /// "tor-3 Ethernet12": the system's name (else its chassis id) and the port's, with the
    /// port's description when it says more.
    pub fn label(&self) -> String {
        let system = self.system_name.as_deref().unwrap_or(&self.chassis_id);
        match self.port_description.as_deref() {
            Some(description) if !description.is_empty() && description != self.port_id => {
                format!("{system} {} ({description})", self.port_id)
            }
            _ => format!("{system} {}", self.port_id),
        }
    }
}

/// A port's link as the kernel and its driver report it. Whatever the driver does not give is
/// `None` and named in `missing`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortLinkState {
    pub admin_up: bool,
    pub carrier: bool,
    /// `IFLA_CARRIER_UP_COUNT` / `IFLA_CARRIER_DOWN_COUNT` at the end of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier_up_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier_down_count: Option<u32>,
    /// Times carrier went down while tracer looked (the down count's growth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier_downs_during_run: Option<u32>,
    /// ethtool: Mb/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_mbps: Option<u32>,
    /// ethtool: "full" or "half".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoneg: Option<bool>,
    /// ethtool's extended link state while the link is down, e.g. "no_cable".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_substate: Option<u8>,
    /// Link-down events the driver counted (ethtool's `link_down_events`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_down_events: Option<u32>,
    /// The driver's firmware LLDP agent, where it has one (ice's `fw-lldp-agent` private
    /// flag): when on, the firmware consumes LLDP frames before the kernel sees them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_lldp_agent: Option<bool>,
    /// What the kernel or driver did not report, by name (e.g. "extended link state").
    pub missing: Vec<String>,
}
