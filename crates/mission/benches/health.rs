//! Health benchmark: `mission status` and the operator audit on a board of 100,000 tickets and
//! 1,000,000 events (5% todo, live runs, task runs, incidents), in the SQLite store.
//!
//! Measures, and prints as medians and percentiles next to a same-run baseline:
//! - `App::status` in-process: the snapshot read, the policy over the waiting tickets, the
//!   verdict, the change check (target: p50 ≤ 20 ms);
//! - `mission status --json` as a real process, wall time (target: ≤ 100 ms);
//! - one operator-audit pass in-process and `mission task run operator-audit` as a process
//!   (target: ≤ 1 s).
//!
//! Run: `cargo bench -p mission --bench health` (env BENCH_TICKETS / BENCH_EVENTS to scale).

use mission_core::{Actor, Timestamp};
use mission_engine::wake::NoWaker;
use mission_engine::{App, Settings, SystemClock};
use mission_store::sqlite::SqliteOptions;
use mission_store::{SqliteStore, Store};
use mission_testkit::stats::Stats;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

const MISSION: &str = env!("CARGO_BIN_EXE_mission");

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn settings(dir: &Path) -> Settings {
    let text = std::fs::read_to_string(dir.join("mission.toml")).unwrap();
    let config: mission_core::config::Config = toml::from_str(&text).unwrap();
    Settings::from_config(&config, dir, &dir.join("data"), "bench", MISSION).unwrap()
}

fn main() {
    let tickets = env_usize("BENCH_TICKETS", 100_000) as i64;
    let events = env_usize("BENCH_EVENTS", 1_000_000) as i64;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instance");
    let out = Command::new(MISSION)
        .args(["init", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&path, tickets, events));
}

