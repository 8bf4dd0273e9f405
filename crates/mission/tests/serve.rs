//! `mission serve`: woken by changes from other processes, clean shutdown, crash recovery.

mod common;

use common::{FAST, Instance, alive};
use std::time::Duration;

#[test]
fn a_ticket_added_from_the_cli_is_picked_up_at_once() {
    // The reconcile interval is long: only the wake-up can explain a quick pickup.
    let instance = Instance::with_fake_workers(&FAST.replace(
        "reconcile_interval = \"100ms\"",
        "reconcile_interval = \"1h\"",
    ));
    let server = instance.serve();
    let id = instance.add(&["--title", "quick", "--assignee", "luci"]);
    instance.wait_for_state(&id, "review", Duration::from_secs(10));
    let out = server.stop();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_slot_freed_by_a_runs_end_is_filled_at_once() {
    // One run at a time, and the reconcile interval long: the second ticket waits for the
    // first's run, and only the pass that follows its end can explain a quick start. The worker
    // exits without calling back (a callback wakes the server by itself).
    let instance = Instance::with_script_worker(
        &FAST.replace("max_workers = 8", "max_workers = 1").replace(
            "reconcile_interval = \"100ms\"",
            "reconcile_interval = \"1h\"",
        ),
        "exit 0\n",
    );
    let first = instance.add(&["--title", "first", "--assignee", "script"]);
    let second = instance.add(&["--title", "second", "--assignee", "script"]);
    let server = instance.serve();
    instance.wait_for_state(&first, "review", Duration::from_secs(10));
    instance.wait_for_state(&second, "review", Duration::from_secs(10));
    server.stop();
}

#[test]
fn the_notification_sender_runs_at_a_lower_cpu_priority_than_the_dispatcher() {
    // A channel, so that the sender has work to wait for.
    let instance = Instance::with_fake_workers(&format!(
        "{FAST}\n[[notify.webhooks]]\nname = \"hook\"\nurl = \"http://127.0.0.1:9/nobody\"\n\
         secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nevents = [\"health.changed\"]\n"
    ));
    let server = instance.serve();
    // Each thread's nice value, by name: `/proc/PID/task/TID/stat`, field 19.
    let nice_of = |wanted: &str| -> Vec<i64> {
        let tasks = format!("/proc/{}/task", server.pid());
        std::fs::read_dir(tasks)
            .unwrap()
            .filter_map(|task| {
                let task = task.ok()?.path();
                let name = std::fs::read_to_string(task.join("comm")).ok()?;
                (name.trim() == wanted).then_some(())?;
                let stat = std::fs::read_to_string(task.join("stat")).ok()?;
                let after_name = stat.rsplit_once(')')?.1;
                after_name.split_whitespace().nth(16)?.parse().ok()
            })
            .collect()
    };
    let main = nice_of("mission");
    assert_eq!(main.len(), 1);
    let sender = nice_of("mission-notify");
    assert_eq!(
        sender,
        [(main[0] + 10).min(19)],
        "one sender thread, ten nice values below the server's own (at most 19)"
    );
    server.stop();
}

#[test]
fn a_server_deletes_what_a_stopped_process_left_in_the_workspaces_trash() {
    let instance = Instance::with_fake_workers(FAST);
    // A done ticket's worktree renamed into the trash by a process that stopped before it
    // deleted it.
    let left = instance.path().join("data/workspaces/.trash/MC-9.4242.0");
    std::fs::create_dir_all(left.join("src")).unwrap();
    std::fs::write(left.join("src/main.rs"), "fn main() {}\n").unwrap();
    let server = instance.serve();
    common::wait_for(Duration::from_secs(10), || !left.exists());
    assert!(instance.path().join("data/workspaces").is_dir());
    server.stop();
}

#[test]
fn sigterm_stops_runs_and_leaves_them_recoverable() {
    let instance = Instance::with_fake_workers(FAST);
    let server = instance.serve();
    let id = instance.add_with_body("long", "luci", b"fake-agent: hang\n");
    instance.wait_for_state(&id, "running", Duration::from_secs(10));
    let out = server.stop();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = instance.show(&id)["runs"][0].clone();
    assert_eq!(run["failure_class"], "orphaned", "{run}");
    assert_eq!(run["detail"], "the server shut down");
    assert!(
        instance
            .processes_of_run(run["id"].as_i64().unwrap())
            .is_empty()
    );
    assert_eq!(instance.state(&id), "todo", "requeued for the next start");
}

#[test]
fn after_kill_9_a_restart_loses_no_ticket_and_runs_none_twice() {
    // The first attempt lives until it is killed (silent, so the stall timeout is raised); the
    // second succeeds at once. Only recovery can end the first, whatever the machine's load.
    let config = FAST.replace("stall_timeout = \"3s\"", "stall_timeout = \"10m\"");
    let instance = Instance::with_script_worker(
        &config,
        "if [ \"$MISSION_ATTEMPT\" = 1 ]; then exec sleep 600; fi\n",
    );
    let server = instance.serve();
    let id = instance.add(&["--title", "survives a crash", "--assignee", "script"]);
    instance.wait_for_state(&id, "running", Duration::from_secs(10));
    let mut pid = None;
    common::wait_for(Duration::from_secs(10), || {
        pid = instance.show(&id)["runs"][0]["pid"].as_i64();
        pid.is_some()
    });
    let pid = pid.unwrap();
    server.kill();
    assert!(alive(pid), "the agent outlives its supervisor's crash");

    let server = instance.serve();
    // Recovery at start kills the orphan's group before requeueing the ticket. The wake socket
    // takes datagrams just before recovery runs, so "started" is given a moment.
    common::wait_for(Duration::from_secs(10), || !alive(pid));
    instance.wait_for_state(&id, "review", Duration::from_secs(20));
    server.stop();

    let runs = instance.show(&id)["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0]["failure_class"], "orphaned");
    assert_eq!(runs[1]["attempt"], 2);
    let first_end = chrono_ms(&runs[0]["ended_at"]);
    let second_start = chrono_ms(&runs[1]["started_at"]);
    assert!(
        first_end <= second_start,
        "attempt 2 started only after attempt 1 was closed"
    );
    assert!(
        instance
            .processes_of_run(runs[1]["id"].as_i64().unwrap())
            .is_empty()
    );
}

fn chrono_ms(value: &serde_json::Value) -> String {
    // RFC 3339 with millisecond precision in UTC sorts as text.
    value.as_str().unwrap().to_owned()
}
