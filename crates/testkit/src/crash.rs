//! The crash checker: real `mission serve` processes driven through random SIGKILLs while shell
//! workers do timed work, then one server drains the board, and the history is checked.
//!
//! The workers journal each start (ticket, attempt, pid) and hold a per-ticket `flock` while
//! they run: a second holder writes an overlap. Beside them, a sampler scans `/proc` every few
//! milliseconds for the processes of the instance's runs (by `MISSION_RUN` in their
//! environment) and keeps the peak of live executions, and any moment when one ticket had two.
//! At the end: nothing lost (every ticket in review), no two executions of a ticket alive at
//! once, the peak never above `max_workers`, every extra execution matched by a recorded
//! orphaned run, event sequence numbers unique and increasing, and no process of the instance
//! left.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct Workload {
    pub tickets: usize,
    pub kills: usize,
    /// Time between a server's start and its SIGKILL: uniform in this range.
    pub kill_after: (Duration, Duration),
    /// A ticket's work: uniform up to this long.
    pub max_work: Duration,
    pub max_workers: u32,
    pub seed: u64,
    /// How long the final server may take to drain the board.
    pub drain_within: Duration,
}

/// What happened, and what the checks found (`violations` empty: every invariant held).
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub kills: usize,
    pub runs: usize,
    pub orphaned_runs: usize,
    pub executions: usize,
    pub extra_executions: usize,
    pub peak_live: usize,
    pub drain: Duration,
    pub violations: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kills {}, runs {} ({} orphaned), executions {} ({} extra), peak live {}, drain {:.1}s, violations {}",
            self.kills,
            self.runs,
            self.orphaned_runs,
            self.executions,
            self.extra_executions,
            self.peak_live,
            self.drain.as_secs_f64(),
            self.violations.len()
        )
    }
}

/// A small deterministic generator (xorshift64*): the same seed, the same schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = high.saturating_sub(low).as_micros().max(1) as u64;
        low + Duration::from_micros(self.next() % span)
    }
}

const WORKER: &str = r#"#!/bin/sh
J="$(dirname "$MISSION_CONFIG")/journal"
exec 9>>"$J/$MISSION_TICKET.lock"
if ! flock -n 9; then echo "overlap $MISSION_TICKET $MISSION_ATTEMPT" >> "$J/overlaps"; fi
echo "start $MISSION_TICKET $MISSION_ATTEMPT $$" >> "$J/starts"
read -r title < "$MISSION_TICKET_FILE"
sleep "${title##* }"
exec "$MISSION_BIN" run submit
"#;

