//! Which pairs a command works on: the ports given by flags, or else the pairs of SPDK's
//! layouts found on this node ([`discover`]), or the layout `--layout` names.
//!
//! Explicit flags always win. Without them, every command looks for the three layouts (phy,
//! virt, virt-legacy: see `tracer_topology::layouts`) and takes every pair it finds, saying
//! which layout, which pairs, where their addresses came from, and what is missing. Commands
//! that look now (diagnose, counters) stop when nothing is found; commands that wait for ports
//! (watch, monitor) follow every layout's pairs until they appear.

mod discover;

use std::net::Ipv4Addr;

use serde::Serialize;
use tracer_topology::layouts::{LayoutName, Scope};

pub use self::discover::{AddressSource, FoundEnd, FoundLayout, FoundPair};
use self::discover::{Place, assumed, look_for};
use crate::{error::UsageError, spec::PortSpec};

/// One pair a command works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPair {
    pub initiator: PortSpec,
    pub target: PortSpec,
    pub initiator_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
}

/// How the pairs were chosen, as the output and JSON say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    /// By --initiator/--target.
    Flags,
    /// Layouts found on the node.
    Found,
    /// Nothing found: every layout's pairs (or --layout's), followed until they appear.
    Assumed,
}

/// What discovery found (or assumed), for the output.
#[derive(Debug, Clone, Serialize)]
pub struct Discovery {
    pub choice: Choice,
    /// The namespace standing for the host's (empty: the host's own).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub netns_root: String,
    pub layouts: Vec<FoundLayout>,
}

/// The pairs, and how they were chosen (none when by flags).
#[derive(Debug, Clone)]
pub struct Plan {
    pub pairs: Vec<PlannedPair>,
    pub discovery: Option<Discovery>,
    /// Ports no flag named, filled from a default, with the flag that names them.
    pub defaulted: Vec<(PortSpec, &'static str)>,
}

impl Plan {
    /// Every pair's ports, initiator then target, pair after pair.
    pub fn ports(&self) -> Vec<&PortSpec> {
        self.pairs
            .iter()
            .flat_map(|pair| [&pair.initiator, &pair.target])
            .collect()
    }

    /// The flag whose default filled `spec`, when no flag named it.
    pub fn defaulted_flag(&self, spec: &PortSpec) -> Option<&'static str> {
        self.defaulted
            .iter()
            .find(|(defaulted, _)| defaulted == spec)
            .map(|(_, flag)| *flag)
    }

    /// A message about `spec`, saying so when the port came from a default and which flag
    /// names it: the one wording every command uses.
    pub fn about_port(&self, spec: &PortSpec, message: &str) -> String {
        match self.defaulted_flag(spec) {
            Some(flag) => format!(
                "{message} (`{spec}` is the default {flag}; pass {flag} NETNS/IFNAME to name the \
                 port)"
            ),
            None => message.to_owned(),
        }
    }

    /// An error about a port that came from a default says so and names the flag.
    pub fn explain(&self, err: anyhow::Error) -> anyhow::Error {
        let Some(usage) = err.downcast_ref::<UsageError>() else {
            return err;
        };
        let about = |spec: &PortSpec| match usage {
            UsageError::UnknownInterface { interface, .. } => *interface == spec.interface,
            UsageError::Netns(crate::netns::NetnsError::NotFound { name, .. }) => {
                *name == spec.netns
            }
            _ => false,
        };
        match self.defaulted.iter().find(|(spec, _)| about(spec)) {
            Some((spec, _)) => {
                UsageError::Argument(self.about_port(spec, &usage.to_string())).into()
            }
            None => err,
        }
    }

    /// For a command that looks now: refuses a port filled from a default that is not there,
    /// with the error attaching to it would give, explained.
    pub fn require_defaulted(&self) -> anyhow::Result<()> {
        for (spec, _) in &self.defaulted {
            let missing = match crate::netns::netns_inode(&spec.netns) {
                Err(err) => UsageError::from(err),
                Ok(_) if crate::place::ifindex_in(&spec.netns, &spec.interface).is_none() => {
                    UsageError::unknown_interface(&spec.interface, &spec.netns)
                }
                Ok(_) => continue,
            };
            return Err(self.explain(missing.into()));
        }
        Ok(())
    }
}

/// When nothing is found: stop (a command that looks now), or follow every layout's pairs
/// (one that waits for ports to appear).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenNone {
    Refuse,
    Follow,
}

/// Looks for the layouts (`only` one, or all three) in `scope`.
pub fn discover(
    only: Option<LayoutName>,
    scope: &Scope,
    when_none: WhenNone,
) -> Result<Plan, UsageError> {
    let wanted: Vec<LayoutName> = match only {
        Some(layout) => vec![layout],
        None => LayoutName::ALL.to_vec(),
    };
    let host = Place::read(&scope.root);
    if !scope.root.is_empty() && !host.exists {
        return Err(UsageError::Argument(format!(
            "--netns-root {}: no such namespace (`ip netns list` shows them)",
            scope.root
        )));
    }
    let found: Vec<FoundLayout> = wanted
        .iter()
        .filter_map(|layout| look_for(*layout, scope, &host))
        .filter(|layout| !layout.pairs.is_empty() || only.is_some())
        .collect();
    let (choice, layouts) = if found.iter().any(|layout| !layout.pairs.is_empty()) {
        (Choice::Found, found)
    } else if only.is_some() || when_none == WhenNone::Follow {
        let layouts = wanted
            .iter()
            .map(|layout| {
                let mut assumed = assumed(*layout, layout.default_pairs(), scope);
                // What was found of it (an empty namespace) still says what is missing.
                if let Some(seen) = found.iter().find(|seen| seen.name == *layout) {
                    assumed.missing.clone_from(&seen.missing);
                }
                assumed
            })
            .collect();
        (Choice::Assumed, layouts)
    } else {
        return Err(nothing_found(scope, &found));
    };
    let pairs = layouts
        .iter()
        .flat_map(|layout| &layout.pairs)
        .map(|pair| PlannedPair {
            initiator: pair.initiator_spec.clone(),
            target: pair.target_spec.clone(),
            initiator_ip: pair.initiator.ip,
            target_ip: pair.target.ip,
        })
        .collect();
    Ok(Plan {
        pairs,
        discovery: Some(Discovery {
            choice,
            netns_root: scope.root.clone(),
            layouts,
        }),
        defaulted: Vec::new(),
    })
}

