//! The dispatcher through the real binary: scenarios 1-4 of SPEC §4 and concurrent dispatchers.

mod common;

use common::{FAST, Instance};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

fn decisions_of(instance: &Instance, id: &str) -> Vec<Value> {
    instance
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "dispatch.decision" && e["ticket"] == id)
        .collect()
}

#[test]
fn a_controller_parked_ticket_is_decided_once_and_never_claimed() {
    // Scenario 1 (MC-4122): todo, owner = assignee = the controller.
    let instance = Instance::with_fake_workers(FAST);
    let parked = instance.add(&[
        "--title",
        "Campaign",
        "--assignee",
        "lucienne",
        "--owner",
        "lucienne",
    ]);
    for _ in 0..3 {
        let out = instance.run(&["dispatch", "--once", "--json"]);
        assert_eq!(out.status.code(), Some(0));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("already claimed"), "{stderr}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        for pass in report["passes"].as_array().unwrap() {
            assert!(pass["claimed_tickets"].as_array().unwrap().is_empty());
            assert!(pass["refused"].as_array().unwrap().is_empty());
        }
    }
    let decisions = decisions_of(&instance, &parked);
    assert_eq!(
        decisions.len(),
        1,
        "recorded once, not once per pass: {decisions:?}"
    );
    assert_eq!(
        decisions[0]["data"]["reasons"][0]["code"],
        "controller_parked"
    );
    assert_eq!(instance.state(&parked), "todo");
    assert!(
        instance.show(&parked)["runs"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // A changed decision is recorded again, once.
    instance.ok(&["ticket", "edit", &parked, "--assignee", "ghost"]);
    for _ in 0..2 {
        instance.dispatch(&[]);
    }
    let decisions = decisions_of(&instance, &parked);
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    assert_eq!(
        decisions[1]["data"]["reasons"][0]["code"],
        "assignee_not_a_worker"
    );
}

#[test]
fn the_lanes_take_only_their_own_tickets() {
    // Scenario 2.
    let instance = Instance::with_fake_workers(FAST);
    let asks = instance.add_with_body("asks first", "luci", b"fake-agent: ask Which branch?\n");
    instance.dispatch(&["--lane", "normal"]);
    assert_eq!(instance.state(&asks), "needs_input");
    instance.ok(&["ticket", "answer", &asks, "main"]);
    let plain = instance.add(&["--title", "plain", "--assignee", "luci"]);

    // The needs-input lane takes the answered ticket and nothing else.
    let report = instance.dispatch(&["--lane", "needs-input"]);
    assert_eq!(
        report["passes"][0]["claimed_tickets"],
        serde_json::json!([asks])
    );
    assert_eq!(instance.state(&plain), "todo");
    assert_eq!(instance.state(&asks), "review");
    let runs = instance.show(&asks)["runs"].clone();
    assert_eq!(runs[1]["lane"], "needs-input");
    assert_eq!(runs[1]["attempt"], 2);

    // The normal lane takes the plain ticket.
    let report = instance.dispatch(&["--lane", "normal"]);
    assert_eq!(
        report["passes"][0]["claimed_tickets"],
        serde_json::json!([plain])
    );
    assert_eq!(instance.state(&plain), "review");
}

#[test]
fn one_pass_over_both_lanes_gives_the_needs_input_lane_the_first_slot() {
    // One slot: the answered ticket takes it, and the normal lane, counting that claim, does
    // not even try for the plain ticket (a try would be refused by the store's re-count).
    let instance = Instance::with_fake_workers(&FAST.replace("max_workers = 8", "max_workers = 1"));
    let asks = instance.add_with_body("asks first", "luci", b"fake-agent: ask Which branch?\n");
    instance.dispatch(&["--lane", "normal"]);
    assert_eq!(instance.state(&asks), "needs_input");
    instance.ok(&["ticket", "answer", &asks, "main"]);
    let plain = instance.add(&["--title", "plain", "--assignee", "luci"]);

    let report = instance.dispatch(&[]);
    let passes = report["passes"].as_array().unwrap();
    assert_eq!(passes.len(), 2, "{report}");
    assert_eq!(passes[0]["lane"], "needs-input");
    assert_eq!(passes[0]["claimed_tickets"], serde_json::json!([asks]));
    assert_eq!(passes[1]["lane"], "normal");
    assert_eq!(passes[1]["claimed_tickets"], serde_json::json!([]));
    assert_eq!(passes[1]["refused"], serde_json::json!([]), "{report}");
    assert_eq!(instance.state(&plain), "todo");
}

#[test]
fn a_pass_decides_the_same_whoever_triggers_it() {
    // Scenario 3: the CLI's pass and the server's pass, on identical boards.
    let board = |instance: &Instance| {
        instance.add(&[
            "--title",
            "parked",
            "--assignee",
            "lucienne",
            "--owner",
            "lucienne",
        ]);
        instance.add(&["--title", "ghost", "--assignee", "nobody"]);
        let first = instance.add(&["--title", "runs", "--assignee", "luci"]);
        instance.add(&[
            "--title",
            "waits",
            "--assignee",
            "luci",
            "--depends-on",
            &first,
        ]);
    };
    let summary = |instance: &Instance| -> Vec<(String, String)> {
        let mut items: Vec<(String, String)> = instance
            .events()
            .into_iter()
            .filter_map(|e| match e["kind"].as_str() {
                Some("dispatch.decision") => Some((
                    e["ticket"].as_str().unwrap().to_owned(),
                    e["data"]["reasons"][0]["code"].as_str().unwrap().to_owned(),
                )),
                Some("ticket.moved") if e["data"]["via"] == "claim" => Some((
                    e["ticket"].as_str().unwrap().to_owned(),
                    "claimed".to_owned(),
                )),
                _ => None,
            })
            .collect();
        items.sort();
        items
    };
    let by_cli = Instance::with_fake_workers(FAST);
    board(&by_cli);
    by_cli.dispatch(&[]);

    let by_server = Instance::with_fake_workers(FAST);
    board(&by_server);
    let server = by_server.serve();
    by_server.wait_for_state("MC-3", "review", Duration::from_secs(20));
    // The dependent ticket becomes runnable only after MC-3 is done, which needs the gate: it
    // stays waiting on both sides.
    server.stop();

    assert_eq!(summary(&by_cli), summary(&by_server));
    assert!(summary(&by_cli).contains(&("MC-1".to_owned(), "controller_parked".to_owned())));
    assert!(summary(&by_cli).contains(&("MC-3".to_owned(), "claimed".to_owned())));
}

#[test]
fn a_capacity_count_failure_dispatches_nothing_and_says_so() {
    // Scenario 4, with the failure injected through a failpoint.
    let instance = Instance::with_fake_workers(FAST);
    let id = instance.add(&["--title", "ready", "--assignee", "luci"]);
    let out = instance
        .command(&["dispatch", "--once", "--json"])
        .env(
            "FAILPOINTS",
            "capacity-count=return(database disk image is malformed)",
        )
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["passes"][0]["capacity_unknown"],
        "database disk image is malformed"
    );
    assert!(report["runs"].as_array().unwrap().is_empty());
    assert_eq!(instance.state(&id), "todo");
    let kinds: Vec<String> = instance
        .events()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "dispatch.capacity_unknown")
            .count(),
        1
    );

    // `explain` shows it, without any failpoint of its own: the dispatcher's recorded fact.
    let explained = instance.json(&["explain", &id]);
    assert_eq!(explained["runnable"], false);
    assert_eq!(explained["reasons"][0]["code"], "capacity_unknown");

    // Counting works again: the next pass dispatches, and explain no longer objects.
    instance.dispatch(&[]);
    assert_eq!(instance.state(&id), "review");
    let kinds: Vec<String> = instance
        .events()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(kinds.contains(&"dispatch.capacity_counted".to_owned()));
}

