//! Output parsing: the captured real streams, and every kind of bad line.

use mission_agents::{AgentEvent, RunSummary, RuntimeKind, parser};
use std::path::Path;

fn sample(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/samples")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Feeds the lines through one parser; returns every event.
fn parse(runtime: RuntimeKind, lines: &[&[u8]]) -> Vec<AgentEvent> {
    let mut parser = parser(runtime);
    lines.iter().flat_map(|line| parser.line(line)).collect()
}

fn summarize(events: &[AgentEvent]) -> RunSummary {
    let mut summary = RunSummary::default();
    for event in events {
        summary.apply(event);
    }
    summary
}

fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect()
}

/// One line through a fresh parser gives exactly these events.
fn check(runtime: RuntimeKind, line: &[u8], expect: &[AgentEvent]) {
    assert_eq!(
        parse(runtime, &[line]),
        expect,
        "{runtime:?}: {}",
        String::from_utf8_lossy(line)
    );
}

fn progress(text: &str) -> AgentEvent {
    AgentEvent::Progress { text: text.into() }
}

fn malformed(line: &str) -> AgentEvent {
    AgentEvent::Malformed { line: line.into() }
}

#[test]
fn claude_sample_parses_completely() {
    let bytes = sample("claude-stream.jsonl");
    let events = parse(RuntimeKind::ClaudeCode, &lines(&bytes));
    assert_eq!(
        events,
        vec![
            AgentEvent::Session {
                id: "e1204dda-9341-4103-8e5d-c365a1db8ff3".into()
            },
            progress("Bash: echo hello > proof.txt && git add -A && git commit -qm proof"),
            progress("done"),
            AgentEvent::Usage {
                input_tokens: 38374,
                output_tokens: 41,
                cached_input_tokens: 0,
                cost_usd: Some(0.192895),
            },
            AgentEvent::Result {
                is_error: false,
                rate_limited: false,
                text: Some("done".into()),
            },
        ]
    );
    assert_eq!(
        summarize(&events),
        RunSummary {
            session_id: Some("e1204dda-9341-4103-8e5d-c365a1db8ff3".into()),
            input_tokens: 38374,
            output_tokens: 41,
            cached_input_tokens: 0,
            cost_usd: Some(0.192895),
            result: Some((false, false)),
            malformed_lines: 0,
            last_progress: Some("done".into()),
            limit_reset: None,
        }
    );
}

#[test]
fn codex_sample_parses_completely() {
    let bytes = sample("codex-stream.jsonl");
    let events = parse(RuntimeKind::Codex, &lines(&bytes));
    assert_eq!(
        events,
        vec![
            AgentEvent::Session {
                id: "01a21550-d76f-7a22-aa2f-97d4b8c2e89b".into()
            },
            AgentEvent::Warning {
                message: "Model metadata for `mock-model` not found. Defaulting to fallback \
                          metadata; this can degrade performance and cause issues."
                    .into()
            },
            progress(
                "$ /bin/bash -lc 'echo hello > proof.txt && git add -A && git commit -qm proof'"
            ),
            progress("done"),
            AgentEvent::Usage {
                input_tokens: 19971,
                output_tokens: 113,
                cached_input_tokens: 0,
                cost_usd: None,
            },
            AgentEvent::Result {
                is_error: false,
                rate_limited: false,
                text: Some("done".into()),
            },
        ]
    );
    let summary = summarize(&events);
    assert_eq!(
        summary,
        RunSummary {
            session_id: Some("01a21550-d76f-7a22-aa2f-97d4b8c2e89b".into()),
            input_tokens: 19971,
            output_tokens: 113,
            cached_input_tokens: 0,
            cost_usd: None,
            result: Some((false, false)),
            malformed_lines: 0,
            last_progress: Some("done".into()),
            limit_reset: None,
        }
    );
}

#[test]
fn samples_with_crlf_and_blank_lines_parse_the_same() {
    for (runtime, name) in [
        (RuntimeKind::ClaudeCode, "claude-stream.jsonl"),
        (RuntimeKind::Codex, "codex-stream.jsonl"),
    ] {
        let bytes = sample(name);
        let plain = parse(runtime, &lines(&bytes));
        let crlf: Vec<Vec<u8>> = lines(&bytes)
            .into_iter()
            .flat_map(|l| [[l, b"\r"].concat(), Vec::new(), b"  ".to_vec()])
            .collect();
        let crlf: Vec<&[u8]> = crlf.iter().map(Vec::as_slice).collect();
        assert_eq!(parse(runtime, &crlf), plain, "{name}");
    }
}

