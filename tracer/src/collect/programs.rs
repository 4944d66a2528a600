//! The BPF programs other tools attached to a port (XDP, tcx, clsact filters), in the order
//! they run: a frame one of them consumes never reaches the stack, which looks like a lost
//! frame unless the program is named.

use std::collections::HashMap;

use aya::programs::{SchedClassifier, TcAttachType, loaded_programs};
use log::debug;
use tracer_evidence::AttachedProgram;

use crate::{
    collect::ports::TcAttachment,
    netlink::{ClsactHook, RouteSocket},
    netns::{self, NetnsGuard},
};

/// The programs on `interface` in namespace `netns`, by hook and in running order, leaving
/// out those with an id in `ours`. Hooks the kernel cannot list are left out (and logged).
pub fn attached_programs(netns: &str, interface: &str, ours: &[u32]) -> Vec<AttachedProgram> {
    let Ok(_inside) = NetnsGuard::enter(netns) else {
        return Vec::new();
    };
    let Some(ifindex) = netns::ifindex(interface) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, &str, &str, usize)> = Vec::new();
    let socket = RouteSocket::open();
    if let Ok(socket) = &socket
        && let Ok(Some(link)) = socket.link(interface)
        && let Some(id) = link.xdp_program
    {
        found.push((id, "xdp", "xdp", 0));
    }
    for (hook, tcx, clsact) in [
        ("tc ingress", TcAttachType::Ingress, ClsactHook::Ingress),
        ("tc egress", TcAttachType::Egress, ClsactHook::Egress),
    ] {
        let ids: Vec<u32> = match TcAttachment::of_running_kernel() {
            TcAttachment::Tcx => match SchedClassifier::query_tcx(interface, tcx) {
                Ok((_, programs)) => programs.iter().map(|program| program.id()).collect(),
                Err(err) => {
                    debug!("listing tcx programs on {interface}: {err}");
                    Vec::new()
                }
            },
            TcAttachment::Clsact => {
                let filters = match &socket {
                    Ok(socket) => socket.bpf_filters(ifindex, clsact),
                    Err(err) => Err(std::io::Error::new(err.kind(), err.to_string())),
                };
                match filters {
                    Ok(filters) => filters.iter().map(|filter| filter.program_id).collect(),
                    Err(err) => {
                        debug!("listing clsact filters on {interface}: {err}");
                        Vec::new()
                    }
                }
            }
        };
        let attachment = TcAttachment::of_running_kernel().name();
        found.extend(
            ids.into_iter()
                .filter(|id| !ours.contains(id))
                .enumerate()
                .map(|(position, id)| (id, hook, attachment, position)),
        );
    }
    found.retain(|(id, ..)| !ours.contains(id));
    if found.is_empty() {
        return Vec::new();
    }
    let names = program_names();
    found
        .into_iter()
        .map(|(id, hook, attachment, position)| AttachedProgram {
            id,
            name: names.get(&id).cloned().unwrap_or_default(),
            hook: hook.to_owned(),
            attachment: attachment.to_owned(),
            position,
        })
        .collect()
}

/// Every loaded program's name, by id.
fn program_names() -> HashMap<u32, String> {
    loaded_programs()
        .filter_map(Result::ok)
        .map(|info| {
            let name = info.name_as_str().unwrap_or_default().to_owned();
            (info.id(), name)
        })
        .collect()
}
