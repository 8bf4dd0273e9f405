//! Process groups and what escapes them. Every run is the leader of its own group, so that
//! everything it starts can be signalled together; what leaves the group (`setsid`, a double
//! fork) still carries the run's environment (`MISSION_RUN`, `MISSION_CONFIG`) and is found by
//! it, killed at the run's end, and reaped by the server, a child subreaper.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::time::Duration;

/// Sends `signal` to the group; false when no process of the group is left.
pub fn signal_group(pgid: i64, signal: Signal) -> bool {
    let Ok(pgid) = i32::try_from(pgid) else {
        return false;
    };
    if pgid <= 1 {
        // Never signal "every process" or init's group by accident.
        return false;
    }
    killpg(Pid::from_raw(pgid), signal).is_ok()
}

/// Whether any process of the group is alive (or not yet reaped).
pub fn group_alive(pgid: i64) -> bool {
    let Ok(pgid) = i32::try_from(pgid) else {
        return false;
    };
    pgid > 1 && killpg(Pid::from_raw(pgid), None).is_ok()
}

/// TERM, then KILL after `grace` if anything of the group is left; waits (bounded) until the
/// group is gone. Returns whether KILL was needed.
pub async fn terminate_group(pgid: i64, grace: Duration) -> bool {
    if !signal_group(pgid, Signal::SIGTERM) {
        return false;
    }
    let step = Duration::from_millis(20);
    let mut waited = Duration::ZERO;
    while waited < grace {
        if !group_alive(pgid) {
            return false;
        }
        tokio::time::sleep(step).await;
        waited += step;
    }
    signal_group(pgid, Signal::SIGKILL);
    true
}

/// Kills whatever is left of a group whose leader has exited, without a grace period.
pub fn kill_leftovers(pgid: i64) {
    signal_group(pgid, Signal::SIGKILL);
}

/// Whether `pid`'s environment holds every `NAME=value` of `pairs` — how a process is told apart
/// from an unrelated one that reused its pid. Reads `/proc`: blocking.
pub fn environment_has(pid: i64, pairs: &[(&str, String)]) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let entries: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
    pairs
        .iter()
        .all(|(name, value)| entries.contains(&format!("{name}={value}").as_bytes()))
}

/// The processes of group `pgid` (zombies excepted). Scans `/proc`: blocking.
pub fn group_members(pgid: i64) -> Vec<i64> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i64 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // After the command name: state, ppid, pgrp, …
            let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
            (fields.first() != Some(&"Z") && fields.get(2)? == &pgid.to_string()).then_some(pid)
        })
        .collect()
}

/// Whether any live process of group `pgid` has every `NAME=value` of `pairs` in its
/// environment. The `/proc` scan runs on the blocking pool, off the async threads.
pub async fn group_has_environment(pgid: i64, pairs: Vec<(&'static str, String)>) -> bool {
    tokio::task::spawn_blocking(move || {
        group_members(pgid)
            .into_iter()
            .any(|pid| environment_has(pid, &pairs))
    })
    .await
    .unwrap_or(false)
}

/// Whether any live process of group `pgid` belongs to run `run` of the instance configured by
/// `config_file` — the leader may be gone while its children live on.
pub async fn group_of_run(
    pgid: i64,
    run: mission_core::RunId,
    config_file: &std::path::Path,
) -> bool {
    let pairs = vec![
        ("MISSION_RUN", run.to_string()),
        ("MISSION_CONFIG", config_file.display().to_string()),
    ];
    group_has_environment(pgid, pairs).await
}

/// The processes whose environment names run `run` of the instance configured by
/// `config_file` (`MISSION_RUN` and `MISSION_CONFIG`), whatever their group or session: what a
/// run left behind after its leader exited, including what escaped its group (`setsid`, a double
/// fork). Scans `/proc`: blocking.
pub fn processes_of_run(run: mission_core::RunId, config_file: &std::path::Path) -> Vec<i64> {
    let pairs = [
        ("MISSION_RUN", run.to_string()),
        ("MISSION_CONFIG", config_file.display().to_string()),
    ];
    let me = i64::from(std::process::id());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i64>().ok())
        .filter(|pid| *pid != me && environment_has(*pid, &pairs))
        .collect()
}

/// The live (non-zombie) processes whose environment names one of `runs` of the instance
/// configured by `config_file`, with their process groups: one `/proc` scan. Blocking.
fn processes_of_runs(runs: &[i64], config_file: &str) -> Vec<(i64, i64)> {
    let me = i64::from(std::process::id());
    let config = format!("MISSION_CONFIG={config_file}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i64>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let mut of_config = false;
            let mut run = None;
            for entry in environ.split(|b| *b == 0) {
                if entry == config.as_bytes() {
                    of_config = true;
                } else if let Some(id) = entry.strip_prefix(b"MISSION_RUN=") {
                    run = std::str::from_utf8(id).ok()?.parse::<i64>().ok();
                }
            }
            let (state, _, pgrp, _) = stat_of(pid)?;
            (of_config && state != 'Z' && run.is_some_and(|r| runs.contains(&r)))
                .then_some((pid, pgrp))
        })
        .collect()
}

