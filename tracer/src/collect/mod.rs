//! Collectors: one per evidence source, each turning raw kernel data into plain data.

pub mod drops;
pub mod follow;
pub mod ports;

use aya::EbpfLoader;

/// aya-log levels (aya_log_common::Level): 1 error … 5 trace.
pub fn ebpf_log_level(verbosity: u8) -> u8 {
    2 + verbosity.min(3)
}

/// A loader with the settings every tracer object shares.
pub fn loader<'a>(log_level: &'a u8) -> EbpfLoader<'a> {
    let mut loader = EbpfLoader::new();
    // Objects without log statements have no such global; that is fine.
    loader.override_global("AYA_LOG_LEVEL", log_level, false);
    loader
}
