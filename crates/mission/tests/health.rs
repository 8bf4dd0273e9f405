//! "Is it working?" through the real binary: each of the predecessor's failure modes, set up for
//! real, turns `mission status` away from `working` with the right reason (and clears when the
//! condition does); the modes our design makes impossible raise no alarm; a healthy instance
//! doing real work stays `working` with zero reasons.

mod common;

use common::{FAST, Instance, Server, wait_for};
use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// FAST, plus thresholds small enough for a test, and auto-resolve everywhere.
const HEALTH: &str = r#"
[health]
starvation_after = "1s"
stuck_grace = "1s"
churn_runs = 3

[audit]
auto_resolve = { default = true }
"#;

fn instance(extra: &str) -> Instance {
    let instance = Instance::with_fake_workers(&format!("{FAST}{HEALTH}{extra}"));
    // The example tasks fire on their own schedules; these tests run their tasks by hand.
    for task in ["triage", "board-sweep", "disk-check", "operator-audit"] {
        let _ = std::fs::remove_file(instance.path().join(format!("tasks/{task}.md")));
    }
    instance
}

fn write_task(instance: &Instance, name: &str, text: &str) {
    std::fs::write(
        instance.path().join("tasks").join(format!("{name}.md")),
        text,
    )
    .unwrap();
}

/// `mission status --json`: its exit code and report.
fn status(instance: &Instance) -> (i32, Value) {
    let out = instance.run(&["status", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), report)
}

