//! All probes of one tracer run, attached together and detached together (on drop).

use std::collections::HashMap;

use tracer_common::DropKey;
use tracer_evidence::{CountersReport, DropCount, ELSEWHERE};

use crate::{
    collect::{
        drops::{DropPrograms, RawDrop},
        ports::{PortOptions, PortPrograms},
    },
    error::UsageError,
    netns,
    place::PlaceKey,
    spec::PortSpec,
};

pub struct Session {
    pub ports: Vec<PortPrograms>,
    pub drops: DropPrograms,
}

impl Session {
    /// Attaches counters to every port, and the drop probe.
    pub fn attach(specs: &[&PortSpec], options: &PortOptions) -> anyhow::Result<Self> {
        for (i, spec) in specs.iter().enumerate() {
            if specs[..i].contains(spec) {
                return Err(UsageError::Argument(format!(
                    "port `{spec}` is given twice: initiator and target must differ"
                ))
                .into());
            }
        }
        // The ports and the drop probe are attached side by side: a tcx attachment mostly waits
        // for the kernel (an RCU grace period each, under the RTNL lock), time the loading of
        // the other programs fills.
        let (ports, drops) = std::thread::scope(|scope| {
            let drops = scope.spawn(|| DropPrograms::attach(&options.log_level));
            let attaching: Vec<_> = specs
                .iter()
                .map(|spec| scope.spawn(move || PortPrograms::attach(spec, options)))
                .collect();
            let ports = attaching
                .into_iter()
                .map(|port| {
                    port.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect::<anyhow::Result<Vec<_>>>();
            let drops = drops
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (ports, drops)
        });
        let (ports, mut drops) = (ports?, drops?);
        drops.watch_ports(ports.iter().map(PortPrograms::key))?;
        drops.watch_names(ports.iter().map(|port| port.spec.interface.as_str()))?;
        Ok(Self { ports, drops })
    }

    /// Keeps the drops at these places apart as well as the ports'.
    pub fn watch_also(&mut self, places: impl IntoIterator<Item = PlaceKey>) -> anyhow::Result<()> {
        let ports: Vec<PlaceKey> = self.ports.iter().map(PortPrograms::key).collect();
        self.drops.watch_ports(ports.into_iter().chain(places))
    }

    /// The watched port a drop belongs to (see [`PlaceKey::holds`]).
    pub fn port_of(&self, key: &DropKey) -> Option<&PortPrograms> {
        self.ports.iter().find(|port| port.key().holds(key))
    }

    /// A raw drop with names: the namespace's, the interface's when it is a watched port.
    pub fn name_drop(&self, raw: &RawDrop, names: &HashMap<u32, String>) -> DropCount {
        let port = self.port_of(&raw.key);
        let netns = match (port, raw.key.netns) {
            (Some(port), _) => port.spec.netns.clone(),
            (None, 0) => ELSEWHERE.to_owned(),
            (None, inode) => names
                .get(&inode)
                .cloned()
                .unwrap_or_else(|| format!("net:[{inode}]")),
        };
        self.drops
            .name(raw, netns, port.map(|port| port.spec.interface.as_str()))
    }

    pub fn counters_report(&self) -> anyhow::Result<CountersReport> {
        let interfaces = self
            .ports
            .iter()
            .map(PortPrograms::counters)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let names = netns::netns_names();
        let mut drops = Vec::new();
        let mut other_drops = Vec::new();
        for raw in self.drops.drops()? {
            let drop = self.name_drop(&raw, &names);
            if self.port_of(&raw.key).is_some() {
                drops.push(drop);
            } else {
                other_drops.push(drop);
            }
        }
        drops.sort_by_key(|drop| std::cmp::Reverse(drop.count));
        other_drops.sort_by_key(|drop| std::cmp::Reverse(drop.count));
        Ok(CountersReport {
            interfaces,
            drops,
            other_drops,
            lost_events: self.lost_events()?,
        })
    }

    /// Everything the kernel programs saw but could not record.
    pub fn lost_events(&self) -> anyhow::Result<u64> {
        let mut lost = self.drops.lost_events()?;
        for port in &self.ports {
            lost += port.capture_lost()?;
        }
        Ok(lost)
    }
}