/// Runs `workload` against the `mission` binary in a new instance under `dir`.
pub fn run(mission: &Path, dir: &Path, workload: &Workload) -> Report {
    let instance = dir.join("instance");
    std::fs::create_dir_all(instance.join("journal")).unwrap();
    let config = format!(
        r#"[dispatch]
max_workers = {max}
max_attempts = 3
max_orphaned = 1000
backoff_base = "20ms"
backoff_max = "100ms"
lease = "3s"
stall_timeout = "60s"
run_timeout = "120s"
kill_grace = "200ms"
reconcile_interval = "100ms"

[workers.a]
runtime = "shell"
command = ["./worker.sh"]
max_concurrent = {max}
sandbox_write = ["journal"]

[workers.b]
runtime = "shell"
command = ["./worker.sh"]
max_concurrent = {max}
sandbox_write = ["journal"]
"#,
        max = workload.max_workers
    );
    std::fs::write(instance.join("mission.toml"), config).unwrap();
    write_executable(&instance.join("worker.sh"), WORKER);
    let cli = Cli {
        mission: mission.to_owned(),
        config: instance.join("mission.toml"),
    };
    cli.ok(&["init", instance.to_str().unwrap()]);
    // Only the board: no example task competes with the work.
    if let Ok(entries) = std::fs::read_dir(instance.join("tasks")) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let mut rng = Rng(workload.seed.max(1));
    for n in 0..workload.tickets {
        let work = rng.between(Duration::ZERO, workload.max_work);
        let title = format!("t{n} {:.3}", work.as_secs_f64());
        let assignee = if n % 2 == 0 { "a" } else { "b" };
        cli.ok(&["ticket", "add", "--title", &title, "--assignee", assignee]);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        let config = cli.config.display().to_string();
        std::thread::spawn(move || sample(&config, &stop))
    };
    let mut report = Report::default();
    for _ in 0..workload.kills {
        let mut server = cli.serve();
        std::thread::sleep(rng.between(workload.kill_after.0, workload.kill_after.1));
        let _ = server.kill();
        let _ = server.wait();
        report.kills += 1;
    }
    let started = Instant::now();
    let mut server = cli.serve();
    let drained = loop {
        let board = cli.json(&["ticket", "list", "--limit", "100000", "--json"]);
        let open = board
            .as_array()
            .map(|tickets| {
                tickets
                    .iter()
                    .filter(|t| t["state"] != "review" && t["state"] != "done")
                    .count()
            })
            .unwrap_or(usize::MAX);
        if open == 0 {
            break true;
        }
        if started.elapsed() > workload.drain_within {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    report.drain = started.elapsed();
    // SIGTERM, and wait: runs are stopped and recorded.
    send_signal(server.id(), libc::SIGTERM);
    let _ = server.wait();
    stop.store(true, Ordering::SeqCst);
    let sampled = sampler.join().unwrap();
    report.peak_live = sampled.peak;
    check(&cli, &instance, workload, drained, &sampled, &mut report);
    report
}

fn check(
    cli: &Cli,
    instance: &Path,
    workload: &Workload,
    drained: bool,
    sampled: &Sampled,
    report: &mut Report,
) {
    let violations = &mut report.violations;
    if !drained {
        violations.push(format!(
            "lost: the board was not drained within {:?}",
            workload.drain_within
        ));
    }
    let overlaps = std::fs::read_to_string(instance.join("journal/overlaps")).unwrap_or_default();
    for line in overlaps.lines() {
        violations.push(format!("two executions at once (lock): {line}"));
    }
    for ticket in &sampled.doubled {
        violations.push(format!("two executions at once (sampled): {ticket}"));
    }
    if sampled.peak > workload.max_workers as usize {
        violations.push(format!(
            "{} executions alive at once, over max_workers = {}",
            sampled.peak, workload.max_workers
        ));
    }
    let starts = std::fs::read_to_string(instance.join("journal/starts")).unwrap_or_default();
    let mut started: BTreeMap<String, usize> = BTreeMap::new();
    for line in starts.lines() {
        if let Some(ticket) = line.split_whitespace().nth(1) {
            *started.entry(ticket.to_owned()).or_default() += 1;
        }
    }
    report.executions = started.values().sum();
    report.extra_executions = report.executions.saturating_sub(started.len());
    let board = cli.json(&["ticket", "list", "--limit", "100000", "--json"]);
    for ticket in board.as_array().cloned().unwrap_or_default() {
        let id = ticket["id"].as_str().unwrap_or_default().to_owned();
        let shown = cli.json(&["ticket", "show", &id, "--json"]);
        let runs = shown["runs"].as_array().cloned().unwrap_or_default();
        let orphaned = runs
            .iter()
            .filter(|r| r["failure_class"] == "orphaned")
            .count();
        let other_failures: Vec<String> = runs
            .iter()
            .filter(|r| !r["failure_class"].is_null() && r["failure_class"] != "orphaned")
            .map(|r| {
                format!(
                    "attempt {} {}: {}",
                    r["attempt"], r["failure_class"], r["detail"]
                )
            })
            .collect();
        report.runs += runs.len();
        report.orphaned_runs += orphaned;
        let executions = started.get(&id).copied().unwrap_or(0);
        if executions > runs.len() {
            violations.push(format!(
                "{id}: {executions} executions but {} runs recorded",
                runs.len()
            ));
        }
        if executions > 1 + orphaned {
            violations.push(format!(
                "{id}: {executions} executions, only {orphaned} of them orphaned runs"
            ));
        }
        if !other_failures.is_empty() {
            violations.push(format!(
                "{id}: runs failed on their own: {other_failures:?}"
            ));
        }
    }
    let events = cli.lines(&["events"]);
    let mut last = 0;
    for event in &events {
        let seq = event["seq"].as_i64().unwrap_or(0);
        if seq <= last {
            violations.push(format!("event seq {seq} after {last}"));
        }
        last = seq;
    }
    // Nothing of the instance runs any more.
    let config = cli.config.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut left = live_runs(&config);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        left = live_runs(&config);
    }
    for (pid, (run, _)) in left {
        violations.push(format!("process {pid} of run {run} is left"));
    }
}

struct Sampled {
    peak: usize,
    doubled: BTreeSet<String>,
}

fn sample(config: &str, stop: &AtomicBool) -> Sampled {
    let mut sampled = Sampled {
        peak: 0,
        doubled: BTreeSet::new(),
    };
    while !stop.load(Ordering::SeqCst) {
        let live = live_runs(config);
        let runs: BTreeSet<&i64> = live.values().map(|(run, _)| run).collect();
        sampled.peak = sampled.peak.max(runs.len());
        let mut by_ticket: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
        for (run, ticket) in live.values() {
            by_ticket.entry(ticket.as_str()).or_default().insert(*run);
        }
        for (ticket, runs) in by_ticket {
            if runs.len() > 1 {
                sampled.doubled.insert(format!("{ticket} runs {runs:?}"));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    sampled
}

/// Live (non-zombie) processes of the instance's runs: pid → (run id, ticket).
fn live_runs(config: &str) -> BTreeMap<i64, (i64, String)> {
    let wanted = format!("MISSION_CONFIG={config}");
    let mut found = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i64>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit(')')
                    .next()
                    .and_then(|rest| rest.split_whitespace().next().map(|s| s == "Z"))
            })
            .unwrap_or(true);
        if zombie {
            continue;
        }
        let mut ours = false;
        let mut run = None;
        let mut ticket = None;
        for item in environ.split(|b| *b == 0) {
            if item == wanted.as_bytes() {
                ours = true;
            } else if let Some(value) = item.strip_prefix(b"MISSION_RUN=") {
                run = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            } else if let Some(value) = item.strip_prefix(b"MISSION_TICKET=") {
                ticket = std::str::from_utf8(value).ok().map(str::to_owned);
            }
        }
        if let (true, Some(run), Some(ticket)) = (ours, run, ticket) {
            found.insert(pid, (run, ticket));
        }
    }
    found
}

struct Cli {
    mission: PathBuf,
    config: PathBuf,
}

impl Cli {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.mission);
        command
            .args(args)
            .env("MISSION_CONFIG", &self.config)
            .stdin(Stdio::null());
        command
    }

    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "mission {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_slice(&self.ok(args)).unwrap_or(Value::Null)
    }

    fn lines(&self, args: &[&str]) -> Vec<Value> {
        String::from_utf8_lossy(&self.ok(args))
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    fn serve(&self) -> Child {
        self.command(&["serve", "--bind", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
}

fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[allow(unsafe_code)]
fn send_signal(pid: u32, signal: i32) {
    // SAFETY: kill only sends a signal; it touches no memory of ours.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}
