//! The `mission` binary, run as a real process against real SQLite files.

mod common;

use common::{Instance, MISSION};
use serde_json::Value;
use std::process::{Command, Stdio};

#[test]
fn init_is_idempotent_and_writes_the_reference_deployment() {
    let instance = Instance::reference();
    let config = std::fs::read_to_string(instance.config()).unwrap();
    for name in [
        "luci", "larry", "tessa", "scott", "atlas", "council", "lucienne",
    ] {
        assert!(config.contains(name), "example config lacks {name}");
    }
    std::fs::write(instance.config(), format!("{config}\n# edited by hand\n")).unwrap();
    let again = instance.json(&["init", "."]);
    assert!(again["created"].as_array().unwrap().is_empty(), "{again}");
    // mission.toml, worker.sh, prompts/default.md, tasks/, data/, the store.
    assert_eq!(again["kept"].as_array().unwrap().len(), 6, "{again}");
    assert!(
        std::fs::read_to_string(instance.config())
            .unwrap()
            .ends_with("# edited by hand\n")
    );
    assert!(instance.path().join("tasks").is_dir());
    assert!(instance.path().join("data/mission.db").is_file());
    assert!(instance.path().join("prompts/default.md").is_file());
}

#[test]
fn a_ticket_parked_with_its_controller_is_explained_as_such() {
    // The scenario of MC-4122: todo, assignee = owner = the controller.
    let instance = Instance::reference();
    let id = instance.add(&[
        "--title",
        "Campaign plan",
        "--assignee",
        "lucienne",
        "--owner",
        "lucienne",
    ]);
    let out = instance.run(&["explain", &id, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "not runnable is a negative answer"
    );
    let explained: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(explained["ticket"], id);
    assert_eq!(explained["runnable"], false);
    let codes: Vec<&str> = explained["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec!["controller_parked"]);

    let runnable = instance.add(&[
        "--title",
        "Release notes",
        "--assignee",
        "luci",
        "--owner",
        "lucienne",
    ]);
    let out = instance.run(&["explain", &runnable]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{runnable}: runnable\n")
    );
}

#[test]
fn explain_gives_every_reason() {
    let instance = Instance::reference();
    let first = instance.add(&["--title", "first", "--assignee", "luci"]);
    let ghost = instance.add(&[
        "--title",
        "for a ghost",
        "--assignee",
        "ghost",
        "--depends-on",
        &first,
    ]);
    let explained = instance.json(&["explain", &ghost]);
    assert_eq!(
        explained["reasons"],
        serde_json::json!([
            {"code": "assignee_not_a_worker", "detail": "ghost is not a configured worker (see [workers] in mission.toml)"},
            {"code": "dependency_open", "detail": format!("depends on {first}, which is todo")},
        ])
    );
    // Disabling the worker through the environment changes the answer: the policy reads the
    // resolved configuration, nothing else.
    let out = Command::new(MISSION)
        .args(["explain", &first, "--json"])
        .current_dir(instance.path())
        .env("MISSION_WORKERS__LUCI__ENABLED", "false")
        .output()
        .unwrap();
    let explained: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(explained["reasons"][0]["code"], "worker_disabled");
}

#[test]
fn bad_input_is_one_line_with_its_exit_code_and_changes_nothing() {
    let instance = Instance::reference();
    let a = instance.add(&["--title", "a", "--assignee", "luci"]);
    let b = instance.add(&["--title", "b", "--assignee", "luci", "--depends-on", &a]);
    let big = instance.path().join("big.txt");
    std::fs::write(&big, "x".repeat(3 * 1024 * 1024)).unwrap();
    let big = big.to_str().unwrap().to_owned();
    let long_answer = "y".repeat(70_000);

    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["ticket", "show", "MC-999"], 2, "no ticket MC-999"),
        (
            vec!["ticket", "move", "MC-999", "todo"],
            2,
            "no ticket MC-999",
        ),
        (
            vec!["explain", "nonsense"],
            2,
            "invalid ticket id \"nonsense\"",
        ),
        (
            vec!["ticket", "move", &a, "done"],
            2,
            "cannot move from todo to done",
        ),
        (
            vec!["ticket", "move", &a, "running"],
            2,
            "cannot move from todo to running",
        ),
        (
            vec!["ticket", "move", &a, "sideways"],
            2,
            "unknown state \"sideways\"",
        ),
        (vec!["ticket", "add", "--title", "  "], 2, "title is empty"),
        (
            vec!["ticket", "add", "--title", "x", "--body-file", &big],
            2,
            "the body is larger than the limit of 2097152 bytes",
        ),
        // An endless file is refused after reading one byte more than the limit.
        (
            vec!["ticket", "add", "--title", "x", "--body-file", "/dev/zero"],
            2,
            "--body-file /dev/zero: the body is larger than the limit of 2097152 bytes",
        ),
        (vec!["ticket", "answer", &a, " "], 2, "answer is empty"),
        (
            vec!["ticket", "answer", &a, &long_answer],
            2,
            "answer is 70000 bytes long; the limit is 65536",
        ),
        (
            vec!["ticket", "move", &a, "blocked", "--reason", &long_answer],
            2,
            "reason is 70000 bytes long; the limit is 65536",
        ),
        (
            vec!["ticket", "add", "--title", "x", "--label", "no spaces"],
            2,
            "invalid label",
        ),
        (
            vec!["ticket", "add", "--title", "x", "--assignee", "a;b"],
            2,
            "invalid name \"a;b\"",
        ),
        (
            vec!["ticket", "add", "--title", "x", "--depends-on", "MC-77"],
            2,
            "depends on MC-77, which does not exist",
        ),
        (
            vec![
                "ticket",
                "add",
                "--title",
                "x",
                "--evidence-policy",
                "vibes",
            ],
            2,
            "invalid evidence policy \"vibes\"",
        ),
        (
            vec!["ticket", "edit", &a, "--depends-on", &b],
            2,
            "dependency cycle:",
        ),
        (
            vec!["ticket", "edit", &a, "--depends-on", &a],
            2,
            "cannot depend on itself",
        ),
        (vec!["ticket", "edit", &a], 2, "nothing to change"),
        (
            vec!["ticket", "list", "--state", "doing"],
            2,
            "unknown state \"doing\"",
        ),
        (
            vec!["events", "--since", "-4"],
            2,
            "--since -4: must be 0 or more",
        ),
        (vec!["ticket", "frobnicate"], 2, "unrecognized subcommand"),
    ];
    let before = instance.snapshot();
    for (args, code, message) in cases {
        let out = instance.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(
            stderr.contains(message),
            "{args:?}: {stderr:?} lacks {message:?}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.starts_with("mission: "), "{stderr:?}");
        assert_eq!(instance.snapshot(), before, "{args:?} changed the store");
    }
}

#[test]
fn a_bad_config_names_file_line_and_key_and_nothing_starts() {
    let instance = Instance::reference();
    let text = std::fs::read_to_string(instance.config()).unwrap();
    let broken = text.replace("max_concurrent = 2", "max_concurrent = \"many\"");
    std::fs::write(instance.config(), &broken).unwrap();
    let line = broken.lines().position(|l| l.contains("\"many\"")).unwrap() + 1;
    let out = instance.run(&["ticket", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "mission: {}:{line}: key `workers.luci.max_concurrent`: invalid type: string \"many\", expected u32\n",
        instance.config().display()
    );
    assert_eq!(stderr, expected);

    let out = Command::new(MISSION)
        .args(["ticket", "list"])
        .current_dir(instance.path().join("tasks"))
        .env_remove("MISSION_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no configuration at"),
        "{out:?}"
    );
}

#[test]
fn corrupt_and_newer_stores_are_refused_with_exit_3_and_left_as_they_were() {
    let instance = Instance::reference();
    instance.add(&["--title", "keep me"]);
    let db = instance.path().join("data/mission.db");

    // A store written by a newer version.
    let out = Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"INSERT INTO schema_migrations VALUES (999,'future',0)\"); c.commit()", db.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let bytes = std::fs::read(&db).unwrap();
    let out = instance.run(&["ticket", "list"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("schema is at version 999, newer than this binary knows"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1);
    assert_eq!(std::fs::read(&db).unwrap(), bytes);

    // Garbage where the store should be.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let garbage: Vec<u8> = (0..16384u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    std::fs::write(&db, &garbage).unwrap();
    let out = instance.run(&["ticket", "add", "--title", "lost?"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("corrupt or not a Mission Control store"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), garbage);
}

#[test]
fn ticket_text_round_trips_byte_exact() {
    let instance = Instance::reference();
    let body = "line one\n; rm -rf / | $(id) `whoami` \"quoted\" 'single'\n--leading-dash\n\0nul\ttab\u{1F680}\n";
    let file = instance.path().join("body.txt");
    std::fs::write(&file, body).unwrap();
    let id = instance.add(&[
        "--title",
        "hostile body",
        "--body-file",
        file.to_str().unwrap(),
    ]);
    let shown = instance.json(&["ticket", "show", &id]);
    assert_eq!(shown["body"].as_str().unwrap(), body);
    assert_eq!(shown["timeline"][0]["kind"], "ticket.created");

    // Standard input works too.
    let mut child = Command::new(MISSION)
        .args([
            "ticket",
            "add",
            "--title",
            "from stdin",
            "--body-file",
            "-",
            "--json",
        ])
        .current_dir(instance.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let added: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(added["body"].as_str().unwrap(), body);
}

#[test]
fn moves_edits_and_the_timeline() {
    let instance = Instance::reference();
    let id = instance.add(&["--title", "triage me", "--label", "ci"]);
    assert_eq!(instance.json(&["ticket", "show", &id])["state"], "triage");
    instance.ok(&[
        "ticket",
        "edit",
        &id,
        "--assignee",
        "luci",
        "--priority",
        "7",
        "--label",
        "ci",
        "--label",
        "urgent",
    ]);
    instance.ok(&["ticket", "move", &id, "todo", "--reason", "assigned"]);
    let shown = instance.json(&["ticket", "show", &id]);
    assert_eq!(shown["state"], "todo");
    assert_eq!(shown["priority"], 7);
    assert_eq!(shown["labels"], serde_json::json!(["ci", "urgent"]));
    let kinds: Vec<&str> = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["ticket.created", "ticket.edited", "ticket.moved"]
    );
    assert_eq!(shown["timeline"][2]["data"]["reason"], "assigned");

    let listed = instance.json(&["ticket", "list", "--state", "todo", "--assignee", "luci"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let human = instance.ok(&["ticket", "list"]);
    assert!(
        human.contains(&id) && human.contains("triage me"),
        "{human}"
    );
    // A bare number means the instance's key.
    let number = id.trim_start_matches("MC-");
    assert_eq!(instance.json(&["ticket", "show", number])["id"], id);
}

#[test]
fn events_follow_prints_new_events_as_they_happen() {
    let instance = Instance::reference();
    instance.add(&["--title", "before"]);
    let mut follower = Command::new(MISSION)
        .args(["events", "--follow", "--since", "1"])
        .current_dir(instance.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let id = instance.add(&["--title", "after"]);
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(follower.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    follower.kill().unwrap();
    follower.wait().unwrap();
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["seq"], 2);
    assert_eq!(event["ticket"], id);
    assert_eq!(event["kind"], "ticket.created");
}

#[test]
fn two_processes_adding_500_tickets_each_lose_nothing() {
    let instance = Instance::reference();
    let per_process = 500;
    // Each "process" is a shell-free loop of real `mission` invocations; the two loops run at
    // the same time, so their transactions contend for the write lock.
    let config = instance.config();
    let workers: Vec<_> = (0..2)
        .map(|p| {
            let config = config.clone();
            std::thread::spawn(move || {
                for i in 0..per_process {
                    let out = Command::new(MISSION)
                        .args([
                            "--config",
                            config.to_str().unwrap(),
                            "ticket",
                            "add",
                            "--title",
                            &format!("p{p} t{i}"),
                        ])
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let listed = instance.json(&["ticket", "list"]);
    let ids: std::collections::HashSet<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2 * per_process);
    let events = instance.ok(&["events"]);
    let created = events
        .lines()
        .filter(|l| l.contains("\"kind\":\"ticket.created\""))
        .count();
    assert_eq!(created, 2 * per_process);
    let seqs: Vec<i64> = events
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "sequence strictly increases"
    );
}

#[test]
fn mission_variables_that_are_not_overrides_are_ignored() {
    let instance = Instance::reference();
    // A command task's own variables (and any unrelated MISSION_* name) do not break commands;
    // an unknown name is warned about, a task's own is not.
    let out = instance
        .command(&["ticket", "list"])
        .env("MISSION_TASK", "disk-check")
        .env("MISSION_TASK_RUN", "7")
        .env("MISSION_FOO", "bar")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("ignoring MISSION_FOO"), "{stderr}");
    assert!(!stderr.contains("MISSION_TASK"), "{stderr}");
    // An override still overrides.
    let out = instance
        .command(&["ticket", "list"])
        .env("MISSION_DISPATCH__MAX_WORKERS", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MISSION_DISPATCH__MAX_WORKERS"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A command task that calls `mission` itself.
    std::fs::write(
        instance.path().join("tasks/count.md"),
        "+++\nkind = \"command\"\nevery = \"1h\"\n+++\nmission ticket add --title from-a-task >/dev/null\n",
    )
    .unwrap();
    let report = instance.json(&["task", "run", "count"]);
    assert_eq!(report["outcome"], "acted", "{report}");
    let tickets = instance.json(&["ticket", "list"]);
    assert!(
        tickets
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["title"] == "from-a-task"),
        "{tickets}"
    );
}

#[test]
fn ticket_show_strips_terminal_control_characters_but_json_is_exact() {
    let instance = Instance::reference();
    let body = "line one\n\x1b]0;pwned\x07\x1b[2Jtab\there\r\n";
    let id = instance.add_with_body("escapes", "luci", body.as_bytes());
    let text = instance.ok(&["ticket", "show", &id]);
    assert!(!text.contains('\x1b'), "{text:?}");
    assert!(!text.contains('\x07') && !text.contains('\r'), "{text:?}");
    assert!(
        text.contains("line one\n]0;pwned[2Jtab\there\n"),
        "{text:?}"
    );
    assert_eq!(instance.show(&id)["body"], body);
}