/// Lines that must not parse, for both agent runtimes. Unknown event types are ignored: newer
/// CLIs add some.
#[test]
fn bad_lines_are_malformed_or_ignored() {
    let long = format!("{{\"type\":\"assistant\",\"x\":\"{}", "a".repeat(300));
    let cases: &[(&[u8], Option<&str>)] = &[
        (
            b"\xff\xfe\x00garbage\x80",
            Some("\u{fffd}\u{fffd}\0garbage\u{fffd}"),
        ),
        (
            b"{\"type\":\"result\",\"is_er",
            Some("{\"type\":\"result\",\"is_er"),
        ),
        (b"[1,2,3]", Some("[1,2,3]")),
        (b"\"just a string\"", Some("\"just a string\"")),
        (b"42", Some("42")),
        (b"null", Some("null")),
        (b"plain text output", Some("plain text output")),
        (b"with a line ending\r\n", Some("with a line ending")),
        (b"{\"session_id\":\"x\"}", Some("{\"session_id\":\"x\"}")),
        (b"{\"type\":7}", Some("{\"type\":7}")),
        (b"{\"type\":\"brand.new.event\",\"data\":1}", None),
        (b"{\"type\":\"rate_limit_event\"}", None),
        (b"", None),
        (b"   ", None),
    ];
    for runtime in [RuntimeKind::ClaudeCode, RuntimeKind::Codex] {
        for (line, expect) in cases {
            let expect: Vec<AgentEvent> = expect.iter().map(|l| malformed(l)).collect();
            check(runtime, line, &expect);
        }
        let events = parse(runtime, &[long.as_bytes()]);
        let [AgentEvent::Malformed { line }] = events.as_slice() else {
            panic!("{runtime:?}: {events:?}");
        };
        assert_eq!(line.chars().count(), 201, "200 characters and an ellipsis");
        assert!(line.ends_with('…'));
    }
}

#[test]
fn claude_events_of_the_wrong_shape_are_malformed() {
    for line in [
        &br#"{"type":"system","subtype":"init"}"#[..],
        br#"{"type":"system","subtype":"init","session_id":5}"#,
        br#"{"type":"assistant"}"#,
        br#"{"type":"assistant","message":{"content":"text"}}"#,
        br#"{"type":"result","subtype":"success"}"#,
        br#"{"type":"result","is_error":"no"}"#,
    ] {
        check(
            RuntimeKind::ClaudeCode,
            line,
            &[malformed(std::str::from_utf8(line).unwrap())],
        );
    }
}

