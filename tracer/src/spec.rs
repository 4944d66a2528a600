//! Port specs: `[NETNS/]IFNAME`.

use std::{fmt, str::FromStr};

use thiserror::Error;

/// Linux limits interface names to IFNAMSIZ - 1 bytes.
const IFNAME_MAX: usize = 15;

/// Where a port is expected: an interface name inside a named network namespace (as listed in
/// /var/run/netns), or inside tracer's own namespace when `netns` is empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortSpec {
    pub netns: String,
    pub interface: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("port spec `{0}`: expected [NETNS/]IFNAME, e.g. cvl_0_0_ns_spdk/cvl_0_0")]
    Shape(String),
    #[error(
        "port spec `{spec}`: interface name `{interface}` is not a valid Linux interface name (1-15 characters, no '/', ':' or whitespace)"
    )]
    Interface { spec: String, interface: String },
    #[error(
        "port spec `{spec}`: namespace name `{netns}` is not a valid name (no whitespace, not `.` or `..`)"
    )]
    Netns { spec: String, netns: String },
}

fn valid_interface(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

fn valid_netns(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl FromStr for PortSpec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (netns, interface) = match spec.split_once('/') {
            Some((netns, interface)) => {
                if !valid_netns(netns) {
                    return Err(if netns.is_empty() {
                        SpecError::Shape(spec.to_owned())
                    } else {
                        SpecError::Netns {
                            spec: spec.to_owned(),
                            netns: netns.to_owned(),
                        }
                    });
                }
                (netns, interface)
            }
            None => ("", spec),
        };
        if interface.is_empty() {
            return Err(SpecError::Shape(spec.to_owned()));
        }
        if !valid_interface(interface) {
            return Err(SpecError::Interface {
                spec: spec.to_owned(),
                interface: interface.to_owned(),
            });
        }
        Ok(Self {
            netns: netns.to_owned(),
            interface: interface.to_owned(),
        })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.netns.is_empty() {
            f.write_str(&self.interface)
        } else {
            write!(f, "{}/{}", self.netns, self.interface)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<PortSpec, SpecError> {
        s.parse()
    }

    #[test]
    fn interface_in_own_namespace() {
        let spec = parse("cvl_0_1").unwrap();
        assert_eq!(spec.netns, "");
        assert_eq!(spec.interface, "cvl_0_1");
        assert_eq!(spec.to_string(), "cvl_0_1");
    }

    #[test]
    fn interface_in_named_namespace() {
        let spec = parse("cvl_0_0_ns_spdk/cvl_0_0").unwrap();
        assert_eq!(spec.netns, "cvl_0_0_ns_spdk");
        assert_eq!(spec.interface, "cvl_0_0");
        assert_eq!(spec.to_string(), "cvl_0_0_ns_spdk/cvl_0_0");
    }

    #[test]
    fn malformed_specs() {
        assert_eq!(parse(""), Err(SpecError::Shape(String::new())));
        assert_eq!(parse("/eth0"), Err(SpecError::Shape("/eth0".into())));
        assert_eq!(parse("ns/"), Err(SpecError::Shape("ns/".into())));
        assert!(matches!(parse("a/b/c"), Err(SpecError::Interface { .. })));
        assert!(matches!(
            parse("a_much_too_long_name0"),
            Err(SpecError::Interface { .. })
        ));
        assert!(matches!(parse("eth 0"), Err(SpecError::Interface { .. })));
        assert!(matches!(parse("../eth0"), Err(SpecError::Netns { .. })));
        assert!(matches!(parse("n s/eth0"), Err(SpecError::Netns { .. })));
    }

    #[test]
    fn longest_interface_name_is_accepted() {
        assert!(parse("ns/abcdefghijklmno").is_ok());
    }
}
