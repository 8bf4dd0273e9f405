//! Tasks through the real binary: listing with broken files, manual runs, the kinds, hot reload.

mod common;

use common::{FAST, Instance};
use serde_json::Value;
use std::time::Duration;

fn write_task(instance: &Instance, name: &str, text: &str) {
    std::fs::write(
        instance.path().join("tasks").join(format!("{name}.md")),
        text,
    )
    .unwrap();
}

#[test]
fn task_list_names_broken_files_and_keeps_the_good_ones() {
    let instance = Instance::with_fake_workers(FAST);
    write_task(
        &instance,
        "good",
        "+++\nkind = \"command\"\nevery = \"1h\"\n+++\ntrue\n",
    );
    write_task(
        &instance,
        "bad",
        "+++\nkind = \"command\"\nschedule = \"99 * * * *\"\n+++\ntrue\n",
    );
    std::fs::write(
        instance.path().join("tasks/garbage.md"),
        [0x2b, 0x2b, 0x2b, 0x0a, 0xc3, 0x28, 0x00],
    )
    .unwrap();
    let out = instance.run(&["task", "list", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "broken files make the answer negative"
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"good"), "{listed}");
    let errors: Vec<&str> = listed["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        errors.iter().any(|e| e
            .contains("tasks/bad.md:3: key `schedule`: invalid cron expression \"99 * * * *\"")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("tasks/garbage.md:2: not UTF-8 text")),
        "{errors:?}"
    );
    let out = instance.run(&["task", "run", "bad"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("task bad cannot run: "));
    let out = instance.run(&["task", "run", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_command_that_exits_0_but_reports_degraded_is_degraded() {
    let instance = Instance::with_fake_workers(FAST);
    write_task(
        &instance,
        "review",
        "+++\nkind = \"command\"\nevery = \"1h\"\n+++\necho '{\"outcome\": \"degraded\", \"reason\": \"diff of 41969 lines over the 5000 cap: not reviewed\", \"counts\": {\"lines\": 41969}}'\n",
    );
    let out = instance.run(&["task", "run", "review", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["outcome"], "degraded");
    let history = instance.json(&["task", "history", "review"]);
    assert_eq!(history[0]["outcome"], "degraded");
    assert_eq!(history[0]["trigger"], "manual");
    assert_eq!(history[0]["counts"]["lines"], 41969);
    let finished: Vec<Value> = instance
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "task.finished")
        .collect();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["data"]["outcome"], "degraded");
}

#[test]
fn triage_assigns_by_rule_and_counts_what_no_rule_matches() {
    let rules = format!(
        "{FAST}\n[[triage.rules]]\nlabel = \"ci\"\nassignee = \"luci\"\n\n[[triage.rules]]\ntitle = \"(?i)^docs:\"\nassignee = \"claude\"\n"
    );
    let instance = Instance::with_fake_workers(&rules);
    write_task(
        &instance,
        "triage",
        "+++\nkind = \"triage\"\nevery = \"1m\"\n+++\n",
    );
    let ci = instance.add(&["--title", "flaky build", "--label", "ci"]);
    let docs = instance.add(&["--title", "Docs: fix typo"]);
    let lost = instance.add(&["--title", "something else"]);
    let out = instance.run(&["task", "run", "triage", "--json"]);
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["outcome"], "degraded", "{result}");
    assert_eq!(
        result["counts"],
        serde_json::json!({"assigned": 2, "unmatched": 1})
    );
    assert!(result["reason"].as_str().unwrap().contains(&lost));
    assert_eq!(instance.show(&ci)["assignee"], "luci");
    assert_eq!(instance.state(&ci), "todo");
    assert_eq!(instance.show(&docs)["assignee"], "claude");
    assert_eq!(instance.state(&lost), "triage");
    // Triage empty of matchable tickets: the one left is still counted, never silently skipped.
    let again: Value =
        serde_json::from_slice(&instance.run(&["task", "run", "triage", "--json"]).stdout).unwrap();
    assert_eq!(again["counts"]["unmatched"], 1);
}

#[test]
fn board_sweep_agent_and_dispatch_tasks() {
    let instance = Instance::with_fake_workers(FAST);
    write_task(
        &instance,
        "sweep",
        "+++\nkind = \"board-sweep\"\nevery = \"1h\"\nlimits = { todo = \"1s\" }\n+++\n",
    );
    write_task(
        &instance,
        "ask-luci",
        "+++\nkind = \"agent\"\nevery = \"1h\"\nworker = \"luci\"\n+++\nfake-agent: succeed\nSummarise the board.\n",
    );
    write_task(
        &instance,
        "pickup",
        "+++\nkind = \"dispatch\"\nevery = \"1m\"\nlane = \"normal\"\n+++\n",
    );

    let sweep: Value =
        serde_json::from_slice(&instance.run(&["task", "run", "sweep", "--json"]).stdout).unwrap();
    assert_eq!(sweep["outcome"], "noop");
    let old = instance.add(&["--title", "waiting", "--assignee", "lucienne"]);
    // Until the ticket has waited longer than the 1 s limit, the sweep finds nothing.
    let mut sweep = Value::Null;
    common::wait_for(Duration::from_secs(20), || {
        sweep = serde_json::from_slice(&instance.run(&["task", "run", "sweep", "--json"]).stdout)
            .unwrap();
        assert!(
            sweep["outcome"] == "acted" || sweep["outcome"] == "noop",
            "{sweep}"
        );
        sweep["outcome"] == "acted"
    });
    assert!(sweep["reason"].as_str().unwrap().contains(&old), "{sweep}");

    let agent: Value =
        serde_json::from_slice(&instance.run(&["task", "run", "ask-luci", "--json"]).stdout)
            .unwrap();
    assert_eq!(agent["outcome"], "acted", "{agent}");
    let created = agent["reason"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        instance.show(&created)["labels"],
        serde_json::json!(["task", "task:ask-luci"])
    );

    // The dispatch task is one pass of the dispatcher: it claims the agent task's ticket, and the
    // run is supervised to its end.
    let out = instance.run(&["task", "run", "pickup", "--json"]);
    let pickup: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pickup["outcome"], "acted", "{pickup}");
    assert_eq!(pickup["counts"]["claimed"], 1);
    assert_eq!(instance.state(&created), "review");
    let idle: Value =
        serde_json::from_slice(&instance.run(&["task", "run", "pickup", "--json"]).stdout).unwrap();
    assert_eq!(idle["outcome"], "noop");
}

