//! The fake agent: a stand-in for the agent CLIs in tests.
//!
//! Run as `claude` it speaks Claude Code's `-p … --output-format stream-json --verbose`; run as
//! `codex` it speaks `codex exec --json`; under any other name it is a plain worker that prints
//! text. What it does is chosen by directive lines in the ticket text (the file named by
//! `MISSION_TICKET_FILE`; for the plain worker without that variable, stdin):
//!
//! ```text
//! fake-agent: MODE [ARG]
//! ```
//!
//! Directives run in order; after the last one the agent succeeds. Modes: `succeed`,
//! `exit N`, `segfault`, `sleep SECONDS`, `silent SECONDS`, `hang`, `ignore-term`,
//! `spawn-child`, `garbage`, `rate-limit [MESSAGE]`, `ask QUESTION…`, `submit`, `progress TEXT`,
//! `commit`, `commit-lines N`, `evidence KIND [ARG]`, `review DECISION REASON…`,
//! `inbox-act ACTION [TEXT…]`, `record`, `session ID`, `reset-path`. See [`Directive`] for each.
//! An unknown mode exits 2 before any output. `fake-agent-session: ID` in the ticket sets the
//! session id the agent starts with (for a stream whose very first id is hostile).
//!
//! Run as a worker call (`MISSION_CALL=review` by auto-review, `inbox` by inbox-drain), it reads
//! the lines `fake-review: MODE [ARG]` or `fake-inbox: MODE [ARG]` of its prompt file instead,
//! so that one ticket text can direct both its author and its reviewer.
//!
//! Like the real CLIs, the imitations of Claude Code and Codex take their prompt from argv or
//! from stdin (Claude: no prompt argument; Codex: `-`).
//!
//! A resumed run (Claude `--resume ID`, `codex exec … resume ID …`, or a plain worker whose
//! stdin is not the ticket text, i.e. the answer) reuses the session id it was given and skips
//! the directives up to and including the first `ask`: the question was asked by the run before.

use serde_json::{Value, json};
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The hidden first argument that makes the process a grandchild for `spawn-child`.
const GRANDCHILD: &str = "--fake-agent-grandchild";

fn main() -> ExitCode {
    stamp_start();
    let argv: Vec<OsString> = std::env::args_os().collect();
    if argv.get(1).map(OsString::as_os_str) == Some(OsStr::new(GRANDCHILD)) {
        sleep_forever();
    }
    ExitCode::from(run(&argv))
}

/// Writes the wall-clock time this process started (nanoseconds since the epoch) to
/// `$MISSION_RUN_DIR/started.ns`, for the pickup-latency benchmark.
fn stamp_start() {
    let Some(dir) = std::env::var_os("MISSION_RUN_DIR") else {
        return;
    };
    let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) else {
        return;
    };
    let path = std::path::Path::new(&dir).join("started.ns");
    if !path.exists() {
        let _ = std::fs::write(path, now.as_nanos().to_string());
    }
}

/// Which CLI this process imitates, from the name it was run as.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flavour {
    Claude,
    Codex,
    Plain,
}

