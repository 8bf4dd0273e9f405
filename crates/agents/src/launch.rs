//! What to launch for one run: program, argv and stdin per runtime.

use crate::RuntimeKind;
use std::path::{Path, PathBuf};

/// What to launch for one run.
#[derive(Clone, Copy, Debug)]
pub struct LaunchSpec<'a> {
    pub runtime: RuntimeKind,
    /// Shell runtime: the program and its arguments (non-empty; the configuration checks it).
    pub command: &'a [String],
    /// Agent runtimes: extra arguments from the configuration (e.g. `--allowedTools ...`).
    pub args: &'a [String],
    pub model: Option<&'a str>,
    /// The file holding the ticket text (title and body). It is never read here.
    pub ticket_file: &'a Path,
    /// The file holding the agent's prompt, rendered from its worker's template: what the agent
    /// runtimes read on stdin. It is never read here.
    pub prompt_file: &'a Path,
    /// Needs-input lane: resume the same agent session with the operator's answer.
    pub resume: Option<Resume<'a>>,
}

/// Resuming an agent session after a question was answered.
#[derive(Clone, Copy, Debug)]
pub struct Resume<'a> {
    /// The session id the agent reported (Claude Code `session_id`, Codex `thread_id`).
    pub session_id: &'a str,
    /// The file holding the answer text. It is never read here.
    pub answer_file: &'a Path,
}

/// A process to start: program, arguments and what its stdin is connected to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// `claude`, `codex`, or the shell runtime's `command[0]`; looked up on `PATH` by the runner.
    pub program: String,
    pub args: Vec<String>,
    pub stdin: Stdin,
}

/// What the runner connects to the child's stdin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stdin {
    /// Closed (`/dev/null`): agents that would otherwise wait for input on stdin.
    Null,
    /// The contents of this file.
    File(PathBuf),
}

/// The command for one run.
///
/// Agents read their prompt (rendered from the worker's template; it names the ticket file, the
/// branch and how to call back, never quoting the ticket's text) on stdin: argv holds only
/// options and a session id that was checked with [`valid_session_id`] (an invalid one is not
/// resumed). The shell runtime gets the ticket (or, on resume, the answer) on stdin. A shell runtime with an empty `command`
/// (which the configuration refuses) yields an empty program name, which fails to start.
pub fn command(spec: &LaunchSpec) -> CommandSpec {
    match spec.runtime {
        RuntimeKind::Shell => shell_command(spec),
        RuntimeKind::ClaudeCode => claude_command(spec),
        RuntimeKind::Codex => codex_command(spec),
    }
}

fn shell_command(spec: &LaunchSpec) -> CommandSpec {
    let (program, args) = match spec.command.split_first() {
        Some((program, args)) => (program.clone(), args.to_vec()),
        None => (String::new(), Vec::new()),
    };
    let stdin = match &spec.resume {
        Some(resume) => resume.answer_file,
        None => spec.ticket_file,
    };
    CommandSpec {
        program,
        args,
        stdin: Stdin::File(stdin.to_path_buf()),
    }
}

/// `claude -p --output-format stream-json --verbose [--model M] [--resume ID] [extra…]`, the
/// prompt on stdin.
///
/// `--resume` comes before the extra arguments, so a variadic option among them (such as
/// `--allowedTools`) cannot swallow it.
fn claude_command(spec: &LaunchSpec) -> CommandSpec {
    let mut args = vec![
        "-p".to_owned(),
        "--output-format".to_owned(),
        "stream-json".to_owned(),
        "--verbose".to_owned(),
    ];
    if let Some(model) = spec.model {
        args.extend(["--model".to_owned(), model.to_owned()]);
    }
    if let Some(session) = resumed_session(spec) {
        args.extend(["--resume".to_owned(), session.to_owned()]);
    }
    args.extend(spec.args.iter().cloned());
    CommandSpec {
        program: "claude".to_owned(),
        args,
        stdin: Stdin::File(spec.prompt_file.to_path_buf()),
    }
}

/// Fresh: `codex exec --json [-m M] [extra…] -`.
/// Resume: `codex exec --json [-m M] [extra…] resume THREAD_ID -`. The prompt is on stdin (`-`).
///
/// Options go before `resume`: `codex exec` accepts only some of its options (`--json`, `-m`)
/// after the `resume` subcommand, while all of them (e.g. `-s workspace-write`) are accepted
/// before it and apply to the resumed session.
fn codex_command(spec: &LaunchSpec) -> CommandSpec {
    let mut args = vec!["exec".to_owned(), "--json".to_owned()];
    if let Some(model) = spec.model {
        args.extend(["-m".to_owned(), model.to_owned()]);
    }
    args.extend(spec.args.iter().cloned());
    if let Some(session) = resumed_session(spec) {
        args.extend(["resume".to_owned(), session.to_owned()]);
    }
    args.push("-".to_owned());
    CommandSpec {
        program: "codex".to_owned(),
        args,
        stdin: Stdin::File(spec.prompt_file.to_path_buf()),
    }
}

/// The session to resume, when there is one and it is a valid id.
fn resumed_session<'a>(spec: &LaunchSpec<'a>) -> Option<&'a str> {
    spec.resume
        .map(|resume| resume.session_id)
        .filter(|id| valid_session_id(id))
}

/// Whether `id` may be a session or thread id: `^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`. Agent output
/// is untrusted and a session id reaches argv (`--resume ID`): anything else is refused.
pub fn valid_session_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}
