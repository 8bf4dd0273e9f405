//! The exact command for each runtime, fresh and resumed.

use mission_agents::{CommandSpec, LaunchSpec, Resume, RuntimeKind, Stdin, command};
use std::path::{Path, PathBuf};

const TICKET: &str = "/data/runs/MC-7/1/ticket.md";
const ANSWER: &str = "/data/runs/MC-7/2/answer.md";
const PROMPT: &str = "/data/runs/MC-7/1/prompt.md";

struct Case<'a> {
    runtime: RuntimeKind,
    command: &'a [&'a str],
    args: &'a [&'a str],
    model: Option<&'a str>,
    resume: Option<&'a str>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn build(case: &Case, ticket: &Path, answer: &Path) -> CommandSpec {
    let command_argv = strings(case.command);
    let args = strings(case.args);
    command(&LaunchSpec {
        runtime: case.runtime,
        command: &command_argv,
        args: &args,
        model: case.model,
        ticket_file: ticket,
        prompt_file: &ticket.with_file_name("prompt.md"),
        resume: case.resume.map(|session_id| Resume {
            session_id,
            answer_file: answer,
        }),
    })
}

fn check(case: Case, program: &str, argv: &[&str], stdin: Stdin) {
    let spec = build(&case, Path::new(TICKET), Path::new(ANSWER));
    assert_eq!(
        spec,
        CommandSpec {
            program: program.to_owned(),
            args: strings(argv),
            stdin,
        }
    );
}

#[test]
fn shell_runs_the_command_with_the_ticket_on_stdin() {
    check(
        Case {
            runtime: RuntimeKind::Shell,
            command: &["./scripts/work.sh", "--fast", "a b"],
            args: &[],
            model: Some("ignored"),
            resume: None,
        },
        "./scripts/work.sh",
        &["--fast", "a b"],
        Stdin::File(PathBuf::from(TICKET)),
    );
    check(
        Case {
            runtime: RuntimeKind::Shell,
            command: &["true"],
            args: &[],
            model: None,
            resume: None,
        },
        "true",
        &[],
        Stdin::File(PathBuf::from(TICKET)),
    );
}

#[test]
fn shell_resume_gets_the_answer_on_stdin() {
    check(
        Case {
            runtime: RuntimeKind::Shell,
            command: &["./scripts/work.sh"],
            args: &[],
            model: None,
            resume: Some("ignored-session"),
        },
        "./scripts/work.sh",
        &[],
        Stdin::File(PathBuf::from(ANSWER)),
    );
}

#[test]
fn shell_with_no_command_fails_to_start_rather_than_panicking() {
    check(
        Case {
            runtime: RuntimeKind::Shell,
            command: &[],
            args: &[],
            model: None,
            resume: None,
        },
        "",
        &[],
        Stdin::File(PathBuf::from(TICKET)),
    );
}

#[test]
fn claude_code_fresh() {
    check(
        Case {
            runtime: RuntimeKind::ClaudeCode,
            command: &[],
            args: &[],
            model: None,
            resume: None,
        },
        "claude",
        &["-p", "--output-format", "stream-json", "--verbose"],
        Stdin::File(PathBuf::from(PROMPT)),
    );
    check(
        Case {
            runtime: RuntimeKind::ClaudeCode,
            command: &[],
            args: &["--allowedTools", "Bash Edit Write Read"],
            model: Some("opus"),
            resume: None,
        },
        "claude",
        &[
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--model",
            "opus",
            "--allowedTools",
            "Bash Edit Write Read",
        ],
        Stdin::File(PathBuf::from(PROMPT)),
    );
}

#[test]
fn claude_code_resume() {
    check(
        Case {
            runtime: RuntimeKind::ClaudeCode,
            command: &[],
            args: &["--allowedTools", "Bash Edit Write Read"],
            model: Some("opus"),
            resume: Some("e1204dda-9341-4103-8e5d-c365a1db8ff3"),
        },
        "claude",
        &[
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--model",
            "opus",
            "--resume",
            "e1204dda-9341-4103-8e5d-c365a1db8ff3",
            "--allowedTools",
            "Bash Edit Write Read",
        ],
        Stdin::File(PathBuf::from(PROMPT)),
    );
}

