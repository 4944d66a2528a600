//! The verdict classes: the one table of their names, exit codes, colours and meanings. The CLI
//! help is written from it, and a test checks README.md, docs/SCHEMA.md and the SPDK hook
//! against it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictClass {
    Ok,
    Cable,
    Neighbour,
    Netfilter,
    Route,
    Interface,
    Unknown,
    /// Frames larger than a hop's MTU die there: the MTUs along the path differ.
    Mtu,
    /// A BPF program another tool attached to a port consumed the probes.
    Program,
}

/// One row of the class table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassInfo {
    pub class: VerdictClass,
    pub name: &'static str,
    /// Part of the interface: scripts depend on it.
    pub exit_code: u8,
    /// The colour pictures draw it in.
    pub colour: &'static str,
    /// What it means, in one line for `--help`.
    pub meaning: &'static str,
}

/// Every class, in exit-code order.
pub const CLASSES: [ClassInfo; 9] = [
    ClassInfo {
        class: VerdictClass::Ok,
        name: "ok",
        exit_code: 0,
        colour: "#2e7d32",
        meaning: "ARP, ICMP both ways and the port's path work",
    },
    ClassInfo {
        class: VerdictClass::Cable,
        name: "cable",
        exit_code: 10,
        colour: "#6a1b9a",
        meaning: "frames leave one port and never reach its peer (no carrier, a broken hop, or cabled elsewhere)",
    },
    ClassInfo {
        class: VerdictClass::Neighbour,
        name: "neighbour",
        exit_code: 11,
        colour: "#00838f",
        meaning: "the target does not answer ARP, or the initiator's entry holds another MAC",
    },
    ClassInfo {
        class: VerdictClass::Netfilter,
        name: "netfilter",
        exit_code: 12,
        colour: "#c62828",
        meaning: "a netfilter hook dropped the packets (namespace, table, chain and rule named)",
    },
    ClassInfo {
        class: VerdictClass::Route,
        name: "route",
        exit_code: 13,
        colour: "#e65100",
        meaning: "no route, a route by another interface, or strict rp_filter drops what arrives",
    },
    ClassInfo {
        class: VerdictClass::Interface,
        name: "interface",
        exit_code: 14,
        colour: "#5d4037",
        meaning: "a port is missing, administratively down, or in another namespace",
    },
    ClassInfo {
        class: VerdictClass::Unknown,
        name: "unknown",
        exit_code: 15,
        colour: "#546e7a",
        meaning: "a drop no class fits (its kernel drop reason and place named), or frames lost as tracer attached",
    },
    ClassInfo {
        class: VerdictClass::Mtu,
        name: "mtu",
        exit_code: 16,
        colour: "#1565c0",
        meaning: "jumbo frames die where small ones pass: both MTUs and the dropping hop named",
    },
    ClassInfo {
        class: VerdictClass::Program,
        name: "program",
        exit_code: 17,
        colour: "#ad1457",
        meaning: "another tool's BPF program on a port (XDP, tc) takes the packets: it is named",
    },
];

impl VerdictClass {
    pub fn info(self) -> &'static ClassInfo {
        CLASSES
            .iter()
            .find(|info| info.class == self)
            .expect("every class is in the table")
    }

    pub fn exit_code(self) -> u8 {
        self.info().exit_code
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    pub fn colour(self) -> &'static str {
        self.info().colour
    }

    /// The class with this exit code, if any.
    pub fn from_exit_code(code: i32) -> Option<Self> {
        CLASSES
            .iter()
            .find(|info| i32::from(info.exit_code) == code)
            .map(|info| info.class)
    }
}

/// The table as `--help` shows it: one line per class.
pub fn exit_code_help() -> String {
    CLASSES
        .iter()
        .map(|info| format!("  {:<10} {:<3} {}", info.name, info.exit_code, info.meaning))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_exit_codes_are_unique() {
        for (i, a) in CLASSES.iter().enumerate() {
            for b in &CLASSES[i + 1..] {
                assert_ne!(a.class, b.class);
                assert_ne!(a.name, b.name);
                assert_ne!(a.exit_code, b.exit_code);
            }
        }
    }

    #[test]
    fn the_serialized_name_is_the_table_name() {
        for info in CLASSES {
            let json = serde_json::to_value(info.class).unwrap();
            assert_eq!(json, info.name);
            assert_eq!(
                VerdictClass::from_exit_code(info.exit_code.into()),
                Some(info.class)
            );
        }
    }
}
