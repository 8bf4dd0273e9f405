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
/// Agents get a fixed prompt that names only the ticket file's path (and, on resume, the answer
/// file's path); both paths are chosen by the instance, never by ticket text. The shell runtime
/// gets the ticket (or, on resume, the answer) on stdin. A shell runtime with an empty `command`
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

/// `claude -p PROMPT --output-format stream-json --verbose [--model M] [--resume ID] [extra…]`.
///
/// The prompt follows `-p` directly and `--resume` comes before the extra arguments, so a
/// variadic option among them (such as `--allowedTools`) cannot swallow either.
fn claude_command(spec: &LaunchSpec) -> CommandSpec {
    let mut args = vec![
        "-p".to_owned(),
        prompt(spec),
        "--output-format".to_owned(),
        "stream-json".to_owned(),
        "--verbose".to_owned(),
    ];
    if let Some(model) = spec.model {
        args.extend(["--model".to_owned(), model.to_owned()]);
    }
    if let Some(resume) = &spec.resume {
        args.extend(["--resume".to_owned(), resume.session_id.to_owned()]);
    }
    args.extend(spec.args.iter().cloned());
    CommandSpec {
        program: "claude".to_owned(),
        args,
        stdin: Stdin::Null,
    }
}

/// Fresh: `codex exec --json [-m M] [extra…] PROMPT`.
/// Resume: `codex exec --json [-m M] [extra…] resume THREAD_ID PROMPT`.
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
    if let Some(resume) = &spec.resume {
        args.extend(["resume".to_owned(), resume.session_id.to_owned()]);
    }
    args.push(prompt(spec));
    CommandSpec {
        program: "codex".to_owned(),
        args,
        stdin: Stdin::Null,
    }
}

/// The fixed prompt: it names files, never quotes their contents.
fn prompt(spec: &LaunchSpec) -> String {
    let ticket = spec.ticket_file.to_string_lossy();
    match &spec.resume {
        None => format!(
            "Your task is described in the file {ticket}. \
             Read it, do the work in the current directory, and finish."
        ),
        Some(resume) => format!(
            "The answer to your question is in the file {answer}. \
             Read it, then continue the task described in the file {ticket} \
             in the current directory, and finish.",
            answer = resume.answer_file.to_string_lossy()
        ),
    }
}
