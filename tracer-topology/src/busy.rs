//! What a busy CI node carries besides the lab: thousands of firewall rules (container
//! runtimes) and hundreds of namespaces of earlier jobs ([`Network::crowd`](crate::Network)).

use crate::ip::{Error, run_with_input};

/// An INPUT chain of `count` rules for `iptables-restore --noflush`: ACCEPT rules for sources
/// outside every test network (192.168.0.0/16, 172.16.0.0/12) that no probe matches, with the
/// rule `dropping` (`-p icmp -j DROP`, say) in the middle.
pub fn busy_input_chain(count: usize, dropping: &str) -> String {
    let mut rules = String::from("*filter\n");
    let half = count / 2;
    for index in 0..count.saturating_sub(1) {
        let (network, from) = if index < half {
            ("192.168", index)
        } else {
            ("172.16", index - half)
        };
        let (third, fourth) = (from / 250, from % 250 + 1);
        let tcp_port = 1000 + index % 5000;
        rules.push_str(&format!(
            "-A INPUT -s {network}.{third}.{fourth}/32 -p tcp --dport {tcp_port} -j ACCEPT\n"
        ));
        if index + 1 == half {
            rules.push_str(&format!("-A INPUT {dropping}\n"));
        }
    }
    rules.push_str("COMMIT\n");
    rules
}

/// Loads `rules` (iptables-restore's format) into namespace `netns`, keeping what is there.
pub fn iptables_restore(netns: &str, rules: &str) -> Result<(), Error> {
    run_with_input(
        "ip",
        &["netns", "exec", netns, "iptables-restore", "--noflush"],
        rules,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dropping_rule_is_one_of_count_in_the_middle() {
        let rules = busy_input_chain(10, "-p icmp -j DROP");
        let lines: Vec<&str> = rules.lines().filter(|l| l.starts_with("-A")).collect();
        assert_eq!(lines.len(), 10);
        assert_eq!(lines[5], "-A INPUT -p icmp -j DROP");
        let mut unique = lines.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 10);
    }
}
