//! Network namespaces: entering one on the current thread, and naming them.
//!
//! `setns` affects only the calling thread, so callers enter, do their synchronous work (attach,
//! look up an interface) and leave again without yielding to an async runtime in between.

use std::{
    collections::HashMap,
    fs::File,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use thiserror::Error;

/// Where `ip netns add` keeps its namespaces.
pub const NETNS_RUN_DIR: &str = "/var/run/netns";

#[derive(Debug, Error)]
pub enum NetnsError {
    #[error(
        "network namespace `{name}` not found (no {path}); `ip netns list` shows the existing ones"
    )]
    NotFound { name: String, path: String },
    #[error("opening network namespace {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("entering network namespace {path}: {source}")]
    Enter {
        path: String,
        source: std::io::Error,
    },
}

pub use tracer_evidence::display_netns as display_name;

/// Path of a named namespace; the empty name is tracer's own namespace.
pub fn netns_path(name: &str) -> PathBuf {
    if name.is_empty() {
        PathBuf::from("/proc/self/ns/net")
    } else {
        Path::new(NETNS_RUN_DIR).join(name)
    }
}

/// Opens namespace `name`'s file; kept, entering it later opens nothing.
pub fn open(name: &str) -> Result<File, NetnsError> {
    let path = netns_path(name);
    File::open(&path).map_err(|source| access_error(name, &path, source))
}

/// A namespace that is not there, or its file that cannot be read.
fn access_error(name: &str, path: &Path, source: std::io::Error) -> NetnsError {
    if source.kind() == std::io::ErrorKind::NotFound {
        NetnsError::NotFound {
            name: name.to_owned(),
            path: path.display().to_string(),
        }
    } else {
        NetnsError::Open {
            path: path.display().to_string(),
            source,
        }
    }
}

fn setns(file: &File, path: &str) -> Result<(), NetnsError> {
    // SAFETY: setns on a namespace fd; affects only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(NetnsError::Enter {
            path: path.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The calling thread is inside the namespace while this lives; dropping it returns.
pub struct NetnsGuard {
    original: Option<File>,
    /// setns is per thread: the guard must be dropped on the thread that made it.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl NetnsGuard {
    /// Enters namespace `name` (the empty name: stay where we are).
    pub fn enter(name: &str) -> Result<Self, NetnsError> {
        if name.is_empty() {
            return Ok(Self {
                original: None,
                _not_send: std::marker::PhantomData,
            });
        }
        let target = open(name)?;
        Self::enter_file(&target, &netns_path(name).display().to_string())
    }

    /// Enters the namespace of `file`, a namespace file kept open by the caller (`path` names
    /// it in errors).
    pub fn enter_file(file: &File, path: &str) -> Result<Self, NetnsError> {
        let original =
            File::open("/proc/thread-self/ns/net").map_err(|source| NetnsError::Open {
                path: "/proc/thread-self/ns/net".to_owned(),
                source,
            })?;
        setns(file, path)?;
        Ok(Self {
            original: Some(original),
            _not_send: std::marker::PhantomData,
        })
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Some(original) = &self.original
            && let Err(err) = setns(original, "/proc/thread-self/ns/net")
        {
            // Staying in the wrong namespace would make every later step wrong.
            eprintln!("tracer: cannot return to the original network namespace: {err}");
            std::process::abort();
        }
    }
}

/// The inode number of a namespace: what the kernel calls `ns.inum`. A `stat`, no descriptor:
/// it works when tracer is out of them.
pub fn netns_inode(name: &str) -> Result<u32, NetnsError> {
    let path = netns_path(name);
    let metadata = std::fs::metadata(&path).map_err(|source| access_error(name, &path, source))?;
    Ok(metadata.ino() as u32)
}

/// Names of all namespaces that have one, plus tracer's own (named ""), by inode.
pub fn netns_names() -> HashMap<u32, String> {
    let mut names = HashMap::new();
    if let Ok(entries) = std::fs::read_dir(NETNS_RUN_DIR) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(inode) = netns_inode(&name) {
                names.entry(inode).or_insert(name);
            }
        }
    }
    if let Ok(own) = netns_inode("") {
        names.insert(own, String::new());
    }
    names
}

/// Interface index of `interface` in the current thread's namespace.
pub fn ifindex(interface: &str) -> Option<u32> {
    let name = std::ffi::CString::new(interface).ok()?;
    // SAFETY: valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}
