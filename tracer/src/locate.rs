//! Finding a port wherever it is: test scripts move ports between namespaces after tracer
//! started (SPDK's nvmf_tcp_init moves the target port into its own namespace).

use crate::{
    collect::drops::PortPlace,
    netns::{self, NetnsGuard},
};

/// Where an interface is right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Namespace name; empty for tracer's own.
    pub netns: String,
    pub netns_inode: u32,
    pub ifindex: u32,
}

impl Location {
    /// As the kernel keys drops.
    pub fn place(&self) -> PortPlace {
        PortPlace {
            netns: self.netns_inode,
            ifindex: self.ifindex,
        }
    }
}

/// The index of `interface` inside namespace `netns`, if it is there.
pub fn ifindex_in(netns: &str, interface: &str) -> Option<u32> {
    let _inside = NetnsGuard::enter(netns).ok()?;
    netns::ifindex(interface)
}
