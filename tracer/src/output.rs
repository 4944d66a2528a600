//! tracer's standard output: every command prints through [`print`], which never panics on a
//! closed pipe or a full disk (as `println!` does) but says what happened with an error that
//! `main` turns into an exit code: 141 (128 + SIGPIPE) quietly for a reader that went away, as
//! a shell pipeline expects, and 1 with one line for anything else.

use std::{
    io::{self, IsTerminal as _, Write as _},
    sync::OnceLock,
};

use thiserror::Error;

use crate::cli::ColorChoice;

/// The `--color` choice, set once at start.
static COLOUR: OnceLock<ColorChoice> = OnceLock::new();

pub fn set_colour(choice: ColorChoice) {
    let _ = COLOUR.set(choice);
}

/// `--quiet`, set once at start: errors only on standard error.
static QUIET: OnceLock<bool> = OnceLock::new();

pub fn set_quiet(quiet: bool) {
    let _ = QUIET.set(quiet);
}

/// A note on standard error about what tracer is doing (not an error): silent with `--quiet`.
pub fn note(text: &str) {
    if !QUIET.get().copied().unwrap_or(false) {
        let _ = io::stderr().write_all(text.as_bytes());
    }
}

/// Whether standard output gets colour: `--color always` or `never` as said; with `auto` (the
/// default) only on a terminal, and not when NO_COLOR is set (https://no-color.org) or
/// TERM=dumb.
pub fn colour() -> bool {
    match COLOUR.get().copied().unwrap_or(ColorChoice::Auto) {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
                && std::env::var("TERM").ok().as_deref() != Some("dumb")
        }
    }
}

/// Writing the output failed.
#[derive(Debug, Error)]
pub enum OutputError {
    /// The reader went away (`tracer ... | head -1`): nothing to say to anyone.
    #[error("standard output closed by its reader")]
    BrokenPipe,
    #[error("cannot write the output: {0}")]
    Write(io::Error),
}

impl OutputError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::BrokenPipe => 128 + libc::SIGPIPE as u8,
            Self::Write(_) => 1,
        }
    }
}

impl From<io::Error> for OutputError {
    fn from(err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::BrokenPipe {
            Self::BrokenPipe
        } else {
            Self::Write(err)
        }
    }
}

/// Writes `text` to standard output and flushes it.
pub fn print(text: &str) -> Result<(), OutputError> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Writes text meant for people: on a terminal, wrapped to its width (scripts reading a pipe
/// get the lines whole).
pub fn print_text(text: &str) -> Result<(), OutputError> {
    match terminal_width() {
        Some(width) => print(&crate::render::wrap::wrap(text, width)),
        None => print(text),
    }
}

/// The width of the terminal standard output is, from the terminal (else COLUMNS); none when
/// it is not a terminal.
fn terminal_width() -> Option<usize> {
    if !io::stdout().is_terminal() {
        return None;
    }
    // SAFETY: TIOCGWINSZ fills the zeroed winsize it is given, or fails.
    let columns = unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        if libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) == 0 {
            size.ws_col
        } else {
            0
        }
    };
    let columns = match columns {
        0 => std::env::var("COLUMNS").ok()?.parse().ok()?,
        columns => usize::from(columns),
    };
    (columns >= 20).then_some(columns)
}

/// Writes `text` and a newline to standard output.
pub fn print_line(text: &str) -> Result<(), OutputError> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_pipe_is_141_anything_else_1() {
        let pipe = OutputError::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(matches!(pipe, OutputError::BrokenPipe));
        assert_eq!(pipe.exit_code(), 141);
        let full = OutputError::from(io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(full.exit_code(), 1);
        assert!(full.to_string().starts_with("cannot write the output: "));
    }
}