/// Stops everything left of `runs` (orphans of a dead supervisor) at once: TERM to every
/// process and process group that carries one of the runs in its environment, one `/proc` scan
/// per step until they are gone or `grace` passed, then KILL, and waits (bounded) until none is
/// left. A zombie is gone: whoever inherited it reaps it, nothing here waits for that. Returns
/// how many processes were found. Off the async threads.
pub async fn stop_runs(
    runs: Vec<mission_core::RunId>,
    config_file: std::path::PathBuf,
    grace: Duration,
) -> usize {
    let ids: Vec<i64> = runs.iter().map(|r| r.get()).collect();
    let config = config_file.display().to_string();
    tokio::task::spawn_blocking(move || {
        let signal_all = |found: &[(i64, i64)], signal: Signal| {
            for (pid, pgrp) in found {
                if let Ok(pid) = i32::try_from(*pid) {
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
                }
                // The group too, for members that cleared their environment.
                if *pgrp > 1 && *pgrp != i64::from(nix::unistd::getpgrp().as_raw()) {
                    signal_group(*pgrp, signal);
                }
            }
        };
        let found = processes_of_runs(&ids, &config);
        let total = found.len();
        if found.is_empty() {
            return 0;
        }
        signal_all(&found, Signal::SIGTERM);
        let step = Duration::from_millis(20);
        let started = std::time::Instant::now();
        let mut left = found;
        while !left.is_empty() && started.elapsed() < grace {
            std::thread::sleep(step);
            reap_orphans();
            left = processes_of_runs(&ids, &config);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !left.is_empty() && std::time::Instant::now() < deadline {
            signal_all(&left, Signal::SIGKILL);
            std::thread::sleep(Duration::from_millis(10));
            reap_orphans();
            left = processes_of_runs(&ids, &config);
        }
        total
    })
    .await
    .unwrap_or(0)
}

/// Pids of the runs' leaders this process is waiting for: never reaped by [`reap_orphans`]
/// (their exit status belongs to their runner).
static LEADERS: std::sync::Mutex<Vec<i64>> = std::sync::Mutex::new(Vec::new());

/// Marks `pid` as a run leader this process waits for, until the returned guard is dropped.
pub fn register_leader(pid: i64) -> LeaderGuard {
    if let Ok(mut leaders) = LEADERS.lock() {
        leaders.push(pid);
    }
    LeaderGuard(pid)
}

pub struct LeaderGuard(i64);

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        if let Ok(mut leaders) = LEADERS.lock() {
            leaders.retain(|pid| *pid != self.0);
        }
    }
}

/// `(state, ppid, pgrp, session)` of a process, from `/proc/PID/stat`.
fn stat_of(pid: i64) -> Option<(char, i64, i64, i64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    Some((
        fields.first()?.chars().next()?,
        fields.get(1)?.parse().ok()?,
        fields.get(2)?.parse().ok()?,
        fields.get(3)?.parse().ok()?,
    ))
}

/// Kills everything left of run `run` (see [`processes_of_run`]) until nothing is left (or a
/// few rounds passed), then reaps what became this process's children — as a child subreaper,
/// the server inherits a run's escapees when their parents die. Off the async threads.
pub async fn kill_run_processes(run: mission_core::RunId, config_file: std::path::PathBuf) {
    let _ = tokio::task::spawn_blocking(move || {
        for _ in 0..20 {
            let left = processes_of_run(run, &config_file);
            if left.is_empty() {
                break;
            }
            for pid in &left {
                if let Ok(pid) = i32::try_from(*pid) {
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
            reap_orphans();
        }
        reap_orphans();
    })
    .await;
}

/// Reaps the zombies among this process's children that it did not start itself: processes
/// re-parented to it (it is a child subreaper). What this process starts is always the leader of
/// its own group in this process's session and is waited for by its starter; a run's leader is
/// never reaped here (see [`register_leader`]). Blocking.
pub fn reap_orphans() {
    let me = i64::from(std::process::id());
    let Some((_, _, _, my_session)) = stat_of(me) else {
        return;
    };
    let leaders = LEADERS.lock().map(|l| l.clone()).unwrap_or_default();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for pid in entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i64>().ok())
    {
        let Some((state, ppid, pgrp, session)) = stat_of(pid) else {
            continue;
        };
        let started_here = pgrp == pid && session == my_session;
        if state == 'Z'
            && ppid == me
            && !started_here
            && !leaders.contains(&pid)
            && let Ok(pid) = i32::try_from(pid)
        {
            let _ = nix::sys::wait::waitpid(
                Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
    }
}
