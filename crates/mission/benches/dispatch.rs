//! Dispatcher benchmark.
//!
//! - claims per second through the store (each one compare-and-set write transaction);
//! - one dispatch pass on a board of 100,000 tickets: when capacity is full, when nothing is
//!   runnable, and when it claims one ticket;
//! - pickup latency with `mission serve` running: from the commit of a runnable ticket to its
//!   agent process started (the fake agent stamps its own start time);
//! - idle `mission serve`: CPU and memory.
//!
//! Run: `cargo bench -p mission --bench dispatch` (BENCH_TICKETS scales the board).

use mission_core::{Actor, Lane, Name, TicketDraft, TicketId, TicketKey, Timestamp};
use mission_engine::{Dispatcher, Settings, SystemClock};
use mission_store::prelude::*;
use mission_store::sqlite::SqliteOptions;
use mission_store::{Change, ClaimOutcome, ClaimRequest, RunEnd, SqliteStore};
use mission_testkit::process::{Guard, cpu_share, memory_mib, wait_for_wake_socket};
use mission_testkit::stats::Stats;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MISSION: &str = env!("CARGO_BIN_EXE_mission");

fn main() {
    let tickets: usize = std::env::var("BENCH_TICKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fake = mission_testkit::fake_agent_path();
    println!("dispatch benchmark: board of {tickets} tickets");
    runtime.block_on(async {
        claims().await;
        passes(tickets).await;
        serve(&fake).await;
    });
}

fn change() -> Change {
    Change::new(Actor::new("bench"), Timestamp::now())
}

/// `mission init` in a new folder with `config` as mission.toml; returns the folder.
fn instance(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mission.toml"), config).unwrap();
    let out = Command::new(MISSION)
        .args(["init", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    dir
}

async fn open(dir: &Path) -> SqliteStore {
    let options = SqliteOptions {
        max_connections: 4,
        ..SqliteOptions::default()
    };
    SqliteStore::open(&dir.join("data/mission.db"), options)
        .await
        .unwrap()
}

fn settings(dir: &Path) -> Settings {
    let text = std::fs::read_to_string(dir.join("mission.toml")).unwrap();
    let config: mission_core::config::Config = toml::from_str(&text).unwrap();
    Settings {
        workforce: mission_core::Workforce::new(&config).unwrap(),
        dispatch: config.dispatch.clone(),
        ticket_key: config.instance.key.clone(),
        triage: mission_core::config::triage_rules(&config.triage).unwrap(),
        tasks_dir: dir.join("tasks"),
        instance_dir: dir.to_owned(),
        config_file: dir.join("mission.toml"),
        runs_dir: dir.join("data/runs"),
        workspaces_dir: dir.join("data/workspaces"),
        node: "bench".into(),
        mission_bin: PathBuf::from(MISSION),
        wake_socket: dir.join("data/wake.sock"),
        gate: mission_engine::settings::GateSettings::default(),
    }
}

async fn add(store: &SqliteStore, count: usize, assignee: &str) -> Vec<TicketId> {
    let mut ids = Vec::new();
    let mut left = count;
    while left > 0 {
        let n = left.min(1000);
        let drafts = (0..n)
            .map(|i| {
                TicketDraft {
                    title: format!("ticket {i}"),
                    assignee: Some(assignee.to_owned()),
                    ..TicketDraft::default()
                }
                .validate()
                .unwrap()
            })
            .collect();
        let created = store
            .create_tickets(&TicketKey::default(), drafts, &change())
            .await
            .unwrap();
        ids.extend(created.into_iter().map(|t| t.id));
        left -= n;
    }
    ids
}

async fn claims() {
    let dir = instance("[workers.luci]\nruntime = \"shell\"\ncommand = [\"true\"]\n");
    let store = open(dir.path()).await;
    store.migrate().await.unwrap();
    let ids = add(&store, 10_000, "luci").await;
    let luci = Name::parse("luci").unwrap();
    let request = |i: usize, id: &TicketId| ClaimRequest {
        ticket: id.clone(),
        lane: Lane::Normal,
        expected_version: 1,
        limits: mission_core::SlotLimits {
            worker: luci.clone(),
            worker_max: u32::MAX,
            pool: "default".into(),
            pool_max: None,
            global_max: u32::MAX,
        },
        node: "bench:1".into(),
        token_hash: format!("token-{i}"),
        lease: Duration::from_secs(60),
    };
    // One claim per transaction: the baseline, and what a pass with one runnable ticket does.
    let (single, batched) = ids.split_at(2000);
    let started = Instant::now();
    let mut each = Vec::with_capacity(single.len());
    for (i, id) in single.iter().enumerate() {
        let t = Instant::now();
        let outcome = store.claim(&request(i, id), &change()).await.unwrap();
        each.push(t.elapsed());
        assert!(matches!(outcome, ClaimOutcome::Claimed(_)));
        if i % 64 == 63 {
            // Active runs stay bounded, as under a real worker cap (not measured).
            end_active(&store).await;
        }
    }
    let _ = started;
    let total: Duration = each.iter().sum();
    println!(
        "{:<48} {:.0} claims/s ({} claims in {:.2}s of claiming)",
        "claims, one per transaction (baseline)",
        single.len() as f64 / total.as_secs_f64(),
        single.len(),
        total.as_secs_f64()
    );
    println!("{}", Stats::new(each).line("  one claim"));
    // A pass's claims share one transaction (up to 64, the dispatcher's per-pass limit).
    let started = Instant::now();
    let mut per_batch = Vec::new();
    for (b, chunk) in batched.chunks(64).enumerate() {
        let requests: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| request(10_000 + b * 64 + i, id))
            .collect();
        let t = Instant::now();
        let outcomes = store.claim_many(&requests, &change()).await.unwrap();
        per_batch.push(t.elapsed());
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, ClaimOutcome::Claimed(_)))
        );
        end_all(&store, outcomes).await;
    }
    let _ = started;
    let total: Duration = per_batch.iter().sum();
    println!(
        "{:<48} {:.0} claims/s ({} claims in {:.2}s of claiming)",
        "claims, 64 per pass transaction",
        batched.len() as f64 / total.as_secs_f64(),
        batched.len(),
        total.as_secs_f64()
    );
    println!("{}", Stats::new(per_batch).line("  one pass of 64 claims"));
    store.close().await;
}

