//! The tracer command line: parse, dispatch, map errors to exit codes.

use std::{io::Write as _, process::ExitCode};

use clap::{Parser as _, error::ErrorKind};

use tracer::{
    cli::{Cli, Command, LabAction},
    commands,
    error::{ExitError, UsageError},
    logging,
    output::{self, OutputError},
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
    logging::init(cli.verbose, cli.quiet);
    output::set_colour(cli.color);
    output::set_quiet(cli.quiet);
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
        Command::Completions { shell } => commands::help::completions(*shell).map(|()| 0),
        Command::Man => commands::help::man().map(|()| 0),
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
            say!("tracer: {}", one_line(&err.render().to_string()));
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// clap's error in one line: what is wrong, its tip (a similar name, say), a hint for a command
/// given to watch without `--`, and the help of the command it concerns.
fn one_line(rendered: &str) -> String {
    let lines: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let first = lines.first().copied().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // "the following required arguments were not provided:" names them on the next line.
    let mut line = match lines.get(1) {
        Some(next) if first.ends_with(':') => format!("{first} {next}"),
        _ => first.to_owned(),
    };
    for tip in lines.iter().filter_map(|line| line.strip_prefix("tip: ")) {
        line.push_str(&format!("; {tip}"));
    }
    // `Usage: tracer watch [OPTIONS] -- <COMMAND>...`: the command whose help to see.
    let usage = lines.iter().find_map(|line| line.strip_prefix("Usage: "));
    let command: Vec<&str> = usage
        .map(|usage| {
            usage
                .split_whitespace()
                .take_while(|word| !word.starts_with(['[', '<', '-']))
                .collect()
        })
        .unwrap_or_default();
    if command.get(1) == Some(&"watch") && first.starts_with("unexpected argument") {
        line.push_str("; give the command after `--`: tracer watch [OPTIONS] -- CMD [ARGS...]");
    }
    // Errors about a value carry no usage line: the subcommand is the first word given.
    let given = std::env::args()
        .nth(1)
        .filter(|word| !word.starts_with('-'));
    let help = match (command.len() > 1, given) {
        (true, _) => command.join(" "),
        (false, Some(subcommand)) if !first.contains("subcommand") => {
            format!("tracer {subcommand}")
        }
        _ => "tracer".to_owned(),
    };
    format!("{line} (see `{help} --help`)")
}
