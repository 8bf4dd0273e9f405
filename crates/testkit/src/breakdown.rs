//! Where a pickup's time goes, read from a server's debug log (`mission_engine=debug`): from a
//! ticket's commit to its agent's start, split at each step the server logs (woken, pass
//! started, claimed, workspace ready, spawned). Used by the benchmarks of the pickup.

use crate::stats::Stats;
use std::time::Duration;

/// The steps, in order, as the benchmarks print them.
pub const STEPS: [&str; 6] = [
    "  commit -> server woken",
    "  woken -> pass started",
    "  pass started -> claim committed",
    "  claim committed -> workspace ready",
    "  workspace ready -> process spawned",
    "  spawned -> agent running (exec, start-up)",
];

/// A log line's time (`2026-11-28T04:11:10.130426Z …`) in nanoseconds since the epoch.
pub fn log_time_ns(line: &str) -> Option<u128> {
    let stamp = line.split_whitespace().next()?;
    let time = chrono::DateTime::parse_from_rfc3339(stamp).ok()?;
    u128::try_from(time.timestamp_nanos_opt()?).ok()
}

/// One pickup's steps (`STEPS`), from `committed` to `started` (nanoseconds since the epoch),
/// or `None` when the log lacks one of them in that span.
pub fn pickup(log: &str, ticket: &str, committed: u128, started: u128) -> Option<Vec<Duration>> {
    let lines: Vec<(u128, &str)> = log
        .lines()
        .filter_map(|l| Some((log_time_ns(l)?, l)))
        .filter(|(t, _)| *t >= committed && *t <= started)
        .collect();
    let first = |needle: &str, of_ticket: bool| {
        lines
            .iter()
            .find(|(_, l)| {
                l.contains(needle)
                    && (!of_ticket
                        || l.contains(&format!("ticket.id={ticket} "))
                        || l.ends_with(&format!("ticket.id={ticket}")))
            })
            .map(|(t, _)| *t)
    };
    let woken = first("woken", false)?;
    let pass = lines
        .iter()
        .find(|(t, l)| *t >= woken && l.contains("pass started"))
        .map(|(t, _)| *t)?;
    let claimed = first(" claimed", true)?;
    let workspace = first("workspace ready", true)?;
    let spawned = first("spawned", true)?;
    let points = [committed, woken, pass, claimed, workspace, spawned, started];
    Some(
        points
            .windows(2)
            .map(|w| Duration::from_nanos(w[1].saturating_sub(w[0]) as u64))
            .collect(),
    )
}

/// Prints the steps of `pickups` (ticket, committed, started) under `title`, with how many
/// lacked a full trace in `log`.
pub fn report(title: &str, log: &str, pickups: &[(String, u128, u128)]) {
    let mut steps: Vec<Vec<Duration>> = vec![Vec::new(); STEPS.len()];
    let mut missing = 0;
    for (ticket, committed, started) in pickups {
        match pickup(log, ticket, *committed, *started) {
            Some(parts) => {
                for (step, part) in steps.iter_mut().zip(parts) {
                    step.push(part);
                }
            }
            None => missing += 1,
        }
    }
    println!(
        "{title} ({} pickups, server at debug level; {missing} without a full trace):",
        pickups.len() - missing
    );
    for (label, step) in STEPS.iter().zip(steps) {
        if !step.is_empty() {
            println!("{}", Stats::new(step).line(label));
        }
    }
}

/// Prints the `n` slowest of `pickups` (ticket, committed, started) with every log line between
/// their commit and their agent's start, each stamped with its offset from the commit: where an
/// outlier's time went, when the steps of `report` do not say.
pub fn slowest(log: &str, pickups: &[(String, u128, u128)], n: usize) {
    let mut by_latency: Vec<&(String, u128, u128)> = pickups.iter().collect();
    by_latency.sort_by_key(|(_, committed, started)| std::cmp::Reverse(started - committed));
    for (ticket, committed, started) in by_latency.into_iter().take(n) {
        println!(
            "{ticket}: {:.1} ms from commit to agent start",
            (started - committed) as f64 / 1e6
        );
        for line in log.lines() {
            if let Some(at) = log_time_ns(line)
                && at >= *committed
                && at <= *started
            {
                let text = line.split_once(' ').map_or(line, |(_, rest)| rest);
                println!("  +{:7.2} ms {text}", (at - committed) as f64 / 1e6);
            }
        }
    }
}
