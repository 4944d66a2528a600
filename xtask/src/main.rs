//! Developer tasks: `cargo xtask setup | build | test | demo | lint | fuzz | soak | bench |
//! kernels | screenshots`.

mod bench;
mod demo;
mod fuzz;
mod kernels;
mod lint;
mod screenshots;
mod setup;
mod soak;
mod util;

use std::{path::PathBuf, process::ExitCode, time::Duration};

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
    /// Set up, build, run the unit tests and the root-only integration tests, then every fuzz
    /// target briefly (not when a test filter is given)
    Test {
        /// Extra arguments for the test harness, e.g. a test name filter
        #[arg(last = true)]
        harness_args: Vec<String>,
    },
    /// Set up, build, bring up the built-in lab, show tracer at work on it, take the lab down
    Demo,
    /// rustfmt check, clippy (warnings are errors) on the workspace and on the eBPF crate
    Lint,
    /// Set up, then run every fuzz target in fuzz/ for a while, with the pinned nightly
    Fuzz {
        /// Seconds per target
        #[arg(long, value_name = "SECS", default_value_t = 60,
              value_parser = clap::value_parser!(u64).range(1..))]
        seconds: u64,
    },
    /// Set up, build, keep `tracer monitor` on a lab under flood ping and iperf3 while its veth
    /// pair is deleted and created anew every 20 s; check that its memory stays flat and its
    /// counts match the kernel's interface statistics
    Soak {
        /// How long the traffic runs
        #[arg(long, value_name = "N", default_value_t = 10,
              value_parser = clap::value_parser!(u64).range(1..))]
        minutes: u64,
    },
    /// Set up, build, measure what tracer costs (per packet, attach time, throughput, diagnose
    /// time, memory) on a lab of its own, print a table; see docs/PERFORMANCE.md
    Bench {
        /// Also write the numbers to FILE as JSON
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Seconds of traffic before the attached tracer's memory is read
        #[arg(long, value_name = "SECS", default_value_t = 60,
              value_parser = clap::value_parser!(u64).range(1..))]
        rss_seconds: u64,
        /// Run only this part of the bench (faster)
        #[arg(long, value_enum)]
        only: Option<bench::Only>,
    },
    /// Set up, build, draw path.svg of two verdicts on the built-in lab (ok, and ICMP dropped by
    /// netfilter) and render them with headless Chromium (installed here) into docs/images/
    Screenshots,
    /// Set up, build, boot Debian's kernels (5.10, 6.1, 6.12, the newest trixie has) under QEMU
    /// with the host's root shared read-only, run the root integration tests in each, print a
    /// table; packages and kernels are cached in target/kernels/
    Kernels {
        /// A kernel by name (5.10, 6.1, 6.12, newest), Debian suite (bullseye, bookworm,
        /// bookworm-backports, trixie) or release (7.3); repeatable; default: all
        #[arg(
            long = "kernel",
            value_name = "SUITE_OR_VERSION",
            value_delimiter = ','
        )]
        kernels: Vec<String>,
        /// Seconds each kernel may take, boot to power-off, before QEMU is killed
        #[arg(long, value_name = "SECS", default_value_t = 1800,
              value_parser = clap::value_parser!(u64).range(1..))]
        timeout: u64,
        /// How many kernels boot at once (each guest has 2 vCPUs and 2 GiB); the tests scale
        /// their hang guards by the slowness each guest measures, contention included
        #[arg(long, value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u64).range(1..=8))]
        jobs: u64,
        /// Arguments for each test binary's harness, e.g. test name filters
        #[arg(last = true)]
        harness_args: Vec<String>,
    },
}

/// Fuzzing time per target in `cargo xtask test`: enough to catch shallow crashes, short
/// enough for CI.
const FUZZ_SECONDS_IN_TEST: u64 = 15;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Build => setup::run().and_then(|()| util::build_tracer()),
        Task::Test { harness_args } => setup::run()
            .and_then(|()| util::require_root("cargo xtask test"))
            .and_then(|()| util::build_tracer())
            .and_then(|()| util::run_tests(&harness_args))
            // A filter asks for some tests only: the fuzzers are not among them.
            .and_then(|()| {
                if harness_args.is_empty() {
                    fuzz::run(FUZZ_SECONDS_IN_TEST)
                } else {
                    Ok(())
                }
            }),
        Task::Demo => setup::run()
            .and_then(|()| util::require_root("cargo xtask demo"))
            .and_then(|()| util::build_tracer())
            .and_then(|()| demo::run()),
        Task::Lint => setup::run().and_then(|()| lint::run()),
        Task::Fuzz { seconds } => setup::run().and_then(|()| fuzz::run(seconds)),
        Task::Soak { minutes } => setup::run()
            .and_then(|()| util::require_root("cargo xtask soak"))
            .and_then(|()| util::build_tracer())
            .and_then(|()| soak::run(minutes)),
        Task::Bench {
            json,
            rss_seconds,
            only,
        } => setup::run()
            .and_then(|()| util::require_root("cargo xtask bench"))
            .and_then(|()| util::build_tracer_bins())
            .and_then(|()| bench::run(json.as_deref(), rss_seconds, only)),
        Task::Screenshots => setup::run()
            .and_then(|()| util::require_root("cargo xtask screenshots"))
            .and_then(|()| util::build_tracer())
            .and_then(|()| screenshots::run()),
        Task::Kernels {
            kernels: selection,
            timeout,
            jobs,
            harness_args,
        } => setup::run()
            .and_then(|()| util::require_root("cargo xtask kernels"))
            .and_then(|()| util::build_tracer())
            .and_then(|()| {
                kernels::run(
                    &selection,
                    Duration::from_secs(timeout),
                    jobs as usize,
                    &harness_args,
                )
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            if err.is::<kernels::Unavailable>() {
                ExitCode::from(kernels::UNAVAILABLE_EXIT)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
