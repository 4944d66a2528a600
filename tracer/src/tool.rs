//! External tools (nft, iptables-save, ip, …) run inside a namespace with limits: a hung tool
//! must not hang tracer. Each runs in a process group of its own, killed whole when it neither
//! uses CPU nor waits for one for [`TOOL_IDLE`] (it waits on something that does not come) or
//! is still working after [`TOOL_LIMIT`]. A tool that works slowly (a large ruleset, a loaded
//! or emulated machine) is not cut short: a fixed time would make a slow machine's tools look
//! hung.

use std::{
    io::Read,
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    process::{Child, Command, Stdio},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::netns;

/// How long a tool (its whole process group) may go without using or waiting for CPU before it
/// counts as hung.
pub const TOOL_IDLE: Duration = Duration::from_secs(5);
/// How long a tool that keeps working may run in all.
pub const TOOL_LIMIT: Duration = Duration::from_secs(60);

/// Runs `program args` in namespace `netns` and returns its standard output.
pub fn run(netns: &str, program: &str, args: &[&str]) -> Result<String, String> {
    run_with_limits(netns, program, args, TOOL_IDLE, TOOL_LIMIT)
}

/// How a command is shown in logs and errors.
pub fn shown(netns: &str, program: &str, args: &[&str]) -> String {
    if netns.is_empty() {
        format!("`{program} {}`", args.join(" "))
    } else {
        format!("`ip netns exec {netns} {program} {}`", args.join(" "))
    }
}

/// [`run`] with any limits. The tool runs in a process group of its own, killed whole when a
/// limit is reached: nothing it started outlives it.
fn run_with_limits(
    netns: &str,
    program: &str,
    args: &[&str],
    idle: Duration,
    limit: Duration,
) -> Result<String, String> {
    let shown = shown(netns, program, args);
    let mut command = Command::new(program);
    // The tool enters the namespace between fork and exec: what `ip netns exec` does for the
    // network, which is all these tools use of it, without starting an `ip` for each.
    let namespace = if netns.is_empty() {
        None
    } else {
        Some(netns::open(netns).map_err(|err| format!("{shown}: {err}"))?)
    };
    if let Some(file) = &namespace {
        let fd = file.as_raw_fd();
        // SAFETY: setns is async-signal-safe and changes only the child, between fork and
        // exec; `namespace` lives until after the spawn, so the descriptor is open then.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    command
        .args(args)
        // The parsers expect the tools' untranslated output.
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    log::debug!("running {shown}");
    let mut child = command
        .spawn()
        .map_err(|err| format!("{shown}: cannot run: {err}"))?;
    drop(namespace);
    // Read both pipes while waiting, so that a tool filling one never blocks.
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let started = Instant::now();
    // The group is looked at once per `idle`: its CPU time must have grown since the last look,
    // or one of its processes be runnable.
    let mut next_look = started + idle;
    let mut cpu_ticks = 0;
    // Most tools are done within milliseconds: looking every millisecond adds little to them.
    let pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= next_look => {
                let progress = group_progress(child.id());
                let ended = if progress.cpu_ticks == cpu_ticks && !progress.runnable {
                    Some(format!("hung: no CPU used for {} ms", idle.as_millis()))
                } else if started.elapsed() >= limit {
                    Some(format!("still working after {} ms", limit.as_millis()))
                } else {
                    None
                };
                if let Some(ended) = ended {
                    kill_group(&mut child);
                    // The readers end once the group is gone; they are not waited for.
                    return Err(format!("{shown}: {ended}"));
                }
                cpu_ticks = progress.cpu_ticks;
                next_look = (Instant::now() + idle).min(started + limit);
            }
            Ok(None) => {
                std::thread::sleep(pause);
            }
            Err(err) => {
                kill_group(&mut child);
                return Err(format!("{shown}: cannot wait for it: {err}"));
            }
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    if !status.success() {
        let stderr = stderr.join().unwrap_or_default();
        let stderr = String::from_utf8_lossy(&stderr);
        let reason = stderr
            .lines()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("no message");
        return Err(format!("{shown}: {status}: {reason}"));
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// How far a tool's process group has got: the CPU time (clock ticks) its processes and the
/// children they reaped used, and whether one of them is runnable now (waiting for a CPU on a
/// loaded machine is not hanging), from /proc/PID/stat.
#[derive(Debug, Default, PartialEq, Eq)]
struct Progress {
    cpu_ticks: u64,
    runnable: bool,
}

fn group_progress(group: u32) -> Progress {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Progress::default();
    };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .filter_map(|stat| {
            // The fields after the command's name, which may hold spaces and parentheses:
            // state, ppid, pgrp, … utime (14th of the line), stime, cutime, cstime.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let field = |index: usize| fields.get(index)?.parse::<u64>().ok();
            (field(2)? == u64::from(group)).then(|| Progress {
                cpu_ticks: (11..=14).filter_map(field).sum(),
                runnable: fields.first() == Some(&"R"),
            })
        })
        .fold(Progress::default(), |total, one| Progress {
            cpu_ticks: total.cpu_ticks + one.cpu_ticks,
            runnable: total.runnable || one.runnable,
        })
}

fn read_in_background(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            // What was read before an error is all there is.
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Kills the child's process group and reaps the child.
fn kill_group(child: &mut Child) {
    if let Ok(group) = i32::try_from(child.id()) {
        // SAFETY: kill has no memory preconditions. The child leads its own group
        // (`process_group(0)`) and is not reaped yet, so the id names no other process group.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_that_hangs_is_killed_and_reported() {
        let started = Instant::now();
        // The shell's own child holds the pipes too: it goes with the group.
        let result = run_with_limits(
            "",
            "sh",
            &["-c", "sleep 30 & sleep 30"],
            Duration::from_millis(300),
            TOOL_LIMIT,
        );
        assert_eq!(
            result,
            Err("`sh -c sleep 30 & sleep 30`: hung: no CPU used for 300 ms".to_owned())
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{started:?}");

        assert_eq!(run("", "echo", &["fast"]), Ok("fast\n".to_owned()));
        let failed = run("", "sh", &["-c", "echo why >&2; exit 3"]);
        assert_eq!(
            failed,
            Err("`sh -c echo why >&2; exit 3`: exit status: 3: why".to_owned())
        );
        let missing = run("", "tracer-no-such-tool", &[]).unwrap_err();
        assert!(missing.contains("cannot run"), "{missing}");
    }

    /// A tool that works past `idle` is left to finish; one that works past `limit` is not.
    #[test]
    fn a_tool_that_works_slowly_is_waited_for_up_to_the_limit() {
        // A child of the shell does the work: the group's CPU counts, not the leader's alone.
        let busy = |loops: &str| {
            format!("(i=0; while [ $i -lt {loops} ]; do i=$((i + 1)); done); echo worked")
        };
        let idle = Duration::from_millis(300);
        assert_eq!(
            run_with_limits("", "sh", &["-c", &busy("1000000")], idle, TOOL_LIMIT),
            Ok("worked\n".to_owned())
        );
        let started = Instant::now();
        let result = run_with_limits(
            "",
            "sh",
            &["-c", &busy("1000000000")],
            idle,
            Duration::from_secs(1),
        );
        assert!(
            result
                .as_ref()
                .is_err_and(|err| err.ends_with("still working after 1000 ms")),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{started:?}");
    }
}
