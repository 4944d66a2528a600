//! The monitor's cable map (`--cable-map`): tracer's own frames (EtherType 0x88B5, no IP) from
//! the pair's ports and the `--cable-ports` (by default every physical port that is up), at
//! start and on SIGHUP, so that a fleet dashboard shows a node whose ports are not cabled to each other
//! without anyone running `tracer cables`. The frames are harmless to a test's IP traffic, but
//! they cross its ports (counted as `other`), hence a flag. A port that is down is not set up.
//! The map takes the ports' run locks, so it waits for a diagnose on them; on SIGHUP it runs in
//! a thread of its own, and scrapes go on meanwhile.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{SystemTime, UNIX_EPOCH},
};

use log::{info, warn};
use tracer_evidence::{CableMap, PortRef};

use crate::{
    collect::follow::FollowedPort,
    gather::cabling::map_around,
    lock::{self, PortLocks},
    render::metrics::PortCable,
    spec::PortSpec,
};

/// A map of where the pair's ports were when it ran.
struct Mapped {
    pair: [PortRef; 2],
    map: CableMap,
    /// Unix seconds.
    at: u64,
}

/// The last cable map, shared with the thread that makes the next.
#[derive(Clone, Default)]
pub(super) struct CableMaps {
    latest: Arc<Mutex<Option<Mapped>>>,
}

impl CableMaps {
    /// Maps the pair where its ports are now, waiting for the result; nothing when a port is
    /// not found.
    pub(super) fn map_now(&self, ports: &[FollowedPort], beside: &[PortSpec], verbosity: u8) {
        if let Some(pair) = where_now(ports) {
            self.map(&pair, beside, verbosity);
        }
    }

    /// The same in a thread of its own: the monitor goes on serving meanwhile.
    pub(super) fn map_in_background(
        &self,
        ports: &[FollowedPort],
        beside: &[PortSpec],
        verbosity: u8,
    ) {
        let Some(pair) = where_now(ports) else {
            return;
        };
        let maps = self.clone();
        let beside = beside.to_vec();
        let spawned = std::thread::Builder::new()
            .name("cable-map".to_owned())
            .spawn(move || maps.map(&pair, &beside, verbosity));
        if let Err(err) = spawned {
            warn!("starting the cable map: {err}");
        }
    }

    fn map(&self, pair: &[PortSpec; 2], beside: &[PortSpec], verbosity: u8) {
        let locks = PortLocks::acquire(&[&pair[0], &pair[1]], lock::WAIT);
        let mapped = locks
            .map_err(anyhow::Error::from)
            .and_then(|_locks| map_around(pair, beside, verbosity));
        match mapped {
            Ok(map) => {
                info!(
                    "cable map: {} port(s) in {} ms",
                    map.ports.len(),
                    map.duration_ms
                );
                let at = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |since| since.as_secs());
                let pair = [port_ref(&pair[0]), port_ref(&pair[1])];
                *self.latest.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(Mapped { pair, map, at });
            }
            Err(err) => warn!("cable map: {err:#}"),
        }
    }

    /// What the last map found of the pair's port `index` (0: initiator, 1: target).
    pub(super) fn port_cable(&self, index: usize) -> Option<PortCable> {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        let mapped = latest.as_ref()?;
        let (port, peer) = (&mapped.pair[index], &mapped.pair[1 - index]);
        let cable = mapped.map.port(port).filter(|cable| cable.sent > 0)?;
        let frames = cable
            .reaches
            .iter()
            .map(|reached| ("frames", reached.label()));
        let lldp = cable
            .partner
            .iter()
            .map(|partner| ("lldp", partner.label()));
        Some(PortCable {
            reaches_peer: cable.reaches.contains(peer),
            far_ends: frames.chain(lldp).collect(),
            speed_mbps: cable.link.speed_mbps,
        })
    }

    /// When the last map ran, Unix seconds.
    pub(super) fn mapped_at(&self) -> Option<u64> {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        latest.as_ref().map(|mapped| mapped.at)
    }
}

/// The pair's ports where they are now; `None` while one is not found.
fn where_now(ports: &[FollowedPort]) -> Option<[PortSpec; 2]> {
    let now = |port: &FollowedPort| {
        Some(PortSpec {
            netns: port.location()?.netns.clone(),
            interface: port.spec.interface.clone(),
        })
    };
    match ports {
        [initiator, target] => Some([now(initiator)?, now(target)?]),
        _ => None,
    }
}

fn port_ref(spec: &PortSpec) -> PortRef {
    PortRef {
        netns: spec.netns.clone(),
        interface: spec.interface.clone(),
    }
}