/// What the command line asked for.
struct Invocation {
    flavour: Flavour,
    model: String,
    /// The session to resume, from `--resume ID` or `codex exec resume ID`.
    resume: Option<String>,
    /// The prompt given as an argument; `None`: it is read from stdin.
    prompt: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Directive {
    /// Finish successfully now.
    Succeed,
    /// Exit with this code (Claude: a result event with `is_error` first; Codex: `turn.failed`).
    Exit(u8),
    /// Die by SIGSEGV.
    Segfault,
    /// Sleep, printing a progress line every second.
    Sleep(Duration),
    /// Print nothing for this long.
    Silent(Duration),
    /// Sleep forever.
    Hang,
    /// Ignore SIGTERM from now on (inherited by `spawn-child` grandchildren).
    IgnoreTerm,
    /// Start a grandchild that sleeps forever in the same process group; its pid goes to
    /// `$MISSION_RUN_DIR/child.pid`.
    SpawnChild,
    /// Print invalid UTF-8, a truncated JSON line and a JSON array line.
    Garbage,
    /// Fail as rate limited, exit 1.
    /// A rate or usage limit; with a text, the runtime's message (which may give a reset time).
    RateLimit(Option<String>),
    /// `mission run ask QUESTION`, then finish: exit 0 if it worked, 1 if not.
    Ask(String),
    /// `mission run submit`, then finish: exit 0 if it worked, 1 if not.
    Submit,
    /// `mission run progress TEXT`; a failure is reported on stderr and the run goes on.
    Progress(String),
    /// Write `fake-agent-$MISSION_TICKET.txt` and commit it with git.
    Commit,
    /// Write a file of N lines and commit it: a diff of N changed lines.
    CommitLines(u64),
    /// `mission run evidence KIND [ARG]`; a failure is reported on stderr and the run goes on.
    Evidence(Vec<String>),
    /// `mission run review DECISION --reason REASON`, then finish.
    Review(String, String),
    /// `mission inbox act $MISSION_INBOX_ITEM ACTION [--text TEXT]`, then finish.
    InboxAct(String, Option<String>),
    /// Write what was received to `$MISSION_RUN_DIR/received.{ticket,stdin,argv,env,prompt}`.
    Record,
    /// Report another session id (Claude: a second `system/init`; Codex: `thread.started`).
    Session(String),
    /// From now on, call `mission` the way an agent whose login shell resets `PATH` must: with
    /// `PATH=/usr/bin:/bin`, at the absolute path the prompt names (the plain worker, which has
    /// no prompt: `$MISSION_BIN`).
    ResetPath,
}

/// After a directive: go on to the next, or exit with this code.
enum Flow {
    Continue,
    Exit(u8),
}

/// What the process received, kept for `record`.
struct Received<'a> {
    argv: &'a [OsString],
    ticket: Option<Vec<u8>>,
    stdin: Option<Vec<u8>>,
    /// The agent's prompt, from argv or stdin.
    prompt: Option<String>,
}

/// The exit code for a command line or ticket the fake agent does not understand.
const USAGE: u8 = 2;

fn run(argv: &[OsString]) -> u8 {
    match prepare(argv) {
        Ok((invocation, directives, received)) => {
            let mut out = Output::new(&invocation);
            out.prompt = received.prompt.clone();
            out.start();
            for directive in &directives {
                if let Flow::Exit(code) = perform(directive, &mut out, &received) {
                    return code;
                }
            }
            out.finish(Outcome::Success);
            0
        }
        Err(message) => {
            eprintln!("fake-agent: {message}");
            USAGE
        }
    }
}

