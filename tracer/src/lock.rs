//! One diagnose (or cable map) at a time per port: two runs probing the same ports at once would
//! count each other's probes, one could remove (or keep) the neighbour entry the other's probes
//! made, and a cable map would set up a port diagnose found down.
//! A lock file per port under /run/tracer, held with `flock` for the whole run: the kernel
//! releases it when the process ends, however it ends.

use std::{
    fs::{File, OpenOptions},
    io,
    os::{
        fd::AsRawFd as _,
        unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    },
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use log::info;

use crate::{error::UsageError, pins, spec::PortSpec};

pub const LOCK_DIR: &str = "/run/tracer";
/// How long a run waits for another one on the same ports before it gives up.
pub const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// The locks of both ports, held while this lives.
pub struct PortLocks {
    _files: Vec<File>,
}

/// The lock file of one port: its pin name, which keeps specs apart; hashed when too long.
fn lock_path(directory: &Path, spec: &PortSpec) -> PathBuf {
    let name = pins::pin_name(spec);
    let name = if name.len() > 200 {
        use std::hash::{DefaultHasher, Hash as _, Hasher as _};
        let mut hasher = DefaultHasher::new();
        name.hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    } else {
        name
    };
    directory.join(format!("diagnose-{name}.lock"))
}

impl PortLocks {
    /// Takes the lock of every port in `specs` (in one order, so two runs never deadlock),
    /// waiting up to `wait` for a run that holds one.
    pub fn acquire(specs: &[&PortSpec], wait: Duration) -> Result<Self, UsageError> {
        Self::acquire_in(Path::new(LOCK_DIR), specs, wait)
    }

    fn acquire_in(
        directory: &Path,
        specs: &[&PortSpec],
        wait: Duration,
    ) -> Result<Self, UsageError> {
        let unusable = |err: io::Error| {
            UsageError::Argument(format!(
                "cannot use the lock directory {}: {err}",
                directory.display()
            ))
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(directory)
            .map_err(unusable)?;
        let mut paths: Vec<PathBuf> = specs
            .iter()
            .map(|spec| lock_path(directory, spec))
            .collect();
        paths.sort();
        paths.dedup();
        let deadline = Instant::now() + wait;
        let mut files = Vec::new();
        for path in paths {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .map_err(unusable)?;
            let locked = flock_until(&file, deadline, || {
                info!(
                    "another tracer diagnose or cable map uses these ports: waiting for it ({})",
                    path.display()
                );
            })
            .map_err(unusable)?;
            if !locked {
                return Err(UsageError::Argument(format!(
                    "another tracer diagnose or cable map has been using these ports for over {} s \
                     (it holds {}): try again once it is done",
                    wait.as_secs(),
                    path.display()
                )));
            }
            files.push(file);
        }
        Ok(Self { _files: files })
    }
}

/// Takes `file`'s exclusive flock, trying again until `deadline` while another open file holds
/// it; `waiting` runs once, when the first try finds it held. `Ok(false)`: still held then.
pub fn flock_until(file: &File, deadline: Instant, waiting: impl FnOnce()) -> io::Result<bool> {
    let mut waiting = Some(waiting);
    loop {
        // SAFETY: flock on a descriptor the caller owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        if let Some(waiting) = waiting.take() {
            waiting();
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_then_gives_up() {
        let directory = std::env::temp_dir().join(format!("tracer-lock-{}", std::process::id()));
        let a: PortSpec = "ns/a".parse().unwrap();
        let b: PortSpec = "b".parse().unwrap();
        let c: PortSpec = "c".parse().unwrap();
        let held = PortLocks::acquire_in(&directory, &[&a, &b], WAIT).unwrap();
        // flock locks belong to the open file: a second open in this process conflicts too.
        let refused = PortLocks::acquire_in(&directory, &[&b, &a], Duration::from_millis(100));
        assert!(refused.is_err());
        // Another pair that shares no port goes ahead.
        assert!(PortLocks::acquire_in(&directory, &[&c], Duration::ZERO).is_ok());
        drop(held);
        assert!(PortLocks::acquire_in(&directory, &[&b, &a], Duration::ZERO).is_ok());
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
