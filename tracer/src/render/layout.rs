//! What layout discovery found, as lines people read before the rest of a command's output.

use crate::layout::{Choice, Discovery, FoundEnd};

fn end(end: &FoundEnd) -> String {
    let absent = if end.present { "" } else { ", not there yet" };
    format!(
        "{} {} ({}{absent})",
        end.spec,
        end.ip,
        end.address_from.words()
    )
}

/// One line per layout and pair, then what is missing.
pub fn text(discovery: &Discovery) -> String {
    let mut out = String::new();
    if !discovery.netns_root.is_empty() {
        out.push_str(&format!(
            "looking as if namespace {} were the host's\n",
            discovery.netns_root
        ));
    }
    for layout in &discovery.layouts {
        let how = match discovery.choice {
            Choice::Found => "found",
            Choice::Assumed | Choice::Flags => "not found: following its names until they appear",
        };
        out.push_str(&format!(
            "layout {} ({}): {how}, {} pair{}\n",
            layout.name,
            layout.built_by,
            layout.pairs.len(),
            if layout.pairs.len() == 1 { "" } else { "s" }
        ));
        for pair in &layout.pairs {
            out.push_str(&format!(
                "  pair {}: {} -> {}\n",
                pair.index + 1,
                end(&pair.initiator),
                end(&pair.target)
            ));
        }
        for missing in &layout.missing {
            out.push_str(&format!("  missing: {missing}\n"));
        }
    }
    out
}
