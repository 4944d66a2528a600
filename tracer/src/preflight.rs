//! What tracer needs from the machine, checked before anything is loaded.

use std::path::Path;

use crate::{btf::VMLINUX_BTF, error::UsageError};

/// Capabilities needed: load BPF and read kernel memory (tp_btf), attach to interfaces,
/// enter other network namespaces.
const REQUIRED_CAPABILITIES: [(u32, &str); 4] = [
    (12, "CAP_NET_ADMIN"),
    (21, "CAP_SYS_ADMIN"),
    (38, "CAP_PERFMON"),
    (39, "CAP_BPF"),
];

fn effective_capabilities() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// The capabilities tracer needs that this process lacks (none as root).
pub fn missing_capabilities() -> Vec<&'static str> {
    let effective = effective_capabilities();
    REQUIRED_CAPABILITIES
        .iter()
        .filter(|(bit, _)| effective & (1 << bit) == 0)
        .map(|(_, name)| *name)
        .collect()
}

/// Checks privileges alone, for what loads no BPF (`lab`).
pub fn check_privileges() -> Result<(), UsageError> {
    let missing = missing_capabilities();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(UsageError::Privileges {
            missing: missing.join(", "),
        })
    }
}

/// Checks privileges, then kernel BTF.
pub fn check() -> Result<(), UsageError> {
    check_privileges()?;
    if !Path::new(VMLINUX_BTF).exists() {
        return Err(UsageError::NoBtf {
            path: VMLINUX_BTF.to_owned(),
        });
    }
    Ok(())
}
