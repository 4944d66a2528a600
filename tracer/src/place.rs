//! Where a port is: its namespace and interface index there. Test scripts move ports between
//! namespaces after tracer started (SPDK's nvmf_tcp_init moves the target port into its own
//! namespace), so a port's place is looked up, never assumed.

use tracer_common::DropKey;

use crate::netns::{self, NetnsGuard};

/// Where an interface is right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// Namespace name; empty for tracer's own.
    pub netns: String,
    pub netns_inode: u32,
    pub ifindex: u32,
}

impl Place {
    /// As the kernel keys drops.
    pub fn key(&self) -> PlaceKey {
        PlaceKey {
            netns: self.netns_inode,
            ifindex: self.ifindex,
        }
    }
}

/// A place as the kernel keys drops: its namespace inode and interface index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlaceKey {
    pub netns: u32,
    pub ifindex: u32,
}

impl PlaceKey {
    /// Dropped on the port's device.
    pub fn on_device(self, key: &DropKey) -> bool {
        key.netns == self.netns && key.ifindex == self.ifindex
    }

    /// Dropped on the port's device, or without a device in its namespace: a local socket's
    /// packet, dropped before it had one (on an OUTPUT hook, say).
    pub fn holds(self, key: &DropKey) -> bool {
        self.on_device(key) || (key.netns == self.netns && key.ifindex == 0)
    }
}

/// The index of `interface` inside namespace `netns`, if it is there.
pub fn ifindex_in(netns: &str, interface: &str) -> Option<u32> {
    let _inside = NetnsGuard::enter(netns).ok()?;
    netns::ifindex(interface)
}
