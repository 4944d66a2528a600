//! The tracer command line: parse, dispatch, map errors to exit codes.

use std::{io::Write as _, process::ExitCode};

use clap::{Parser as _, error::ErrorKind};

use tracer::{
    cli::{Cli, Command, LabAction},
    commands,
    error::{ExitError, UsageError},
    logging,
    output::OutputError,
};

/// One line on stderr; a stderr that cannot be written is no reason to panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Exit code for a usage or environment error: the user can fix it.
const EXIT_USAGE: u8 = 2;
/// Exit code for tracer's own failure.
const EXIT_INTERNAL: u8 = 1;

fn main() -> ExitCode {
    // A panic is a bug, but it still gets one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        say!("tracer: internal error: {info}");
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return clap_exit(&err),
    };
    logging::init(cli.verbose);
    if let Err(usage) = cli.check() {
        say!("tracer: {usage}");
        return ExitCode::from(EXIT_USAGE);
    }
    let result = match &cli.command {
        Command::Cables(args) => commands::cables::run(args, cli.verbose),
        Command::Counters(args) => commands::counters::run(args, cli.verbose).map(|()| 0),
        Command::Diagnose(args) => commands::diagnose::run(args, cli.verbose),
        Command::Watch(args) => commands::watch::run(args, cli.verbose),
        Command::Monitor(args) => commands::monitor::run(args, cli.verbose).map(|()| 0),
        Command::Doctor(args) => commands::doctor::run(args, cli.verbose),
        Command::Triage(args) => commands::triage::run(args),
        Command::Lab { action } => match action {
            LabAction::Up(args) => commands::lab::up(args).map(|()| 0),
            LabAction::Down(args) => commands::lab::down(args).map(|()| 0),
        },
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if let Some(usage) = err.downcast_ref::<UsageError>() {
                say!("tracer: {usage}");
                ExitCode::from(EXIT_USAGE)
            } else if let Some(output) = err.downcast_ref::<OutputError>() {
                // A reader that went away is no news to anyone: exit as SIGPIPE would, quietly.
                if !matches!(output, OutputError::BrokenPipe) {
                    say!("tracer: {output}");
                }
                ExitCode::from(output.exit_code())
            } else if let Some(exit) = err.downcast_ref::<ExitError>() {
                say!("tracer: {exit}");
                ExitCode::from(exit.code)
            } else {
                say!("tracer: error: {err:#}");
                ExitCode::from(EXIT_INTERNAL)
            }
        }
    }
}

/// Help and version go to stdout in full; argument errors become one line on stderr.
fn clap_exit(err: &clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = write!(std::io::stdout(), "{}", err.render());
            if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            let rendered = err.render().to_string();
            let mut lines = rendered
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty());
            let first = lines.next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            // "the following required arguments were not provided:" names them on the next line.
            let detail = match lines.next() {
                Some(next) if first.ends_with(':') => format!(" {next}"),
                _ => String::new(),
            };
            say!("tracer: {first}{detail} (see `tracer --help`)");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