fn nothing_found(scope: &Scope, half: &[FoundLayout]) -> UsageError {
    let host = if scope.root.is_empty() {
        "this namespace".to_owned()
    } else {
        format!("namespace {}", scope.root)
    };
    let looked: Vec<String> = LayoutName::ALL
        .iter()
        .map(|layout| {
            format!(
                "{layout} ({} here, namespace {})",
                layout.pair(0).initiator,
                scope.netns(layout.target_netns())
            )
        })
        .collect();
    let mut text = format!(
        "no SPDK layout found in {host}: looked for {}",
        looked.join(", ")
    );
    for layout in half {
        text.push_str(&format!("; {}: {}", layout.name, layout.missing.join("; ")));
    }
    text.push_str(
        "; give the ports (--initiator, --target) or the layout (--layout phy|virt|virt-legacy)",
    );
    UsageError::Argument(text)
}

/// The pairs of explicit flags: pair N is the Nth of each list; `defaults` fill a list not
/// given at all.
pub fn from_flags(
    initiators: &[PortSpec],
    targets: &[PortSpec],
    initiator_ips: &[Ipv4Addr],
    target_ips: &[Ipv4Addr],
) -> Result<Plan, UsageError> {
    let or_default = |given: &[PortSpec], default: &str| -> Vec<PortSpec> {
        if given.is_empty() {
            vec![default.parse().expect("the default spec parses")]
        } else {
            given.to_vec()
        }
    };
    let ip_or_default = |given: &[Ipv4Addr], default: Ipv4Addr| -> Vec<Ipv4Addr> {
        if given.is_empty() {
            vec![default]
        } else {
            given.to_vec()
        }
    };
    let mut defaulted = Vec::new();
    for (given, default, flag) in [
        (initiators, crate::cli::DEFAULT_INITIATOR, "--initiator"),
        (targets, crate::cli::DEFAULT_TARGET, "--target"),
    ] {
        if given.is_empty() {
            defaulted.push((default.parse().expect("the default spec parses"), flag));
        }
    }
    let initiators = or_default(initiators, crate::cli::DEFAULT_INITIATOR);
    let targets = or_default(targets, crate::cli::DEFAULT_TARGET);
    let initiator_ips = ip_or_default(initiator_ips, Ipv4Addr::new(10, 0, 0, 1));
    let target_ips = ip_or_default(target_ips, Ipv4Addr::new(10, 0, 0, 2));
    let count = initiators.len();
    if targets.len() != count || initiator_ips.len() != count || target_ips.len() != count {
        return Err(UsageError::Argument(format!(
            "{count} --initiator but {} --target, {} --initiator-ip and {} --target-ip: give each once per pair",
            targets.len(),
            initiator_ips.len(),
            target_ips.len()
        )));
    }
    Ok(Plan {
        pairs: (0..count)
            .map(|i| PlannedPair {
                initiator: initiators[i].clone(),
                target: targets[i].clone(),
                initiator_ip: initiator_ips[i],
                target_ip: target_ips[i],
            })
            .collect(),
        discovery: None,
        defaulted,
    })
}

/// The pairs a command works on: flags when any port flag is given, else discovery.
pub fn plan(
    flags: &Flags<'_>,
    layout: &crate::cli::LayoutArgs,
    when_none: WhenNone,
) -> Result<Plan, UsageError> {
    if !flags.initiators.is_empty() || !flags.targets.is_empty() {
        if layout.layout.is_some() {
            return Err(UsageError::Argument(
                "--layout names the ports itself: give it or --initiator/--target, not both"
                    .to_owned(),
            ));
        }
        return from_flags(
            flags.initiators,
            flags.targets,
            flags.initiator_ips,
            flags.target_ips,
        );
    }
    let mut plan = discover(
        layout.layout,
        &Scope::new(layout.netns_root.as_deref().unwrap_or_default()),
        when_none,
    )?;
    // Addresses given by flags beat what was found, pair by pair.
    for (index, pair) in plan.pairs.iter_mut().enumerate() {
        if let Some(ip) = flags.initiator_ips.get(index) {
            pair.initiator_ip = *ip;
        }
        if let Some(ip) = flags.target_ips.get(index) {
            pair.target_ip = *ip;
        }
    }
    Ok(plan)
}

/// The port and address flags a command was given (each possibly empty).
#[derive(Debug, Default)]
pub struct Flags<'a> {
    pub initiators: &'a [PortSpec],
    pub targets: &'a [PortSpec],
    pub initiator_ips: &'a [Ipv4Addr],
    pub target_ips: &'a [Ipv4Addr],
}
