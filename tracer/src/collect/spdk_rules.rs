//! How many firewall rules with SPDK's `SPDK_NVMF` comment the ports' namespaces hold: tests
//! add them and their teardown removes them all, so any while no test runs are an earlier
//! run's. Counted away from the scrapes (reading a ruleset starts the backends' tools).

use std::{
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use tracer_evidence::words::is_spdk_rule;

use crate::{netfilter, netns};

/// How often the rules are counted without being asked (SIGUSR1, SIGHUP ask at once).
pub const EVERY: Duration = Duration::from_secs(10);

/// The rules with SPDK's comment in `netns` ("" for tracer's own), in every backend; none in a
/// namespace that does not exist.
pub fn count(netns: &str) -> u64 {
    if !netns.is_empty() && !netns::netns_path(netns).exists() {
        return 0;
    }
    netfilter::snapshot(netns)
        .rules
        .iter()
        .filter(|rule| is_spdk_rule(&rule.text))
        .count() as u64
}

/// The last counts, by namespace as configured, kept by a thread that counts every [`EVERY`]
/// and when woken; it ends when this is dropped, and is waited for: a firewall tool it runs
/// must not outlive the monitor (a monitor restarted at once would find its pins still locked).
pub struct SpdkRuleCounts {
    counts: Arc<Mutex<Vec<(String, u64)>>>,
    wake: Option<mpsc::Sender<()>>,
    counter: Option<std::thread::JoinHandle<()>>,
}

impl SpdkRuleCounts {
    /// Starts counting in `namespaces` (each once).
    pub fn start(mut namespaces: Vec<String>) -> Self {
        namespaces.sort();
        namespaces.dedup();
        let counts = Arc::new(Mutex::new(Vec::new()));
        let (wake, woken) = mpsc::channel();
        let shared = Arc::clone(&counts);
        let spawned = std::thread::Builder::new()
            .name("spdk-rules".to_owned())
            .spawn(move || {
                loop {
                    let now: Vec<(String, u64)> = namespaces
                        .iter()
                        .map(|netns| (netns.clone(), count(netns)))
                        .collect();
                    *shared
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = now;
                    if let Err(mpsc::RecvTimeoutError::Disconnected) = woken.recv_timeout(EVERY) {
                        return;
                    }
                    // Several wakes at once count once.
                    while woken.try_recv().is_ok() {}
                }
            });
        let counter = spawned
            .inspect_err(|err| log::warn!("counting SPDK's rules: cannot start a thread: {err}"))
            .ok();
        Self {
            counts,
            wake: Some(wake),
            counter,
        }
    }

    /// Counts again now.
    pub fn wake(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.send(());
        }
    }

    /// The last counts; empty before the first.
    pub fn counts(&self) -> Vec<(String, u64)> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Drop for SpdkRuleCounts {
    fn drop(&mut self) {
        // The thread ends at its next look once the channel is gone; a count under way ends
        // within the tools' limits.
        drop(self.wake.take());
        if let Some(counter) = self.counter.take() {
            let _ = counter.join();
        }
    }
}
