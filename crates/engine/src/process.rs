//! Process groups. Every run is the leader of its own group, so that everything it starts can
//! be signalled together and nothing outlives it.

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
