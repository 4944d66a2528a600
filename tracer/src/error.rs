//! Errors that are the user's to fix (exit code 2), as opposed to tracer's own failures (1).

use thiserror::Error;

use crate::netns::NetnsError;

#[derive(Debug, Error)]
pub enum UsageError {
    #[error("interface `{interface}` not found in {place}; `{list}` shows the interfaces there")]
    UnknownInterface {
        interface: String,
        place: String,
        list: String,
    },
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("this needs root (missing {missing}): run it with sudo")]
    Privileges { missing: String },
    #[error(
        "this kernel has no BTF ({path} is missing): tracer needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf { path: String },
    #[error("this kernel lacks what the drop probe needs: {0}")]
    KernelLayout(String),
    /// The disk refuses the report (full, read-only, failing): `watch` still runs its command
    /// and exits with its code, saying what was not written.
    #[error("report directory {} cannot be written: {source}", path.display())]
    ReportUnwritable {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// A file named on the command line (`--svg`, `--html`) that the disk refuses.
    #[error("{} cannot be written: {source}", path.display())]
    OutputUnwritable {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Argument(String),
}

impl UsageError {
    pub fn unknown_interface(interface: &str, netns: &str) -> Self {
        let (place, list) = if netns.is_empty() {
            (
                "tracer's network namespace".to_owned(),
                "ip link".to_owned(),
            )
        } else {
            (
                format!("network namespace `{netns}`"),
                format!("ip -n {netns} link"),
            )
        };
        Self::UnknownInterface {
            interface: interface.to_owned(),
            place,
            list,
        }
    }
}

/// A failure with an exit code of its own, said in one line: `tracer watch` exits 127 when its
/// command is not found and 126 when it cannot be executed, as a shell does.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct ExitError {
    pub code: u8,
    pub message: String,
}
