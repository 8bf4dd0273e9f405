//! Crash recovery: closing runs whose supervisor is gone.
//!
//! A run is orphaned when its lease expired (its supervisor stopped renewing it), or when its
//! supervisor was a process on this host that no longer exists (a server killed with -9 and
//! restarted). Before an orphan is closed, whatever is left of its process group is killed, so
//! the requeued ticket can never run twice at the same time.

use crate::clock::Clock;
use crate::process;
use crate::settings::Settings;
use mission_core::{Actor, FailureClass, Run};
use mission_store::prelude::*;
use mission_store::{Change, RunEnd, StoreError};
use std::sync::Arc;

/// The supervisor id recorded on runs: `HOST:PID`.
pub fn supervisor_id(settings: &Settings) -> String {
    format!("{}:{}", settings.node, std::process::id())
}

/// Whether the supervisor named by `node` is known to be gone. Its `/proc` entry is read on the
/// blocking pool, off the async threads.
pub async fn supervisor_gone(settings: &Settings, node: &str) -> bool {
    let Some((host, pid)) = node.rsplit_once(':') else {
        return false;
    };
    if host != settings.node {
        // Another host's runs are judged by their lease alone.
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if pid == std::process::id() {
        return false;
    }
    tokio::task::spawn_blocking(move || {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"));
        let ours = std::env::current_exe();
        match (exe, ours) {
            (Ok(exe), Ok(ours)) => exe != ours,
            _ => true,
        }
    })
    .await
    // The check itself failed: nothing is known to be gone.
    .unwrap_or(false)
}

/// Closes every orphaned run; returns them. What is left of the orphans' processes is stopped
/// first — all orphans at once, found by the run in their environment whether or not a pid was
/// recorded (a server that died between spawning a run and storing its pid) — so that a requeued
/// ticket can never run twice at the same time.
pub async fn recover(
    store: &Arc<dyn Store>,
    settings: &Settings,
    clock: &Arc<dyn Clock>,
) -> Result<Vec<Run>, StoreError> {
    let now = clock.now();
    let mut orphans = Vec::new();
    for run in store.unsettled_runs().await? {
        if crate::runner::supervised_here(run.id) {
            continue;
        }
        let live = run.ended_at.is_none();
        // A live run is orphaned when its lease expired or its supervisor is gone; a run that
        // ended (by its report) but was not seen exiting is settled when its supervisor is gone.
        let expired = live && run.lease_expires_at < now;
        let gone = supervisor_gone(settings, &run.node).await;
        if expired || gone {
            orphans.push((run, gone));
        }
    }
    if orphans.is_empty() {
        return Ok(Vec::new());
    }
    let started = std::time::Instant::now();
    let stopped = process::stop_runs(
        orphans.iter().map(|(run, _)| run.id).collect(),
        settings.config_file.clone(),
        settings.dispatch.kill_grace,
    )
    .await;
    tracing::warn!(
        runs = orphans.len(),
        processes = stopped,
        ms = started.elapsed().as_millis() as u64,
        "stopped what was left of orphaned runs"
    );
    let mut recovered = Vec::with_capacity(orphans.len());
    for (run, gone) in orphans {
        let detail = if gone {
            format!("its supervisor {} is gone", run.node)
        } else {
            format!("its lease expired at {}", run.lease_expires_at)
        };
        let end = RunEnd {
            failure: Some(FailureClass::Orphaned),
            detail: Some(detail),
            ..RunEnd::default()
        };
        let change = Change::new(Actor::new("recovery"), clock.now());
        match store
            .end_run(
                run.id,
                run.attempt,
                &end,
                &settings.retry(),
                &settings.gate.routes,
                &change,
            )
            .await
        {
            Ok(_) | Err(StoreError::Fenced { .. }) => {
                tracing::warn!(ticket.id = %run.ticket, run.id = %run.id, "orphaned run closed");
                recovered.push(run);
            }
            Err(error) => return Err(error),
        }
    }
    Ok(recovered)
}