#[test]
fn serve_fires_tasks_and_reloads_the_folder_without_a_restart() {
    let instance = Instance::with_fake_workers(FAST);
    write_task(
        &instance,
        "steady",
        "+++\nkind = \"command\"\nevery = \"1s\"\n+++\ntrue\n",
    );
    let server = instance.serve();
    let fired = |task: &str| {
        instance
            .json(&["task", "history", task])
            .as_array()
            .map_or(0, |a| a.len())
    };
    common::wait_for(Duration::from_secs(10), || fired("steady") >= 2);

    // A new file takes effect without a restart.
    write_task(
        &instance,
        "added",
        "+++\nkind = \"command\"\nevery = \"1s\"\n+++\necho '{\"outcome\": \"noop\", \"reason\": \"nothing to do\"}'\n",
    );
    // Its runs end with the outcome its script reports.
    common::wait_for(Duration::from_secs(10), || {
        instance
            .json(&["task", "history", "added"])
            .as_array()
            .is_some_and(|runs| runs.iter().any(|r| r["outcome"] == "noop"))
    });

    // A broken file is reported; the other tasks keep running.
    write_task(
        &instance,
        "added",
        "+++\nkind = \"command\"\nevery = \"whenever\"\n+++\ntrue\n",
    );
    // Once the server has read the broken file, `added` fires no more while `steady` goes on:
    // two slots of `steady` after the last slot of `added` show both.
    let slots = |task: &str| -> Vec<String> {
        instance
            .json(&["task", "history", task, "--limit", "1000"])
            .as_array()
            .map_or_else(Vec::new, |runs| {
                runs.iter()
                    .filter_map(|r| r["slot"].as_str().map(str::to_owned))
                    .collect()
            })
    };
    common::wait_for(Duration::from_secs(20), || {
        let last_added = slots("added").into_iter().max().unwrap_or_default();
        // RFC 3339 in UTC with milliseconds sorts as text.
        slots("steady")
            .iter()
            .filter(|slot| **slot > last_added)
            .count()
            >= 2
    });
    let out = instance.run(&["task", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("tasks/added.md:3: key `every`: invalid duration \"whenever\""),
        "{text}"
    );
    let out = server.stop();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every run ended with one outcome, and each slot fired once.
    let history = instance.json(&["task", "history", "steady", "--limit", "1000"]);
    let runs = history.as_array().unwrap();
    assert!(runs.iter().all(|r| r["outcome"].is_string()), "{history}");
    let mut slots: Vec<&str> = runs.iter().map(|r| r["slot"].as_str().unwrap()).collect();
    let count = slots.len();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), count);
}

