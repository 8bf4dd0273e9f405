//! Foundation benchmark: a board of 100,000 tickets and 1,000,000 events in the SQLite store.
//!
//! Measures, and prints as medians and percentiles next to a same-run baseline:
//! - inserting tickets through the store in batches (tickets/s);
//! - `explain` in-process: the store read plus the runnability policy (per call);
//! - `ticket list --state todo` in-process: the store query (per call);
//! - the same two as real `mission` CLI processes: wall time and peak RSS.
//!
//! Run: `cargo bench -p mission --bench foundation` (env BENCH_TICKETS / BENCH_EVENTS to scale).

use mission_core::{Actor, TicketDraft, TicketId, TicketKey, Timestamp};
use mission_store::prelude::*;
use mission_store::sqlite::SqliteOptions;
use mission_store::{Change, SqliteStore, TicketFilter};
use mission_testkit::stats::Stats;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const MISSION: &str = env!("CARGO_BIN_EXE_mission");

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident set size of any child waited for so far, in MiB.
#[allow(unsafe_code)]
fn children_peak_rss_mib() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass; it is zero-initialisable.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0);
    usage.ru_maxrss as f64 / 1024.0
}

fn main() {
    let tickets = env_usize("BENCH_TICKETS", 100_000);
    let events = env_usize("BENCH_EVENTS", 1_000_000);
    let batch = 1000;
    if let Ok(instance) = std::env::var("BENCH_CLI_PHASE") {
        return cli_phase(Path::new(&instance), tickets);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // BENCH_KEEP=DIR builds the board in DIR (which must not exist) and leaves it there.
    let path = match std::env::var("BENCH_KEEP") {
        Ok(keep) => std::path::PathBuf::from(keep),
        Err(_) => dir.path().join("instance"),
    };
    let out = Command::new(MISSION)
        .args(["init", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let db = path.join("data/mission.db");
    println!(
        "foundation benchmark: {tickets} tickets, {events} events, store {}",
        db.display()
    );
    runtime.block_on(run(&db, &path, tickets, events, batch));
}

async fn run(db: &Path, instance: &Path, tickets: usize, events: usize, batch: usize) {
    let store = SqliteStore::open(db, SqliteOptions::default())
        .await
        .unwrap();
    let key = TicketKey::default();
    let workers = [
        "luci", "larry", "tessa", "scott", "atlas", "council", "lucienne", "ghost",
    ];

    // 1. Inserts through the store, in batches of `batch`, each batch one transaction.
    let mut batch_times = Vec::new();
    let started = Instant::now();
    let mut next = 1usize;
    while next <= tickets {
        let size = batch.min(tickets - next + 1);
        let drafts: Vec<_> = (next..next + size)
            .map(|n| {
                TicketDraft {
                    title: format!("Ticket number {n} of the benchmark board"),
                    body: "Some body text describing the work to be done.\n".repeat(4),
                    assignee: (n % 10 != 0).then(|| workers[n % workers.len()].to_owned()),
                    labels: vec![format!("area-{}", n % 7)],
                    priority: Some((n % 5) as i64),
                    depends_on: if n > 10 && n % 10 == 3 {
                        vec![
                            TicketId::new(&key, (n - 7) as i64),
                            TicketId::new(&key, (n - 9) as i64),
                        ]
                    } else {
                        vec![]
                    },
                    ..TicketDraft::default()
                }
                .validate()
                .unwrap()
            })
            .collect();
        let t = Instant::now();
        store
            .create_tickets(
                &key,
                drafts,
                &Change::new(Actor::new("bench"), Timestamp::now()),
            )
            .await
            .unwrap();
        batch_times.push(t.elapsed());
        next += size;
    }
    let total = started.elapsed();
    println!(
        "{:<44} {:.0} tickets/s overall ({} batches of {batch}, {:.1}s)",
        "insert tickets through the store",
        tickets as f64 / total.as_secs_f64(),
        batch_times.len(),
        total.as_secs_f64()
    );
    let per_batch = Stats::new(batch_times);
    println!("{}", per_batch.line(&format!("  one batch of {batch}")));
    println!(
        "{:<44} {:.0} tickets/s at the median batch",
        "",
        batch as f64 / per_batch.percentile(0.5).as_secs_f64()
    );
    store.close().await;

    // 2. The rest of the board's history, written directly (setup, not measured): spread states
    // and pad the event log to `events` rows.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", db.display()))
        .await
        .unwrap();
    let setup = Instant::now();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        // A board in use: most tickets done, 5% todo.
        "UPDATE tickets SET state = CASE number % 100 \
           WHEN 0 THEN 'triage' WHEN 1 THEN 'triage' WHEN 2 THEN 'triage' \
           WHEN 3 THEN 'todo' WHEN 4 THEN 'todo' WHEN 5 THEN 'todo' WHEN 6 THEN 'todo' WHEN 7 THEN 'todo' \
           WHEN 8 THEN 'running' WHEN 9 THEN 'review' WHEN 10 THEN 'review' WHEN 11 THEN 'review' \
           WHEN 12 THEN 'review' WHEN 13 THEN 'blocked' WHEN 14 THEN 'blocked' \
           WHEN 15 THEN 'failed' WHEN 16 THEN 'needs_input' WHEN 17 THEN 'cancelled' \
           WHEN 18 THEN 'cancelled' ELSE 'done' END",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let missing = events.saturating_sub(existing as usize);
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
         INSERT INTO events (at, kind, ticket, actor, data) \
         SELECT 0, 'ticket.edited', 'MC-' || (1 + i % ?), 'bench', \
                '{\"changes\":{\"priority\":{\"from\":0,\"to\":1}}}' FROM n",
    )
    .bind(missing as i64)
    .bind(tickets as i64)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    let counts: (i64, i64) =
        sqlx::query_as("SELECT (SELECT COUNT(*) FROM tickets), (SELECT COUNT(*) FROM events)")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    println!(
        "setup: board now has {} tickets and {} events ({:.1}s, not measured)",
        counts.0,
        counts.1,
        setup.elapsed().as_secs_f64()
    );

    // 3. In-process reads, each next to a baseline of the cheapest possible store round trip.
    let store = SqliteStore::open(db, SqliteOptions::default())
        .await
        .unwrap();
    let instance_config = std::fs::read_to_string(instance.join("mission.toml")).unwrap();
    let config: mission_core::config::Config = toml::from_str(&instance_config).unwrap();
    let workforce = mission_core::Workforce::new(&config).unwrap();

    let mut baseline = Vec::new();
    for n in 0..2000 {
        let id = TicketId::new(&key, 1 + (n * 7919) % tickets as i64);
        let t = Instant::now();
        let _ = store.last_event_seq().await.unwrap();
        baseline.push(t.elapsed());
        let _ = id;
    }
    println!(
        "{}",
        Stats::new(baseline).line("baseline: one trivial store query")
    );

    let mut explain = Vec::new();
    let mut runnable = 0;
    for n in 0..5000i64 {
        let id = TicketId::new(&key, 1 + (n * 7919) % tickets as i64);
        let t = Instant::now();
        let (_, verdict) =
            mission_engine::explain::explain(&store, &workforce, &id, Timestamp::now())
                .await
                .unwrap();
        explain.push(t.elapsed());
        runnable += usize::from(verdict.is_runnable());
    }
    println!(
        "{}",
        Stats::new(explain).line("explain (ticket, deps, capacity, policy)")
    );

    let mut list = Vec::new();
    let mut listed = 0;
    for _ in 0..40 {
        let t = Instant::now();
        let todo = store
            .list_tickets(&TicketFilter {
                state: Some(mission_core::State::Todo),
                ..TicketFilter::default()
            })
            .await
            .unwrap();
        list.push(t.elapsed());
        listed = todo.len();
    }
    println!(
        "{}",
        Stats::new(list).line(&format!("ticket list --state todo ({listed} rows)"))
    );
    store.close().await;
    let _ = runnable;

    // 4. The CLI as real processes, measured from a small child process of this one so that
    // peak RSS is that of the CLI, not of this process's memory seen through fork.
    let status = Command::new(std::env::current_exe().unwrap())
        .env("BENCH_CLI_PHASE", instance)
        .env("BENCH_TICKETS", tickets.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn cli_phase(instance: &Path, tickets: usize) {
    let config = instance.join("mission.toml");
    let cli = |args: &[&str]| {
        let t = Instant::now();
        let out = Command::new(MISSION)
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.elapsed()
    };
    let version: Vec<Duration> = (0..30)
        .map(|_| {
            let t = Instant::now();
            Command::new(MISSION).arg("--version").output().unwrap();
            t.elapsed()
        })
        .collect();
    println!(
        "{}",
        Stats::new(version).line("baseline: `mission --version` process")
    );
    let explain_cli: Vec<Duration> = (0..60i64)
        .map(|n| {
            cli(&[
                "explain",
                &format!("MC-{}", 1 + (n * 7919) % tickets as i64),
                "--json",
            ])
        })
        .collect();
    println!(
        "{}",
        Stats::new(explain_cli).line("`mission explain ID --json` process")
    );
    println!(
        "{:<44} {:.1} MiB",
        "  peak RSS of those processes",
        children_peak_rss_mib()
    );
    let list_cli: Vec<Duration> = (0..15)
        .map(|_| cli(&["ticket", "list", "--state", "todo", "--json"]))
        .collect();
    println!(
        "{}",
        Stats::new(list_cli).line("`mission ticket list --state todo --json`")
    );
    let limited: Vec<Duration> = (0..30)
        .map(|_| cli(&["ticket", "list", "--limit", "100"]))
        .collect();
    println!(
        "{}",
        Stats::new(limited).line("`mission ticket list --limit 100`")
    );
    println!(
        "{:<44} {:.1} MiB",
        "  peak RSS of any CLI process",
        children_peak_rss_mib()
    );
}
