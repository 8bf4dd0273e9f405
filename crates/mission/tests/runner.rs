//! The runner with real processes: the fake agent behaving like the real CLIs, good and bad.

mod common;

use common::{FAST, Instance, alive};
use serde_json::Value;
use std::time::Duration;

/// Dispatches once and returns the one run report.
fn run_once(instance: &Instance) -> Value {
    let report = instance.dispatch(&["--lane", "normal"]);
    let runs = report["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(runs.len(), 1, "{report}");
    runs[0].clone()
}

fn last_run(instance: &Instance, id: &str) -> Value {
    instance.show(id)["runs"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone()
}

#[test]
fn each_way_an_agent_can_end_lands_in_the_right_state() {
    // (directives, failure class, ticket state after the first attempt)
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("fake-agent: succeed", None, "review"),
        ("fake-agent: garbage\nfake-agent: succeed", None, "review"),
        ("fake-agent: exit 3", Some("agent_error"), "todo"),
        ("fake-agent: segfault", Some("agent_error"), "todo"),
        ("fake-agent: submit", None, "review"),
        (
            "fake-agent: ask Which database should I use?",
            None,
            "needs_input",
        ),
        (
            "fake-agent: progress halfway\nfake-agent: succeed",
            None,
            "review",
        ),
    ];
    let instance = Instance::with_fake_workers(FAST);
    for (directives, class, state) in cases {
        let title = directives.lines().next().unwrap();
        let id = instance.add_with_body(title, "luci", format!("{directives}\n").as_bytes());
        let report = run_once(&instance);
        assert_eq!(report["ticket"], id.as_str());
        assert_eq!(
            report["failure_class"].as_str(),
            *class,
            "{directives}: {report}"
        );
        assert_eq!(instance.state(&id), *state, "{directives}");
        let run = last_run(&instance, &id);
        assert!(run["ended_at"].is_string(), "{directives}: the run ended");
        assert!(
            instance
                .processes_of_run(run["id"].as_i64().unwrap())
                .is_empty(),
            "{directives}: nothing left running"
        );
        if directives.contains("segfault") {
            assert_eq!(run["detail"], "killed by signal 11");
        }
        if *state == "todo" {
            // Back off, then it is retried; exhausting attempts fails the ticket.
            instance.ok(&["ticket", "move", &id, "cancelled"]);
        }
    }
    let asked = instance
        .events()
        .into_iter()
        .find(|e| e["data"]["via"] == "run_ask")
        .unwrap();
    assert_eq!(asked["data"]["outcome"], "asked");
}

#[test]
fn failures_retry_with_backoff_then_fail() {
    // A backoff long enough for `explain` to see it even on a loaded machine.
    let config = FAST
        .replace("backoff_base = \"50ms\"", "backoff_base = \"3s\"")
        .replace("backoff_max = \"200ms\"", "backoff_max = \"3s\"");
    let instance = Instance::with_fake_workers(&config);
    let id = instance.add_with_body("always fails", "luci", b"fake-agent: exit 7\n");
    run_once(&instance);
    assert_eq!(instance.state(&id), "todo");
    let explained = instance.json(&["explain", &id]);
    assert_eq!(explained["reasons"][0]["code"], "backoff", "{explained}");
    for attempt in 2..=3 {
        // Runnable again once its backoff is over.
        common::wait_for(Duration::from_secs(20), || {
            instance.json(&["explain", &id])["runnable"] == true
        });
        let report = run_once(&instance);
        assert_eq!(report["attempt"], attempt);
    }
    assert_eq!(instance.state(&id), "failed");
    let runs = instance.show(&id)["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 3);
    assert!(
        runs.iter()
            .all(|r| r["failure_class"] == "agent_error" && r["exit_code"] == 7)
    );
}

#[test]
fn a_hung_agent_that_ignores_sigterm_is_killed_with_its_whole_group() {
    let instance = Instance::with_fake_workers(
        &FAST.replace("stall_timeout = \"3s\"", "stall_timeout = \"1s\""),
    );
    let id = instance.add_with_body(
        "hangs",
        "luci",
        b"fake-agent: spawn-child\nfake-agent: ignore-term\nfake-agent: hang\n",
    );
    let report = run_once(&instance);
    assert_eq!(report["failure_class"], "stalled", "{report}");
    let child: i64 = std::fs::read_to_string(instance.run_dir(&id, 1).join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !alive(child),
        "the grandchild {child} was killed with the group"
    );
    let run = last_run(&instance, &id);
    assert!(
        instance
            .processes_of_run(run["id"].as_i64().unwrap())
            .is_empty()
    );
}

#[test]
fn a_run_over_its_time_limit_times_out() {
    let instance =
        Instance::with_fake_workers(&FAST.replace("run_timeout = \"30s\"", "run_timeout = \"1s\""));
    let id = instance.add_with_body("slow", "luci", b"fake-agent: sleep 30\n");
    let report = run_once(&instance);
    assert_eq!(report["failure_class"], "timeout", "{report}");
    assert_eq!(instance.state(&id), "todo");
}

#[test]
fn an_agent_killed_from_outside_is_an_agent_error() {
    let instance = Instance::with_fake_workers(FAST);
    let id = instance.add_with_body("gets killed", "luci", b"fake-agent: hang\n");
    let dispatcher = instance
        .command(&["dispatch", "--once", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pid = None;
    common::wait_for(Duration::from_secs(10), || {
        pid = last_run_pid(&instance, &id);
        pid.is_some()
    });
    common::signal(pid.unwrap() as i32, libc::SIGKILL);
    let out = dispatcher.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["runs"][0]["failure_class"], "agent_error");
    assert_eq!(report["runs"][0]["detail"], "killed by signal 9");
}

fn last_run_pid(instance: &Instance, id: &str) -> Option<i64> {
    let runs = instance.show(id)["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    runs.last().and_then(|r| r["pid"].as_i64())
}

#[test]
fn a_missing_runtime_fails_the_ticket_at_once() {
    let instance = Instance::with_fake_workers(
        "[workers.gone]\nruntime = \"shell\"\ncommand = [\"/nonexistent/agent\"]\n",
    );
    let id = instance.add(&["--title", "no runtime", "--assignee", "gone"]);
    let report = run_once(&instance);
    assert_eq!(report["failure_class"], "runtime_missing", "{report}");
    assert_eq!(
        instance.state(&id),
        "failed",
        "retrying cannot bring a runtime back"
    );
}

#[test]
fn hostile_ticket_text_reaches_the_agent_byte_exact_without_a_shell() {
    let instance = Instance::with_fake_workers(FAST);
    let mut body = b"fake-agent: record\n".to_vec();
    body.extend_from_slice(b"; rm -rf / | cat /etc/passwd $(id) `whoami` && echo pwned\n");
    body.extend_from_slice(b"--help\n-rf\n\0NUL\0inside\n\"quotes\" 'single' \\backslash\n");
    while body.len() < 1024 * 1024 {
        body.extend_from_slice(b"$(touch /tmp/mission-pwned) `touch /tmp/mission-pwned` ;|&><\n");
    }
    let id = instance.add_with_body("-rf; $(reboot)", "luci", &body);
    let report = run_once(&instance);
    assert_eq!(report["failure_class"], Value::Null, "{report}");
    let dir = instance.run_dir(&id, 1);
    let mut expected = b"-rf; $(reboot)\n\n".to_vec();
    expected.extend_from_slice(&body);
    assert_eq!(
        std::fs::read(dir.join("received.ticket")).unwrap(),
        expected,
        "ticket file byte-exact"
    );
    assert_eq!(
        std::fs::read(dir.join("received.stdin")).unwrap(),
        expected,
        "stdin byte-exact"
    );
    let argv = std::fs::read_to_string(dir.join("received.argv")).unwrap();
    assert!(
        !argv.contains("rm -rf") && !argv.contains("reboot"),
        "ticket text never in argv: {argv}"
    );
    assert!(!std::path::Path::new("/tmp/mission-pwned").exists());
    let env = std::fs::read_to_string(dir.join("received.env")).unwrap();
    for name in [
        "MISSION_RUN_TOKEN=mcr_",
        "MISSION_TICKET=",
        "MISSION_ATTEMPT=1",
    ] {
        assert!(env.contains(name), "{name} missing from {env}");
    }
    assert!(
        !env.contains("CARGO"),
        "the environment is allow-listed: {env}"
    );
}

#[test]
fn a_stale_attempts_report_is_refused() {
    let instance = Instance::with_fake_workers(FAST);
    let id = instance.add_with_body(
        "first fails",
        "luci",
        b"fake-agent: record\nfake-agent: exit 1\n",
    );
    run_once(&instance);
    let env = std::fs::read_to_string(instance.run_dir(&id, 1).join("received.env")).unwrap();
    let token = env
        .lines()
        .find_map(|l| l.strip_prefix("MISSION_RUN_TOKEN="))
        .unwrap()
        .to_owned();
    // Attempt 1 is over; its token can no longer move the ticket.
    let out = instance
        .command(&["run", "submit"])
        .env("MISSION_RUN_TOKEN", &token)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no longer the current attempt"));
    assert_eq!(instance.state(&id), "todo");
    // And a made-up token names no run.
    let out = instance
        .command(&["run", "submit"])
        .env("MISSION_RUN_TOKEN", "mcr_forged")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = instance.run(&["run", "submit"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not inside a run"));
}

#[test]
fn claude_code_asks_then_resumes_the_same_session() {
    let instance = Instance::with_fake_workers(FAST);
    let id = instance.add_with_body(
        "needs a decision",
        "claude",
        b"fake-agent: ask Postgres or SQLite?\n",
    );
    run_once(&instance);
    assert_eq!(instance.state(&id), "needs_input");
    let first = last_run(&instance, &id);
    let session = first["session_id"]
        .as_str()
        .expect("the session id from the init event")
        .to_owned();
    assert!(first["cost_usd"].as_f64().is_some(), "{first}");

    instance.ok(&["ticket", "answer", &id, "SQLite"]);
    let report = instance.dispatch(&["--lane", "needs-input"]);
    assert_eq!(report["runs"][0]["failure_class"], Value::Null, "{report}");
    // The resumed attempt was asked to answer, with the same session.
    let second = last_run(&instance, &id);
    assert_eq!(second["lane"], "needs-input");
    assert_eq!(second["session_id"], session.as_str());
    let answer = std::fs::read_to_string(instance.run_dir(&id, 2).join("answer.md")).unwrap();
    assert!(
        answer.contains("Postgres or SQLite?") && answer.contains("SQLite"),
        "{answer}"
    );
    assert_eq!(instance.state(&id), "review");
}

#[test]
fn codex_runs_and_reports_usage() {
    let instance = Instance::with_fake_workers(FAST);
    let id = instance.add_with_body("codex job", "codex", b"fake-agent: succeed\n");
    let report = run_once(&instance);
    assert_eq!(report["failure_class"], Value::Null, "{report}");
    let run = last_run(&instance, &id);
    assert!(run["session_id"].is_string(), "{run}");
    assert!(run["input_tokens"].as_i64().unwrap_or(0) > 0, "{run}");
    assert_eq!(instance.state(&id), "review");
}

#[test]
fn a_rate_limited_agent_is_classified_so() {
    let instance = Instance::with_fake_workers(FAST);
    instance.add_with_body("limited", "claude", b"fake-agent: rate-limit\n");
    let report = run_once(&instance);
    assert_eq!(report["failure_class"], "rate_limited", "{report}");
}

#[test]
fn cancelling_a_running_ticket_stops_its_run() {
    let instance = Instance::with_fake_workers(FAST);
    let id = instance.add_with_body("cancel me", "luci", b"fake-agent: hang\n");
    let dispatcher = instance
        .command(&["dispatch", "--once", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_for(Duration::from_secs(10), || {
        last_run_pid(&instance, &id).is_some()
    });
    instance.ok(&["ticket", "move", &id, "cancelled"]);
    let out = dispatcher.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["runs"][0]["failure_class"], "cancelled", "{report}");
    assert_eq!(instance.state(&id), "cancelled");
    let ended = instance
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "run.ended")
        .count();
    assert_eq!(ended, 1);
}

#[test]
fn the_shell_worker_commits_in_its_own_worktree() {
    let instance = Instance::with_fake_workers(FAST);
    let repo = instance.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "x\n").unwrap();
    git(&["add", "README"]);
    git(&["commit", "-q", "-m", "init"]);
    let body = instance.path().join("b.txt");
    std::fs::write(&body, "fake-agent: commit\n").unwrap();
    let id = instance.add(&[
        "--title",
        "commit something",
        "--assignee",
        "luci",
        "--repo",
        "repo",
        "--body-file",
        body.to_str().unwrap(),
    ]);
    run_once(&instance);
    let run = last_run(&instance, &id);
    assert_ne!(run["head_before"], run["head_after"], "{run}");
    let branch = git(&["log", "--format=%H", "-1", &format!("mission/{id}")]);
    assert_eq!(branch.trim(), run["head_after"].as_str().unwrap());
    assert_eq!(
        run["workspace"].as_str().unwrap(),
        instance
            .path()
            .join("data/workspaces")
            .join(&id)
            .to_str()
            .unwrap()
    );
}

#[test]
fn the_run_log_stops_at_its_cap() {
    let config = FAST.replace(
        "kill_grace = \"300ms\"",
        "kill_grace = \"300ms\"\nlog_cap_bytes = 64",
    );
    let instance = Instance::with_fake_workers(&config);
    let id = instance.add_with_body(
        "chatty",
        "luci",
        b"fake-agent: garbage\nfake-agent: sleep 2\nfake-agent: succeed\n",
    );
    let report = run_once(&instance);
    assert_eq!(report["failure_class"], Value::Null, "{report}");
    let log = std::fs::read(instance.run_dir(&id, 1).join("output.log")).unwrap();
    let marker = b"[mission: log truncated at its size cap]\n";
    assert!(log.ends_with(marker), "{:?}", String::from_utf8_lossy(&log));
    assert!(log.len() <= 64 + marker.len(), "{} bytes", log.len());
}

#[test]
fn a_line_written_in_two_halves_is_logged_whole() {
    // The runner's heartbeat ticks every second (a third of the 3 s lease): it wins the runner's
    // select while only the first half of the line has arrived.
    let instance = Instance::with_script_worker(
        FAST,
        "printf first-half-\nsleep 2\nprintf 'second-half\\n'\n",
    );
    let id = instance.add(&["--title", "halves", "--assignee", "script"]);
    let report = run_once(&instance);
    assert_eq!(report["failure_class"], Value::Null, "{report}");
    let log = std::fs::read_to_string(instance.run_dir(&id, 1).join("output.log")).unwrap();
    assert_eq!(log, "first-half-second-half\n");
}

#[test]
fn an_endless_line_is_logged_up_to_the_line_cap() {
    // 3 MiB without a newline, then a short line.
    let instance = Instance::with_script_worker(
        FAST,
        "head -c 3145728 /dev/zero | tr '\\0' x\nprintf '\\nafter\\n'\n",
    );
    let id = instance.add(&["--title", "endless", "--assignee", "script"]);
    let report = run_once(&instance);
    assert_eq!(report["failure_class"], Value::Null, "{report}");
    let log = std::fs::read(instance.run_dir(&id, 1).join("output.log")).unwrap();
    let lines: Vec<&[u8]> = log.split(|b| *b == b'\n').collect();
    assert_eq!(lines.len(), 4, "three lines and the end");
    assert_eq!(lines[0], vec![b'x'; 1024 * 1024].as_slice());
    assert_eq!(
        String::from_utf8_lossy(lines[1]),
        "[mission: line truncated, 2097152 bytes dropped]"
    );
    assert_eq!(lines[2], b"after");
}