/// Runaway protection for tasks: failed runs in a row open the task's circuit breaker — its
/// scheduled firings are skipped (`breaker_open`), `mission status` says `task_breaker_open`,
/// an incident is open — a manual run still runs (a person's probe), and after the cool-down
/// one probe firing runs; its success closes the breaker, and the audit resolves the incident.
#[test]
fn a_failing_task_opens_its_breaker_and_a_successful_probe_closes_it() {
    let config = format!(
        "{FAST}breaker_failures = 2\nbreaker_cooldown = \"3s\"\n\n[audit]\nauto_resolve = {{ default = true }}\n"
    );
    let instance = Instance::with_fake_workers(&config);
    write_task(
        &instance,
        "flaky",
        "+++\nkind = \"command\"\nevery = \"1s\"\n+++\nexit 3\n",
    );
    let _server = instance.serve();
    let history = |instance: &Instance| -> Vec<Value> {
        instance
            .json(&["task", "history", "flaky", "--limit", "100"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let skipped_by_breaker = |runs: &[Value]| {
        runs.iter().any(|r| {
            r["outcome"] == "skipped" && r["reason"].as_str().unwrap_or("").contains("breaker_open")
        })
    };
    common::wait_for(Duration::from_secs(20), || {
        skipped_by_breaker(&history(&instance))
    });
    let runs = history(&instance);
    let failed = runs.iter().filter(|r| r["outcome"] == "failed").count();
    assert_eq!(
        failed, 2,
        "two failures open it, then firings are skipped: {runs:?}"
    );

    let report = instance.json(&["status"]);
    let reason = report["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == "task_breaker_open")
        .unwrap_or_else(|| panic!("{report}"))
        .clone();
    assert_eq!(reason["component"], "scheduler");
    assert_eq!(reason["ids"], serde_json::json!(["flaky"]));
    let incidents = instance.json(&["incident", "list"]);
    assert!(
        incidents
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["fingerprint"] == "breaker_open:task:flaky"),
        "{incidents}"
    );

    // A manual run is not held back.
    let manual = instance.run(&["task", "run", "flaky", "--json"]);
    let manual: Value = serde_json::from_slice(&manual.stdout).unwrap();
    assert_eq!(manual["outcome"], "failed", "{manual}");

    // Fixed: after the cool-down one probe runs, succeeds, and closes the breaker.
    write_task(
        &instance,
        "flaky",
        "+++\nkind = \"command\"\nevery = \"1s\"\n+++\ntrue\n",
    );
    common::wait_for(Duration::from_secs(30), || {
        let report = instance.json(&["status"]);
        let open = report["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["code"] == "task_breaker_open");
        !open
            && history(&instance)
                .iter()
                .any(|r| r["outcome"] != "failed" && r["outcome"] != "skipped")
    });
    write_task(
        &instance,
        "audit",
        "+++\nkind = \"operator-audit\"\nevery = \"1h\"\n+++\n",
    );
    let audit = instance.json(&["task", "run", "audit"]);
    assert_eq!(audit["counts"]["resolved"], 1, "{audit}");
    let open = instance.json(&["incident", "list"]);
    assert!(
        !open
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["fingerprint"] == "breaker_open:task:flaky"),
        "{open}"
    );
}
