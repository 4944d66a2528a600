//! Collectors: one per evidence source, each turning raw kernel data into plain data. What
//! drives them for a command is in [`crate::gather`].

pub mod cables;
pub mod drops;
pub mod events;
pub mod follow;
pub mod host;
pub mod identity;
mod loader;
pub mod path;
pub mod ports;
pub mod programs;
pub mod rules;
pub mod spdk_rules;
pub mod test_tag;

pub use loader::loader;

/// aya-log levels (aya_log_common::Level): 1 error … 5 trace.
pub fn ebpf_log_level(verbosity: u8) -> u8 {
    2 + verbosity.min(3)
}

/// Runs of `program` the kernel skipped because it was already running on that CPU (a
/// tracing program re-entered from inside itself): events lost without a trace otherwise.
pub fn recursion_misses(program: &aya::programs::Program) -> anyhow::Result<u64> {
    use std::os::fd::{AsFd as _, AsRawFd as _};

    use anyhow::Context as _;
    use aya_obj::generated::{bpf_cmd, bpf_prog_info};

    /// The BPF_OBJ_GET_INFO_BY_FD member of `union bpf_attr`.
    #[repr(C)]
    struct InfoByFd {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }

    let fd = program.fd().context("program not loaded")?;
    // SAFETY: bpf_prog_info is plain integers; all zero is a valid value.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = InfoByFd {
        bpf_fd: fd.as_fd().as_raw_fd() as u32,
        info_len: size_of::<bpf_prog_info>() as u32,
        info: (&raw mut info) as u64,
    };
    // SAFETY: attr points at `info`, which outlives the call and has the size given.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_GET_INFO_BY_FD as libc::c_long,
            &raw mut attr,
            size_of::<InfoByFd>(),
        )
    };
    if result != 0 {
        return Err(std::io::Error::last_os_error()).context("BPF_OBJ_GET_INFO_BY_FD");
    }
    Ok(info.recursion_misses)
}
