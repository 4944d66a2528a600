//! Finding a port wherever it is: test scripts move ports between namespaces after tracer
//! started (SPDK's nvmf_tcp_init moves the target port into its own namespace).

use crate::netns::{self, NetnsGuard};

/// Where an interface is right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Namespace name; empty for tracer's own.
    pub netns: String,
    pub netns_inode: u32,
    pub ifindex: u32,
}

/// The index of `interface` inside namespace `netns`, if it is there.
pub fn ifindex_in(netns: &str, interface: &str) -> Option<u32> {
    let _inside = NetnsGuard::enter(netns).ok()?;
    netns::ifindex(interface)
}

/// Finds `interface`: in `preferred` first, then in tracer's own namespace, then in every named
/// namespace (by name order, so that the answer is stable).
pub fn find(interface: &str, preferred: &str) -> Option<Location> {
    let names = netns::netns_names();
    let mut candidates = vec![preferred.to_owned()];
    if !preferred.is_empty() {
        candidates.push(String::new());
    }
    let mut others: Vec<&String> = names.values().filter(|name| !name.is_empty()).collect();
    others.sort();
    candidates.extend(
        others
            .into_iter()
            .filter(|name| *name != preferred)
            .cloned(),
    );
    candidates.into_iter().find_map(|netns| {
        let ifindex = ifindex_in(&netns, interface)?;
        let netns_inode = netns::netns_inode(&netns).ok()?;
        Some(Location {
            netns,
            netns_inode,
            ifindex,
        })
    })
}
