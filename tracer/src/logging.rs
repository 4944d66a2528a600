//! Logging: env_logger for tracer itself, and the kernel programs' aya-log records.

use anyhow::Context as _;
use tokio::io::{Interest, unix::AsyncFd};

/// tracer's own steps: -v info, -vv debug, -vvv trace; warnings always. The libraries' (aya's
/// loader and its like) only at -vvv, where everything is traced.
pub fn init(verbosity: u8, quiet: bool) {
    let (own, everyone) = match verbosity {
        _ if quiet => (log::LevelFilter::Error, log::LevelFilter::Error),
        0 => (log::LevelFilter::Warn, log::LevelFilter::Warn),
        1 => (log::LevelFilter::Info, log::LevelFilter::Warn),
        2 => (log::LevelFilter::Debug, log::LevelFilter::Warn),
        _ => (log::LevelFilter::Trace, log::LevelFilter::Trace),
    };
    env_logger::Builder::new()
        .filter_level(everyone)
        .filter_module("tracer", own)
        .parse_default_env()
        .format_timestamp_millis()
        .init();
}

/// Polls a kernel program's log ring buffer on the current runtime.
pub fn forward_ebpf_logs(logger: aya_log::EbpfLogger<&'static dyn log::Log>) -> anyhow::Result<()> {
    // SAFETY: the logger owns its ring buffer's fd, which stays open as long as the logger,
    // and the AsyncFd owns the logger.
    let mut logger = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) }
        .map_err(std::io::Error::from)
        .context("polling the kernel programs' log")?;
    tokio::spawn(async move {
        while let Ok(mut guard) = logger.readable_mut().await {
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
    Ok(())
}
