//! Evidence, the review gate and the inbox through the real binary, with real git, a real local
//! HTTP server for routes and the fake agent as author, reviewer and orchestrator: SPEC §4
//! scenarios 5, 6 and 7, the author who cannot approve, and the merge on done.

mod common;

use common::{FAST, Instance};
use mission_testkit::git;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

/// A git repository with one commit on `main`, in the instance folder.
fn make_repo(instance: &Instance, name: &str) -> std::path::PathBuf {
    mission_testkit::git_repo(&instance.path().join(name))
}

fn executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A tiny HTTP server on 127.0.0.1:0: `/ok` answers 200 "all ok", anything else 500. Serves
/// until the test process ends. Returns its base URL.
fn http_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buffer = [0u8; 4096];
            let n = stream.read(&mut buffer).unwrap_or(0);
            let request = String::from_utf8_lossy(&buffer[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = if path == "/ok" {
                ("200 OK", "all ok")
            } else {
                ("500 Internal Server Error", "broken")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

/// Dispatches until none of `ids` is todo or running.
fn run_all(instance: &Instance, ids: &[&str]) {
    for _ in 0..10 {
        if ids
            .iter()
            .all(|id| !matches!(instance.state(id).as_str(), "todo" | "running"))
        {
            return;
        }
        instance.dispatch(&["--lane", "normal"]);
    }
    panic!("{ids:?} did not all run");
}

/// The reason with `code` in `mission status --json`, if there is one.
fn reason_of(instance: &Instance, code: &str) -> Option<Value> {
    let report: Value =
        serde_json::from_slice(&instance.run(&["status", "--json"]).stdout).unwrap();
    report["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == code)
        .cloned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn add(instance: &Instance, title: &str, body: &str, extra: &[&str]) -> String {
    let file = instance.path().join(format!("{title}.body"));
    std::fs::write(&file, body).unwrap();
    let title = format!("--title={title}");
    let mut args = vec![
        title.as_str(),
        "--assignee",
        "luci",
        "--body-file",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    instance.add(&args)
}

#[test]
fn scenario_6_done_needs_verified_evidence_and_prose_counts_for_nothing() {
    let base = http_server();
    let config = format!(
        r#"{FAST}
[review]
default = "none"

[[evidence.tests]]
name = "unit"
command = ["./unit.sh"]

[[evidence.routes]]
name = "ok"
base_url = "{base}"
path = "/ok"
body_contains = "ok"

[[evidence.routes]]
name = "broken"
base_url = "{base}"
path = "/broken"
"#
    );
    let instance = Instance::with_fake_workers(&config);
    let repo = make_repo(&instance, "repo");
    // The configured test: MC-3's fails, the others pass. A run cannot change this command.
    executable(
        &instance.path().join("unit.sh"),
        "#!/bin/sh\ncase \"$MISSION_TICKET\" in MC-3) echo 'test_loop FAILED'; exit 1;; esac\necho 'all tests passed'\n",
    );
    let prose = add(
        &instance,
        "prose",
        "fake-agent: progress fixed, verified, all tests pass\nFixed, verified. Resolved.\n",
        &["--repo", "repo"],
    );
    let vanished = add(
        &instance,
        "vanished",
        "fake-agent: commit\n",
        &["--repo", "repo"],
    );
    let failing = add(
        &instance,
        "failing",
        "fake-agent: commit\n",
        &["--repo", "repo", "--evidence-policy", "commit+test:unit"],
    );
    let down = add(
        &instance,
        "down",
        "fake-agent: commit\n",
        &["--repo", "repo", "--evidence-policy", "commit+route:broken"],
    );
    let good = add(
        &instance,
        "good",
        "fake-agent: commit\nfake-agent: evidence test unit\n",
        &[
            "--repo",
            "repo",
            "--evidence-policy",
            "commit+test:unit+route:ok",
        ],
    );
    let all = [
        prose.as_str(),
        vanished.as_str(),
        failing.as_str(),
        down.as_str(),
        good.as_str(),
    ];
    run_all(&instance, &all);
    for id in all {
        assert_eq!(instance.state(id), "review", "{id}");
    }

    // A body and a progress report saying "fixed, verified" prove nothing.
    let out = instance.run(&["ticket", "done", &prose]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("commit: no commit reachable from mission/MC-1 (none recorded)"),
        "{}",
        stderr(&out)
    );

    // A commit that vanished from the branch fails its re-verification.
    let workspace = instance.path().join("data/workspaces").join(&vanished);
    git(&workspace, &["reset", "-q", "--hard", "HEAD~1"]);
    let out = instance.run(&["ticket", "done", &vanished]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not reachable from mission/MC-2"),
        "{}",
        stderr(&out)
    );

    let out = instance.run(&["ticket", "done", &failing]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("test:unit: last run exited 1"),
        "{}",
        stderr(&out)
    );

    let out = instance.run(&["ticket", "done", &down]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "route:broken: GET {base}/broken answered 500; expected 200"
        )),
        "{}",
        stderr(&out)
    );
    for id in [&prose, &vanished, &failing, &down] {
        assert_eq!(instance.state(id), "review", "{id} stays in review");
    }

    // Everything holds now: done, the worktree removed, the branch kept.
    let closed = instance.json(&["ticket", "done", &good]);
    assert_eq!(closed["done"], true, "{closed}");
    assert_eq!(instance.state(&good), "done");
    assert!(!instance.path().join("data/workspaces").join(&good).exists());
    git(&repo, &["rev-parse", "--verify", "refs/heads/mission/MC-5"]);
    let shown = instance.show(&good);
    let evidence = shown["evidence"].as_array().unwrap();
    let kinds: Vec<&str> = evidence
        .iter()
        .map(|e| e["evidence"]["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"commit") && kinds.contains(&"route"),
        "{kinds:?}"
    );
    // The run asked the harness for the test; the gate ran it again.
    let tests: Vec<&Value> = evidence
        .iter()
        .filter(|e| e["evidence"]["kind"] == "test")
        .collect();
    assert_eq!(tests.len(), 2);
    assert_eq!(tests[0]["recorded_by"], "run:MC-5#1");
    assert!(
        tests
            .iter()
            .all(|t| t["verification"]["status"] == "verified")
    );
    let commit = evidence
        .iter()
        .find(|e| e["evidence"]["kind"] == "commit")
        .unwrap();
    assert_eq!(commit["recorded_by"], "harness");
    let moved = instance
        .events()
        .into_iter()
        .rfind(|e| e["ticket"] == good.as_str() && e["kind"] == "ticket.moved")
        .unwrap();
    assert_eq!(moved["data"]["via"], "gate");
    // Done is final; the gate is not asked of a ticket that is not in review.
    let out = instance.run(&["ticket", "done", &good]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // A run cannot name a test that is not configured.
    let text = instance.ok(&["ticket", "show", &good]);
    assert!(text.contains("evidence:"), "{text}");
}

#[test]
fn scenario_7_an_oversized_diff_is_degraded_and_a_small_one_is_reviewed() {
    // The fake agent is on the PATH of every command the test runs, as `fake-worker`.
    let worker = "fake-worker";
    let config = format!(
        r#"{FAST}
[review]
default = "auto"
labels = {{ security = "human" }}

[workers.larry]
runtime = "shell"
command = ["{worker}"]
"#
    );
    let instance = Instance::with_fake_workers(&config);
    make_repo(&instance, "repo");
    std::fs::write(
        instance.path().join("tasks/review.md"),
        "+++\nkind = \"auto-review\"\nevery = \"1h\"\nreviewers = [\"luci\", \"larry\"]\ntimeout = \"1m\"\n+++\n",
    )
    .unwrap();
    let big = add(
        &instance,
        "big",
        "fake-agent: commit-lines 6000\nfake-review: review approve nobody reads this\n",
        &["--repo", "repo"],
    );
    let small = add(
        &instance,
        "small",
        "fake-agent: commit-lines 50\nfake-review: review approve fifty clean lines\n",
        &["--repo", "repo"],
    );
    let rejected = add(
        &instance,
        "rejected",
        "fake-agent: commit-lines 10\nfake-review: review reject there are no tests\n",
        &["--repo", "repo"],
    );
    let sensitive = add(
        &instance,
        "sensitive",
        "fake-agent: commit\nfake-review: review approve a worker may not\n",
        &["--repo", "repo", "--label", "security"],
    );
    run_all(&instance, &[&big, &small, &rejected, &sensitive]);

    let out = instance.run(&["task", "run", "review", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(report["outcome"], "degraded", "{report}");
    assert_eq!(report["counts"]["skipped_oversized"], 1, "{report}");
    assert_eq!(report["counts"]["approved"], 1, "{report}");
    assert_eq!(report["counts"]["rejected"], 1, "{report}");
    assert_eq!(report["counts"]["closed"], 1, "{report}");
    // The skipped review is no success: the verdict says so, naming the task.
    let health = reason_of(&instance, "task_degraded").expect("task_degraded");
    assert_eq!(health["ids"][0], "review", "{health}");

    // The oversized diff: still in review, recorded as skipped, a person asked.
    assert_eq!(instance.state(&big), "review");
    let events = instance.events();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "review.skipped_oversized"
                && e["ticket"] == big.as_str()
                && e["data"]["changed_lines"] == 6000)
    );
    let inbox = instance.json(&["inbox", "list"]);
    let request = inbox
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "review_request" && i["ticket"] == big.as_str())
        .unwrap_or_else(|| panic!("{inbox}"))
        .clone();
    // A ticket that needs a person is left to one, and asked for once.
    assert_eq!(instance.state(&sensitive), "review");
    assert!(
        inbox
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "review_request" && i["ticket"] == sensitive.as_str())
    );
    // The 50-line diff was reviewed by larry (never luci, its author) and closed by the gate.
    assert_eq!(instance.state(&small), "done");
    let approved = events
        .iter()
        .find(|e| e["kind"] == "review.approved" && e["ticket"] == small.as_str())
        .unwrap();
    assert_eq!(approved["data"]["by"]["name"], "larry");
    let prompt = std::fs::read_to_string(
        instance
            .path()
            .join("data/runs/reviews")
            .join(&small)
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join("prompt.md"),
    )
    .unwrap();
    assert!(prompt.contains("+line 49"), "the diff is in the prompt");
    // The rejection sent the ticket back to its author with the reason, counted as an attempt.
    assert_eq!(instance.state(&rejected), "todo");
    let body = instance.show(&rejected)["body"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        body.contains("Review of attempt 1 rejected by larry: there are no tests"),
        "{body}\n{:#?}",
        events
            .iter()
            .filter(|e| e["ticket"] == rejected.as_str())
            .collect::<Vec<_>>()
    );

    // The author cannot approve its own ticket; a worker's approval would not count either.
    let out = instance.run(&[
        "ticket", "review", &big, "approve", "--reason", "mine", "--as", "luci",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("luci worked on this ticket and cannot review it"),
        "{}",
        stderr(&out)
    );
    // A second pass: still not reviewed, still degraded, no second request.
    let again: Value =
        serde_json::from_slice(&instance.run(&["task", "run", "review", "--json"]).stdout).unwrap();
    assert_eq!(again["outcome"], "degraded", "{again}");
    // A person reads it and approves: the request is acted on, the gate closes the ticket.
    let reviewed = instance.json(&[
        "ticket",
        "review",
        &big,
        "approve",
        "--reason",
        "read all 6000 lines",
    ]);
    assert_eq!(reviewed["gate"]["done"], true, "{reviewed}");
    let item = instance.json(&["inbox", "show", &request["id"].to_string()]);
    assert_eq!(item["status"], "acted");
    assert_eq!(item["action"]["kind"], "approved");
}

#[test]
fn scenario_5_a_crashed_handler_leaves_the_item_delivered_and_it_is_redelivered() {
    let config = format!(
        r#"{FAST}
[health]
inbox_age_limit = "1s"

[inbox]
questions_to = "worker:council"
worker_lease = "3s"
max_deliveries = 3

[workers.council]
runtime = "shell"
command = ["./council.sh"]
"#
    );
    let instance = Instance::with_fake_workers(&config);
    // The orchestrator (sandboxed: it reaches nothing of the instance, only its own folder): it
    // dies on the item's first delivery (a crash before acting) and answers on the next.
    executable(
        &instance.path().join("council.sh"),
        "#!/bin/sh\ncase \"$MISSION_RUN_DIR\" in */1) kill -9 $$;; esac\nexec \"$MISSION_BIN\" inbox act \"$MISSION_INBOX_ITEM\" answered --text \"use postgres\"\n",
    );
    std::fs::write(
        instance.path().join("tasks/drain.md"),
        "+++\nkind = \"inbox-drain\"\nevery = \"1h\"\ntimeout = \"1m\"\n+++\n",
    )
    .unwrap();
    let id = add(&instance, "asks", "fake-agent: ask Which database?\n", &[]);
    run_all(&instance, &[&id]);
    assert_eq!(instance.state(&id), "needs_input");
    let items = instance.json(&["inbox", "list"]);
    let item = items[0].clone();
    assert_eq!(item["kind"], "question");
    assert_eq!(item["addressee"], "worker:council");
    let item_id = item["id"].to_string();

    // Nobody but the worker it is delivered to acts under a run token.
    let out = instance
        .command(&["inbox", "act", &item_id, "dismissed"])
        .env("MISSION_RUN_TOKEN", "mcr_bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // The handler crashes: the item stays delivered, with no action; the pass is degraded.
    let out = instance.run(&["task", "run", "drain", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "degraded", "{report}");
    assert_eq!(report["counts"]["unacted"], 1, "{report}");
    let shown = instance.json(&["inbox", "show", &item_id]);
    assert_eq!(shown["status"], "delivered", "{shown}");
    assert!(shown["action"].is_null());
    assert_eq!(instance.state(&id), "needs_input");
    // Left delivered to a dead handler past its age limit: the verdict names the item.
    std::thread::sleep(Duration::from_millis(1100));
    let aging = reason_of(&instance, "inbox_aging").expect("inbox_aging");
    assert_eq!(aging["ids"][0], item_id.as_str(), "{aging}");

    // After its lease, it is delivered again; this time the handler acts, with its action.
    std::thread::sleep(Duration::from_millis(3200));
    let report = instance.json(&["task", "run", "drain"]);
    assert_eq!(report["outcome"], "acted", "{report}");
    assert_eq!(report["counts"]["expired"], 1);
    let shown = instance.json(&["inbox", "show", &item_id]);
    assert_eq!(shown["status"], "acted");
    assert_eq!(shown["deliveries"], 2);
    assert_eq!(shown["action"]["kind"], "answered");
    assert_eq!(shown["action"]["text"], "use postgres");
    assert_eq!(shown["action"]["ticket"], id.as_str());
    // The action's effect, in its transaction: the question answered, the ticket requeued.
    let ticket = instance.show(&id);
    assert_eq!(ticket["state"], "todo");
    assert_eq!(ticket["resume"], true);
    let events = instance.events();
    let count = |kind: &str| events.iter().filter(|e| e["kind"] == kind).count();
    assert_eq!(count("inbox.acted"), 1);
    assert_eq!(count("inbox.expired"), 1);
    assert_eq!(count("inbox.delivered"), 2);
    // Nothing left to deliver: an honest noop.
    let report = instance.json(&["task", "run", "drain"]);
    assert_eq!(report["outcome"], "noop", "{report}");
}

#[test]
fn done_merges_by_fast_forward_or_merge_commit_and_a_conflict_stays_in_review() {
    let config = format!(
        r#"{FAST}
[review]
default = "none"

[[repos]]
path = "ff"
merge = "ff"

[[repos]]
path = "merge"
merge = "merge"

[[repos]]
path = "moved"
merge = "ff"

[[repos]]
path = "clash"
merge = "merge"
"#
    );
    let instance = Instance::with_fake_workers(&config);
    let ff = make_repo(&instance, "ff");
    let merge = make_repo(&instance, "merge");
    let moved = make_repo(&instance, "moved");
    let clash = make_repo(&instance, "clash");
    let a = add(&instance, "a", "fake-agent: commit\n", &["--repo", "ff"]);
    let b = add(&instance, "b", "fake-agent: commit\n", &["--repo", "merge"]);
    let c = add(&instance, "c", "fake-agent: commit\n", &["--repo", "moved"]);
    let d = add(&instance, "d", "fake-agent: commit\n", &["--repo", "clash"]);
    run_all(&instance, &[&a, &b, &c, &d]);

    // Fast-forward: main is now the branch's head.
    let branch_head = git(&ff, &["rev-parse", "mission/MC-1"]);
    instance.ok(&["ticket", "done", &a]);
    assert_eq!(git(&ff, &["rev-parse", "main"]), branch_head);
    assert!(
        ff.join("fake-agent-MC-1.txt").exists(),
        "the checkout follows"
    );

    // Merge commit: main moved on meanwhile; the merge has both as parents.
    std::fs::write(merge.join("other.txt"), "other\n").unwrap();
    git(&merge, &["add", "other.txt"]);
    git(&merge, &["commit", "-q", "-m", "other work"]);
    let before = git(&merge, &["rev-parse", "main"]);
    instance.ok(&["ticket", "done", &b]);
    let parents = git(&merge, &["rev-list", "--parents", "-n", "1", "main"]);
    let parents: Vec<&str> = parents.split_whitespace().skip(1).collect();
    assert_eq!(
        parents,
        [
            before.as_str(),
            &git(&merge, &["rev-parse", "mission/MC-2"])
        ]
    );

    // Fast-forward only, but main moved: nothing changes, the ticket stays in review.
    std::fs::write(moved.join("other.txt"), "other\n").unwrap();
    git(&moved, &["add", "other.txt"]);
    git(&moved, &["commit", "-q", "-m", "other work"]);
    let before = git(&moved, &["rev-parse", "main"]);
    let out = instance.run(&["ticket", "done", &c]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot be fast-forwarded"),
        "{}",
        stderr(&out)
    );
    assert_eq!(git(&moved, &["rev-parse", "main"]), before);
    assert_eq!(instance.state(&c), "review");

    // A real conflict: the merge is aborted, main untouched, an alert waits in the inbox.
    std::fs::write(
        clash.join("fake-agent-MC-4.txt"),
        "the same file, otherwise\n",
    )
    .unwrap();
    git(&clash, &["add", "fake-agent-MC-4.txt"]);
    git(&clash, &["commit", "-q", "-m", "conflicting work"]);
    let before = git(&clash, &["rev-parse", "main"]);
    let out = instance.run(&["ticket", "done", &d]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("merge:"), "{}", stderr(&out));
    assert_eq!(git(&clash, &["rev-parse", "main"]), before);
    assert_eq!(
        git(&clash, &["status", "--porcelain"]),
        "",
        "nothing half-merged"
    );
    assert_eq!(instance.state(&d), "review");
    let alerts: Vec<Value> = instance
        .json(&["inbox", "list"])
        .as_array()
        .unwrap()
        .clone();
    assert!(
        alerts
            .iter()
            .any(|i| i["kind"] == "alert" && i["ticket"] == d.as_str()),
        "{alerts:?}"
    );
    // No remote was touched: the repositories have none.
    assert_eq!(git(&clash, &["remote"]), "");
}

#[test]
fn a_done_ticket_whose_commit_vanishes_is_a_reason_and_an_incident_until_restored() {
    let config = format!(
        "{FAST}\n[review]\ndefault = \"none\"\n\n[audit]\nauto_resolve = {{ default = true }}\n"
    );
    let instance = Instance::with_fake_workers(&config);
    std::fs::write(
        instance.path().join("tasks/audit.md"),
        "+++\nkind = \"operator-audit\"\nevery = \"1h\"\n+++\n",
    )
    .unwrap();
    let repo = make_repo(&instance, "repo");
    let id = add(
        &instance,
        "work",
        "fake-agent: commit\n",
        &["--repo", "repo"],
    );
    run_all(&instance, &[&id]);
    instance.ok(&["ticket", "done", &id]);
    assert_eq!(instance.state(&id), "done");
    let branch = format!("mission/{id}");
    let work = git(&repo, &["rev-parse", &branch]);

    let invalid = |instance: &Instance| reason_of(instance, "evidence_invalid");
    let fingerprints = |instance: &Instance| -> Vec<String> {
        instance
            .json(&["incident", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["fingerprint"].as_str().unwrap().to_owned())
            .collect()
    };
    // Still verifies: the audit finds nothing and writes nothing about it.
    instance.json(&["task", "run", "audit"]);
    assert!(invalid(&instance).is_none());
    assert!(!fingerprints(&instance).contains(&format!("evidence_invalid:{id}")));

    // The branch is rewound past the work: the done ticket's commit no longer verifies.
    git(&repo, &["branch", "-f", &branch, "main"]);
    instance.json(&["task", "run", "audit"]);
    let reason = invalid(&instance).expect("evidence_invalid");
    assert_eq!(reason["ids"][0], id.as_str(), "{reason}");
    assert!(
        reason["detail"]
            .as_str()
            .unwrap()
            .contains("no longer verifies"),
        "{reason}"
    );
    assert!(fingerprints(&instance).contains(&format!("evidence_invalid:{id}")));
    let failed: Vec<Value> = instance
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "evidence.failed")
        .collect();
    assert_eq!(failed.len(), 1, "one event for the change, none per pass");
    instance.json(&["task", "run", "audit"]);
    assert_eq!(
        instance
            .events()
            .iter()
            .filter(|e| e["kind"] == "evidence.failed")
            .count(),
        1
    );

    // Restored: the reason clears and the incident resolves.
    git(&repo, &["branch", "-f", &branch, &work]);
    let run = instance.json(&["task", "run", "audit"]);
    assert_eq!(run["counts"]["resolved"], 1, "{run}");
    assert!(invalid(&instance).is_none());
    assert!(!fingerprints(&instance).contains(&format!("evidence_invalid:{id}")));
}
