//! Crash recovery through the real binary: `mission serve` dies (an abort at a failpoint, as a
//! kill -9 would) at each step from a ticket's claim to its watched process; the next server
//! finds whatever of the run was left — by the run in its environment when no pid was stored —
//! and stops it before the ticket runs again, so no ticket ever has two live executions, and the
//! crash costs the ticket no attempt.

mod common;

use common::{FAST, Instance, wait_for};
use mission_testkit::crash::{self, Workload};
use std::time::Duration;

/// The worker: holds a per-ticket lock while it runs (a second holder is an overlap, written to
/// the journal), journals its start, and on its first attempt lives long.
const WORKER: &str = r#"J="$(dirname "$MISSION_CONFIG")/journal"
exec 9>>"$J/$MISSION_TICKET.lock"
if ! flock -n 9; then echo "overlap $MISSION_TICKET $MISSION_ATTEMPT" >> "$J/overlaps"; fi
echo "start $MISSION_TICKET $MISSION_ATTEMPT $$" >> "$J/log"
if [ "$MISSION_ATTEMPT" = 1 ]; then sleep 60; fi
exec "$MISSION_BIN" run submit
"#;

fn journal(instance: &Instance, file: &str) -> String {
    std::fs::read_to_string(instance.path().join("journal").join(file)).unwrap_or_default()
}

#[test]
fn a_crash_at_each_step_from_claim_to_watch_leaves_no_orphan_and_no_second_execution() {
    // (failpoint, whether the agent has started when the server dies there)
    for (point, spawned) in [
        ("run-claimed", false),
        ("run-prepared", false),
        ("run-spawned", true),
        ("run-started", true),
    ] {
        let config = FAST.replace("max_attempts = 3", "max_attempts = 1");
        let instance =
            Instance::with_script_worker_keys(&config, "sandbox_write = [\"journal\"]\n", WORKER);
        std::fs::create_dir(instance.path().join("journal")).unwrap();
        let mut dying = instance
            .command(&["serve", "--bind", "127.0.0.1:0"])
            .env("FAILPOINTS", format!("{point}=return"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let id = instance.add(&["--title", point, "--assignee", "script"]);
        // The server crashes at the point.
        let mut exited = None;
        wait_for(Duration::from_secs(20), || {
            exited = dying.try_wait().unwrap();
            exited.is_some()
        });
        assert!(!exited.unwrap().success(), "{point}: the server crashed");
        let first = instance.show(&id)["runs"][0].clone();
        let run = first["id"].as_i64().unwrap();
        if spawned {
            wait_for(Duration::from_secs(10), || {
                journal(&instance, "log").contains(&format!("start {id} 1"))
            });
            assert!(
                !instance.processes_of_run(run).is_empty(),
                "{point}: the first attempt outlives its server"
            );
        }
        if point == "run-spawned" {
            assert!(
                first["pid"].is_null(),
                "{point}: no pid was stored: {first}"
            );
        }

        // The next server stops what is left of attempt 1 before the ticket runs again.
        let server = instance.serve();
        instance.wait_for_state(&id, "review", Duration::from_secs(30));
        server.stop();
        assert_eq!(
            journal(&instance, "overlaps"),
            "",
            "{point}: two executions at once"
        );
        assert!(
            instance.processes_of_run(run).is_empty(),
            "{point}: an orphan survived"
        );
        let runs = instance.show(&id)["runs"].as_array().unwrap().clone();
        assert_eq!(runs.len(), 2, "{point}: {runs:?}");
        assert_eq!(runs[0]["failure_class"], "orphaned", "{point}");
        // max_attempts = 1, yet the ticket got its attempt: the crash was not charged.
        assert_eq!(runs[1]["attempt"], 2, "{point}");
    }
}

fn workload(tickets: usize, kills: usize, gap_ms: (u64, u64), work_ms: u64) -> Workload {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Workload {
        tickets: env("MISSION_CRASH_TICKETS", tickets as u64) as usize,
        kills: env("MISSION_CRASH_KILLS", kills as u64) as usize,
        kill_after: (
            Duration::from_millis(env("MISSION_CRASH_GAP_MIN_MS", gap_ms.0)),
            Duration::from_millis(env("MISSION_CRASH_GAP_MAX_MS", gap_ms.1)),
        ),
        max_work: Duration::from_millis(env("MISSION_CRASH_WORK_MS", work_ms)),
        max_workers: 4,
        seed: env("MISSION_CRASH_SEED", 7),
        drain_within: Duration::from_secs(env("MISSION_CRASH_DRAIN_S", 120)),
    }
}

/// The small configuration, in every CI run: 20 tickets, 8 kills 0.1–0.6 s apart, work up to
/// 0.5 s.
#[test]
fn random_kills_lose_nothing_and_never_run_a_ticket_twice_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let workload = workload(20, 8, (100, 600), 500);
    let report = crash::run(std::path::Path::new(common::MISSION), dir.path(), &workload);
    println!("{workload:?}\n{report}");
    assert_eq!(report.kills, workload.kills);
    assert!(
        report.violations.is_empty(),
        "{report}\n{:#?}",
        report.violations
    );
}

/// The harsh configuration (100 tickets, 150 kills 0.05–0.4 s apart, work up to 3 s), run by
/// `scripts/crash-harsh.sh` with a seed each time; not in CI.
#[test]
#[ignore]
fn harsh_random_kills() {
    let dir = tempfile::tempdir().unwrap();
    let workload = workload(100, 150, (50, 400), 3000);
    let report = crash::run(std::path::Path::new(common::MISSION), dir.path(), &workload);
    println!("RESULT seed={} {report}", workload.seed);
    assert!(
        report.violations.is_empty(),
        "{report}\n{:#?}",
        report.violations
    );
}

/// A ticket whose runs keep dying with their server stops at `dispatch.max_orphaned` (here 1),
/// failed — with a failed-ticket item in the inbox and a critical `crash_loop` incident naming it.
#[test]
fn a_ticket_that_keeps_crashing_its_server_fails_with_an_item_and_an_incident() {
    let config = FAST.replace("max_attempts = 3", "max_attempts = 3\nmax_orphaned = 1");
    let instance =
        Instance::with_script_worker_keys(&config, "sandbox_write = [\"journal\"]\n", WORKER);
    std::fs::create_dir(instance.path().join("journal")).unwrap();
    std::fs::write(
        instance.path().join("tasks/audit.md"),
        "+++\nkind = \"operator-audit\"\nevery = \"1h\"\n+++\n",
    )
    .unwrap();
    let mut dying = instance
        .command(&["serve", "--bind", "127.0.0.1:0"])
        .env("FAILPOINTS", "run-started=return")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let id = instance.add(&["--title", "poison", "--assignee", "script"]);
    wait_for(Duration::from_secs(20), || {
        dying.try_wait().unwrap().is_some()
    });
    // The next server's recovery closes the orphan: the ticket's only crash allowance is used.
    let server = instance.serve();
    instance.wait_for_state(&id, "failed", Duration::from_secs(20));
    server.stop();
    let items = instance.json(&["inbox", "list"]);
    assert!(
        items
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "failed_ticket" && i["ticket"] == id.as_str()),
        "{items}"
    );
    instance.json(&["task", "run", "audit"]);
    let incidents = instance.json(&["incident", "list"]);
    let incident = incidents
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["fingerprint"] == format!("crash_loop:{id}"))
        .unwrap_or_else(|| panic!("no crash_loop incident: {incidents}"))
        .clone();
    assert_eq!(incident["severity"], "critical", "{incident}");
}
