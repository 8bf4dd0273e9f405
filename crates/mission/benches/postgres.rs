//! PostgreSQL benchmark, on one local PostgreSQL (the test kit's throwaway cluster, fsync on):
//!
//! - durable claims per second through the store, by 1 and by 3 claimers each with its own
//!   connections (as 1 and 3 nodes): one claim per transaction, 24 (the concurrency the
//!   graphile-worker script runs at) and a pass's most, 64;
//!   every claimed run is ended again right after its transaction (as runs end under a cap; live
//!   runs stay few). Either through the store (`end_run`, one transaction per run, under the
//!   event counter like the claims: a claim and an end per run, as a job queue's figure counts
//!   taking a job and completing it), or in bulk behind the store's back (one UPDATE per claim
//!   transaction, no event: the claims alone);
//! - pickup latency with 1 and with 3 `mission serve` nodes: from the commit of a runnable ticket
//!   (then a NOTIFY, as the CLI sends) to its agent process started (the fake agent stamps its own
//!   start time), whichever node claims it;
//! - where a pickup's time goes, step by step, on one node at debug level.
//!
//! Run: `cargo bench -p mission --bench postgres` (BENCH_CLAIM_SECONDS, BENCH_PICKUPS scale it;
//! BENCH_ONLY_PICKUP skips the claims; BENCH_LOG logs the bench's own store to stderr;
//! BENCH_VS=PATH measures another build's `mission` binary's pickups in the same run, in
//! alternating rounds).
//! `bench/graphile-worker.sh` measures graphile-worker on the same kind of cluster, for
//! comparison.

use mission_core::{Actor, Lane, Name, TicketDraft, TicketId, TicketKey, Timestamp};
use mission_store::postgres::wake::Notifier;
use mission_store::prelude::*;
use mission_store::{Change, ClaimOutcome, ClaimRequest, OpenOptions, PgStore, Store};
use mission_testkit::pg::Cluster;
use mission_testkit::process::{Guard, wait_for_wake_socket};
use mission_testkit::stats::Stats;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MISSION: &str = env!("CARGO_BIN_EXE_mission");

