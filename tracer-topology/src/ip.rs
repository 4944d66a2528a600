//! Running `ip` (and `iptables` inside a namespace), and the namespaces `ip netns` names.

use std::{path::Path, process::Command};

/// Where `ip netns` keeps its named namespaces.
const NETNS_RUN_DIR: &str = "/var/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "namespace `{netns}` exists already: it is not this builder's and is left alone; remove it yourself (`ip netns del {netns}`) or choose other names"
    )]
    Exists { netns: String },
    #[error("running {program} (is it installed? `cargo xtask setup` installs it)")]
    Start {
        program: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
}

pub fn namespace_exists(name: &str) -> bool {
    Path::new(NETNS_RUN_DIR).join(name).exists()
}

/// Deletes namespace `name` if it exists; what was inside goes with it.
pub fn delete_namespace(name: &str) -> Result<(), Error> {
    if namespace_exists(name) {
        ip(&["netns", "del", name])?;
    }
    Ok(())
}

/// `ip ARGS`, which must succeed.
pub(crate) fn ip(args: &[&str]) -> Result<(), Error> {
    run("ip", args)
}

/// `ip -n NETNS ARGS`.
pub(crate) fn ip_in(netns: &str, args: &[&str]) -> Result<(), Error> {
    let mut all = vec!["-n", netns];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// `ip -batch -`: one `ip` for many commands (`commands`, one a line), which must all succeed.
pub(crate) fn ip_batch(commands: &str) -> Result<(), Error> {
    run_with_input("ip", &["-batch", "-"], commands)
}

/// `program ARGS` reading `input` on its standard input; it must succeed.
pub(crate) fn run_with_input(program: &str, args: &[&str], input: &str) -> Result<(), Error> {
    use std::{io::Write as _, process::Stdio};
    let start = |source| Error::Start {
        program: program.to_owned(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(start)?;
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes());
    let output = child.wait_with_output().map_err(start)?;
    written.map_err(start)?;
    if !output.status.success() {
        return Err(Error::Failed {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// `iptables ARGS` inside `netns`.
pub(crate) fn iptables_in(netns: &str, args: &[String]) -> Result<(), Error> {
    let mut all = vec!["netns", "exec", netns, "iptables"];
    all.extend(args.iter().map(String::as_str));
    run("ip", &all)
}

fn run(program: &str, args: &[&str]) -> Result<(), Error> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| Error::Start {
            program: program.to_owned(),
            source,
        })?;
    if !output.status.success() {
        return Err(Error::Failed {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}
