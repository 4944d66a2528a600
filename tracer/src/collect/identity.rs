//! Which run this is, for the bundle: the machine, the kernel, tracer, when, and the command.

use std::time::{SystemTime, UNIX_EPOCH};

use tracer_evidence::{Identity, identity::utc_rfc3339};

/// Longest value kept from a file another program wrote.
const FIELD_LIMIT: usize = 256;

/// A one-line file's text, trimmed and bounded; None when missing or empty.
fn read_line(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line: String = text.trim().chars().take(FIELD_LIMIT).collect();
    (!line.is_empty()).then_some(line)
}

fn utc(time: SystemTime) -> Option<String> {
    Some(utc_rfc3339(time.duration_since(UNIX_EPOCH).ok()?.as_secs()))
}

/// This run's identity: started at `started`, ending now with `exit_status`. The test's name
/// is left for the caller that knows it.
pub fn identity(started: SystemTime, exit_status: i32) -> Identity {
    Identity {
        // The UTS namespace's name: what `hostname` prints.
        host: read_line("/proc/sys/kernel/hostname"),
        machine_id: read_line("/etc/machine-id"),
        kernel: read_line("/proc/sys/kernel/osrelease"),
        tracer_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        started: utc(started),
        ended: utc(SystemTime::now()),
        command: std::env::args().collect(),
        exit_status: Some(exit_status),
        test: None,
    }
}
