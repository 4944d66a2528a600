//! `tracer completions SHELL` and `tracer man`: written from the same clap definition as the
//! command line itself, so they never disagree with it.

use clap::CommandFactory as _;

use crate::{cli::Cli, output};

pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "tracer", &mut script);
    output::print(&String::from_utf8_lossy(&script))?;
    Ok(())
}

pub fn man() -> anyhow::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    output::print(&String::from_utf8_lossy(&page))?;
    Ok(())
}
