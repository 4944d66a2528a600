//! The loader every tracer object goes through, without aya reading the kernel's BTF.
//!
//! aya 0.14's `EbpfLoader::new()` reads and parses all of /sys/kernel/btf/vmlinux, for CO-RE
//! relocations, every time a loader is made (aya issue #1172; upstream reads it lazily since
//! commit 05d5269f): about 20 ms and 20 MB on a 6.18 kernel, once per object. tracer's objects
//! have no CO-RE relocations (struct offsets reach the drop probe as globals, from
//! [`KernelLayout`](super::drops::KernelLayout), tracer's own light read of the BTF), so the
//! loader is made on a short-lived thread that cannot open files, and then told that there is
//! no BTF. Where that thread cannot be set up, aya reads the BTF as usual: slower, same result.

use aya::EbpfLoader;
use log::debug;

/// A loader with the settings every tracer object shares.
pub fn loader<'a>(log_level: &'a u8) -> EbpfLoader<'a> {
    let mut loader = loader_without_kernel_btf();
    // No CO-RE relocations to make: see the module's documentation.
    loader.btf(None);
    // Objects without log statements have no such global; that is fine.
    loader.override_global("AYA_LOG_LEVEL", log_level, false);
    loader
}

fn loader_without_kernel_btf() -> EbpfLoader<'static> {
    let made = std::thread::spawn(|| -> std::io::Result<EbpfLoader<'static>> {
        refuse_file_opens()?;
        Ok(EbpfLoader::new())
    })
    .join();
    match made {
        Ok(Ok(loader)) => loader,
        Ok(Err(err)) => {
            debug!("cannot keep aya from reading the kernel's BTF ({err}): it reads it");
            EbpfLoader::new()
        }
        Err(_) => EbpfLoader::new(),
    }
}

/// Classic BPF, as seccomp filters are written (include/uapi/linux/filter.h, seccomp.h).
/// BPF_LD | BPF_W | BPF_ABS (0x00, 0x00, 0x20).
const BPF_LD_W_ABS: u16 = 0x20;
/// BPF_JMP | BPF_JEQ | BPF_K (0x05, 0x10, 0x00).
const BPF_JMP_JEQ_K: u16 = 0x15;
/// BPF_RET | BPF_K (0x06, 0x00).
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
/// Offsets in `struct seccomp_data`.
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

/// The calls that open a file by path on this architecture.
#[cfg(target_arch = "x86_64")]
const OPEN_CALLS: [libc::c_long; 3] = [libc::SYS_open, libc::SYS_openat, libc::SYS_openat2];
#[cfg(target_arch = "aarch64")]
const OPEN_CALLS: [libc::c_long; 2] = [libc::SYS_openat, libc::SYS_openat2];

const fn statement(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump_if_equal(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: BPF_JMP_JEQ_K,
        jt,
        jf,
        k,
    }
}

/// From now on, every open(2) of the calling thread fails with ENOENT. Only this thread: a
/// filter installed without `SECCOMP_FILTER_FLAG_TSYNC` stays with the thread that installed
/// it, and dies with it.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn refuse_file_opens() -> std::io::Result<()> {
    let refuse = SECCOMP_RET_ERRNO | libc::ENOENT as u32;
    let mut program = vec![
        statement(BPF_LD_W_ABS, SECCOMP_DATA_ARCH),
        // Another architecture's calls (none are made here): allowed, numbers differ there.
        jump_if_equal(AUDIT_ARCH, 1, 0),
        statement(BPF_RET_K, SECCOMP_RET_ALLOW),
        statement(BPF_LD_W_ABS, SECCOMP_DATA_NR),
    ];
    for call in OPEN_CALLS {
        program.push(jump_if_equal(call as u32, 0, 1));
        program.push(statement(BPF_RET_K, refuse));
    }
    program.push(statement(BPF_RET_K, SECCOMP_RET_ALLOW));
    let filter = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: prctl with integer arguments; no_new_privs is what lets an unprivileged thread
    // install a filter, and like the filter it only binds this thread (and its children, of
    // which it has none).
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `filter` points to `program`, both alive for the call; the kernel copies them.
    let installed = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &raw const filter,
            0,
            0,
        )
    };
    if installed != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn refuse_file_opens() -> std::io::Result<()> {
    Err(std::io::Error::other(
        "no seccomp filter written for this architecture",
    ))
}

#[cfg(test)]
mod tests {
    /// The filter binds the thread that installs it, and makes opens fail there only.
    #[test]
    fn only_the_filtered_thread_cannot_open() {
        let inside = std::thread::spawn(|| {
            super::refuse_file_opens().unwrap();
            std::fs::File::open("/proc/self/status").map(|_| ())
        })
        .join()
        .unwrap();
        let error = inside.expect_err("opens are refused on the filtered thread");
        assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
        std::fs::File::open("/proc/self/status").expect("other threads still open files");
    }
}