#[test]
fn codex_fresh() {
    check(
        Case {
            runtime: RuntimeKind::Codex,
            command: &[],
            args: &[],
            model: None,
            resume: None,
        },
        "codex",
        &["exec", "--json", "-"],
        Stdin::File(PathBuf::from(PROMPT)),
    );
    check(
        Case {
            runtime: RuntimeKind::Codex,
            command: &[],
            args: &["-s", "workspace-write"],
            model: Some("gpt-5-codex"),
            resume: None,
        },
        "codex",
        &[
            "exec",
            "--json",
            "-m",
            "gpt-5-codex",
            "-s",
            "workspace-write",
            "-",
        ],
        Stdin::File(PathBuf::from(PROMPT)),
    );
}

#[test]
fn codex_resume() {
    check(
        Case {
            runtime: RuntimeKind::Codex,
            command: &[],
            args: &["-s", "workspace-write"],
            model: Some("gpt-5-codex"),
            resume: Some("01a21550-d76f-7a22-aa2f-97d4b8c2e89b"),
        },
        "codex",
        &[
            "exec",
            "--json",
            "-m",
            "gpt-5-codex",
            "-s",
            "workspace-write",
            "resume",
            "01a21550-d76f-7a22-aa2f-97d4b8c2e89b",
            "-",
        ],
        Stdin::File(PathBuf::from(PROMPT)),
    );
    check(
        Case {
            runtime: RuntimeKind::Codex,
            command: &[],
            args: &[],
            model: None,
            resume: Some("thread-1"),
        },
        "codex",
        &["exec", "--json", "resume", "thread-1", "-"],
        Stdin::File(PathBuf::from(PROMPT)),
    );
}

/// The ticket and answer files hold hostile text; no argv element may carry any of it.
#[test]
fn file_contents_never_reach_argv() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("agents-launch-contents");
    std::fs::create_dir_all(&dir).unwrap();
    let ticket = dir.join("ticket.md");
    let answer = dir.join("answer.md");
    let ticket_text = "TICKET-BODY-7f3a\n$(rm -rf /); `id` \"quoted\" --resume evil";
    let answer_text = "ANSWER-BODY-91c2\n--model evil";
    std::fs::write(&ticket, ticket_text).unwrap();
    std::fs::write(&answer, answer_text).unwrap();
    for runtime in [
        RuntimeKind::Shell,
        RuntimeKind::ClaudeCode,
        RuntimeKind::Codex,
    ] {
        for resume in [None, Some("session-1")] {
            let case = Case {
                runtime,
                command: if runtime == RuntimeKind::Shell {
                    &["./work.sh"]
                } else {
                    &[]
                },
                args: &[],
                model: None,
                resume,
            };
            let spec = build(&case, &ticket, &answer);
            for arg in std::iter::once(&spec.program).chain(&spec.args) {
                for marker in ["TICKET-BODY-7f3a", "ANSWER-BODY-91c2", "rm -rf", "evil"] {
                    assert!(
                        !arg.contains(marker),
                        "{runtime:?} resume={resume:?}: {arg:?} contains {marker:?}"
                    );
                }
            }
            if runtime != RuntimeKind::Shell {
                assert_eq!(
                    spec.stdin,
                    Stdin::File(dir.join("prompt.md")),
                    "{runtime:?}: the prompt is read on stdin"
                );
            }
        }
    }
}

/// A session id comes from agent output: one that is not a plain id never reaches argv (the
/// run starts afresh instead).
#[test]
fn an_invalid_session_id_is_not_resumed() {
    for (runtime, program, fresh) in [
        (
            RuntimeKind::ClaudeCode,
            "claude",
            &["-p", "--output-format", "stream-json", "--verbose"][..],
        ),
        (RuntimeKind::Codex, "codex", &["exec", "--json", "-"][..]),
    ] {
        for session in [
            "--dangerously-skip-permissions",
            "-x",
            "a b",
            "id;rm",
            "",
            &"a".repeat(129),
        ] {
            check(
                Case {
                    runtime,
                    command: &[],
                    args: &[],
                    model: None,
                    resume: Some(session),
                },
                program,
                fresh,
                Stdin::File(PathBuf::from(PROMPT)),
            );
        }
    }
    assert!(mission_agents::valid_session_id(&"a".repeat(128)));
    assert!(mission_agents::valid_session_id("e1204dda-9341_x"));
}
