//! The fake agent, launched exactly as the runtime adapters say, read by their parsers.

use mission_agents::{AgentEvent, LaunchSpec, Resume, RunSummary, RuntimeKind, Stdin, command};
use mission_testkit::{fake_agent_bin_dir, fake_agent_path, path_with};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A folder for one run: the ticket file, the run folder, the working folder and `bin`.
struct Fixture {
    _dir: tempfile::TempDir,
    bin: PathBuf,
    ticket: PathBuf,
    answer: PathBuf,
    run_dir: PathBuf,
    work: PathBuf,
}

impl Fixture {
    fn new(ticket_text: &[u8]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let bin = fake_agent_bin_dir(&root);
        // A stand-in for the `mission` binary: it appends its arguments, one a line.
        let mission = bin.join("mission");
        std::fs::write(
            &mission,
            "#!/bin/sh\nprintf '%s\\n' \"$@\" >> \"$MISSION_RUN_DIR/mission.args\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&mission, std::fs::Permissions::from_mode(0o755)).unwrap();
        let ticket = root.join("ticket.md");
        std::fs::write(&ticket, ticket_text).unwrap();
        let answer = root.join("answer.md");
        std::fs::write(&answer, "Blue.\n").unwrap();
        std::fs::write(
            root.join("prompt.md"),
            "Read the ticket file. Call back with `/opt/mission/bin/mission run submit`.\n",
        )
        .unwrap();
        let run_dir = root.join("run");
        let work = root.join("work");
        std::fs::create_dir_all(&run_dir).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        Fixture {
            _dir: dir,
            bin,
            ticket,
            answer,
            run_dir,
            work,
        }
    }

    /// The command the adapters give for this runtime, ready to spawn from `bin`.
    fn command(&self, runtime: RuntimeKind, resume: Option<&str>) -> Command {
        let shell = vec!["fake-worker".to_owned()];
        let args = match runtime {
            RuntimeKind::ClaudeCode => vec!["--allowedTools".to_owned(), "Bash Edit".to_owned()],
            RuntimeKind::Codex => vec!["-s".to_owned(), "workspace-write".to_owned()],
            RuntimeKind::Shell => vec![],
        };
        let spec = command(&LaunchSpec {
            runtime,
            command: &shell,
            args: &args,
            model: Some("test-model"),
            ticket_file: &self.ticket,
            prompt_file: &self.ticket.with_file_name("prompt.md"),
            resume: resume.map(|session_id| Resume {
                session_id,
                answer_file: &self.answer,
            }),
        });
        let mut cmd = Command::new(self.bin.join(&spec.program));
        cmd.args(&spec.args)
            .current_dir(&self.work)
            .env_clear()
            .env("PATH", path_with(&self.bin))
            .env("MISSION_TICKET_FILE", &self.ticket)
            .env("MISSION_RUN_DIR", &self.run_dir)
            .env("MISSION_TICKET", "MC-1")
            .stdin(match spec.stdin {
                Stdin::Null => Stdio::null(),
                Stdin::File(path) => std::fs::File::open(path).unwrap().into(),
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        cmd
    }

    fn run(&self, runtime: RuntimeKind, resume: Option<&str>) -> Outcome {
        let output = self.command(runtime, resume).output().unwrap();
        let mut parser = mission_agents::parser(runtime);
        let events: Vec<AgentEvent> = output
            .stdout
            .split(|b| *b == b'\n')
            .flat_map(|line| parser.line(line))
            .collect();
        let mut summary = RunSummary::default();
        for event in &events {
            summary.apply(event);
        }
        Outcome {
            status: output.status,
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            events,
            summary,
        }
    }

    fn run_file(&self, name: &str) -> Vec<u8> {
        let path = self.run_dir.join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn mission_calls(&self) -> String {
        std::fs::read_to_string(self.run_dir.join("mission.args")).unwrap_or_default()
    }
}

#[derive(Debug)]
struct Outcome {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
    events: Vec<AgentEvent>,
    summary: RunSummary,
}

impl Outcome {
    fn assert_exit(&self, code: i32) -> &Self {
        assert_eq!(self.status.code(), Some(code), "{self:#?}");
        self
    }

    fn progress(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|event| match event {
                AgentEvent::Progress { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

const AGENTS: [RuntimeKind; 2] = [RuntimeKind::ClaudeCode, RuntimeKind::Codex];
const ALL: [RuntimeKind; 3] = [
    RuntimeKind::ClaudeCode,
    RuntimeKind::Codex,
    RuntimeKind::Shell,
];

/// Claude: 1200 input + 300 cache reads; Codex: 2000 input of which 500 cached.
fn expected_usage(runtime: RuntimeKind) -> (u64, u64, u64, Option<f64>) {
    match runtime {
        RuntimeKind::ClaudeCode => (1500, 45, 300, Some(0.0123)),
        RuntimeKind::Codex => (2000, 80, 500, None),
        RuntimeKind::Shell => (0, 0, 0, None),
    }
}

fn assert_usage(runtime: RuntimeKind, summary: &RunSummary) {
    let (input, output, cached, cost) = expected_usage(runtime);
    assert_eq!(
        (
            summary.input_tokens,
            summary.output_tokens,
            summary.cached_input_tokens,
            summary.cost_usd
        ),
        (input, output, cached, cost),
        "{runtime:?}"
    );
}

#[test]
fn path_is_the_binary_cargo_built() {
    let built = Path::new(env!("CARGO_BIN_EXE_fake-agent"));
    assert_eq!(
        fake_agent_path().canonicalize().unwrap(),
        built.canonicalize().unwrap()
    );
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_agent_bin_dir(dir.path());
    // A second call replaces the links.
    assert_eq!(fake_agent_bin_dir(dir.path()), bin);
    for name in ["claude", "codex", "fake-worker"] {
        assert_eq!(
            bin.join(name).canonicalize().unwrap(),
            built.canonicalize().unwrap()
        );
    }
}

#[test]
fn agents_succeed_by_default_with_session_and_usage() {
    for runtime in AGENTS {
        let fixture = Fixture::new(b"Fix the bug\n\nNo directives here.\n");
        let outcome = fixture.run(runtime, None);
        outcome.assert_exit(0);
        let summary = &outcome.summary;
        let session = summary.session_id.as_deref().expect("a session id");
        assert_eq!(session.len(), 36, "{session}");
        assert_eq!(summary.result, Some((false, false)), "{outcome:#?}");
        assert_eq!(summary.malformed_lines, 0, "{outcome:#?}");
        assert_eq!(summary.last_progress.as_deref(), Some("All done."));
        assert_usage(runtime, summary);
    }
}

#[test]
fn codex_warns_about_model_metadata() {
    let fixture = Fixture::new(b"");
    let outcome = fixture.run(RuntimeKind::Codex, None);
    assert!(outcome.events.iter().any(|event| matches!(
        event,
        AgentEvent::Warning { message } if message.starts_with("Model metadata for `test-model`")
    )));
}

#[test]
fn resumed_agents_keep_the_session_id() {
    for runtime in AGENTS {
        let fixture = Fixture::new(b"fake-agent: succeed\n");
        let outcome = fixture.run(runtime, Some("0197-resumed-session"));
        outcome.assert_exit(0);
        assert_eq!(
            outcome.summary.session_id.as_deref(),
            Some("0197-resumed-session")
        );
        assert_eq!(outcome.summary.result, Some((false, false)));
    }
}

#[test]
fn garbage_is_malformed_and_the_run_still_succeeds() {
    for runtime in AGENTS {
        let fixture = Fixture::new(b"fake-agent: garbage\n");
        let outcome = fixture.run(runtime, None);
        outcome.assert_exit(0);
        assert_eq!(outcome.summary.malformed_lines, 3, "{outcome:#?}");
        assert_eq!(outcome.summary.result, Some((false, false)));
        assert!(outcome.stdout.windows(2).any(|w| w == b"\xff\xfe"));
    }
    let fixture = Fixture::new(b"fake-agent: garbage\n");
    let outcome = fixture.run(RuntimeKind::Shell, None);
    outcome.assert_exit(0);
    assert_eq!(outcome.summary.malformed_lines, 0);
}

#[test]
fn rate_limit_is_reported_and_exits_1() {
    for runtime in AGENTS {
        let fixture = Fixture::new(b"fake-agent: rate-limit\n");
        let outcome = fixture.run(runtime, None);
        outcome.assert_exit(1);
        assert_eq!(outcome.summary.result, Some((true, true)), "{runtime:?}");
    }
    let fixture = Fixture::new(b"fake-agent: rate-limit\n");
    fixture.run(RuntimeKind::Shell, None).assert_exit(1);
}

#[test]
fn exit_code_is_passed_through() {
    for runtime in ALL {
        let fixture = Fixture::new(b"Title\nfake-agent: exit 3\nfake-agent: garbage\n");
        let outcome = fixture.run(runtime, None);
        outcome.assert_exit(3);
        let expect = match runtime {
            RuntimeKind::Shell => None,
            _ => Some((true, false)),
        };
        assert_eq!(outcome.summary.result, expect, "{runtime:?}");
        assert_eq!(outcome.summary.malformed_lines, 0, "stopped before garbage");
    }
    let fixture = Fixture::new(b"fake-agent: exit 0\n");
    let outcome = fixture.run(RuntimeKind::ClaudeCode, None);
    outcome.assert_exit(0);
    assert_eq!(outcome.summary.result, Some((false, false)));
}

#[test]
fn segfault_dies_by_sigsegv() {
    for runtime in ALL {
        let fixture = Fixture::new(b"fake-agent: segfault\n");
        let outcome = fixture.run(runtime, None);
        assert_eq!(outcome.status.signal(), Some(libc::SIGSEGV), "{outcome:#?}");
        assert_eq!(outcome.summary.result, None);
    }
}

#[test]
fn unknown_directives_are_refused_before_any_output() {
    for (text, message) in [
        (
            &b"fake-agent: explode\n"[..],
            "unknown directive \"explode\"",
        ),
        (b"fake-agent: exit three\n", "`exit` needs a code"),
        (b"fake-agent: sleep\n", "`sleep` needs a number of seconds"),
        (b"fake-agent: ask\n", "`ask` needs text"),
        (b"fake-agent: hang now\n", "`hang` takes no argument"),
    ] {
        let fixture = Fixture::new(text);
        let outcome = fixture.run(RuntimeKind::ClaudeCode, None);
        outcome.assert_exit(2);
        assert!(outcome.stdout.is_empty());
        assert!(outcome.stderr.contains(message), "{}", outcome.stderr);
    }
}

#[test]
fn argv_the_real_clis_would_refuse_is_refused() {
    let fixture = Fixture::new(b"");
    let run = |program: &str, args: &[&str]| {
        let output = Command::new(fixture.bin.join(program))
            .args(args)
            .env("MISSION_TICKET_FILE", &fixture.ticket)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (output.status.code(), output.stdout.is_empty())
    };
    // Claude Code wants --verbose with stream-json in print mode.
    assert_eq!(
        run("claude", &["-p", "x", "--output-format", "stream-json"]),
        (Some(2), true)
    );
    assert_eq!(run("claude", &["x"]), (Some(2), true));
    // Codex takes -s only before `resume`.
    assert_eq!(
        run(
            "codex",
            &[
                "exec",
                "resume",
                "--json",
                "-s",
                "workspace-write",
                "id",
                "x"
            ]
        ),
        (Some(2), true)
    );
    assert_eq!(
        run("codex", &["exec", "resume", "--json", "id", "x"]),
        (Some(0), false)
    );
    assert_eq!(run("codex", &["exec", "x"]), (Some(2), true));
}

#[test]
fn plain_worker_reports_json_progress_lines() {
    let fixture = Fixture::new(b"fake-agent: succeed\n");
    let outcome = fixture.run(RuntimeKind::Shell, None);
    outcome.assert_exit(0);
    assert_eq!(outcome.progress(), ["fake-agent started"]);
    assert!(
        String::from_utf8_lossy(&outcome.stdout).contains("fake-agent: done"),
        "{outcome:#?}"
    );
}

/// Byte-exact delivery: NUL, invalid UTF-8, shell metacharacters, no trailing newline.
#[test]
fn record_writes_what_was_received() {
    let ticket: &[u8] = b"Title $(id) `x` \"q\" 'q'\n\0bin\xff\xfe\nfake-agent: record\nlast line";
    for runtime in ALL {
        let fixture = Fixture::new(ticket);
        let outcome = fixture.run(runtime, None);
        outcome.assert_exit(0);
        assert_eq!(fixture.run_file("received.ticket"), ticket);
        let stdin = std::fs::read(fixture.run_dir.join("received.stdin")).ok();
        let argv = String::from_utf8(fixture.run_file("received.argv")).unwrap();
        let env = String::from_utf8(fixture.run_file("received.env")).unwrap();
        match runtime {
            RuntimeKind::Shell => {
                assert_eq!(stdin.as_deref(), Some(ticket));
                assert_eq!(
                    argv,
                    format!("{}\n", fixture.bin.join("fake-worker").display())
                );
            }
            _ => {
                assert_eq!(
                    stdin, None,
                    "agents read their prompt, not the ticket, on stdin"
                );
                let prompt = String::from_utf8(fixture.run_file("received.prompt")).unwrap();
                assert!(
                    prompt.contains("/opt/mission/bin/mission run submit"),
                    "{prompt}"
                );
                assert!(!argv.contains("Title"), "{argv}");
            }
        }
        let expect = format!(
            "MISSION_RUN_DIR={}\nMISSION_TICKET=MC-1\nMISSION_TICKET_FILE={}\nPATH={}\n",
            fixture.run_dir.display(),
            fixture.ticket.display(),
            path_with(&fixture.bin).to_string_lossy()
        );
        assert_eq!(env, expect, "{runtime:?}");
    }
}

#[test]
fn ask_calls_mission_with_the_question_as_one_argument() {
    let question = "Which colour: \"red\" or 'blue'? $(touch pwned) ; rm -rf x";
    for runtime in ALL {
        let fixture = Fixture::new(
            format!("fake-agent: progress step one\nfake-agent: ask {question}\nfake-agent: progress after the answer\n")
                .as_bytes(),
        );
        let outcome = fixture.run(runtime, None);
        outcome.assert_exit(0);
        assert_eq!(
            fixture.mission_calls(),
            format!("run\nprogress\nstep one\nrun\nask\n{question}\n"),
            "{runtime:?}"
        );
        assert!(!fixture.work.join("pwned").exists());
        if runtime != RuntimeKind::Shell {
            assert_eq!(outcome.summary.result, Some((false, false)));
        }

        // The resumed run carries on after the question.
        std::fs::remove_file(fixture.run_dir.join("mission.args")).unwrap();
        let session = outcome.summary.session_id.clone();
        let outcome = fixture.run(runtime, session.as_deref().or(Some("unused")));
        outcome.assert_exit(0);
        assert_eq!(
            fixture.mission_calls(),
            "run\nprogress\nafter the answer\n",
            "{runtime:?}"
        );
        assert_eq!(outcome.summary.session_id, session, "{runtime:?}");
    }
}

#[test]
fn submit_calls_mission_and_a_failed_callback_fails_the_run() {
    let fixture = Fixture::new(b"fake-agent: submit\nfake-agent: exit 9\n");
    fixture.run(RuntimeKind::Codex, None).assert_exit(0);
    assert_eq!(fixture.mission_calls(), "run\nsubmit\n");

    let fixture = Fixture::new(b"fake-agent: submit\n");
    std::fs::write(fixture.bin.join("mission"), "#!/bin/sh\nexit 4\n").unwrap();
    let outcome = fixture.run(RuntimeKind::ClaudeCode, None);
    outcome.assert_exit(1);
    assert_eq!(outcome.summary.result, Some((true, false)));

    // A failed progress report is not fatal.
    let fixture = Fixture::new(b"fake-agent: progress hello\n");
    std::fs::remove_file(fixture.bin.join("mission")).unwrap();
    fixture.run(RuntimeKind::Shell, None).assert_exit(0);
}

#[test]
fn commit_commits_a_file_in_the_working_folder() {
    let fixture = Fixture::new(b"fake-agent: commit\nfake-agent: commit\n");
    let git = |args: &[&str]| {
        let output = Command::new("git")
            .args(args)
            .current_dir(&fixture.work)
            .output()
            .unwrap();
        assert!(output.status.success(), "git {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    git(&["init", "-q"]);
    let outcome = fixture.run(RuntimeKind::ClaudeCode, None);
    outcome.assert_exit(0);
    assert!(fixture.work.join("fake-agent-MC-1.txt").is_file());
    let log = git(&["log", "--format=%s", "--", "fake-agent-MC-1.txt"]);
    assert_eq!(
        log,
        "fake-agent: work for MC-1\nfake-agent: work for MC-1\n"
    );
    let head = git(&["rev-parse", "HEAD"]);
    assert!(
        outcome
            .progress()
            .contains(&format!("Committed {}.", head.trim()).as_str()),
        "{outcome:#?}"
    );

    // Outside a repository the commit fails, and so does the run.
    let fixture = Fixture::new(b"fake-agent: commit\n");
    let outcome = fixture.run(RuntimeKind::Codex, None);
    outcome.assert_exit(1);
    assert_eq!(outcome.summary.result, Some((true, false)));
}

#[test]
fn sleep_keeps_talking_and_silent_does_not() {
    for (directive, lines) in [("sleep 1.3", 1), ("silent 1.3", 0)] {
        let fixture =
            Fixture::new(format!("fake-agent: {directive}\nfake-agent: exit 5\n").as_bytes());
        let started = Instant::now();
        let outcome = fixture.run(RuntimeKind::Shell, None);
        outcome.assert_exit(5);
        assert!(started.elapsed() >= Duration::from_millis(1300));
        let still = String::from_utf8_lossy(&outcome.stdout)
            .matches("Still working.")
            .count();
        assert_eq!(still, lines, "{directive}");
    }
}

/// Starts the agent; its stdout goes to `stdout` in the run folder.
fn spawn(fixture: &Fixture, runtime: RuntimeKind) -> Child {
    let stdout = std::fs::File::create(fixture.run_dir.join("stdout")).unwrap();
    let mut cmd = fixture.command(runtime, None);
    cmd.stdout(stdout).stderr(Stdio::null());
    cmd.spawn().unwrap()
}

fn signal(pid: i32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), "--", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Waits up to `limit` for the child to exit.
fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Waits up to `within` for `condition`; whether it was met.
fn wait_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process ignores SIGTERM (the `SigIgn` mask of its status).
fn ignores_term(pid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
}

#[test]
fn hang_dies_on_term_unless_term_is_ignored() {
    let fixture = Fixture::new(b"fake-agent: hang\n");
    let mut child = spawn(&fixture, RuntimeKind::ClaudeCode);
    // Hanging: it has printed its start and sleeps.
    let pid = child.id() as i32;
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::fs::metadata(fixture.run_dir.join("stdout")).is_ok_and(|m| m.len() > 0)
                && proc_state(pid).is_some_and(|(state, _)| state == 'S')
        }),
        "the agent never reached hang"
    );
    signal(pid, "TERM");
    let status = wait_for(&mut child, Duration::from_secs(5)).expect("dies on TERM");
    assert_eq!(status.signal(), Some(libc::SIGTERM));

    let fixture = Fixture::new(b"fake-agent: ignore-term\nfake-agent: hang\n");
    let mut child = spawn(&fixture, RuntimeKind::Shell);
    let pid = child.id() as i32;
    assert!(
        wait_until(Duration::from_secs(10), || ignores_term(pid)),
        "the agent never ignored TERM"
    );
    signal(pid, "TERM");
    // Something that does not happen can only be watched for a while.
    assert_eq!(wait_for(&mut child, Duration::from_millis(500)), None);
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
}

/// The `stat` fields of a live (not zombie) process after its name: state and process group.
fn proc_state(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    Some((fields[0].chars().next()?, fields[2].parse().ok()?))
}

#[test]
fn spawn_child_leaves_a_grandchild_in_the_process_group() {
    let fixture = Fixture::new(b"fake-agent: ignore-term\nfake-agent: spawn-child\n");
    let mut child = spawn(&fixture, RuntimeKind::Codex);
    let group = child.id() as i32;
    let status = wait_for(&mut child, Duration::from_secs(10)).expect("the agent finishes");
    assert_eq!(status.code(), Some(0));
    let pid: i32 = String::from_utf8(fixture.run_file("child.pid"))
        .unwrap()
        .parse()
        .unwrap();
    let (state, pgrp) = proc_state(pid).expect("the grandchild is running");
    assert_ne!(state, 'Z');
    assert_eq!(pgrp, group);
    // It inherited the ignored TERM: only KILL to the group ends it.
    assert!(ignores_term(pid), "the grandchild ignores TERM");
    signal(-group, "TERM");
    let dead = || proc_state(pid).is_none_or(|(state, _)| state == 'Z');
    // Something that does not happen can only be watched for a while.
    assert!(
        !wait_until(Duration::from_millis(500), dead),
        "the grandchild died of TERM"
    );
    signal(-group, "KILL");
    assert!(
        wait_until(Duration::from_secs(5), dead),
        "the grandchild survived KILL"
    );
}