#[test]
fn eight_concurrent_dispatchers_never_run_a_ticket_twice() {
    let instance = Instance::with_fake_workers(
        "[dispatch]\nmax_workers = 16\nlease = \"10s\"\nstall_timeout = \"30s\"\n",
    );
    let config = std::fs::read_to_string(instance.config()).unwrap();
    std::fs::write(
        instance.config(),
        config.replace("max_concurrent = 4", "max_concurrent = 16"),
    )
    .unwrap();
    let tickets = 500;
    let body = instance.path().join("body.txt");
    std::fs::write(&body, "fake-agent: succeed\n").unwrap();
    // Added in bulk through the store would be faster; through the CLI it is real.
    let mut added = 0;
    while added < tickets {
        instance.add(&[
            "--title",
            &format!("t{added}"),
            "--assignee",
            "luci",
            "--body-file",
            body.to_str().unwrap(),
        ]);
        added += 1;
    }
    let dispatchers: Vec<_> = (0..8)
        .map(|_| {
            let cmd = instance.command(&["dispatch", "--once", "--lane", "normal", "--json"]);
            let program = cmd.get_program().to_owned();
            let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
            let dir = instance.path().to_owned();
            let path = mission_testkit::path_with(&instance.bin);
            std::thread::spawn(move || {
                let mut claimed = 0;
                for _ in 0..400 {
                    let out = std::process::Command::new(&program)
                        .args(&args)
                        .current_dir(&dir)
                        .env_remove("MISSION_CONFIG")
                        .env("PATH", &path)
                        .output()
                        .unwrap();
                    assert_eq!(
                        out.status.code(),
                        Some(0),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
                    let now = report["passes"][0]["claimed_tickets"]
                        .as_array()
                        .unwrap()
                        .len();
                    claimed += now;
                    if now == 0 && report["passes"][0]["candidates"] == 0 {
                        break;
                    }
                }
                claimed
            })
        })
        .collect();
    let claimed: usize = dispatchers.into_iter().map(|d| d.join().unwrap()).sum();
    assert_eq!(
        claimed, tickets,
        "every ticket claimed exactly once across dispatchers"
    );

    // Every ticket ran once, and no two runs of one ticket overlapped.
    let listed = instance.json(&["ticket", "list"]);
    let mut per_ticket: HashMap<String, usize> = HashMap::new();
    for ticket in listed.as_array().unwrap() {
        assert_eq!(ticket["state"], "review", "{ticket}");
        let id = ticket["id"].as_str().unwrap();
        let runs = instance.show(id)["runs"].as_array().unwrap().len();
        per_ticket.insert(id.to_owned(), runs);
    }
    assert_eq!(per_ticket.len(), tickets);
    assert!(per_ticket.values().all(|n| *n == 1), "{per_ticket:?}");
}
