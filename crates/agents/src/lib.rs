//! Runtime adapters: how to launch each agent CLI headless, and how to read what it prints.
//!
//! Pure: this crate builds argument lists and parses lines; it spawns nothing and reads no files.
//!
//! - [`command`] turns a [`LaunchSpec`] into the program, argv and stdin of one run. Ticket text
//!   never enters argv: agents read their prompt (which names the ticket file) on stdin, shell
//!   commands get the ticket file on stdin. A session id reaches argv only when it passes
//!   [`valid_session_id`]; the parsers report invalid ones as warnings, and the first valid one
//!   of a run wins.
//! - [`parser`] gives a line-at-a-time [`OutputParser`] for a runtime, producing [`AgentEvent`]s;
//!   [`RunSummary`] folds those events into what the runner records about a run.

mod claude;
mod codex;
mod event;
mod launch;
mod limit;
mod shell;

pub use event::{AgentEvent, RunSummary};
pub use launch::{CommandSpec, LaunchSpec, Resume, Stdin, command, valid_session_id};
pub use limit::{ResetHint, reset_hint};
pub use mission_core::config::RuntimeKind;

/// Reads an agent's stdout one line at a time.
pub trait OutputParser: Send {
    /// Feeds one line (without the trailing newline; it may be invalid UTF-8 or not JSON).
    fn line(&mut self, line: &[u8]) -> Vec<AgentEvent>;
}

/// The output parser for a runtime. Each run gets its own: parsers keep a little state (the
/// session id seen, the last agent message).
pub fn parser(runtime: RuntimeKind) -> Box<dyn OutputParser> {
    match runtime {
        RuntimeKind::Shell => Box::new(shell::ShellParser),
        RuntimeKind::ClaudeCode => Box::<claude::ClaudeParser>::default(),
        RuntimeKind::Codex => Box::<codex::CodexParser>::default(),
    }
}
