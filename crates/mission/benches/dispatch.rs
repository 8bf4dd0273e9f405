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
    Settings::from_config(&config, dir, &dir.join("data"), "bench", MISSION).unwrap()
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
        max_orphaned: 10,
        ..mission_core::RetryPolicy::default()
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

    // Every slot free (not measured): the needs-input lane has free workers to look for, so
    // its pass queries the board, which holds nothing for it.
    let retry = settings.retry();
    for (run, _) in claimed.drain(..) {
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
                &mission_core::proof::InboxRoutes::default(),
                &change(),
            )
            .await
            .unwrap();
    }
    let mut nothing = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        let report = dispatcher.dispatch_once(Lane::NeedsInput).await.unwrap();
        nothing.push(t.elapsed());
        assert!(report.claimed_tickets.is_empty());
        assert!(report.capacity_unknown.is_none());
    }
    println!(
        "{}",
        Stats::new(nothing).line("dispatch pass, slots free, nothing runnable")
    );

    // Fill the slots again (not measured), then free one slot at a time; each pass claims
    // exactly one ticket.
    let report = dispatcher.dispatch_once(Lane::Normal).await.unwrap();
    assert_eq!(report.claimed.len(), 4, "capacity is full again");
    claimed.extend(report.claimed);
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

/// Pickups measured per path.
const PICKUPS: usize = 200;

/// Waits until the ticket's run is over, so that each pickup is measured alone.
async fn settled(store: &SqliteStore, ticket: &TicketId) {
    loop {
        let state = store.ticket(ticket).await.unwrap().state;
        if state != mission_core::State::Running && state != mission_core::State::Todo {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// `mission ticket add` as a user runs it; returns the ticket and the moment its transaction
/// committed, from the command's own log.
fn add_through_cli(dir: &Path, i: usize) -> (TicketId, u128) {
    let out = Command::new(MISSION)
        .arg("--config")
        .arg(dir.join("mission.toml"))
        .args(["ticket", "add", "--assignee", "luci", "--json", "--title"])
        .arg(format!("pickup {i}"))
        .env("MISSION_LOG", "warn,mission_engine=debug")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let ticket: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = TicketId::parse(ticket["id"].as_str().unwrap()).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let committed = stderr
        .lines()
        .find(|l| l.contains("ticket created"))
        .and_then(mission_testkit::breakdown::log_time_ns)
        .expect("the CLI logs its commit");
    (id, committed)
}

/// A server of a fresh instance whose worker is the fake agent; `log` receives its stderr.
fn start_server(log: &str) -> (tempfile::TempDir, Guard, PathBuf) {
    start_server_with(log, "")
}

/// The same, with `worker` appended to the worker's table (e.g. `sandbox = "off"`).
fn start_server_with(log: &str, worker: &str) -> (tempfile::TempDir, Guard, PathBuf) {
    let bin = mission_testkit::fake_agent_bin_dir(
        &std::env::temp_dir().join(format!("mission-bench-{}", std::process::id())),
    );
    let config = format!(
        "[dispatch]\nmax_workers = 8\n\n[workers.luci]\nruntime = \"shell\"\ncommand = [\"{}\"]\nmax_concurrent = 8\n{worker}",
        bin.join("fake-worker").display()
    );
    let dir = instance(&config);
    let log_path = dir.path().join("serve.log");
    let server = Guard(
        Command::new(MISSION)
            .arg("--config")
            .arg(dir.path().join("mission.toml"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("MISSION_LOG", log)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_wake_socket(&dir.path().join("data/wake.sock"), Duration::from_secs(30));
    (dir, server, log_path)
}

/// Pickup with the run's Landlock policy (the default) next to a worker with `sandbox = "off"`:
/// two idle servers, the tickets alternating between them, so that both see the same machine.
/// `sandbox = "off"` is still confined (its starting thread drops capabilities and sets
/// `no_new_privs`; the run's home and socket), so the difference is the Landlock policy; the
/// whole confined start against a direct, unconfined one is measured by `--bench sandbox`.
async fn sandbox_on_and_off() {
    let (on_dir, on_server, _) = start_server("warn");
    let (off_dir, off_server, _) = start_server_with("warn", "sandbox = \"off\"\n");
    let on_store = open(on_dir.path()).await;
    let off_store = open(off_dir.path()).await;
    let mut on = Vec::new();
    let mut off = Vec::new();
    for i in 0..PICKUPS {
        for (dir, store, samples) in [
            (on_dir.path(), &on_store, &mut on),
            (off_dir.path(), &off_store, &mut off),
        ] {
            let (id, committed) = add_through_cli(dir, i);
            let started = mission_testkit::agent_started_ns(dir, &id.to_string());
            samples.push(Duration::from_nanos(
                started.saturating_sub(committed) as u64
            ));
            settled(store, &id).await;
        }
    }
    let on = Stats::new(on);
    let off = Stats::new(off);
    println!(
        "{}",
        off.line("pickup, sandbox = \"off\" (confined, no Landlock)")
    );
    println!("{}", on.line("pickup, sandbox on (confined + Landlock)"));
    println!(
        "  Landlock adds {:.2} ms at p50 (the confined start against a direct one: --bench sandbox)",
        (on.percentile(0.5).as_secs_f64() - off.percentile(0.5).as_secs_f64()) * 1000.0
    );
    on_store.close().await;
    off_store.close().await;
    drop((on_server, off_server));
}

async fn serve(fake: &Path) {
    let _ = fake;
    // Pickup as measured: the server logs only warnings.
    let (dir, server, _) = start_server("warn");
    let store = open(dir.path()).await;
    let socket = dir.path().join("data/wake.sock");

    // Through the real CLI: from the commit of `mission ticket add` to the agent's start.
    let mut cli = Vec::new();
    for i in 0..PICKUPS {
        let (id, committed) = add_through_cli(dir.path(), i);
        let started = mission_testkit::agent_started_ns(dir.path(), &id.to_string());
        cli.push(Duration::from_nanos(
            started.saturating_sub(committed) as u64
        ));
        settled(&store, &id).await;
    }
    // In-process: this process commits through the store and wakes the server's socket.
    let mut direct = Vec::new();
    for i in 0..PICKUPS {
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
        let started = mission_testkit::agent_started_ns(dir.path(), &ticket.id.to_string());
        direct.push(Duration::from_nanos(
            started.saturating_sub(committed) as u64
        ));
        settled(&store, &ticket.id).await;
    }
    println!(
        "{}",
        Stats::new(cli).line("pickup through `mission ticket add`: commit -> agent started")
    );
    println!(
        "{}",
        Stats::new(direct).line("pickup, commit in-process + wake: commit -> agent started")
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

    sandbox_on_and_off().await;

    // Where the time goes: the same CLI path with the server's debug log (which costs a little
    // itself), split at each step.
    let (dir, server, log_path) = start_server("warn,mission_engine=debug");
    let store = open(dir.path()).await;
    let mut picks = Vec::new();
    for i in 0..PICKUPS / 2 {
        let (id, committed) = add_through_cli(dir.path(), i);
        let started = mission_testkit::agent_started_ns(dir.path(), &id.to_string());
        picks.push((id.clone(), committed, started));
        settled(&store, &id).await;
    }
    let log = std::fs::read_to_string(&log_path).unwrap();
    let picks: Vec<(String, u128, u128)> = picks
        .into_iter()
        .map(|(id, committed, started)| (id.to_string(), committed, started))
        .collect();
    mission_testkit::breakdown::report("pickup breakdown through the CLI", &log, &picks);
    store.close().await;
    drop(server);
}
