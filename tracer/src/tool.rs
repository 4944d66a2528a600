//! External tools (nft, iptables-save, ip, …) run inside a namespace with a time limit: a hung
//! tool must not hang tracer. Each runs in a process group of its own, killed whole when the
//! time is up.

use std::{
    io::Read,
    os::unix::process::CommandExt as _,
    process::{Child, Command, Stdio},
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// How long one tool may run before it is killed and its source reported as "timed out".
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `program args` in namespace `netns` and returns its standard output.
pub fn run(netns: &str, program: &str, args: &[&str]) -> Result<String, String> {
    run_with_timeout(netns, program, args, TOOL_TIMEOUT)
}

/// How a command is shown in logs and errors.
pub fn shown(netns: &str, program: &str, args: &[&str]) -> String {
    if netns.is_empty() {
        format!("`{program} {}`", args.join(" "))
    } else {
        format!("`ip netns exec {netns} {program} {}`", args.join(" "))
    }
}

/// [`run`] with any time limit. The tool runs in a process group of its own, killed whole
/// when the time is up: nothing it started outlives it.
fn run_with_timeout(
    netns: &str,
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<String, String> {
    let mut command = if netns.is_empty() {
        Command::new(program)
    } else {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", netns, program]);
        command
    };
    command
        .args(args)
        // The parsers expect the tools' untranslated output.
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let shown = shown(netns, program, args);
    log::debug!("running {shown}");
    let mut child = command
        .spawn()
        .map_err(|err| format!("{shown}: cannot run: {err}"))?;
    // Read both pipes while waiting, so that a tool filling one never blocks.
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let deadline = Instant::now() + timeout;
    // Most tools are done within milliseconds: looking every millisecond adds little to them.
    let pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                kill_group(&mut child);
                // The readers end once the group is gone; they are not waited for.
                return Err(format!(
                    "{shown}: timed out after {} ms",
                    timeout.as_millis()
                ));
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
        let result = run_with_timeout(
            "",
            "sh",
            &["-c", "sleep 30 & sleep 30"],
            Duration::from_millis(200),
        );
        assert_eq!(
            result,
            Err("`sh -c sleep 30 & sleep 30`: timed out after 200 ms".to_owned())
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{started:?}");

        assert_eq!(
            run_with_timeout("", "echo", &["fast"], Duration::from_secs(5)),
            Ok("fast\n".to_owned())
        );
        let failed = run_with_timeout("", "sh", &["-c", "echo why >&2; exit 3"], TOOL_TIMEOUT);
        assert_eq!(
            failed,
            Err("`sh -c echo why >&2; exit 3`: exit status: 3: why".to_owned())
        );
        let missing = run("", "tracer-no-such-tool", &[]).unwrap_err();
        assert!(missing.contains("cannot run"), "{missing}");
    }
}
