//! Developer tasks: `cargo xtask setup | build | test | demo`.

mod demo;
mod setup;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "tracer's developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what building and testing need (Debian packages, the pinned eBPF nightly with
    /// rust-src, bpf-linker against LLVM 22); idempotent
    Setup,
    /// Set up, then build tracer (release)
    Build,
    /// Set up, build, run the unit tests and the root-only integration tests
    Test {
        /// Extra arguments for the test harness, e.g. a test name filter
        #[arg(last = true)]
        harness_args: Vec<String>,
    },
    /// Set up, build, bring up the built-in lab, show tracer at work on it, take the lab down
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Build => setup::run().and_then(|()| util::build_tracer()),
        Task::Test { harness_args } => setup::run()
            .and_then(|()| util::require_root("cargo xtask test"))
            .and_then(|()| util::build_tracer())
            .and_then(|()| util::run_tests(&harness_args)),
        Task::Demo => setup::run()
            .and_then(|()| util::require_root("cargo xtask demo"))
            .and_then(|()| util::build_tracer())
            .and_then(|()| demo::run()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}