/// Reads the command line, the ticket and (plain worker) stdin; parses the directives.
fn prepare(argv: &[OsString]) -> Result<(Invocation, Vec<Directive>, Received<'_>), String> {
    let invocation = invocation(argv)?;
    let ticket = match std::env::var_os("MISSION_TICKET_FILE") {
        Some(path) => Some(std::fs::read(&path).map_err(|e| {
            format!(
                "cannot read the ticket file {}: {e}",
                Path::new(&path).display()
            )
        })?),
        None => None,
    };
    // The plain worker gets the ticket on stdin; the agent CLIs their prompt, when it is not an
    // argument.
    let stdin = if invocation.flavour == Flavour::Plain || invocation.prompt.is_none() {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        Some(bytes)
    } else {
        None
    };
    let prompt = match (&invocation.prompt, invocation.flavour, &stdin) {
        (_, Flavour::Plain, _) => None,
        (Some(prompt), _, _) => Some(prompt.clone()),
        (None, _, Some(bytes)) if !bytes.is_empty() => {
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
        (None, _, _) => {
            return Err(
                "Input must be provided either through stdin or as a prompt argument".to_owned(),
            );
        }
    };
    let stdin = if invocation.flavour == Flavour::Plain {
        stdin
    } else {
        None
    };
    let resumed = match invocation.flavour {
        Flavour::Plain => matches!((&ticket, &stdin), (Some(t), Some(s)) if t != s),
        Flavour::Claude | Flavour::Codex => invocation.resume.is_some(),
    };
    let text = ticket.as_deref().or(stdin.as_deref()).unwrap_or_default();
    let prefix = match std::env::var("MISSION_CALL") {
        Ok(call) => format!("fake-{call}:"),
        Err(_) => "fake-agent:".to_owned(),
    };
    let mut directives = directives(text, &prefix)?;
    if resumed
        && let Some(ask) = directives
            .iter()
            .position(|d| matches!(d, Directive::Ask(_)))
    {
        directives.drain(..=ask);
    }
    let received = Received {
        argv,
        ticket,
        stdin,
        prompt,
    };
    Ok((invocation, directives, received))
}

fn perform(directive: &Directive, out: &mut Output, received: &Received) -> Flow {
    match directive {
        Directive::Succeed | Directive::Exit(0) => {
            out.finish(Outcome::Success);
            Flow::Exit(0)
        }
        Directive::Exit(code) => {
            out.finish(Outcome::Failure(format!("fake failure (exit {code})")));
            Flow::Exit(*code)
        }
        Directive::Segfault => {
            out.flush();
            segfault()
        }
        Directive::Sleep(duration) => {
            let mut left = *duration;
            while !left.is_zero() {
                let step = left.min(Duration::from_secs(1));
                std::thread::sleep(step);
                left -= step;
                if !left.is_zero() {
                    out.message("Still working.");
                }
            }
            Flow::Continue
        }
        Directive::Silent(duration) => {
            out.flush();
            std::thread::sleep(*duration);
            Flow::Continue
        }
        Directive::Hang => {
            out.flush();
            sleep_forever()
        }
        Directive::IgnoreTerm => {
            ignore_sigterm();
            Flow::Continue
        }
        Directive::SpawnChild => match spawn_child() {
            Ok(pid) => {
                out.message(&format!("Started a helper process, pid {pid}."));
                Flow::Continue
            }
            Err(message) => failed(out, "spawn-child", message),
        },
        Directive::Garbage => {
            out.raw(b"\xff\xfe\x00\x80 not utf-8 \xc3\x28");
            out.raw(br#"{"type":"assistant","message":{"content":[{"type":"te"#);
            out.raw(br#"["not","an","event"]"#);
            Flow::Continue
        }
        Directive::RateLimit(message) => {
            out.finish(Outcome::RateLimited(message.clone()));
            Flow::Exit(1)
        }
        // After `ask` or `submit` the run is over.
        Directive::Ask(question) => match out.mission(&["ask", question]) {
            Ok(()) => perform(&Directive::Succeed, out, received),
            Err(message) => failed(out, "ask", message),
        },
        Directive::Submit => match out.mission(&["submit"]) {
            Ok(()) => perform(&Directive::Succeed, out, received),
            Err(message) => failed(out, "submit", message),
        },
        Directive::Progress(text) => {
            if let Err(message) = out.mission(&["progress", text]) {
                eprintln!("fake-agent: progress: {message}");
            }
            Flow::Continue
        }
        Directive::Commit => match commit(out) {
            Ok(()) => Flow::Continue,
            Err(message) => failed(out, "commit", message),
        },
        Directive::CommitLines(lines) => match commit_lines(out, *lines) {
            Ok(()) => Flow::Continue,
            Err(message) => failed(out, "commit-lines", message),
        },
        Directive::Evidence(args) => {
            let mut all = vec!["evidence"];
            all.extend(args.iter().map(String::as_str));
            if let Err(message) = out.mission(&all) {
                eprintln!("fake-agent: evidence: {message}");
            }
            Flow::Continue
        }
        Directive::Review(decision, reason) => {
            match out.mission(&["review", decision, "--reason", reason]) {
                Ok(()) => perform(&Directive::Succeed, out, received),
                Err(message) => failed(out, "review", message),
            }
        }
        Directive::InboxAct(action, text) => {
            let item = std::env::var("MISSION_INBOX_ITEM").unwrap_or_default();
            let mut args = vec!["act", item.as_str(), action.as_str()];
            if let Some(text) = text {
                args.extend(["--text", text.as_str()]);
            }
            match out.mission_command("inbox", &args) {
                Ok(()) => perform(&Directive::Succeed, out, received),
                Err(message) => failed(out, "inbox-act", message),
            }
        }
        Directive::Record => match record(received) {
            Ok(()) => Flow::Continue,
            Err(message) => failed(out, "record", message),
        },
        Directive::Session(id) => {
            out.session(id);
            Flow::Continue
        }
        Directive::ResetPath => {
            out.reset_path = true;
            Flow::Continue
        }
    }
}

/// A directive that could not be carried out ends the run with exit code 1.
fn failed(out: &mut Output, what: &str, message: String) -> Flow {
    eprintln!("fake-agent: {what}: {message}");
    out.finish(Outcome::Failure(format!("{what} failed: {message}")));
    Flow::Exit(1)
}

/// Starts a grandchild that sleeps forever in this process group; returns its pid.
fn spawn_child() -> Result<u32, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current executable: {e}"))?;
    let child = Command::new(exe)
        .arg(GRANDCHILD)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    if let Some(dir) = std::env::var_os("MISSION_RUN_DIR") {
        let path = Path::new(&dir).join("child.pid");
        std::fs::write(&path, child.id().to_string())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(child.id())
}

fn commit(out: &mut Output) -> Result<(), String> {
    let ticket = std::env::var("MISSION_TICKET").unwrap_or_else(|_| "unknown".to_owned());
    let ticket: String = ticket
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let file = format!("fake-agent-{ticket}.txt");
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    std::fs::write(
        &file,
        format!(
            "Work for {ticket} by process {} at {stamp}.\n",
            std::process::id()
        ),
    )
    .map_err(|e| format!("{file}: {e}"))?;
    out.tool(&format!("git add {file} && git commit"));
    git(&["add", "--", &file])?;
    git(&[
        "-c",
        "user.name=fake-agent",
        "-c",
        "user.email=fake-agent@example.invalid",
        "commit",
        "-q",
        "-m",
        &format!("fake-agent: work for {ticket}"),
    ])?;
    let head = git(&["rev-parse", "HEAD"])?;
    out.message(&format!("Committed {}.", head.trim()));
    Ok(())
}

fn commit_lines(out: &mut Output, lines: u64) -> Result<(), String> {
    let ticket = std::env::var("MISSION_TICKET").unwrap_or_else(|_| "unknown".to_owned());
    let file = format!(
        "fake-lines-{}.txt",
        ticket.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
    );
    let mut text = String::new();
    for i in 0..lines {
        text.push_str(&format!("line {i}\n"));
    }
    std::fs::write(&file, text).map_err(|e| format!("{file}: {e}"))?;
    out.tool(&format!("git add {file} && git commit"));
    git(&["add", "--", &file])?;
    git(&[
        "-c",
        "user.name=fake-agent",
        "-c",
        "user.email=fake-agent@example.invalid",
        "commit",
        "-q",
        "-m",
        &format!("fake-agent: {lines} lines for {ticket}"),
    ])?;
    Ok(())
}

fn git(args: &[&str]) -> Result<String, String> {
    let output = Command::new("git")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("git: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "git {}: {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn record(received: &Received) -> Result<(), String> {
    let dir = std::env::var_os("MISSION_RUN_DIR").ok_or("MISSION_RUN_DIR is not set")?;
    let dir = PathBuf::from(dir);
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))
    };
    if let Some(ticket) = &received.ticket {
        write("received.ticket", ticket)?;
    }
    if let Some(stdin) = &received.stdin {
        write("received.stdin", stdin)?;
    }
    if let Some(prompt) = &received.prompt {
        write("received.prompt", prompt.as_bytes())?;
    }
    let mut argv = Vec::new();
    for arg in received.argv {
        argv.extend_from_slice(arg.as_bytes());
        argv.push(b'\n');
    }
    write("received.argv", &argv)?;
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    vars.sort();
    let mut env = Vec::new();
    for (key, value) in vars {
        env.extend_from_slice(key.as_bytes());
        env.push(b'=');
        env.extend_from_slice(value.as_bytes());
        env.push(b'\n');
    }
    write("received.env", &env)
}

// ---------------------------------------------------------------------------------------------
// The command line and the directives.

fn invocation(argv: &[OsString]) -> Result<Invocation, String> {
    let name = argv
        .first()
        .map(Path::new)
        .and_then(Path::file_name)
        .and_then(OsStr::to_str)
        .unwrap_or("");
    let args: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    match name {
        "claude" => claude_invocation(&args),
        "codex" => codex_invocation(&args),
        _ => Ok(Invocation {
            flavour: Flavour::Plain,
            model: "none".to_owned(),
            resume: None,
            prompt: None,
        }),
    }
}

/// `claude -p [options] PROMPT`, as Claude Code parses it: `-p` is a switch, the prompt is the
/// first positional argument, and list options such as `--allowedTools` take every argument up
/// to the next option.
fn claude_invocation(args: &[String]) -> Result<Invocation, String> {
    const VALUE: &[&str] = &[
        "--output-format",
        "--input-format",
        "--model",
        "--resume",
        "-r",
        "--permission-mode",
        "--append-system-prompt",
        "--system-prompt",
        "--max-turns",
        "--settings",
        "--fallback-model",
        "--session-id",
    ];
    const LIST: &[&str] = &[
        "--allowedTools",
        "--allowed-tools",
        "--disallowedTools",
        "--disallowed-tools",
        "--add-dir",
        "--mcp-config",
    ];
    let mut print = false;
    let mut verbose = false;
    let mut values = std::collections::HashMap::new();
    let mut prompt = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        if arg == "-p" || arg == "--print" {
            print = true;
        } else if arg == "--verbose" {
            verbose = true;
        } else if VALUE.contains(&arg) {
            let value = args.get(i).ok_or(format!("{arg} needs a value"))?;
            values.insert(arg, value.clone());
            i += 1;
        } else if LIST.contains(&arg) {
            while i < args.len() && !args[i].starts_with('-') {
                i += 1;
            }
        } else if arg.starts_with('-') {
            // A switch this imitation does not know: accepted and ignored.
        } else if prompt.is_none() {
            prompt = Some(arg);
        } else {
            return Err(format!("unexpected argument {arg:?}"));
        }
    }
    if !print {
        return Err("only headless use (-p) is imitated".to_owned());
    }
    if values.get("--output-format").map(String::as_str) != Some("stream-json") {
        return Err("only --output-format stream-json is imitated".to_owned());
    }
    if !verbose {
        return Err("--output-format=stream-json requires --verbose".to_owned());
    }
    Ok(Invocation {
        flavour: Flavour::Claude,
        model: values
            .get("--model")
            .cloned()
            .unwrap_or_else(|| "claude-fake".to_owned()),
        resume: values.get("--resume").or_else(|| values.get("-r")).cloned(),
        prompt: prompt.map(str::to_owned),
    })
}

/// `codex exec [options] PROMPT` or `codex exec [options] resume [options] ID PROMPT`. As in
/// Codex, only a few options are accepted after `resume`; the rest must come before it.
fn codex_invocation(args: &[String]) -> Result<Invocation, String> {
    const VALUE: &[&str] = &[
        "-m",
        "--model",
        "-s",
        "--sandbox",
        "-c",
        "--config",
        "-C",
        "--cd",
        "-o",
        "--output-last-message",
        "-p",
        "--profile",
        "-i",
        "--image",
        "--color",
        "--output-schema",
        "--add-dir",
        "--local-provider",
    ];
    const AFTER_RESUME: &[&str] = &[
        "--json",
        "--experimental-json",
        "-m",
        "--model",
        "-o",
        "--output-last-message",
        "-i",
        "--image",
        "--last",
        "--all",
        "--skip-git-repo-check",
        "--ephemeral",
        "--ignore-user-config",
        "--ignore-rules",
        "--dangerously-bypass-approvals-and-sandbox",
    ];
    if args.first().map(String::as_str) != Some("exec") {
        return Err("only `codex exec` is imitated".to_owned());
    }
    let mut json = false;
    let mut model = None;
    let mut resuming = false;
    let mut positionals = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        let flag = arg.split('=').next().unwrap_or(arg);
        if arg.starts_with('-') && arg != "-" && resuming && !AFTER_RESUME.contains(&flag) {
            return Err(format!("unexpected argument '{arg}' found after `resume`"));
        }
        if arg == "--json" || arg == "--experimental-json" {
            json = true;
        } else if VALUE.contains(&arg) {
            let value = args.get(i).ok_or(format!("{arg} needs a value"))?;
            if arg == "-m" || arg == "--model" {
                model = Some(value.clone());
            }
            i += 1;
        } else if arg.starts_with('-') && arg != "-" {
            // A switch (or `--option=value`) this imitation does not need.
        } else if arg == "resume" && !resuming && positionals.is_empty() {
            resuming = true;
        } else {
            positionals.push(arg.to_owned());
        }
    }
    if !json {
        return Err("only --json output is imitated".to_owned());
    }
    let (resume, prompt) = match (resuming, positionals.as_slice()) {
        (false, [prompt]) => (None, prompt),
        (true, [id, prompt]) => (Some(id.clone()), prompt),
        _ => {
            return Err(format!(
                "expected {}PROMPT, got {positionals:?}",
                if resuming { "SESSION_ID " } else { "" }
            ));
        }
    };
    if prompt.is_empty() {
        return Err("the prompt is empty".to_owned());
    }
    Ok(Invocation {
        flavour: Flavour::Codex,
        model: model.unwrap_or_else(|| "codex-fake".to_owned()),
        resume,
        prompt: (prompt != "-").then(|| prompt.clone()),
    })
}

/// Every `PREFIX MODE [ARG]` line of the text (`fake-agent: …`), in order.
fn directives(text: &[u8], prefix: &str) -> Result<Vec<Directive>, String> {
    let mut directives = Vec::new();
    for line in text.split(|b| *b == b'\n') {
        let line = String::from_utf8_lossy(line);
        let Some(rest) = line.trim().strip_prefix(prefix) else {
            continue;
        };
        let rest = rest.trim();
        let (mode, arg) = match rest.split_once(char::is_whitespace) {
            Some((mode, arg)) => (mode, arg.trim()),
            None => (rest, ""),
        };
        let seconds = |arg: &str| {
            arg.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .ok_or(format!("`{mode}` needs a number of seconds, not {arg:?}"))
        };
        let text = |arg: &str| {
            if arg.is_empty() {
                Err(format!("`{mode}` needs text"))
            } else {
                Ok(arg.to_owned())
            }
        };
        let no_arg = |directive| {
            if arg.is_empty() {
                Ok(directive)
            } else {
                Err(format!("`{mode}` takes no argument"))
            }
        };
        directives.push(match mode {
            "succeed" => no_arg(Directive::Succeed)?,
            "exit" => Directive::Exit(
                arg.parse()
                    .map_err(|_| format!("`exit` needs a code from 0 to 255, not {arg:?}"))?,
            ),
            "segfault" => no_arg(Directive::Segfault)?,
            "sleep" => Directive::Sleep(seconds(arg)?),
            "silent" => Directive::Silent(seconds(arg)?),
            "hang" => no_arg(Directive::Hang)?,
            "ignore-term" => no_arg(Directive::IgnoreTerm)?,
            "spawn-child" => no_arg(Directive::SpawnChild)?,
            "garbage" => no_arg(Directive::Garbage)?,
            "rate-limit" if arg.trim().is_empty() => Directive::RateLimit(None),
            "rate-limit" => Directive::RateLimit(Some(arg.trim().to_owned())),
            "ask" => Directive::Ask(text(arg)?),
            "submit" => no_arg(Directive::Submit)?,
            "progress" => Directive::Progress(text(arg)?),
            "commit" => no_arg(Directive::Commit)?,
            "commit-lines" => Directive::CommitLines(
                arg.parse()
                    .map_err(|_| format!("`commit-lines` needs a number, not {arg:?}"))?,
            ),
            "evidence" => {
                Directive::Evidence(text(arg)?.split_whitespace().map(str::to_owned).collect())
            }
            "review" => {
                let (decision, reason) = text(arg)?
                    .split_once(char::is_whitespace)
                    .map(|(d, r)| (d.to_owned(), r.trim().to_owned()))
                    .ok_or("`review` needs a decision and a reason")?;
                Directive::Review(decision, reason)
            }
            "inbox-act" => {
                let arg = text(arg)?;
                match arg.split_once(char::is_whitespace) {
                    Some((action, rest)) => {
                        Directive::InboxAct(action.to_owned(), Some(rest.trim().to_owned()))
                    }
                    None => Directive::InboxAct(arg, None),
                }
            }
            "record" => no_arg(Directive::Record)?,
            "session" => Directive::Session(text(arg)?),
            "reset-path" => no_arg(Directive::ResetPath)?,
            _ => return Err(format!("unknown directive {mode:?}")),
        });
    }
    Ok(directives)
}

// ---------------------------------------------------------------------------------------------
// Output in each flavour.

enum Outcome {
    Success,
    Failure(String),
    /// The runtime's limit message, or its plain 429 when `None`.
    RateLimited(Option<String>),
}

struct Output {
    flavour: Flavour,
    model: String,
    session_id: String,
    messages: u32,
    items: u32,
    /// The prompt (agent flavours), where the absolute path of `mission` is written.
    prompt: Option<String>,
    /// Callbacks run with `PATH=/usr/bin:/bin` and the absolute path of `mission`.
    reset_path: bool,
}

impl Output {
    fn new(invocation: &Invocation) -> Output {
        Output {
            flavour: invocation.flavour,
            model: invocation.model.clone(),
            session_id: invocation
                .resume
                .clone()
                .or_else(initial_session)
                .unwrap_or_else(new_session_id),
            messages: 0,
            items: 0,
            prompt: None,
            reset_path: false,
        }
    }

    fn raw(&mut self, line: &[u8]) {
        let mut stdout = std::io::stdout().lock();
        // A closed stdout is the reader's business; the agent carries on.
        let _ = stdout.write_all(line);
        let _ = stdout.write_all(b"\n");
        let _ = stdout.flush();
    }

    fn json(&mut self, value: Value) {
        self.raw(value.to_string().as_bytes());
    }

    fn flush(&mut self) {
        let _ = std::io::stdout().flush();
    }

    fn next_item(&mut self) -> String {
        self.items += 1;
        format!("item_{}", self.items - 1)
    }

    fn assistant(&mut self, block: Value) {
        self.messages += 1;
        let event = json!({
            "type": "assistant",
            "message": {
                "id": format!("msg_fake{:04}", self.messages),
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [block],
                "stop_reason": null,
                "usage": {"input_tokens": 100, "output_tokens": 5},
            },
            "parent_tool_use_id": null,
            "session_id": self.session_id,
        });
        self.json(event);
    }

    /// A Claude Code tool call and its (empty) result.
    fn claude_tool(&mut self, name: &str, input: Value) {
        let id = format!("toolu_fake{:04}", self.messages + 1);
        self.assistant(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
        self.json(json!({
            "type": "user",
            "message": {"role": "user", "content": [
                {"tool_use_id": id, "type": "tool_result", "content": "ok", "is_error": false}
            ]},
            "session_id": self.session_id,
            "tool_use_result": {"stdout": "", "stderr": "", "interrupted": false},
        }));
    }

    fn start(&mut self) {
        let ticket_file = std::env::var("MISSION_TICKET_FILE").unwrap_or_default();
        match self.flavour {
            Flavour::Claude => {
                let cwd = std::env::current_dir().unwrap_or_default();
                let event = json!({
                    "type": "system",
                    "subtype": "init",
                    "cwd": cwd.to_string_lossy(),
                    "session_id": self.session_id,
                    "tools": ["Bash", "Edit", "Read", "Write"],
                    "mcp_servers": [],
                    "model": self.model,
                    "permissionMode": "default",
                    "apiKeySource": "none",
                    "claude_code_version": "0.0.0-fake",
                });
                self.json(event);
                self.claude_tool("Read", json!({"file_path": ticket_file}));
            }
            Flavour::Codex => {
                let event = json!({"type": "thread.started", "thread_id": self.session_id});
                self.json(event);
                let id = self.next_item();
                let message = format!(
                    "Model metadata for `{}` not found. Defaulting to fallback metadata; \
                     this can degrade performance and cause issues.",
                    self.model
                );
                self.json(json!({
                    "type": "item.completed",
                    "item": {"id": id, "type": "error", "message": message},
                }));
                self.json(json!({"type": "turn.started"}));
                self.tool(&format!("cat {ticket_file}"));
            }
            Flavour::Plain => {
                self.raw(b"fake-agent: reading the ticket");
                self.raw(br#"{"progress":"fake-agent started"}"#);
            }
        }
    }

    /// Text from the agent.
    fn message(&mut self, text: &str) {
        match self.flavour {
            Flavour::Claude => self.assistant(json!({"type": "text", "text": text})),
            Flavour::Codex => {
                let id = self.next_item();
                self.json(json!({
                    "type": "item.completed",
                    "item": {"id": id, "type": "agent_message", "text": text},
                }));
            }
            Flavour::Plain => self.raw(text.as_bytes()),
        }
    }

    /// A command the agent runs.
    fn tool(&mut self, command: &str) {
        match self.flavour {
            Flavour::Claude => self.claude_tool("Bash", json!({"command": command})),
            Flavour::Codex => {
                let id = self.next_item();
                let mut item = json!({
                    "id": id, "type": "command_execution", "command": command,
                    "aggregated_output": "", "exit_code": null, "status": "in_progress",
                });
                self.json(json!({"type": "item.started", "item": item.clone()}));
                item["exit_code"] = json!(0);
                item["status"] = json!("completed");
                self.json(json!({"type": "item.completed", "item": item}));
            }
            Flavour::Plain => self.raw(format!("$ {command}").as_bytes()),
        }
    }

    /// Reports `id` as a session (again).
    fn session(&mut self, id: &str) {
        match self.flavour {
            Flavour::Claude => {
                self.json(json!({"type": "system", "subtype": "init", "session_id": id}))
            }
            Flavour::Codex => self.json(json!({"type": "thread.started", "thread_id": id})),
            Flavour::Plain => self.raw(format!("session {id}").as_bytes()),
        }
    }

    /// Runs `mission run ARGS…` (arguments passed as argv, never via a shell): found on PATH, or
    /// after `reset-path` at the absolute path the prompt gives, with a reset PATH.
    fn mission(&mut self, args: &[&str]) -> Result<(), String> {
        self.mission_command("run", args)
    }

    /// Runs `mission COMMAND ARGS…`: found on PATH, or — after `reset-path`, like a CLI whose
    /// login shell resets PATH — by the absolute path the prompt names.
    fn mission_command(&mut self, command: &str, args: &[&str]) -> Result<(), String> {
        self.tool(&format!("mission {command} {}", args[0]));
        let mut program = if self.reset_path {
            let program = match &self.prompt {
                Some(prompt) => {
                    mission_in(prompt).ok_or("the prompt names no absolute path of `mission`")?
                }
                None => std::env::var("MISSION_BIN").map_err(|_| "MISSION_BIN is not set")?,
            };
            let mut program = Command::new(program);
            program.env("PATH", "/usr/bin:/bin");
            program
        } else {
            Command::new("mission")
        };
        let status = program
            .arg(command)
            .args(args)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("mission: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("mission {command} {}: {status}", args[0]))
        }
    }

    /// The last words of a run. Claude: a `result` event; Codex: the end of the turn.
    fn finish(&mut self, outcome: Outcome) {
        match self.flavour {
            Flavour::Claude => {
                let (is_error, status, text) = match &outcome {
                    Outcome::Success => {
                        self.message("All done.");
                        (false, Value::Null, "All done.".to_owned())
                    }
                    Outcome::Failure(text) => (true, Value::Null, text.clone()),
                    Outcome::RateLimited(message) => (
                        true,
                        json!(429),
                        message.clone().unwrap_or_else(|| {
                            "API Error: Request rejected (429) · rate_limit_error".to_owned()
                        }),
                    ),
                };
                let event = json!({
                    "type": "result",
                    // Claude Code reports API errors with subtype "success": judge by is_error.
                    "subtype": "success",
                    "is_error": is_error,
                    "api_error_status": status,
                    "duration_ms": 12,
                    "num_turns": self.messages,
                    "result": text,
                    "stop_reason": "end_turn",
                    "session_id": self.session_id,
                    "total_cost_usd": 0.0123,
                    "usage": {
                        "input_tokens": 1200,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 300,
                        "output_tokens": 45,
                    },
                    "permission_denials": [],
                });
                self.json(event);
            }
            Flavour::Codex => match outcome {
                Outcome::Success => {
                    self.message("All done.");
                    self.json(json!({
                        "type": "turn.completed",
                        "usage": {
                            "input_tokens": 2000,
                            "cached_input_tokens": 500,
                            "output_tokens": 80,
                            "reasoning_output_tokens": 0,
                        },
                    }));
                }
                Outcome::Failure(message) => {
                    self.json(json!({"type": "turn.failed", "error": {"message": message}}));
                }
                Outcome::RateLimited(message) => {
                    let message = message
                        .as_deref()
                        .unwrap_or("exceeded retry limit, last status: 429 Too Many Requests");
                    self.json(json!({"type": "error", "message": message}));
                    self.json(json!({"type": "turn.failed", "error": {"message": message}}));
                }
            },
            Flavour::Plain => match outcome {
                Outcome::Success => self.raw(b"fake-agent: done"),
                Outcome::Failure(message) => eprintln!("fake-agent: {message}"),
                Outcome::RateLimited(_) => eprintln!("fake-agent: rate limited (429)"),
            },
        }
        self.flush();
    }
}

/// The absolute path of `mission` in a prompt: the first word that is an absolute path ending
/// in `/mission` (quotes and backticks around it are not part of it).
fn mission_in(prompt: &str) -> Option<String> {
    prompt
        .split_whitespace()
        .map(|word| word.trim_matches(|c| c == '`' || c == '"' || c == '\''))
        .find(|word| word.starts_with('/') && word.ends_with("/mission"))
        .map(str::to_owned)
}

/// The session id set by a `fake-agent-session: ID` line of the ticket, if any.
fn initial_session() -> Option<String> {
    let path = std::env::var_os("MISSION_TICKET_FILE")?;
    let text = std::fs::read(path).ok()?;
    String::from_utf8_lossy(&text).lines().find_map(|line| {
        line.trim()
            .strip_prefix("fake-agent-session:")
            .map(|id| id.trim().to_owned())
    })
}

/// A fresh id in the shape of a UUID, from the clock and the pid.
fn new_session_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let pid = u64::from(std::process::id());
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (nanos >> 32) as u32,
        (nanos >> 16) as u16,
        nanos & 0xfff,
        pid & 0xfff,
        (nanos ^ (pid << 24)) & 0xffff_ffff_ffff,
    )
}

// ---------------------------------------------------------------------------------------------
// Signals.

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[allow(unsafe_code)]
fn ignore_sigterm() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code; nothing
    // else in this single-threaded process changes signal dispositions concurrently.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
}

#[allow(unsafe_code)]
fn segfault() -> ! {
    // SAFETY: restoring the default disposition (the runtime installs a SIGSEGV handler for
    // stack overflows, which would return from a raised signal) and raising the signal on
    // this thread; with the default disposition the process dies before `raise` returns.
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::raise(libc::SIGSEGV);
    }
    std::process::abort()
}