/// The reason with `code`, if the status has one.
fn reason(report: &Value, code: &str) -> Option<Value> {
    report["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == code)
        .cloned()
}

fn codes(report: &Value) -> Vec<String> {
    report["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the status has (or, with `present` false, lacks) `code`; returns that status.
fn wait_for_reason(instance: &Instance, code: &str, present: bool, within: Duration) -> Value {
    let start = Instant::now();
    loop {
        let (_, report) = status(instance);
        if reason(&report, code).is_some() == present {
            return report;
        }
        assert!(
            start.elapsed() < within,
            "{code} {} after {within:?}: {report}",
            if present {
                "never appeared"
            } else {
                "never cleared"
            }
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn serve_with(instance: &Instance, env: &[(&str, &str)]) -> Server {
    let mut command = instance.command(&["serve", "--bind", "127.0.0.1:0"]);
    for (name, value) in env {
        command.env(name, value);
    }
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child: Some(child) };
    let socket = instance.path().join("data/wake.sock");
    wait_for(Duration::from_secs(20), || {
        std::os::unix::net::UnixDatagram::unbound()
            .and_then(|s| s.send_to(b"w", &socket))
            .is_ok()
    });
    server
}

fn health_changes(instance: &Instance) -> Vec<String> {
    instance
        .events()
        .iter()
        .filter(|e| e["kind"] == "health.changed")
        .map(|e| e["data"]["to"].as_str().unwrap().to_owned())
        .collect()
}

/// Each change of verdict is written once: consecutive `health.changed` events never repeat a
/// verdict, whoever (server, status) recorded them.
fn assert_changes_once(instance: &Instance) {
    let changes = health_changes(instance);
    for pair in changes.windows(2) {
        assert_ne!(pair[0], pair[1], "a repeated health.changed: {changes:?}");
    }
}

#[test]
fn without_a_server_the_verdict_is_broken_and_says_so() {
    let instance = instance("");
    let (code, report) = status(&instance);
    assert_eq!(code, 2);
    assert_eq!(report["verdict"], "broken");
    assert_eq!(report["server"]["alive"], false);
    let down = reason(&report, "server_down").unwrap();
    assert_eq!(
        (down["component"].as_str(), down["severity"].as_str()),
        (Some("server"), Some("critical"))
    );
    // Asking again records nothing new: one change, once.
    status(&instance);
    assert_eq!(health_changes(&instance), ["broken"]);
    let out = instance.run(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("broken\nno server has ever run"), "{text}");
}

/// Scenario 10 of the review: a live process, or a task run that `completed`, is not health.
#[test]
fn a_dead_server_is_broken_whatever_its_task_runs_say() {
    let instance = instance("");
    write_task(
        &instance,
        "ok",
        "+++\nkind = \"command\"\nevery = \"1h\"\n+++\necho fine\n",
    );
    let server = instance.serve();
    let report = wait_for_reason(&instance, "server_down", false, Duration::from_secs(10));
    assert_eq!(report["verdict"], "working", "{report}");
    assert_eq!(report["server"]["alive"], true);
    server.kill();
    // Dead after 3 missed beats (a beat every second at least).
    let start = Instant::now();
    let report = wait_for_reason(&instance, "server_down", true, Duration::from_secs(10));
    assert!(
        start.elapsed() <= Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(report["server"]["alive"], false);
    assert_eq!(
        reason(&report, "server_down").unwrap()["component"],
        "server"
    );
    // A task run that exits 0 changes nothing about it.
    instance.ok(&["task", "run", "ok"]);
    let (code, report) = status(&instance);
    assert_eq!((code, report["verdict"].as_str()), (2, Some("broken")));
    // Started again, it is alive again.
    let _server = instance.serve();
    wait_for_reason(&instance, "server_down", false, Duration::from_secs(10));
    assert_changes_once(&instance);
}

/// SPEC §4 scenario 4: a capacity count that fails dispatches nothing, opens an incident and
/// degrades the verdict; counted again, the incident resolves (auto-resolve) and it clears.
#[test]
fn a_capacity_count_failure_degrades_and_opens_an_incident() {
    let instance = instance("");
    let id = instance.add(&["--title", "work", "--assignee", "luci"]);
    let server = serve_with(
        &instance,
        &[(
            "FAILPOINTS",
            "capacity-count=return(database disk image is malformed)",
        )],
    );
    // The server's first heartbeat and its first dispatch pass race: until it has beaten once,
    // the verdict is broken for the server's sake, not the capacity's.
    wait_for_reason(&instance, "server_down", false, Duration::from_secs(10));
    let report = wait_for_reason(&instance, "capacity_unknown", true, Duration::from_secs(5));
    assert_eq!(report["verdict"], "degraded", "{report}");
    let capacity = reason(&report, "capacity_unknown").unwrap();
    assert_eq!(capacity["component"], "capacity");
    assert!(capacity["detail"].as_str().unwrap().contains("malformed"));
    let incidents = instance.json(&["incident", "list"]);
    assert_eq!(incidents[0]["fingerprint"], "capacity_unknown:dispatcher");
    assert_eq!(incidents[0]["occurrences"], 1);
    assert!(reason(&report, "incident_open").is_some());
    assert_eq!(instance.state(&id), "todo", "nothing is dispatched");
    server.stop();

    let _server = instance.serve();
    let report = wait_for_reason(
        &instance,
        "capacity_unknown",
        false,
        Duration::from_secs(10),
    );
    assert!(reason(&report, "incident_open").is_none(), "{report}");
    let all = instance.json(&["incident", "list", "--all"]);
    assert_eq!(all[0]["state"]["status"], "resolved");
    assert_changes_once(&instance);
}

/// Scenario 7's shape: a task run that ran but could not do its job (`degraded`) is a reason;
/// its next clean run clears it. A failed run is one too.
#[test]
fn degraded_and_failed_task_runs_are_reasons() {
    let instance = instance("");
    let task = |outcome: &str| {
        format!(
            "+++\nkind = \"command\"\nevery = \"1h\"\n+++\necho '{{\"outcome\": \"{outcome}\", \"reason\": \"review skipped: diff of 41969 lines over the 5000 cap\"}}'\n"
        )
    };
    write_task(&instance, "auto-review", &task("degraded"));
    instance.run(&["task", "run", "auto-review"]);
    let (_, report) = status(&instance);
    let degraded = reason(&report, "task_degraded").unwrap();
    assert_eq!(degraded["component"], "scheduler");
    assert_eq!(degraded["ids"], serde_json::json!(["auto-review"]));
    assert!(degraded["detail"].as_str().unwrap().contains("41969"));
    write_task(&instance, "auto-review", &task("acted"));
    instance.ok(&["task", "run", "auto-review"]);
    assert!(reason(&status(&instance).1, "task_degraded").is_none());

    write_task(
        &instance,
        "broken-script",
        "+++\nkind = \"command\"\nevery = \"1h\"\n+++\nexit 3\n",
    );
    instance.run(&["task", "run", "broken-script"]);
    let failed = reason(&status(&instance).1, "task_failed").unwrap();
    assert_eq!(
        (failed["component"].as_str(), failed["ids"][0].as_str()),
        (Some("scheduler"), Some("broken-script"))
    );
    std::fs::remove_file(instance.path().join("tasks/broken-script.md")).unwrap();
    assert!(reason(&status(&instance).1, "task_failed").is_none());
}

#[test]
fn a_broken_task_file_is_a_reason_and_an_incident() {
    let instance = instance("");
    write_task(&instance, "bad", "+++\nkind = \"nonsense\"\n+++\n");
    let (code, report) = status(&instance);
    assert_eq!(code, 2, "broken: no server either");
    let broken = reason(&report, "task_file_broken").unwrap();
    assert_eq!(broken["component"], "scheduler");
    assert!(broken["ids"][0].as_str().unwrap().ends_with("bad.md"));
    write_task(
        &instance,
        "audit",
        "+++\nkind = \"operator-audit\"\nevery = \"1h\"\n+++\n",
    );
    let run = instance.json(&["task", "run", "audit"]);
    assert_eq!(run["outcome"], "acted", "{run}");
    assert_eq!(run["counts"]["opened"], 1);
    let incidents = instance.json(&["incident", "list"]);
    assert_eq!(incidents[0]["fingerprint"], "task_file_broken:bad.md");
    std::fs::remove_file(instance.path().join("tasks/bad.md")).unwrap();
    assert!(reason(&status(&instance).1, "task_file_broken").is_none());
    let run = instance.json(&["task", "run", "audit"]);
    assert_eq!(run["counts"]["resolved"], 1, "{run}");
    assert!(reason(&status(&instance).1, "incident_open").is_none());
}

#[test]
fn an_agent_task_naming_no_worker_is_a_config_problem() {
    let instance = instance("");
    write_task(
        &instance,
        "summary",
        "+++\nkind = \"agent\"\nevery = \"1h\"\nworker = \"ghost\"\n+++\nSummarise.\n",
    );
    let problem = reason(&status(&instance).1, "config_problem").unwrap();
    assert_eq!(problem["component"], "config");
    assert!(
        problem["detail"].as_str().unwrap().contains("ghost"),
        "{problem}"
    );
    std::fs::remove_file(instance.path().join("tasks/summary.md")).unwrap();
    assert!(reason(&status(&instance).1, "config_problem").is_none());
}

/// A runnable ticket starving while workers are idle, and a task that exits 0 every run but
/// never does its job while that work waits (a pickup of the other lane: the predecessor's
/// needs-input pickup, inverted) — both turn the verdict, and the audit opens incidents.
#[test]
fn starvation_and_churn_while_work_waits() {
    let instance = instance("");
    let id = instance.add(&["--title", "waits", "--assignee", "luci"]);
    write_task(
        &instance,
        "pickup",
        "+++\nkind = \"dispatch\"\nevery = \"1h\"\nlane = \"needs-input\"\n+++\n",
    );
    for _ in 0..3 {
        let run = instance.json(&["task", "run", "pickup"]);
        assert_eq!(run["outcome"], "noop", "{run}");
    }
    let churn = reason(&status(&instance).1, "task_churn").unwrap();
    assert_eq!(churn["component"], "scheduler");
    assert_eq!(churn["ids"], serde_json::json!(["pickup"]));
    let report = wait_for_reason(&instance, "starvation", true, Duration::from_secs(5));
    let starving = reason(&report, "starvation").unwrap();
    assert_eq!(starving["component"], "dispatcher");
    assert_eq!(starving["ids"], serde_json::json!([id]));

    write_task(
        &instance,
        "audit",
        "+++\nkind = \"operator-audit\"\nevery = \"1h\"\n+++\n",
    );
    let run = instance.json(&["task", "run", "audit"]);
    assert_eq!(run["counts"]["opened"], 2, "{run}");
    let fingerprints: Vec<String> = instance
        .json(&["incident", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["fingerprint"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        fingerprints.contains(&format!("starvation:{id}")),
        "{fingerprints:?}"
    );
    assert!(
        fingerprints.contains(&"task_churn:pickup".to_owned()),
        "{fingerprints:?}"
    );

    // The work is picked up: nothing waits any more, so neither starves nor churns.
    instance.dispatch(&["--lane", "normal"]);
    let (_, report) = status(&instance);
    assert!(reason(&report, "starvation").is_none(), "{report}");
    assert!(reason(&report, "task_churn").is_none(), "{report}");
    let run = instance.json(&["task", "run", "audit"]);
    assert_eq!(run["counts"]["resolved"], 2, "{run}");
}

/// A run whose supervisor died: no heartbeat past its lease is `stuck_run` until recovery
/// closes it.
#[test]
fn a_run_without_heartbeat_past_its_lease_is_stuck() {
    let instance = instance("");
    let id = instance.add_with_body("hangs", "luci", b"fake-agent: hang\n");
    let server = instance.serve();
    instance.wait_for_state(&id, "running", Duration::from_secs(10));
    server.kill();
    // Lease 3s, grace 1s.
    let report = wait_for_reason(&instance, "stuck_run", true, Duration::from_secs(10));
    let stuck = reason(&report, "stuck_run").unwrap();
    assert_eq!(stuck["component"], "runner");
    assert!(stuck["detail"].as_str().unwrap().contains(&id), "{stuck}");
    write_task(
        &instance,
        "audit",
        "+++\nkind = \"operator-audit\"\nevery = \"1h\"\n+++\n",
    );
    instance.json(&["task", "run", "audit"]);
    let incidents = instance.json(&["incident", "list"]);
    assert!(
        incidents
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["fingerprint"] == format!("stuck_run:{id}")),
        "{incidents}"
    );
    // Recovery at start closes it (and kills what is left of it).
    let _server = instance.serve();
    wait_for_reason(&instance, "stuck_run", false, Duration::from_secs(10));
}

/// SPEC §4 scenario 8: a condition that persists after its incident was resolved reopens it,
/// counting the occurrence — never suppressed. Cleared, it auto-resolves.
#[test]
fn a_condition_that_recurs_after_resolution_reopens_its_incident() {
    let instance = instance(
        "[[audit.probes]]\nname = \"flag\"\nkind = \"command\"\ncommand = [\"test\", \"!\", \"-e\", \"broken\"]\n",
    );
    write_task(
        &instance,
        "audit",
        "+++\nkind = \"operator-audit\"\nevery = \"1h\"\n+++\n",
    );
    let flag = instance.path().join("broken");
    std::fs::write(&flag, "").unwrap();
    let run = instance.json(&["task", "run", "audit"]);
    assert_eq!(
        (run["outcome"].as_str(), run["counts"]["opened"].as_i64()),
        (Some("acted"), Some(1))
    );
    let incident = instance.json(&["incident", "list"])[0].clone();
    assert_eq!(incident["fingerprint"], "probe.command:flag");
    let incident_id = incident["id"].to_string();
    let open = reason(&status(&instance).1, "incident_open").unwrap();
    assert_eq!(
        (open["component"].as_str(), open["ids"][0].as_str()),
        (Some("incidents"), Some(incident_id.as_str()))
    );

    // An operator resolves it; the condition is still there.
    let out = instance.run(&["incident", "resolve", &incident_id]);
    assert_eq!(out.status.code(), Some(2), "a reason is required");
    instance.ok(&[
        "incident",
        "resolve",
        &incident_id,
        "--reason",
        "looked into it",
    ]);
    assert!(reason(&status(&instance).1, "incident_open").is_none());
    let run = instance.json(&["task", "run", "audit"]);
    assert_eq!(run["counts"]["reopened"], 1, "{run}");
    let shown = instance.json(&["incident", "show", &incident_id]);
    assert_eq!(
        (shown["occurrences"].as_i64(), shown["reopened"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(shown["occurrence_list"].as_array().unwrap().len(), 2);
    assert!(reason(&status(&instance).1, "incident_open").is_some());
    let run = instance.json(&["task", "run", "audit"]);
    assert_eq!(run["counts"]["updated"], 1, "{run}");

    // The condition clears: the incident resolves by itself.
    std::fs::remove_file(&flag).unwrap();
    let run = instance.json(&["task", "run", "audit"]);
    assert_eq!(run["counts"]["resolved"], 1, "{run}");
    assert!(reason(&status(&instance).1, "incident_open").is_none());
    let kinds: Vec<String> = instance
        .events()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .filter(|k| k.starts_with("incident."))
        .collect();
    assert_eq!(
        kinds,
        [
            "incident.opened",
            "incident.resolved",
            "incident.reopened",
            "incident.updated",
            "incident.resolved"
        ]
    );
}

/// The example instance (`init --demo`), its shell workers doing real work for a minute with the
/// example tasks: `working` with zero reasons at every look — no false alarm. The predecessor's
/// impossible-by-design modes stay impossible: the controller-parked MC-2 is explained once,
/// never re-logged; one dispatcher claims each attempt once. (An inbox item acted without its
/// action record is refused by the store itself: the conformance suite's
/// `the_inbox_never_fakes_or_loses_an_action`.)
#[test]
fn a_healthy_instance_stays_working_with_zero_reasons() {
    let demo = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::MISSION)
        .args(["init", "--demo", "."])
        .current_dir(demo.path())
        .env_remove("MISSION_CONFIG")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = |args: &[&str]| {
        std::process::Command::new(common::MISSION)
            .args(args)
            .current_dir(demo.path())
            .env_remove("MISSION_CONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let mut server = std::process::Command::new(common::MISSION)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .current_dir(demo.path())
        .env_remove("MISSION_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let seconds: u64 = std::env::var("HEALTHY_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let start = Instant::now();
    let mut added = 0;
    let mut looks = 0;
    std::thread::sleep(Duration::from_secs(2));
    while start.elapsed() < Duration::from_secs(seconds) {
        if added < 12 {
            let out = run(&[
                "ticket",
                "add",
                "--title",
                &format!("Write note {added}"),
                "--assignee",
                if added % 2 == 0 { "luci" } else { "larry" },
                "--repo",
                "repo",
            ]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            added += 1;
        }
        let out = run(&["status", "--json"]);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (out.status.code(), codes(&report)),
            (Some(0), vec![]),
            "after {:?}: {report}",
            start.elapsed()
        );
        assert_eq!(report["server"]["alive"], true);
        looks += 1;
        std::thread::sleep(Duration::from_secs(3));
    }
    assert!(looks >= 5);
    let events: Vec<Value> = String::from_utf8(run(&["events"]).stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reviewed = events
        .iter()
        .filter(|e| e["kind"] == "ticket.moved" && e["data"]["to"] == "review")
        .count();
    assert!(
        reviewed >= 6,
        "the workers did real work: {reviewed} reached review"
    );
    let parked = events
        .iter()
        .filter(|e| e["kind"] == "dispatch.decision" && e["ticket"] == "MC-2")
        .count();
    assert_eq!(parked, 1, "the controller-parked ticket is explained once");
    let mut claims = std::collections::BTreeSet::new();
    for e in events
        .iter()
        .filter(|e| e["kind"] == "ticket.moved" && e["data"]["via"] == "claim")
    {
        assert!(
            claims.insert((e["ticket"].to_string(), e["data"]["attempt"].to_string())),
            "an attempt claimed twice: {e}"
        );
    }
    let verdicts: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "health.changed")
        .map(|e| e["data"]["to"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts.last(), Some(&"working"), "{verdicts:?}");
    assert!(
        !verdicts.contains(&"degraded"),
        "no false alarm on the way: {verdicts:?}"
    );
    common::signal(server.id() as i32, libc::SIGTERM);
    server.wait().unwrap();
}

/// A server that beats while its dispatcher hangs (the capacity count never returns): alive,
/// but its dispatcher is stalled — broken, not "working because the process is up".
#[test]
fn a_hung_dispatcher_behind_a_live_server_is_stalled() {
    let instance =
        Instance::with_fake_workers(&format!("{FAST}\n[health]\ndispatcher_stall = \"1s\"\n"));
    let server = serve_with(&instance, &[("FAILPOINTS", "capacity-count=sleep(60000)")]);
    let report = wait_for_reason(
        &instance,
        "dispatcher_stalled",
        true,
        Duration::from_secs(10),
    );
    assert_eq!(report["verdict"], "broken", "{report}");
    assert_eq!(report["server"]["alive"], true, "{report}");
    assert_eq!(
        reason(&report, "dispatcher_stalled").unwrap()["component"],
        "dispatcher"
    );
    server.kill();
    let _server = instance.serve();
    wait_for_reason(
        &instance,
        "dispatcher_stalled",
        false,
        Duration::from_secs(10),
    );
}

/// An instance whose inbox items age after a second, the example tasks removed.
fn inbox_instance(extra: &str) -> Instance {
    let instance = Instance::with_fake_workers(&format!(
        "{FAST}\n[health]\ninbox_age_limit = \"1s\"\n\n[audit]\nauto_resolve = {{ default = true }}\n{extra}"
    ));
    for task in [
        "triage",
        "board-sweep",
        "disk-check",
        "operator-audit",
        "auto-review",
        "inbox-drain",
    ] {
        let _ = std::fs::remove_file(instance.path().join(format!("tasks/{task}.md")));
    }
    write_task(
        &instance,
        "audit",
        "+++\nkind = \"operator-audit\"\nevery = \"1h\"\n+++\n",
    );
    instance
}

fn open_fingerprints(instance: &Instance) -> Vec<String> {
    instance
        .json(&["incident", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["fingerprint"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn inbox_items_left_waiting_or_failed_are_reasons_and_incidents() {
    // Questions go to an orchestrator worker that is switched off: the drain cannot deliver
    // them and fails them, which raises an alert for the operator.
    let instance = inbox_instance(
        "[inbox]\nquestions_to = \"worker:council\"\n\n[workers.council]\nruntime = \"shell\"\ncommand = [\"true\"]\nenabled = false\n",
    );
    write_task(
        &instance,
        "drain",
        "+++\nkind = \"inbox-drain\"\nevery = \"1h\"\n+++\n",
    );
    let asks = instance.add(&[
        "--title",
        "asks",
        "--assignee",
        "luci",
        "--body",
        "fake-agent: ask Which database?\n",
    ]);
    instance.dispatch(&["--lane", "normal"]);
    assert_eq!(instance.state(&asks), "needs_input");
    let question = instance.json(&["inbox", "list"])[0]["id"].to_string();

    // Fresh: no reason yet. Past the age limit: aging, naming the item, and an incident.
    let (_, report) = status(&instance);
    assert!(reason(&report, "inbox_aging").is_none(), "{report}");
    std::thread::sleep(Duration::from_millis(1100));
    let aging = reason(&status(&instance).1, "inbox_aging").unwrap();
    assert_eq!(aging["component"], "inbox");
    assert_eq!(aging["ids"][0], question, "{aging}");
    instance.json(&["task", "run", "audit"]);
    assert!(
        open_fingerprints(&instance).contains(&format!("inbox_aging:{question}")),
        "{:?}",
        open_fingerprints(&instance)
    );

    // The drain cannot deliver it: failed, a reason of its own, and an alert item raised.
    let drained = instance.run(&["task", "run", "drain", "--json"]);
    assert_eq!(
        drained.status.code(),
        Some(1),
        "a failed item is not a success"
    );
    let failed = reason(&status(&instance).1, "inbox_failed").unwrap();
    assert_eq!(failed["ids"][0], question, "{failed}");
    let alert = instance.json(&["inbox", "list"])[0].clone();
    assert_eq!(alert["kind"], "alert", "{alert}");

    // The operator acts on the alert: nothing waits any more; the aging incident resolves.
    instance.ok(&[
        "inbox",
        "act",
        &alert["id"].to_string(),
        "dismissed",
        "--text",
        "council is retired",
    ]);
    assert!(reason(&status(&instance).1, "inbox_aging").is_none());
    let run = instance.json(&["task", "run", "audit"]);
    assert_eq!(run["counts"]["resolved"], 1, "{run}");
    assert!(open_fingerprints(&instance).is_empty());
}

#[test]
fn runs_that_are_not_sandboxed_are_a_reason() {
    let instance = inbox_instance(
        "[workers.loose]\nruntime = \"shell\"\ncommand = [\"true\"]\nsandbox = \"off\"\n",
    );
    let off = reason(&status(&instance).1, "sandbox_off").unwrap();
    assert_eq!(off["component"], "sandbox");
    assert!(off["detail"].as_str().unwrap().contains("loose"), "{off}");
    // A kernel without Landlock: every run is unsandboxed, and the reason says why.
    let out = instance
        .command(&["status", "--json"])
        .env("MISSION_TEST_NO_LANDLOCK", "1")
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let off = reason(&report, "sandbox_off").unwrap();
    assert!(
        off["detail"].as_str().unwrap().contains("Landlock"),
        "{off}"
    );
}