#[test]
fn claude_events() {
    use RuntimeKind::ClaudeCode as C;
    // Other system events, user events (tool results) and thinking blocks: nothing.
    check(C, br#"{"type":"system","subtype":"compact_boundary"}"#, &[]);
    check(
        C,
        br#"{"type":"user","message":{"content":[{"type":"tool_result"}]}}"#,
        &[],
    );
    check(
        C,
        br#"{"type":"assistant","message":{"content":[{"type":"thinking","thinking":"hm"},{"type":"text","text":"  "}]}}"#,
        &[],
    );
    // Several blocks, a tool with no recognised input.
    check(
        C,
        br#"{"type":"assistant","message":{"content":[{"type":"text","text":" Looking. "},{"type":"tool_use","name":"Edit","input":{"file_path":"src/a.rs","old_string":"x"}},{"type":"tool_use","name":"TodoWrite","input":{}}]}}"#,
        &[progress("Looking."), progress("Edit: src/a.rs"), progress("TodoWrite")],
    );
    // Progress is kept short.
    let long = format!(
        r#"{{"type":"assistant","message":{{"content":[{{"type":"text","text":"{}"}}]}}}}"#,
        "é".repeat(600)
    );
    check(
        C,
        long.as_bytes(),
        &[progress(&format!("{}…", "é".repeat(500)))],
    );
    // Cache reads and writes count as input; the cached part is the reads.
    check(
        C,
        br#"{"type":"result","subtype":"success","is_error":false,"result":"ok","total_cost_usd":0.5,"usage":{"input_tokens":10,"cache_creation_input_tokens":20,"cache_read_input_tokens":30,"output_tokens":7}}"#,
        &[
            AgentEvent::Usage {
                input_tokens: 60,
                output_tokens: 7,
                cached_input_tokens: 30,
                cost_usd: Some(0.5),
            },
            AgentEvent::Result {
                is_error: false,
                rate_limited: false,
                text: Some("ok".into()),
            },
        ],
    );
}

/// Claude Code reports an API error as `subtype: "success"` with `is_error: true`.
#[test]
fn claude_errors_are_judged_by_is_error() {
    use RuntimeKind::ClaudeCode as C;
    let result = |is_error, rate_limited, text: &str| AgentEvent::Result {
        is_error,
        rate_limited,
        text: Some(text.into()),
    };
    check(
        C,
        br#"{"type":"result","subtype":"success","is_error":true,"api_error_status":429,"result":"API Error: Request rejected"}"#,
        &[result(true, true, "API Error: Request rejected")],
    );
    check(
        C,
        br#"{"type":"result","subtype":"success","is_error":true,"api_error_status":"429","result":"API Error"}"#,
        &[result(true, true, "API Error")],
    );
    check(
        C,
        br#"{"type":"result","subtype":"success","is_error":true,"api_error_status":529,"result":"API Error: Overloaded"}"#,
        &[result(true, false, "API Error: Overloaded")],
    );
    check(
        C,
        br#"{"type":"result","subtype":"success","is_error":true,"api_error_status":null,"result":"API Error: 429 rate_limit_error"}"#,
        &[result(true, true, "API Error: 429 rate_limit_error")],
    );
    check(
        C,
        br#"{"type":"result","subtype":"error_max_turns","is_error":false,"result":"stopped"}"#,
        &[result(false, false, "stopped")],
    );
    // A successful run that mentions rate limits is still a success.
    check(
        C,
        br#"{"type":"result","subtype":"success","is_error":false,"api_error_status":null,"result":"added a rate limit"}"#,
        &[result(false, false, "added a rate limit")],
    );
    // With usage: usage first, then the verdict.
    let events = parse(
        C,
        &[br#"{"type":"result","subtype":"success","is_error":true,"api_error_status":429,"session_id":"s9","total_cost_usd":0,"usage":{"input_tokens":3,"output_tokens":0}}"#],
    );
    assert_eq!(
        summarize(&events),
        RunSummary {
            session_id: Some("s9".into()),
            input_tokens: 3,
            cost_usd: Some(0.0),
            result: Some((true, true)),
            ..RunSummary::default()
        }
    );
}

#[test]
fn claude_session_is_reported_once_even_without_init() {
    let events = parse(
        RuntimeKind::ClaudeCode,
        &[
            br#"{"type":"assistant","session_id":"s1","message":{"content":[{"type":"text","text":"hi"}]}}"#,
            br#"{"type":"assistant","session_id":"s1","message":{"content":[{"type":"text","text":"again"}]}}"#,
        ],
    );
    assert_eq!(
        events,
        vec![
            AgentEvent::Session { id: "s1".into() },
            progress("hi"),
            progress("again")
        ]
    );
}

#[test]
fn codex_events_of_the_wrong_shape_are_malformed() {
    for line in [
        &br#"{"type":"thread.started"}"#[..],
        br#"{"type":"thread.started","thread_id":1}"#,
        br#"{"type":"item.completed"}"#,
        br#"{"type":"item.started","item":[]}"#,
        br#"{"type":"turn.completed"}"#,
        br#"{"type":"turn.completed","usage":7}"#,
        br#"{"type":"error"}"#,
    ] {
        check(
            RuntimeKind::Codex,
            line,
            &[malformed(std::str::from_utf8(line).unwrap())],
        );
    }
}

#[test]
fn codex_events() {
    use RuntimeKind::Codex as X;
    check(X, br#"{"type":"turn.started"}"#, &[]);
    check(
        X,
        br#"{"type":"item.updated","item":{"type":"todo_list","items":[]}}"#,
        &[],
    );
    check(
        X,
        br#"{"type":"item.completed","item":{"type":"reasoning","text":"thinking"}}"#,
        &[],
    );
    check(
        X,
        br#"{"type":"item.completed","item":{"type":"command_execution","command":"ls","exit_code":0}}"#,
        &[],
    );
    check(
        X,
        br#"{"type":"item.started","item":{"type":"mcp_tool_call","server":"docs","tool":"search"}}"#,
        &[progress("docs.search")],
    );
    check(
        X,
        br#"{"type":"item.completed","item":{"type":"file_change","changes":[{"path":"a.rs","kind":"update"},{"path":"b.rs","kind":"add"}],"status":"completed"}}"#,
        &[progress("edited a.rs, b.rs")],
    );
    // A failed turn; a rate limit is recognised from the message.
    check(
        X,
        br#"{"type":"turn.failed","error":{"message":"exceeded retry limit, last status: 429 Too Many Requests"}}"#,
        &[AgentEvent::Result {
            is_error: true,
            rate_limited: true,
            text: Some("exceeded retry limit, last status: 429 Too Many Requests".into()),
        }],
    );
    check(
        X,
        br#"{"type":"turn.failed","error":{"message":"stream disconnected"}}"#,
        &[AgentEvent::Result {
            is_error: true,
            rate_limited: false,
            text: Some("stream disconnected".into()),
        }],
    );
    check(
        X,
        br#"{"type":"error","message":"Rate limit reached for gpt-5"}"#,
        &[AgentEvent::Result {
            is_error: true,
            rate_limited: true,
            text: Some("Rate limit reached for gpt-5".into()),
        }],
    );
}

/// Turn usages add up; the result carries the turn's last agent message.
#[test]
fn codex_turns_add_up() {
    let events = parse(
        RuntimeKind::Codex,
        &[
            br#"{"type":"thread.started","thread_id":"t1"}"#,
            br#"{"type":"item.completed","item":{"type":"agent_message","text":"first"}}"#,
            br#"{"type":"item.completed","item":{"type":"agent_message","text":"second"}}"#,
            br#"{"type":"turn.completed","usage":{"input_tokens":100,"cached_input_tokens":40,"output_tokens":5}}"#,
            br#"{"type":"turn.completed","usage":{"input_tokens":50,"cached_input_tokens":0,"output_tokens":1,"reasoning_output_tokens":9}}"#,
        ],
    );
    assert_eq!(
        events[4],
        AgentEvent::Result {
            is_error: false,
            rate_limited: false,
            text: Some("second".into())
        }
    );
    assert_eq!(
        events[6],
        AgentEvent::Result {
            is_error: false,
            rate_limited: false,
            text: None
        }
    );
    assert_eq!(
        summarize(&events),
        RunSummary {
            session_id: Some("t1".into()),
            input_tokens: 150,
            output_tokens: 6,
            cached_input_tokens: 40,
            cost_usd: None,
            result: Some((false, false)),
            malformed_lines: 0,
            last_progress: Some("second".into()),
            limit_reset: None,
        }
    );
}

#[test]
fn shell_reports_only_progress_objects() {
    use RuntimeKind::Shell as S;
    check(
        S,
        br#"{"progress":"step 2 of 5"}"#,
        &[progress("step 2 of 5")],
    );
    check(
        S,
        br#"  {"progress":" padded ","other":1}"#,
        &[progress("padded")],
    );
    for line in [
        &b"plain output"[..],
        b"",
        b"\xff\xfe garbage",
        b"{\"progress\":",
        b"[\"progress\"]",
        br#"{"progress":5}"#,
        br#"{"type":"result","is_error":true}"#,
    ] {
        check(S, line, &[]);
    }
    let long = format!(r#"{{"progress":"{}"}}"#, "x".repeat(501));
    check(
        S,
        long.as_bytes(),
        &[progress(&format!("{}…", "x".repeat(500)))],
    );
}

/// A session id reaches argv on resume: only the first valid one of a run is its session; an
/// invalid one, or a second one, is a warning.
#[test]
fn session_ids_are_checked_and_the_first_wins() {
    let warning = |message: &str| AgentEvent::Warning {
        message: message.into(),
    };
    let events = parse(
        RuntimeKind::ClaudeCode,
        &[
            br#"{"type":"system","subtype":"init","session_id":"--dangerously-skip-permissions"}"#,
            br#"{"type":"system","subtype":"init","session_id":"s-1"}"#,
            br#"{"type":"system","subtype":"init","session_id":"s-2"}"#,
            br#"{"type":"assistant","session_id":"s-1","message":{"content":[]}}"#,
        ],
    );
    assert_eq!(
        events,
        vec![
            warning("ignored an invalid session id \"--dangerously-skip-permissions\""),
            AgentEvent::Session { id: "s-1".into() },
            warning("ignored a second session id \"s-2\"; the session is s-1"),
        ]
    );
    assert_eq!(summarize(&events).session_id.as_deref(), Some("s-1"));
    let events = parse(
        RuntimeKind::Codex,
        &[
            br#"{"type":"thread.started","thread_id":"t-1"}"#,
            br#"{"type":"thread.started","thread_id":"--model=evil"}"#,
            br#"{"type":"thread.started","thread_id":"t-2"}"#,
        ],
    );
    assert_eq!(
        events,
        vec![
            AgentEvent::Session { id: "t-1".into() },
            warning("ignored an invalid session id \"--model=evil\""),
            warning("ignored a second session id \"t-2\"; the session is t-1"),
        ]
    );
    // The summary keeps the first session even when fed a later one directly.
    let mut summary = RunSummary::default();
    summary.apply(&AgentEvent::Session { id: "a".into() });
    summary.apply(&AgentEvent::Session { id: "b".into() });
    assert_eq!(summary.session_id.as_deref(), Some("a"));
}

/// Rate and usage limits of both runtimes, with and without a reset time: the real 429 sample
/// (no time: the worker gets a backoff), Claude Code's usage-limit texts and its
/// `rate_limit_event`, Codex's usage-limit error.
#[test]
fn limits_and_their_reset_times() {
    use mission_agents::ResetHint;
    use mission_core::Timestamp;
    let sample = std::fs::read("tests/samples/claude-rate-limit.jsonl").unwrap();
    let lines: Vec<&[u8]> = sample.split(|b| *b == b'\n').collect();
    let summary = summarize(&parse(RuntimeKind::ClaudeCode, &lines));
    assert_eq!(summary.result, Some((true, true)), "{summary:?}");
    assert_eq!(summary.limit_reset, None);
    assert_eq!(summary.cost_usd, Some(0.0));

    let now = Timestamp::parse_rfc3339("2026-11-28T10:20:00Z").unwrap();
    let reset_of = |runtime, line: &str| {
        let summary = summarize(&parse(runtime, &[line.as_bytes()]));
        (
            summary.result,
            summary.limit_reset.map(|r: ResetHint| r.resolve(now)),
        )
    };
    let at = |s: &str| Some(Timestamp::parse_rfc3339(s).unwrap());
    let cases = [
        (
            RuntimeKind::ClaudeCode,
            r#"{"type":"result","subtype":"success","is_error":true,"result":"Claude AI usage limit reached|1795867200","session_id":"s"}"#,
            Some((true, true)),
            at("2026-11-28T12:00:00Z"),
        ),
        (
            RuntimeKind::ClaudeCode,
            r#"{"type":"result","subtype":"success","is_error":true,"result":"5-hour limit reached ∙ resets 3pm (Europe/Paris)","session_id":"s"}"#,
            Some((true, true)),
            at("2026-11-28T14:00:00Z"),
        ),
        (
            RuntimeKind::ClaudeCode,
            r#"{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":1795867200,"rateLimitType":"five_hour"},"session_id":"s"}"#,
            None,
            at("2026-11-28T12:00:00Z"),
        ),
        (
            RuntimeKind::ClaudeCode,
            r#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed_warning","resetsAt":1795867200},"session_id":"s"}"#,
            None,
            None,
        ),
        // A successful result that mentions a reset time is not a limit.
        (
            RuntimeKind::ClaudeCode,
            r#"{"type":"result","subtype":"success","is_error":false,"result":"the cache resets in 5 minutes","session_id":"s"}"#,
            Some((false, false)),
            None,
        ),
        (
            RuntimeKind::Codex,
            r#"{"type":"error","message":"You've hit your usage limit. Upgrade to Pro or try again in 2 hours 5 minutes."}"#,
            Some((true, true)),
            at("2026-11-28T12:25:00Z"),
        ),
        (
            RuntimeKind::Codex,
            r#"{"type":"turn.failed","error":{"message":"exceeded retry limit, last status: 429 Too Many Requests"}}"#,
            Some((true, true)),
            None,
        ),
    ];
    for (runtime, line, result, reset) in cases {
        assert_eq!(reset_of(runtime, line), (result, reset), "{line}");
    }
}
