//! A busy host's churn around a watched pair, as a shell script: the initiator's port flapping,
//! permanent neighbour entries added on the target's, nftables rules added and flushed in the
//! target's namespace. The long-run test and `cargo xtask bench` run it as the command of a
//! `tracer watch`; it says what it did, and the watch's (its parent's) peak memory.

/// What the script churns, and for how long at least.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Churn {
    /// (namespace, interface) of the port that flaps.
    pub initiator: (String, String),
    /// (namespace, interface) of the port that gets the neighbour entries; its namespace gets
    /// the rules.
    pub target: (String, String),
    pub seconds: u64,
    /// Neighbour entries added at most: each one new, so that each is exactly
    /// one change whenever a watch looks.
    pub neighbours: usize,
}

/// Rules added in each round, then flushed: each is one window a watch keeps or counts.
pub const RULES_PER_ROUND: usize = 20;
/// Neighbour entries added in each round (one `ip -batch`), up to [`Churn::neighbours`].
pub const NEIGHBOURS_PER_ROUND: usize = 25;

impl Churn {
    /// The script: the loop for `seconds` at least and until every neighbour entry is added
    /// (a loaded machine runs fewer rounds a second), then "FLAPS NEIGHBOURS RULES" written to `counts`
    /// and the `VmHWM:` line of its parent's /proc status to `peak` (the parent is the watch
    /// that runs it). Addresses of the entries are 10.1.0.0/16, never used for traffic.
    pub fn script(&self, counts: &str, peak: &str) -> String {
        let ((i, iif), (t, tif)) = (&self.initiator, &self.target);
        let (seconds, neighbours) = (self.seconds, self.neighbours);
        let rules = "add rule inet churn c counter\\n".repeat(RULES_PER_ROUND);
        format!(
            r#"set -e
ip netns exec {t} nft add table inet churn
ip netns exec {t} nft add chain inet churn c
flaps=0; neighbours=0; rules=0
end=$(( $(date +%s) + {seconds} ))
while [ "$(date +%s)" -lt "$end" ] || [ "$neighbours" -lt {neighbours} ]; do
  ip -n {i} link set {iif} down; ip -n {i} link set {iif} up; flaps=$((flaps + 1))
  if [ "$neighbours" -lt {neighbours} ]; then
    batch=""
    for k in $(seq {NEIGHBOURS_PER_ROUND}); do
      neighbours=$((neighbours + 1))
      batch="${{batch}}neigh add 10.1.$((neighbours / 250)).$((neighbours % 250 + 1)) lladdr 02:00:00:00:00:01 dev {tif} nud permanent\n"
    done
    printf "$batch" | ip -n {t} -batch -
  fi
  printf '{rules}flush chain inet churn c\n' | ip netns exec {t} nft -f -
  rules=$((rules + {RULES_PER_ROUND}))
done
ip netns exec {t} nft delete table inet churn
echo "$flaps $neighbours $rules" > {counts}
grep VmHWM /proc/$PPID/status > {peak}
"#
        )
    }
}

/// What a churn script wrote: (flaps, neighbours added, rules added) and the watch's peak
/// memory in kB; `None` when the files are missing or malformed.
pub fn read_churned(counts: &str, peak: &str) -> Option<([u64; 3], u64)> {
    let numbers: Vec<u64> = counts
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let peak_kb = peak.split_whitespace().nth(1)?.parse().ok()?;
    Some((numbers.try_into().ok()?, peak_kb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_names_its_places_and_what_it_writes() {
        let churn = Churn {
            initiator: ("a-i".into(), "cvl_0_1".into()),
            target: ("a-t".into(), "cvl_0_0".into()),
            seconds: 3,
            neighbours: 10,
        };
        let script = churn.script("/tmp/c", "/tmp/p");
        assert!(script.contains("ip -n a-i link set cvl_0_1 down"));
        assert!(script.contains("dev cvl_0_0 nud permanent"));
        assert!(script.contains("> /tmp/c\n"));
        assert!(script.contains("/proc/$PPID/status > /tmp/p\n"));
        assert_eq!(
            script.matches("add rule inet churn c").count(),
            RULES_PER_ROUND
        );
        assert_eq!(
            read_churned("4 10 40\n", "VmHWM:\t  9876 kB\n"),
            Some(([4, 10, 40], 9876))
        );
        assert_eq!(read_churned("4 10\n", "VmHWM: 1 kB"), None);
    }
}
