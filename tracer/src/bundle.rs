//! The `--report DIR` of diagnose and watch, written safely in a directory others may write to
//! (`/tmp/bundle`): tracer runs as root, and a symbolic link planted where a report file goes
//! would otherwise make it overwrite any file of the machine.
//!
//! DIR is opened once (`O_DIRECTORY | O_NOFOLLOW`) and every file is created relative to it
//! with `O_CREAT | O_EXCL | O_NOFOLLOW`: a symbolic link (or anything not a regular file) where
//! a file or the `snapshot` directory goes is refused with a usage error, never followed. A
//! regular file from an earlier run is replaced.

use std::{
    ffi::CString,
    fs::File,
    io::{self, Write as _},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::{Path, PathBuf},
};

use crate::error::UsageError;

/// Created and removed again to find out, before any probing, whether DIR can be written.
const WRITE_TEST: &str = ".tracer-write-test";

/// Writes one file of output named on the command line outside a report directory (`--svg`,
/// `--html`), synced like the report's files: a full or failing disk is an error, and the file
/// cut short is removed.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), UsageError> {
    let unwritable = |source| UsageError::OutputUnwritable {
        path: path.to_owned(),
        source,
    };
    let mut file = File::create(path).map_err(unwritable)?;
    write_whole(&mut file, bytes).map_err(|err| {
        let _ = std::fs::remove_file(path);
        unwritable(err)
    })
}

/// All of `bytes`, kept by the disk: a failed write-back (EIO) shows only at a sync.
fn write_whole(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    file.write_all(bytes)?;
    file.sync_data()
}

/// An open report directory.
#[derive(Debug)]
pub struct ReportDir {
    fd: OwnedFd,
    path: PathBuf,
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn refused(path: &Path, what: &str) -> UsageError {
    UsageError::Argument(format!(
        "{} is {what}: tracer writes its report only to files it creates itself; remove it or \
         choose another --report directory",
        path.display()
    ))
}

fn unwritable(path: &Path, err: io::Error) -> UsageError {
    UsageError::ReportUnwritable {
        path: path.to_owned(),
        source: err,
    }
}

/// One file name inside the directory: no separator, not `.` or `..`.
fn component(name: &str) -> io::Result<CString> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    c_string(name.as_bytes())
}

impl ReportDir {
    /// Creates DIR (and its parents) if missing, opens it without following a symbolic link in
    /// its last component, and checks that a file can be created in it.
    pub fn create(path: &Path) -> Result<Self, UsageError> {
        std::fs::create_dir_all(path).map_err(|err| unwritable(path, err))?;
        let directory = Self::open(path)?;
        directory.write(WRITE_TEST, b"")?;
        directory.remove(WRITE_TEST);
        Ok(directory)
    }