async fn run(instance: &Path, tickets: i64, events: i64) {
    let db = instance.join("data/mission.db");
    println!(
        "health benchmark: {tickets} tickets, {events} events, store {}",
        db.display()
    );
    let setup = Instant::now();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", db.display()))
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    // A board in use (written directly: setup, not measured). States spread as in the
    // foundation benchmark; tickets entered their state over the last 100,000 seconds.
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
         INSERT INTO tickets (number, id, title, body, state, assignee, labels, priority, \
             evidence_policy, created_at, updated_at, state_since) \
         SELECT i, 'MC-' || i, 'Ticket number ' || i, 'Some body text.', \
             CASE i % 100 WHEN 0 THEN 'triage' WHEN 1 THEN 'triage' WHEN 3 THEN 'todo' \
                 WHEN 4 THEN 'todo' WHEN 5 THEN 'todo' WHEN 6 THEN 'todo' WHEN 7 THEN 'todo' \
                 WHEN 8 THEN 'running' WHEN 9 THEN 'review' WHEN 13 THEN 'blocked' \
                 WHEN 16 THEN 'needs_input' ELSE 'done' END, \
             CASE i % 6 WHEN 0 THEN 'luci' WHEN 1 THEN 'larry' WHEN 2 THEN 'tessa' \
                 WHEN 3 THEN 'scott' WHEN 4 THEN 'atlas' ELSE 'lucienne' END, \
             '[]', i % 5, 'none', ?2 - i * 1000, ?2 - i * 1000, ?2 - i * 1000 FROM n",
    )
    .bind(tickets)
    .bind(Timestamp::now().as_millis())
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("UPDATE counters SET value = ? WHERE name = 'ticket_number'")
        .bind(tickets)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
         INSERT INTO events (at, kind, ticket, actor, data) \
         SELECT 0, 'ticket.edited', 'MC-' || (1 + i % ?), 'bench', \
                '{\"changes\":{\"priority\":{\"from\":0,\"to\":1}}}' FROM n",
    )
    .bind(events)
    .bind(tickets)
    .execute(&mut *tx)
    .await
    .unwrap();
    // Two live runs (luci's), 20,000 ended task runs of the example tasks, 200 incidents.
    let now = Timestamp::now().as_millis();
    for (n, ticket) in ["MC-108", "MC-208"].iter().enumerate() {
        sqlx::query(
            "INSERT INTO runs (ticket, attempt, worker, pool, lane, node, token_hash, started_at, \
             heartbeat_at, lease_expires_at) VALUES (?, 1, 'luci', 'general', 'normal', 'bench:1', ?, ?, ?, ?)",
        )
        .bind(ticket)
        .bind(format!("hash{n}"))
        .bind(now)
        .bind(now)
        .bind(now + 30_000)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
         INSERT INTO task_runs (task, slot, trigger, node, started_at, ended_at, outcome, reason) \
         SELECT CASE i % 4 WHEN 0 THEN 'triage' WHEN 1 THEN 'board-sweep' WHEN 2 THEN 'disk-check' \
             ELSE 'operator-audit' END, i * 60000, 'schedule', 'bench:1', ?1 - i * 1000, \
             ?1 - i * 1000 + 10, 'noop', 'nothing to do' FROM n",
    )
    .bind(now)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) \
         INSERT INTO incidents (id, fingerprint, check_name, severity, status, resolved_at, \
             resolution, occurrences, first_seen, last_seen, opened_at, detail) \
         SELECT i, 'probe.disk:d' || i, 'probe.disk', 'warning', \
             CASE WHEN i % 4 = 0 THEN 'open' ELSE 'resolved' END, \
             CASE WHEN i % 4 = 0 THEN NULL ELSE ?1 END, \
             CASE WHEN i % 4 = 0 THEN NULL ELSE '{\"by\":\"cleared\"}' END, 1, ?1, ?1, ?1, 'old' FROM n",
    )
    .bind(now - 3_600_000)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("UPDATE counters SET value = 200 WHERE name = 'incident_id'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    pool.close().await;
    println!("setup: {:.1}s, not measured", setup.elapsed().as_secs_f64());

    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&db, SqliteOptions::default())
            .await
            .unwrap(),
    );
    let settings = Arc::new(settings(instance));
    let app = App::new(
        store.clone(),
        settings.clone(),
        Arc::new(SystemClock),
        Arc::new(NoWaker),
    );

    let mut baseline = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        store.last_event_seq().await.unwrap();
        baseline.push(t.elapsed());
    }
    println!(
        "{}",
        Stats::new(baseline).line("baseline: one trivial store query")
    );

    let mut status = Vec::new();
    let mut verdict = None;
    for _ in 0..200 {
        let t = Instant::now();
        let report = app.status(&Actor::cli()).await.unwrap();
        status.push(t.elapsed());
        verdict = Some((report.verdict, report.reasons.len()));
    }
    let status = Stats::new(status);
    println!(
        "{}",
        status.line(&format!(
            "status in-process {verdict:?} (target p50 <= 20 ms)"
        ))
    );

    let tasks = mission_engine::tasks::load_dir(&settings.tasks_dir);
    let mut audit = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let report = mission_engine::audit::run(
            store.as_ref(),
            &settings,
            &tasks,
            Timestamp::now(),
            Actor::new("bench"),
        )
        .await
        .unwrap();
        audit.push(t.elapsed());
        let _ = report;
    }
    println!(
        "{}",
        Stats::new(audit).line("operator audit pass in-process (target <= 1 s)")
    );
    store.close().await;

    let cli = |args: &[&str]| {
        let t = Instant::now();
        let out = Command::new(MISSION)
            .arg("--config")
            .arg(instance.join("mission.toml"))
            .args(args)
            .output()
            .unwrap();
        assert!(matches!(out.status.code(), Some(0..=2)), "{out:?}");
        t.elapsed()
    };
    let mut version = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        Command::new(MISSION).arg("--version").output().unwrap();
        version.push(t.elapsed());
    }
    println!(
        "{}",
        Stats::new(version).line("baseline: mission --version process")
    );
    let whole: Vec<_> = (0..30).map(|_| cli(&["status", "--json"])).collect();
    println!(
        "{}",
        Stats::new(whole).line("mission status --json process (target <= 100 ms)")
    );
    let runs: Vec<_> = (0..5)
        .map(|_| cli(&["task", "run", "operator-audit", "--json"]))
        .collect();
    println!(
        "{}",
        Stats::new(runs).line("mission task run operator-audit process (target <= 1 s)")
    );
}
