//! One module per subcommand.

pub mod cables;
pub mod counters;
pub mod diagnose;
pub mod doctor;
pub mod help;
pub mod lab;
pub mod monitor;
pub mod triage;
pub mod watch;

use std::path::Path;

use crate::error::UsageError;

/// Creates the `--ready-file` scripts wait on. An unwritable path is the user's to fix: a
/// usage error, not a bug.
pub fn write_ready_file(path: &Path) -> Result<(), UsageError> {
    std::fs::write(path, b"").map_err(|err| {
        UsageError::Argument(format!(
            "cannot create the ready file {}: {err}",
            path.display()
        ))
    })
}
