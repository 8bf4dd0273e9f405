//! Rate limits and usage through the real binary and the fake agent: a runtime's limit (Claude
//! Code's and Codex's output, with and without a reset time) parks its worker — not the ticket:
//! no attempt is consumed, the other workers run on, `explain`, `status` and `usage` say so —
//! and the ticket runs once the time has come.

mod common;

use common::{FAST, Instance};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn reasons(instance: &Instance, id: &str) -> Vec<(String, String)> {
    let out = instance.run(&["explain", id, "--json"]);
    let explained: Value = serde_json::from_slice(&out.stdout).unwrap();
    explained["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["code"].as_str().unwrap().to_owned(),
                r["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_rate_limit_parks_the_worker_and_consumes_no_attempt() {
    let in_secs = |s: u64| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + s
    };
    // (worker, the runtime's message or its plain 429, whether it gives a reset time)
    let cases: Vec<(&str, Option<String>, bool)> = vec![
        (
            "claude",
            Some(format!("Claude AI usage limit reached|{}", in_secs(4))),
            true,
        ),
        ("claude", None, false),
        (
            "codex",
            Some("You've hit your usage limit. Try again in 4 seconds.".into()),
            true,
        ),
        ("codex", None, false),
    ];
    for (worker, message, has_reset) in cases {
        let label = format!("{worker} {message:?}");
        // One attempt only: a rate limit that consumed it would fail the ticket.
        let instance = Instance::with_fake_workers(&format!(
            "{}rate_limit_backoff = \"3s\"\n",
            FAST.replace("max_attempts = 3", "max_attempts = 1")
        ));
        let directive = match &message {
            Some(text) => format!("fake-agent: rate-limit {text}\n"),
            None => "fake-agent: rate-limit\n".to_owned(),
        };
        let limited = instance.add_with_body("limited", worker, directive.as_bytes());
        let report = instance.dispatch(&["--lane", "normal"]);
        assert_eq!(
            report["runs"][0]["failure_class"], "rate_limited",
            "{label}: {report}"
        );
        assert_eq!(instance.state(&limited), "todo", "{label}");
        // The worker is parked, with the time; explain says so.
        let why = reasons(&instance, &limited);
        assert_eq!(why.len(), 1, "{label}: {why:?}");
        assert_eq!(why[0].0, "worker_rate_limited", "{label}");
        assert!(
            why[0]
                .1
                .contains(&format!("worker {worker} is rate limited until")),
            "{label}: {why:?}"
        );
        assert!(
            why[0].1.contains(if has_reset {
                "reset time"
            } else {
                "without a reset time"
            }),
            "{label}: {why:?}"
        );
        // Other workers run on.
        let other = instance.add_with_body("other", "luci", b"fake-agent: succeed\n");
        let report = instance.dispatch(&["--lane", "normal"]);
        assert_eq!(
            report["runs"].as_array().unwrap().len(),
            1,
            "{label}: {report}"
        );
        assert_eq!(instance.state(&other), "review", "{label}");
        assert_eq!(instance.state(&limited), "todo", "{label}: still parked");
        // The verdict is degraded while parked; usage lists the park.
        let status = instance.run(&["status", "--json"]);
        let status: Value = serde_json::from_slice(&status.stdout).unwrap();
        assert!(
            status["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["code"] == "worker_rate_limited" && r["ids"][0] == worker),
            "{label}: {status}"
        );
        let usage = instance.json(&["usage"]);
        assert_eq!(usage["parked"][0]["worker"], worker, "{label}: {usage}");
        // When the time comes, the ticket runs (its agent no longer limited) — its second
        // attempt, though max_attempts is 1.
        instance.ok(&["ticket", "edit", &limited, "--body", "fake-agent: succeed"]);
        common::wait_for(Duration::from_secs(15), || {
            reasons(&instance, &limited).is_empty()
        });
        let report = instance.dispatch(&["--lane", "normal"]);
        assert_eq!(
            report["runs"][0]["failure_class"],
            Value::Null,
            "{label}: {report}"
        );
        assert_eq!(instance.state(&limited), "review", "{label}");
        assert_eq!(instance.show(&limited)["attempts"], 2, "{label}");
        let usage = instance.json(&["usage", "--by", "worker"]);
        let row = usage["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == worker)
            .cloned()
            .unwrap_or_else(|| panic!("{label}: {usage}"));
        assert_eq!(row["runs"], 2, "{label}: {usage}");
        assert_eq!(usage["parked"], Value::Array(vec![]), "{label}");
    }
}

#[test]
fn usage_by_day_label_and_ticket_and_bad_input() {
    let instance = Instance::with_fake_workers(&format!(
        "{FAST}\n[[budgets]]\nname = \"codex-daily\"\nworker = \"codex\"\nwindow = \"day\"\ntokens = 1000\nsoft = 0.5\n"
    ));
    let first = instance.add_with_body("one", "codex", b"fake-agent: succeed\n");
    instance.ok(&["ticket", "edit", &first, "--label", "docs"]);
    // Codex reports no cost: the token limit stops it after its first run (2080 tokens).
    instance.dispatch(&["--lane", "normal"]);
    assert_eq!(instance.state(&first), "review");
    let held = &instance.add_with_body("two", "codex", b"fake-agent: succeed\n");
    let report = instance.dispatch(&["--lane", "normal"]);
    assert_eq!(report["runs"], Value::Array(vec![]), "{report}");
    assert_eq!(instance.state(held), "todo");
    let why = reasons(&instance, held);
    assert_eq!(why[0].0, "budget_exhausted", "{why:?}");
    assert!(
        why[0]
            .1
            .contains("budget codex-daily (worker codex, day) is exhausted: tokens"),
        "{why:?}"
    );
    for by in ["day", "ticket", "label", "pool", "worker"] {
        let usage = instance.json(&["usage", "--by", by, "--since", "1d"]);
        assert_eq!(usage["total"]["runs"], 1, "{by}: {usage}");
        assert_eq!(usage["rows"][0]["runs"], 1, "{by}: {usage}");
        assert_eq!(usage["rows"][0]["input_tokens"], 2000, "{by}: {usage}");
        assert_eq!(
            usage["budgets"][0]["standing"], "exhausted",
            "{by}: {usage}"
        );
    }
    // The first by cost, and how many groups used anything.
    let first = instance.json(&["usage", "--by", "ticket", "--since", "1d", "--limit", "1"]);
    assert_eq!(
        (first["rows"].as_array().unwrap().len(), &first["groups"]),
        (1, &Value::from(1)),
        "{first}"
    );
    let text = instance.ok(&["usage"]);
    assert!(
        text.contains("budget codex-daily (worker codex, day): exhausted"),
        "{text}"
    );
    for (args, error) in [
        (vec!["usage", "--by", "planet"], "--by \"planet\""),
        (
            vec!["usage", "--since", "yesterday-ish"],
            "--since \"yesterday-ish\"",
        ),
        (
            vec!["usage", "--by", "day", "--since", "1900-01-01"],
            "--since: --by day reports at most 3660 days",
        ),
        (
            vec!["usage", "--by", "day", "--limit", "3"],
            "--limit: applies to --by worker, pool, ticket or label",
        ),
    ] {
        let out = instance.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(error) && stderr.lines().count() == 1,
            "{stderr}"
        );
    }
}

/// A budget that says `on_exhaust = "stop"` stops the runs in progress under it once the runs
/// that ended spent it: the stopped attempt is `budget_stopped`, not charged (one attempt only,
/// and the ticket is back in todo, not failed), and the budget then holds it.
#[test]
fn a_spent_stopping_budget_stops_the_runs_in_progress_without_charging_them() {
    let instance = Instance::with_fake_workers(&format!(
        "{}\n[[budgets]]\nname = \"codex-hard\"\nworker = \"codex\"\nwindow = \"day\"\ntokens = 1000\non_exhaust = \"stop\"\n",
        FAST.replace("max_attempts = 3", "max_attempts = 1")
            .replace("stall_timeout = \"3s\"", "stall_timeout = \"60s\"")
            .replace("run_timeout = \"30s\"", "run_timeout = \"60s\"")
    ));
    // Codex reports 2080 tokens for the quick one: the budget is spent when it ends, while the
    // slow one still runs.
    let quick = instance.add_with_body("quick", "codex", b"fake-agent: succeed\n");
    let slow = instance.add_with_body("slow", "codex", b"fake-agent: sleep 40\n");
    let report = instance.dispatch(&["--lane", "normal"]);
    let runs = report["runs"].as_array().unwrap();
    let of = |id: &str| runs.iter().find(|r| r["ticket"] == id).unwrap().clone();
    assert_eq!(of(&quick)["failure_class"], Value::Null, "{report}");
    let stopped = of(&slow);
    assert_eq!(stopped["failure_class"], "budget_stopped", "{report}");
    assert!(
        stopped["detail"]
            .as_str()
            .unwrap()
            .contains("budget codex-hard (worker codex, day) is spent: tokens"),
        "{report}"
    );
    // Not charged: with one attempt allowed the ticket is back in todo, held by the budget.
    assert_eq!(instance.state(&slow), "todo");
    let why = reasons(&instance, &slow);
    assert_eq!(why[0].0, "budget_exhausted", "{why:?}");
    // A runs limit alone never stops a run in progress: "stop" there is refused.
    std::fs::write(
        instance.config(),
        std::fs::read_to_string(instance.config())
            .unwrap()
            .replace("tokens = 1000", "runs = 1"),
    )
    .unwrap();
    let out = instance.run(&["status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("budgets[0].on_exhaust") && stderr.contains("a runs limit never stops"),
        "{stderr}"
    );
}
