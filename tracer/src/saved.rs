//! A saved bundle read back for `diagnose --from`: its report.json's evidence and the rest of
//! what it holds (identity, timeline, command), and the frames of its capture.pcapng.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
};

use tracer_evidence::{Evidence, SavedParts, evidence_from_report};

use crate::{
    error::UsageError,
    pcapng::{self, SavedCapture},
};

/// Read at most this much of a capture: --capture-frames' limit, two ports, 256-byte frames
/// and their blocks.
const CAPTURE_LIMIT: u64 = 128 << 20;

pub struct SavedBundle {
    pub evidence: Evidence,
    pub parts: SavedParts,
    /// The frames of capture.pcapng beside report.json, when there is one.
    pub capture: Option<SavedCapture>,
}

/// The bundle in directory `path`, or the report.json `path` (with the capture beside it).
pub fn read(path: &Path) -> Result<SavedBundle, UsageError> {
    let file: PathBuf = if path.is_dir() {
        path.join("report.json")
    } else {
        path.to_owned()
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|err| UsageError::Argument(format!("cannot read {}: {err}", file.display())))?;
    let evidence = evidence_from_report(&text)
        .map_err(|err| UsageError::Argument(format!("{}: {err}", file.display())))?;
    let capture_file = file.with_file_name("capture.pcapng");
    let capture = std::fs::File::open(&capture_file).ok().map(|opened| {
        let mut bytes = Vec::new();
        match opened.take(CAPTURE_LIMIT).read_to_end(&mut bytes) {
            Ok(_) => pcapng::read(&bytes),
            Err(err) => SavedCapture {
                frames: Vec::new(),
                damage: Some(format!("cannot be read: {err}")),
            },
        }
    });
    Ok(SavedBundle {
        evidence,
        parts: SavedParts::from_report(&text),
        capture,
    })
}