/// The pause after a run's end before the next pickup's commit.
const SETTLE: Duration = Duration::from_millis(30);

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // BENCH_LOG: a log filter for this process's own store (its statements: `sqlx::query=debug`).
    if let Ok(filter) = std::env::var("BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let cluster = Cluster::start();
    println!(
        "postgres benchmark: PostgreSQL at 127.0.0.1:{} (fsync {})",
        cluster.port(),
        cluster.sql("postgres", "SHOW fsync").trim()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let seconds = Duration::from_secs(env_number("BENCH_CLAIM_SECONDS", 5));
    let pickups = env_number("BENCH_PICKUPS", 200) as usize;
    let only_pickup = std::env::var("BENCH_ONLY_PICKUP").is_ok();
    runtime.block_on(async {
        for ends in [Ends::ThroughTheStore, Ends::InBulk] {
            for per_transaction in [1, 24, 64] {
                if only_pickup {
                    break;
                }
                for claimers in [1, 3] {
                    claims(&cluster, claimers, per_transaction, ends, seconds).await;
                }
            }
        }
        // BENCH_VS: another build's `mission` binary, measured in the same run, in alternating
        // rounds (this build first in odd rounds, the other in even ones).
        let mut builds = vec![("this build".to_owned(), MISSION.to_owned())];
        if let Ok(other) = std::env::var("BENCH_VS") {
            builds.push((format!("vs {other}"), other));
        }
        let rounds = if builds.len() > 1 { 4 } else { 1 };
        for nodes in [1, 3] {
            let mut latencies = vec![Vec::new(); builds.len()];
            for round in 0..rounds {
                for k in 0..builds.len() {
                    let k = if round % 2 == 0 {
                        k
                    } else {
                        builds.len() - 1 - k
                    };
                    let each = (pickups / rounds).max(1);
                    let mut got = pickup(&cluster, &builds[k].1, nodes, each, false).await;
                    latencies[k].append(&mut got);
                }
            }
            for ((name, _), latencies) in builds.iter().zip(latencies) {
                let label = format!("pickup latency, {nodes} node(s): commit -> agent started");
                let label = if builds.len() > 1 {
                    format!("{label} ({name})")
                } else {
                    label
                };
                println!("{}", Stats::new(latencies).line(&label));
            }
        }
        // Where the time goes, on one node at debug level (which costs a little itself).
        pickup(&cluster, MISSION, 1, pickups / 2, true).await;
    });
}

fn change() -> Change {
    Change::new(Actor::new("bench"), Timestamp::now())
}

async fn open(url: &str) -> Arc<PgStore> {
    let store = PgStore::connect(url, OpenOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    Arc::new(store)
}

async fn add(store: &dyn Store, count: usize, assignee: &str) -> Vec<TicketId> {
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

/// How the claimed runs are ended again between claim transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ends {
    ThroughTheStore,
    InBulk,
}

/// `claimers` claimers, each on a connection pool of its own, claim tickets `per_transaction`
/// at a time for `seconds`, all from one queue of tickets (no caps bind), and end the runs they
/// claimed after each transaction: durable claims per second.
async fn claims(
    cluster: &Cluster,
    claimers: usize,
    per_transaction: usize,
    ends: Ends,
    seconds: Duration,
) {
    let url = cluster.create_schema();
    let store = open(&url).await;
    // More tickets than any run of this length claims.
    let ids = Arc::new(add(store.as_ref(), 60_000, "luci").await);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now() + Duration::from_millis(200);
    for claimer in 0..claimers {
        let store = open(&url).await;
        let raw = sqlx::PgPool::connect(&url).await.unwrap();
        let (ids, next) = (ids.clone(), next.clone());
        tasks.spawn(async move {
            let luci = Name::parse("luci").unwrap();
            let retry = mission_core::RetryPolicy {
                max_attempts: 1,
                backoff_base: Duration::ZERO,
                backoff_max: Duration::ZERO,
                max_orphaned: 1,
                ..mission_core::RetryPolicy::default()
            };
            let routes = mission_core::proof::InboxRoutes::default();
            let mut latencies = Vec::new();
            let mut claimed = 0usize;
            tokio::time::sleep_until(start.into()).await;
            while start.elapsed() < seconds {
                let first = next.fetch_add(per_transaction, Ordering::SeqCst);
                let requests: Vec<ClaimRequest> = (first..first + per_transaction)
                    .map(|i| ClaimRequest {
                        ticket: ids[i].clone(),
                        lane: Lane::Normal,
                        expected_version: 1,
                        limits: mission_core::SlotLimits {
                            worker: luci.clone(),
                            worker_max: u32::MAX,
                            pool: "default".into(),
                            pool_max: None,
                            global_max: u32::MAX,
                        },
                        node: format!("bench-{claimer}:1"),
                        token_hash: format!("token-{i}"),
                        lease: Duration::from_secs(600),
                    })
                    .collect();
                let t = Instant::now();
                let outcomes = store.claim_many(&requests, &change()).await.unwrap();
                latencies.push(t.elapsed());
                let runs: Vec<mission_core::Run> = outcomes
                    .into_iter()
                    .filter_map(|o| match o {
                        ClaimOutcome::Claimed(run) => Some(*run),
                        ClaimOutcome::Refused(_) => None,
                    })
                    .collect();
                claimed += runs.len();
                match ends {
                    Ends::ThroughTheStore => {
                        for run in runs {
                            let end = mission_store::RunEnd::default();
                            store
                                .end_run(run.id, run.attempt, &end, &retry, &routes, &change())
                                .await
                                .unwrap();
                        }
                    }
                    Ends::InBulk => {
                        let ids: Vec<i64> = runs.iter().map(|r| r.id.get()).collect();
                        sqlx::query(
                            "UPDATE runs SET ended_at = 0, exited_at = 0 WHERE id = ANY($1)",
                        )
                        .bind(ids)
                        .execute(&raw)
                        .await
                        .unwrap();
                    }
                }
            }
            (claimed, latencies)
        });
    }
    let mut total = 0;
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (claimed, mut each) = done.unwrap();
        total += claimed;
        latencies.append(&mut each);
    }
    let elapsed = start.elapsed();
    let ended = match ends {
        Ends::ThroughTheStore => "ends through the store",
        Ends::InBulk => "ends in bulk",
    };
    println!(
        "{:<64} {:>6.0} claims/s ({total} in {:.1}s)",
        format!("claims, {claimers} node(s), {per_transaction} per transaction, {ended}"),
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!("{}", Stats::new(latencies).line("  one claim transaction"));
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// `nodes` servers on one database with the fake agent as their worker; `count` tickets, one at
/// a time: commit, NOTIFY, then the agent's own start stamp, on whichever node runs it. With
/// `traced`, the servers log at debug level and the steps of each pickup are printed instead.
async fn pickup(
    cluster: &Cluster,
    mission: &str,
    nodes: usize,
    count: usize,
    traced: bool,
) -> Vec<Duration> {
    let url = cluster.create_schema();
    let root = tempfile::tempdir().unwrap();
    let bin = mission_testkit::fake_agent_bin_dir(root.path());
    let mut folders: Vec<PathBuf> = Vec::new();
    let mut servers = Vec::new();
    for n in 0..nodes {
        let dir = root.path().join(format!("node-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "[store]\nurl = \"{url}\"\n\n[dispatch]\nmax_workers = 8\nnode = \"node-{n}\"\n\n\
             [workers.luci]\nruntime = \"shell\"\ncommand = [\"{}\"]\nmax_concurrent = 8\n",
            bin.join("fake-worker").display()
        );
        std::fs::write(dir.join("mission.toml"), config).unwrap();
        let out = Command::new(mission)
            .args(["init", dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        for entry in std::fs::read_dir(dir.join("tasks")).unwrap().flatten() {
            std::fs::remove_file(entry.path()).unwrap();
        }
        servers.push(Guard(
            Command::new(mission)
                .arg("--config")
                .arg(dir.join("mission.toml"))
                .args(["serve", "--bind", "127.0.0.1:0"])
                .env(
                    "MISSION_LOG",
                    if traced {
                        // BENCH_TRACE_LOG: another filter for the traced server.
                        std::env::var("BENCH_TRACE_LOG")
                            .unwrap_or_else(|_| "warn,mission_engine=debug".to_owned())
                    } else {
                        "warn".to_owned()
                    },
                )
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("serve.log")).unwrap())
                .spawn()
                .unwrap(),
        ));
        wait_for_wake_socket(&dir.join("data/wake.sock"), Duration::from_secs(30));
        folders.push(dir);
    }
    let store = open(&url).await;
    let notifier = Notifier::new(&url).unwrap();
    let mut latencies = Vec::new();
    let mut traces = Vec::new();
    for i in 0..count {
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
        notifier.notify();
        let stamps: Vec<PathBuf> = folders
            .iter()
            .map(|dir| {
                dir.join("data/runs")
                    .join(ticket.id.to_string())
                    .join("1/started.ns")
            })
            .collect();
        let waited = Instant::now();
        let started_ns: u128 = 'found: loop {
            for stamp in &stamps {
                if let Ok(text) = std::fs::read_to_string(stamp)
                    && let Ok(ns) = text.trim().parse()
                {
                    break 'found ns;
                }
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
        traces.push((ticket.id.to_string(), committed, started_ns));
        // Let the run finish, and its server settle what follows a run's end (its pass, its
        // records), before the next: each pickup is measured alone, not racing the last one's
        // aftermath.
        loop {
            let state = store.ticket(&ticket.id).await.unwrap().state;
            if state != mission_core::State::Running && state != mission_core::State::Todo {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(SETTLE).await;
    }
    drop(servers);
    if traced {
        let log = std::fs::read_to_string(folders[0].join("serve.log")).unwrap();
        // BENCH_KEEP_LOG: where to keep the traced server's log.
        if let Ok(keep) = std::env::var("BENCH_KEEP_LOG") {
            std::fs::write(keep, &log).unwrap();
        }
        mission_testkit::breakdown::report(
            &format!("pickup breakdown, {nodes} node(s)"),
            &log,
            &traces,
        );
    }
    latencies
}