    /// Checks, creating nothing that stays, that a bundle can be written at `path` later: an
    /// existing DIR must be writable and hold no bundle (its `marker` file) unless `replace`;
    /// a missing one must be creatable (its nearest existing ancestor a writable directory).
    pub fn check_new(path: &Path, marker: &str, replace: bool) -> Result<(), UsageError> {
        if std::fs::symlink_metadata(path).is_ok() {
            let directory = Self::open(path)?;
            directory.write(WRITE_TEST, b"")?;
            directory.remove(WRITE_TEST);
            return directory.refuse_bundle(marker, replace);
        }
        let ancestor = path
            .ancestors()
            .skip(1)
            .map(|dir| {
                if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                }
            })
            .find(|dir| dir.exists())
            .unwrap_or(Path::new("/"));
        let c_ancestor =
            c_string(ancestor.as_os_str().as_bytes()).map_err(|err| unwritable(path, err))?;
        if !ancestor.is_dir() {
            return Err(UsageError::Argument(format!(
                "report directory {} cannot be created: {} is not a directory",
                path.display(),
                ancestor.display()
            )));
        }
        // SAFETY: access with a NUL-terminated path only reads the file system.
        if unsafe { libc::access(c_ancestor.as_ptr(), libc::W_OK) } != 0 {
            return Err(unwritable(path, io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Refuses a directory that already holds a bundle (its `marker` file), unless `replace`.
    pub fn refuse_bundle(&self, marker: &str, replace: bool) -> Result<(), UsageError> {
        let c_marker = component(marker).map_err(|err| unwritable(&self.path, err))?;
        let holds = self
            .kind(&c_marker)
            .map_err(|err| unwritable(&self.path, err))?
            .is_some();
        if holds && !replace {
            return Err(UsageError::Argument(format!(
                "{} already holds a bundle ({marker}): tracer never overwrites one; give another \
                 --report directory, or --force to replace it",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// Opens an existing DIR, refusing a symbolic link.
    pub fn open(path: &Path) -> Result<Self, UsageError> {
        let name = c_string(path.as_os_str().as_bytes()).map_err(|err| unwritable(path, err))?;
        // SAFETY: a NUL-terminated path; the descriptor returned is owned below.
        let fd = unsafe {
            libc::open(
                name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::ELOOP) => refused(path, "a symbolic link"),
                Some(libc::ENOTDIR) => refused(path, "not a directory"),
                _ => unwritable(path, err),
            });
        }
        Ok(Self {
            // SAFETY: `fd` was just opened and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_owned(),
        })
    }

    /// What is at `name` in the directory, without following a link: `None` when nothing is.
    fn kind(&self, name: &CString) -> io::Result<Option<libc::mode_t>> {
        // SAFETY: fstatat writes into the zeroed struct it is given; `name` is NUL-terminated.
        unsafe {
            let mut stat: libc::stat = std::mem::zeroed();
            if libc::fstatat(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                &mut stat,
                libc::AT_SYMLINK_NOFOLLOW,
            ) != 0
            {
                let err = io::Error::last_os_error();
                return if err.kind() == io::ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(err)
                };
            }
            Ok(Some(stat.st_mode & libc::S_IFMT))
        }
    }

    fn describe(mode: libc::mode_t) -> &'static str {
        match mode {
            libc::S_IFLNK => "a symbolic link",
            libc::S_IFDIR => "a directory",
            _ => "not a regular file",
        }
    }

    /// Writes `bytes` to the new file `name` (a regular file of an earlier run is replaced).
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), UsageError> {
        let path = self.path.join(name);
        let unwritable = |err: io::Error| unwritable(&self.path, err);
        let c_name = component(name).map_err(unwritable)?;
        match self.kind(&c_name).map_err(unwritable)? {
            None => {}
            Some(libc::S_IFREG) => self.unlink(&c_name).map_err(unwritable)?,
            Some(mode) => return Err(refused(&path, Self::describe(mode))),
        }
        // SAFETY: openat relative to our directory, with a NUL-terminated single component;
        // O_EXCL | O_NOFOLLOW: nothing that appeared meanwhile, a link least of all, is opened.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c_name.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o644 as libc::c_uint,
            )
        };
        if fd < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::EEXIST | libc::ELOOP) => refused(&path, "something tracer did not make"),
                _ => unwritable(err),
            });
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let mut file = unsafe { File::from_raw_fd(fd) };
        // A file cut short (a full disk) or whose data the disk failed to keep (EIO, which
        // only a sync reports) is removed: what the bundle holds is whole.
        write_whole(&mut file, bytes).map_err(|err| {
            let _ = self.unlink(&c_name);
            unwritable(err)
        })
    }

    /// Opens the subdirectory `name`, creating it if missing; a link there is refused.
    pub fn subdirectory(&self, name: &str) -> Result<Self, UsageError> {
        let path = self.path.join(name);
        let unwritable = |err: io::Error| unwritable(&self.path, err);
        let c_name = component(name).map_err(unwritable)?;
        match self.kind(&c_name).map_err(unwritable)? {
            None => {
                // SAFETY: mkdirat relative to our directory, with a NUL-terminated component.
                if unsafe { libc::mkdirat(self.fd.as_raw_fd(), c_name.as_ptr(), 0o755) } != 0 {
                    let err = io::Error::last_os_error();
                    if err.kind() != io::ErrorKind::AlreadyExists {
                        return Err(unwritable(err));
                    }
                }
            }
            Some(libc::S_IFDIR) => {}
            Some(mode) => return Err(refused(&path, Self::describe(mode))),
        }
        // SAFETY: openat relative to our directory; O_NOFOLLOW refuses a link planted meanwhile.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c_name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::ELOOP | libc::ENOTDIR) => refused(&path, "not a directory tracer made"),
                _ => unwritable(err),
            });
        }
        Ok(Self {
            // SAFETY: `fd` was just opened and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path,
        })
    }

    /// Removes the file `name` (a link: the link itself, never its target).
    fn unlink(&self, name: &CString) -> io::Result<()> {
        // SAFETY: unlinkat of a NUL-terminated name in our directory.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), name.as_ptr(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Removes the file `name` if it is there.
    fn remove(&self, name: &str) {
        if let Ok(c_name) = component(name) {
            let _ = self.unlink(&c_name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("tracer-bundle-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        path
    }

    #[test]
    fn writes_and_replaces_regular_files() {
        let path = scratch("plain");
        let directory = ReportDir::create(&path).unwrap();
        directory.write("report.md", b"one").unwrap();
        directory.write("report.md", b"two").unwrap();
        assert_eq!(std::fs::read(path.join("report.md")).unwrap(), b"two");
        let snapshot = directory.subdirectory("snapshot").unwrap();
        snapshot.write("ns.txt", b"x").unwrap();
        assert_eq!(std::fs::read(path.join("snapshot/ns.txt")).unwrap(), b"x");
        assert!(!path.join(WRITE_TEST).exists());
        std::fs::remove_dir_all(&path).unwrap();
    }

    #[test]
    fn links_are_refused_never_followed() {
        let path = scratch("links");
        let outside = scratch("outside");
        std::fs::create_dir_all(&path).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let victim = outside.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        for name in [WRITE_TEST, "report.json"] {
            std::os::unix::fs::symlink(&victim, path.join(name)).unwrap();
        }
        std::os::unix::fs::symlink(&outside, path.join("snapshot")).unwrap();
        assert!(ReportDir::create(&path).is_err());
        std::fs::remove_file(path.join(WRITE_TEST)).unwrap();
        let directory = ReportDir::create(&path).unwrap();
        let refused = directory.write("report.json", b"x").unwrap_err();
        assert!(refused.to_string().contains("symbolic link"), "{refused}");
        assert!(directory.subdirectory("snapshot").is_err());
        assert!(directory.write("../escape", b"x").is_err());
        let linked = scratch("linked");
        std::os::unix::fs::symlink(&path, &linked).unwrap();
        assert!(ReportDir::open(&linked).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        let _ = std::fs::remove_file(&linked);
        std::fs::remove_dir_all(&path).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }
}
