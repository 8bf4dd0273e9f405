//! Writing to standard output. A closed pipe (`mission events | head`) ends the command quietly.

use crate::exit::CliError;
use serde::Serialize;
use std::io::Write;

/// Writes text to stdout; a closed pipe is not an error.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(err) => Err(err.into()),
    }
}

/// Prints a value as one line of JSON.
pub fn json_line<T: Serialize>(value: &T) -> Result<(), CliError> {
    let mut line = serde_json::to_string(value)?;
    line.push('\n');
    print(&line)
}

/// Pads `text` to `width` characters, cutting it with an ellipsis when longer.
pub fn cell(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count > width {
        let cut: String = text.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        format!("{text}{}", " ".repeat(width - count))
    }
}
