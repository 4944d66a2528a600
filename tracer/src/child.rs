//! The command `tracer watch` runs: started in a process group of its own, signalled as a group,
//! killed when it ignores a stop, and never left running after tracer is gone.
//!
//! - Not found: exit 127; found but not executable: exit 126 (as a shell says it), one line.
//! - SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to tracer go to the whole group:
//!   a test script's own children (servers, `sleep`s, `ip netns exec`) get them too.
//! - After SIGINT or SIGTERM, a group still running after the grace period is sent SIGKILL.
//! - The command gets SIGKILL from the kernel when tracer dies, however it dies
//!   (`PR_SET_PDEATHSIG`).
//! - When tracer runs in the foreground of a terminal, the command's group is made the
//!   terminal's foreground group while it runs, so that it can read the terminal (and Ctrl-C
//!   reaches it directly), and tracer takes the terminal back afterwards.

use std::{
    io,
    os::fd::AsRawFd as _,
    process::ExitStatus,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    time::Instant,
};

use crate::error::ExitError;

/// Signals passed on to the command's process group.
pub const FORWARDED_SIGNALS: [i32; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Exit code of a command that is not found, as a shell says it.
pub const EXIT_NOT_FOUND: u8 = 127;
/// Exit code of a command that is found but cannot be executed.
pub const EXIT_NOT_EXECUTABLE: u8 = 126;

/// tracer's handlers of the forwarded signals; installed before the command starts, so that
/// none is lost (or kills tracer) in between.
pub struct Signals {
    handlers: Vec<(i32, Signal)>,
}

impl Signals {
    pub fn install() -> io::Result<Self> {
        let handlers = FORWARDED_SIGNALS
            .iter()
            .map(|&number| Ok((number, signal(SignalKind::from_raw(number))?)))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self { handlers })
    }

    /// The next forwarded signal that arrives, by number.
    pub async fn recv(&mut self) -> i32 {
        std::future::poll_fn(|cx: &mut Context<'_>| {
            for (number, handler) in &mut self.handlers {
                if handler.poll_recv(cx).is_ready() {
                    return Poll::Ready(*number);
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// The running command.
pub struct Child {
    inner: tokio::process::Child,
    /// Its process group: its pid.
    group: i32,
    kill_after: Duration,
    /// When the group gets SIGKILL: set by the first SIGINT or SIGTERM passed on.
    kill_at: Option<Instant>,
    /// The terminal was handed to the command's group, and is to be taken back.
    terminal: bool,
}

/// Whether standard input is a terminal whose foreground process group is tracer's.
fn in_terminal_foreground() -> bool {
    let stdin = io::stdin();
    let fd = stdin.as_raw_fd();
    // SAFETY: isatty, tcgetpgrp and getpgrp only read process state.
    unsafe { libc::isatty(fd) == 1 && libc::tcgetpgrp(fd) == libc::getpgrp() }
}

/// Whether `argv[0]` can be run, found as `execvp` would find it: before anything is attached,
/// so that a typo costs one line and nothing else.
pub fn check(argv: &[String]) -> Result<(), ExitError> {
    let Some(program) = argv.first() else {
        return Err(ExitError {
            code: EXIT_NOT_FOUND,
            message: "no command given".to_owned(),
        });
    };
    let executable = |path: &std::path::Path| -> Result<(), io::Error> {
        let metadata = std::fs::metadata(path)?;
        if metadata.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        let name = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: access with a NUL-terminated path.
        if unsafe { libc::access(name.as_ptr(), libc::X_OK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    if program.contains('/') {
        return executable(std::path::Path::new(program)).map_err(|err| not_started(program, &err));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut found_unusable = None;
    for directory in std::env::split_paths(&path) {
        match executable(&directory.join(program)) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => found_unusable = found_unusable.or(Some(err)),
        }
    }
    let err = found_unusable.unwrap_or_else(|| io::ErrorKind::NotFound.into());
    Err(not_started(program, &err))
}

/// Starts `argv` in a process group of its own, with tracer's standard streams.
pub fn spawn(argv: &[String], kill_after: Duration) -> Result<Child, ExitError> {
    let (program, args) = argv.split_first().ok_or_else(|| ExitError {
        code: EXIT_NOT_FOUND,
        message: "no command given".to_owned(),
    })?;
    let terminal = in_terminal_foreground();
    // SAFETY: getpid has no preconditions.
    let tracer = unsafe { libc::getpid() };
    let mut command = tokio::process::Command::new(program);
    command.args(args);
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (setpgid, prctl, getppid, raise, sigprocmask, tcsetpgrp, getpid).
    unsafe {
        command.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // tracer died between fork and prctl: the kernel will not send it any more.
            if libc::getppid() != tracer {
                libc::raise(libc::SIGKILL);
            }
            if terminal {
                // A background group taking the terminal is sent SIGTTOU unless it blocks it.
                let mut block: libc::sigset_t = std::mem::zeroed();
                let mut old: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut block);
                libc::sigaddset(&mut block, libc::SIGTTOU);
                libc::sigprocmask(libc::SIG_BLOCK, &block, &mut old);
                libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpid());
                libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            }
            Ok(())
        });
    }
    let inner = command.spawn().map_err(|err| not_started(program, &err))?;
    let group = inner.id().map_or(0, |pid| pid as i32);
    Ok(Child {
        inner,
        group,
        kill_after,
        kill_at: None,
        terminal,
    })
}

/// Why the command did not start, with the exit code a shell would give.
fn not_started(program: &str, err: &io::Error) -> ExitError {
    if err.kind() == io::ErrorKind::NotFound {
        ExitError {
            code: EXIT_NOT_FOUND,
            message: format!("`{program}`: command not found"),
        }
    } else {
        ExitError {
            code: EXIT_NOT_EXECUTABLE,
            message: format!("`{program}`: cannot execute: {err}"),
        }
    }
}

impl Child {
    /// Sends `number` to the command's whole process group; SIGINT and SIGTERM also start the
    /// grace period after which the group is killed.
    pub fn forward(&mut self, number: i32) {
        self.signal_group(number);
        if matches!(number, libc::SIGINT | libc::SIGTERM) && self.kill_at.is_none() {
            self.kill_at = Some(Instant::now() + self.kill_after);
        }
    }

    fn signal_group(&self, number: i32) {
        if self.group <= 0 {
            return;
        }
        // SAFETY: kill has no memory-safety preconditions; the group is the command's own (its
        // leader is our unreaped child, so the id cannot have been reused).
        if unsafe { libc::kill(-self.group, number) } != 0 {
            log::debug!(
                "signalling process group {}: {}",
                self.group,
                io::Error::last_os_error()
            );
        }
    }

    /// Waits for the command to exit, killing its group once the grace period after a stop
    /// runs out. Cancel-safe: it may be dropped and called again.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            let deadline = self.kill_at;
            let status = tokio::select! {
                status = self.inner.wait() => status,
                () = sleep_until(deadline) => {
                    log::warn!(
                        "the command still runs {} s after it was told to stop: killing its process group",
                        self.kill_after.as_secs()
                    );
                    self.signal_group(libc::SIGKILL);
                    self.kill_at = None;
                    continue;
                }
            };
            self.take_terminal_back();
            return status;
        }
    }

    /// Makes tracer's group the terminal's foreground group again.
    fn take_terminal_back(&mut self) {
        if !std::mem::take(&mut self.terminal) {
            return;
        }
        // SAFETY: SIGTTOU is ignored around tcsetpgrp (a background group would be stopped by
        // it), then its disposition is restored; no handler of tracer's is involved.
        unsafe {
            let previous = libc::signal(libc::SIGTTOU, libc::SIG_IGN);
            libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpgrp());
            libc::signal(libc::SIGTTOU, previous);
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.take_terminal_back();
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_of_commands_that_do_not_start() {
        let missing = not_started("nope", &io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(missing.code, 127);
        assert_eq!(missing.message, "`nope`: command not found");
        let denied = not_started("./x", &io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(denied.code, 126);
        let format = not_started("./x", &io::Error::from_raw_os_error(libc::ENOEXEC));
        assert_eq!(format.code, 126);
    }
}