/// Ends the given runs cleanly (setup between measurements).
async fn end_all(store: &SqliteStore, outcomes: Vec<ClaimOutcome>) {
    let retry = mission_core::RetryPolicy {
        max_attempts: 1,
        backoff_base: Duration::ZERO,
        backoff_max: Duration::ZERO,
    };
    for outcome in outcomes {
        if let ClaimOutcome::Claimed(run) = outcome {
            store
                .end_run(
                    run.id,
                    run.attempt,
                    &RunEnd::default(),
                    &retry,
                    &Default::default(),
                    &change(),
                )
                .await
                .unwrap();
        }
    }
}

/// Ends every active run (setup between measurements).
async fn end_active(store: &SqliteStore) {
    let runs = store.active_runs().await.unwrap();
    end_all(
        store,
        runs.into_iter()
            .map(|r| ClaimOutcome::Claimed(Box::new(r)))
            .collect(),
    )
    .await;
}

async fn passes(tickets: usize) {
    let config = "[dispatch]\nmax_workers = 4\n\n[policy]\ncontrollers = [\"lucienne\"]\n\n\
        [workers.luci]\nruntime = \"shell\"\ncommand = [\"true\"]\nmax_concurrent = 4\n\n\
        [workers.larry]\nruntime = \"shell\"\ncommand = [\"true\"]\nmax_concurrent = 4\n";
    let dir = instance(config);
    let store = open(dir.path()).await;
    store.migrate().await.unwrap();
    // The board: most tickets done; 5% todo, a fifth of those parked with the controller.
    let setup = Instant::now();
    for (share, assignee) in [(4, "luci"), (1, "lucienne")] {
        add(&store, tickets * share / 100, assignee).await;
    }
    let rest = tickets - tickets * 5 / 100;
    let done = add(&store, rest, "larry").await;
    store.close().await;
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite:{}",
        dir.path().join("data/mission.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE tickets SET state = 'done' WHERE assignee = 'larry'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    pool.close().await;
    let _ = done;
    println!(
        "setup: {tickets} tickets ({:.1}s, not measured)",
        setup.elapsed().as_secs_f64()
    );

    let store: Arc<dyn Store> = Arc::new(open(dir.path()).await);
    let settings = Arc::new(settings(dir.path()));
    let dispatcher = Dispatcher::new(store.clone(), settings.clone(), Arc::new(SystemClock));
    // Warm up: the decision cursors catch up with the board's history (not measured).
    let mut claimed = Vec::new();
    let warm = Instant::now();
    let mut warm_passes = 0;
    loop {
        let report = dispatcher.dispatch_once(Lane::Normal).await.unwrap();
        dispatcher.dispatch_once(Lane::NeedsInput).await.unwrap();
        warm_passes += 1;
        claimed.extend(report.claimed);
        let newest = store.last_event_seq().await.unwrap();
        let caught_up = |lane: Lane| {
            let store = store.clone();
            async move { store.decision_cursor(lane).await.unwrap() >= newest - 2 }
        };
        if caught_up(Lane::Normal).await
            && caught_up(Lane::NeedsInput).await
            && report.claimed_tickets.is_empty()
        {
            break;
        }
    }
    println!(
        "warm-up: {warm_passes} passes caught up with the history in {:.2}s (not measured)",
        warm.elapsed().as_secs_f64()
    );
    assert_eq!(claimed.len(), 4, "capacity is full");

    let mut full = Vec::new();
    for i in 0..2000 {
        let t = Instant::now();
        let report = dispatcher.dispatch_once(Lane::Normal).await.unwrap();
        full.push(t.elapsed());
        if std::env::var("BENCH_TRACE").is_ok() && t.elapsed() > Duration::from_millis(10) {
            println!("slow pass {i}: {:?}", t.elapsed());
        }
        assert!(report.claimed_tickets.is_empty());
    }
    println!("{}", Stats::new(full).line("dispatch pass, capacity full"));

    let mut nothing = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        let report = dispatcher.dispatch_once(Lane::NeedsInput).await.unwrap();
        nothing.push(t.elapsed());
        assert!(report.claimed_tickets.is_empty());
    }
    println!(
        "{}",
        Stats::new(nothing).line("dispatch pass, a slot free, nothing runnable")
    );

    // Free one slot at a time (not measured); each pass claims exactly one ticket.
    let retry = settings.retry();
    let mut one = Vec::new();
    for _ in 0..300 {
        let (run, _) = claimed.remove(0);
        let end = RunEnd {
            exit_code: Some(0),
            ..RunEnd::default()
        };
        store
            .end_run(
                run.id,
                run.attempt,
                &end,
                &retry,
                &Default::default(),
                &change(),
            )
            .await
            .unwrap();
        let t = Instant::now();
        let report = dispatcher.dispatch_once(Lane::Normal).await.unwrap();
        one.push(t.elapsed());
        assert_eq!(report.claimed_tickets.len(), 1);
        claimed.extend(report.claimed);
    }
    println!(
        "{}",
        Stats::new(one).line("dispatch pass claiming one ticket (fsync)")
    );
    store.close().await;
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

async fn serve(fake: &Path) {
    let bin = mission_testkit::fake_agent_bin_dir(
        &std::env::temp_dir().join(format!("mission-bench-{}", std::process::id())),
    );
    let config = format!(
        "[dispatch]\nmax_workers = 8\n\n[workers.luci]\nruntime = \"shell\"\ncommand = [\"{}\"]\nmax_concurrent = 8\n",
        bin.join("fake-worker").display()
    );
    let _ = fake;
    let dir = instance(&config);
    let server = Guard(
        Command::new(MISSION)
            .arg("--config")
            .arg(dir.path().join("mission.toml"))
            .arg("serve")
            .env("MISSION_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let socket = dir.path().join("data/wake.sock");
    wait_for_wake_socket(&socket, Duration::from_secs(30));
    let store = open(dir.path()).await;
    let mut latencies = Vec::new();
    for i in 0..300 {
        let draft = TicketDraft {
            title: format!("pickup {i}"),
            assignee: Some("luci".into()),
            ..TicketDraft::default()
        }
        .validate()
        .unwrap();
        let ticket = store
            .create_tickets(&TicketKey::default(), vec![draft], &change())
            .await
            .unwrap()
            .remove(0);
        let committed = now_ns();
        mission_engine::wake::Waker::wake(&mission_engine::wake::SocketWaker::new(&socket));
        let stamp = dir
            .path()
            .join("data/runs")
            .join(ticket.id.to_string())
            .join("1/started.ns");
        let waited = Instant::now();
        let started_ns: u128 = loop {
            if let Ok(text) = std::fs::read_to_string(&stamp)
                && let Ok(ns) = text.trim().parse()
            {
                break ns;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "{} was not picked up",
                ticket.id
            );
            std::thread::sleep(Duration::from_micros(200));
        };
        latencies.push(Duration::from_nanos(
            started_ns.saturating_sub(committed) as u64
        ));
        // Let the run finish before the next, so each pickup is measured alone.
        loop {
            let state = store.ticket(&ticket.id).await.unwrap().state;
            if state != mission_core::State::Running && state != mission_core::State::Todo {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    println!(
        "{}",
        Stats::new(latencies).line("pickup latency: commit -> agent process started")
    );

    // Idle: no tickets, the server waiting on wake-ups and its reconcile timer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = server.0.id();
    let span = Duration::from_secs(20);
    let share = tokio::task::spawn_blocking(move || cpu_share(pid, span))
        .await
        .unwrap();
    let (rss, peak) = memory_mib(pid);
    println!(
        "{:<48} cpu={share:.2}% of one core over {:.0}s, rss={rss:.1} MiB, peak rss={peak:.1} MiB",
        "idle `mission serve`",
        span.as_secs_f64()
    );
    store.close().await;
    drop(server);
}
