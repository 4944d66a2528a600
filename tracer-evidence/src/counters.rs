//! Packet and drop counts of the watched ports.

use std::fmt;

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{MapAccess, Visitor},
    ser::SerializeMap,
};
use tracer_common::PacketKind;

/// Frames of each kind seen in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts([u64; PacketKind::COUNT as usize]);

impl KindCounts {
    pub fn get(&self, kind: PacketKind) -> u64 {
        self.0[kind as usize]
    }

    pub fn set(&mut self, kind: PacketKind, count: u64) {
        self.0[kind as usize] = count;
    }

    /// Frames of any of `kinds`.
    pub fn sum_of(&self, kinds: &[PacketKind]) -> u64 {
        kinds.iter().map(|kind| self.get(*kind)).sum()
    }

    /// These counts and `other` together.
    pub fn plus(&self, other: &Self) -> Self {
        Self(std::array::from_fn(|i| self.0[i] + other.0[i]))
    }

    /// What was counted since `before` (never below zero).
    pub fn since(&self, before: &Self) -> Self {
        Self(std::array::from_fn(|i| {
            self.0[i].saturating_sub(before.0[i])
        }))
    }
}

/// Kinds this build does not know (from a newer tracer) are ignored; missing ones are zero.
impl<'de> Deserialize<'de> for KindCounts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CountsVisitor;
        impl<'de> Visitor<'de> for CountsVisitor {
            type Value = KindCounts;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a map from packet kind to count")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KindCounts, A::Error> {
                let mut counts = KindCounts::default();
                while let Some((name, count)) = map.next_entry::<String, u64>()? {
                    if let Some(kind) = PacketKind::ALL.iter().find(|kind| kind.name() == name) {
                        counts.set(*kind, count);
                    }
                }
                Ok(counts)
            }
        }
        deserializer.deserialize_map(CountsVisitor)
    }
}

impl Serialize for KindCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(PacketKind::ALL.len()))?;
        for kind in PacketKind::ALL {
            map.serialize_entry(kind.name(), &self.get(kind))?;
        }
        map.end()
    }
}

/// Counters of one watched port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceCounters {
    /// Namespace name; empty for tracer's own.
    pub netns: String,
    pub interface: String,
    /// Where ingress was counted: "tc", or "xdp" when asked for and attachable.
    pub ingress_hook: String,
    pub ingress: KindCounts,
    pub egress: KindCounts,
}

/// The `netns` of drops away from every watched place, counted together.
pub const ELSEWHERE: &str = "*";

/// Kernel drops at one site, with the reason's name from the running kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCount {
    /// Namespace name; empty for tracer's own; `net:[INODE]` for an unnamed one; [`ELSEWHERE`]
    /// for the drops away from the watched places, counted together.
    pub netns: String,
    /// Interface name; empty when the skb had no device or it is not a watched port.
    pub interface: String,
    pub ifindex: u32,
    pub reason: String,
    /// Where the kernel freed the skb (SYMBOL+0xOFFSET), on kernels without drop reasons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub protocol: String,
    pub count: u64,
}

impl DropCount {
    /// Where the drop happened, for people: the interface, else what the skb had instead.
    pub fn place(&self) -> String {
        match (self.interface.is_empty(), self.ifindex) {
            (false, _) => self.interface.clone(),
            (true, 0) => "no device (a local socket)".to_owned(),
            (true, ifindex) => format!("ifindex {ifindex}"),
        }
    }
}

/// The name of an EtherType, as reported with drops.
pub fn protocol_name(ethertype: u16) -> String {
    match ethertype {
        0x0800 => "ipv4".to_owned(),
        0x0806 => "arp".to_owned(),
        0x86dd => "ipv6".to_owned(),
        0x8100 => "vlan".to_owned(),
        0 => "none".to_owned(),
        other => format!("0x{other:04x}"),
    }
}

/// What `tracer counters` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersReport {
    pub interfaces: Vec<InterfaceCounters>,
    /// Drops on the watched ports.
    pub drops: Vec<DropCount>,
    /// Drops anywhere else (other interfaces, other namespaces, no device), kept apart.
    pub other_drops: Vec<DropCount>,
    /// Events the kernel programs saw but could not record.
    pub lost_events: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let mut ingress = KindCounts::default();
        ingress.set(PacketKind::IcmpEchoRequest, 5);
        let report = CountersReport {
            interfaces: vec![InterfaceCounters {
                netns: "cvl_0_0_ns_spdk".into(),
                interface: "cvl_0_0".into(),
                ingress_hook: "tc".into(),
                ingress,
                egress: KindCounts::default(),
            }],
            drops: vec![DropCount {
                netns: "cvl_0_0_ns_spdk".into(),
                interface: "cvl_0_0".into(),
                ifindex: 7,
                reason: "NETFILTER_DROP".into(),
                location: None,
                protocol: protocol_name(0x0800),
                count: 5,
            }],
            other_drops: vec![],
            lost_events: 0,
        };
        let json = serde_json::to_value(&report).unwrap();
        let port = &json["interfaces"][0];
        assert_eq!(port["netns"], "cvl_0_0_ns_spdk");
        assert_eq!(port["interface"], "cvl_0_0");
        assert_eq!(port["ingress_hook"], "tc");
        assert_eq!(port["ingress"]["icmp_echo_request"], 5);
        let kinds: Vec<&String> = port["egress"].as_object().unwrap().keys().collect();
        let expected: Vec<&str> = PacketKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(kinds, expected);
        assert_eq!(json["drops"][0]["reason"], "NETFILTER_DROP");
        assert_eq!(json["drops"][0]["protocol"], "ipv4");
        assert_eq!(json["drops"][0]["count"], 5);
        assert_eq!(json["lost_events"], 0);
    }

    #[test]
    fn protocol_names() {
        assert_eq!(protocol_name(0x0806), "arp");
        assert_eq!(protocol_name(0x88cc), "0x88cc");
    }
}

#[cfg(test)]
mod round_trip {
    use super::*;

    #[test]
    fn kind_counts_read_back_what_they_wrote() {
        let mut counts = KindCounts::default();
        counts.set(PacketKind::TcpSyn, 3);
        counts.set(PacketKind::ArpReply, 1);
        let json = serde_json::to_string(&counts).unwrap();
        assert_eq!(serde_json::from_str::<KindCounts>(&json).unwrap(), counts);
        // A kind from a newer tracer is ignored, a missing one is zero.
        let read: KindCounts =
            serde_json::from_str(r#"{"tcp_syn":3,"from_the_future":9}"#).unwrap();
        assert_eq!(read.get(PacketKind::TcpSyn), 3);
        assert_eq!(read.get(PacketKind::ArpReply), 0);
    }
}
