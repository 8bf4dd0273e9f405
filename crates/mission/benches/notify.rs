//! Notification benchmark: 10,000 queued notifications drained by `mission serve` to a local
//! webhook receiver (signed, one HTTP/1.1 keep-alive connection, a 204 each), and the
//! dispatcher's pickup latency (a ticket's commit to its agent's start) measured in the same run:
//! with an idle outbox, then while the 10,000 drain — in rounds (BENCH_ROUNDS, 3), the pickups
//! of every round pooled per side, so that the machine's drift during the run falls on both
//! (BENCH_PICKUPS per side and round, 500).
//!
//! The webhook's `max_per_second` is the default (`WEBHOOK_RATE`) unless BENCH_RATE sets it (0:
//! no pace). BENCH_TRACE prints each side's pickups step by step (servers at debug level);
//! BENCH_SETTLE_MS pauses after each run's end before the next pickup; BENCH_KEEP_LOG keeps the
//! servers' log there.
//!
//! Run: `cargo bench -p mission --bench notify` (BENCH_NOTIFICATIONS changes the count).

use mission_core::{Actor, TicketDraft, TicketId, TicketKey, Timestamp};
use mission_store::prelude::*;
use mission_store::sqlite::SqliteOptions;
use mission_store::{Change, SqliteStore};
use mission_testkit::process::{Guard, wait_for_wake_socket};
use mission_testkit::stats::Stats;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MISSION: &str = env!("CARGO_BIN_EXE_mission");
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Pickups per side and round, unless BENCH_PICKUPS says otherwise: with the default three
/// rounds, 1,500 per side, so that the p99 is a rank among many (the 15th largest), not one outlier.
const PICKUPS: usize = 500;

fn pickups_per_round() -> usize {
    std::env::var("BENCH_PICKUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(PICKUPS)
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// What the receiver saw: how many requests, the first's and the last's time.
#[derive(Default)]
struct Received {
    count: AtomicU64,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
}

/// A webhook receiver answering 204 to everything, keeping connections alive.
fn receiver() -> (String, Arc<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = Arc::new(Received::default());
    let counted = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let seen = counted.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let header = line.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = header.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let now = now_ns() as u64;
                    if seen.count.fetch_add(1, Ordering::SeqCst) == 0 {
                        seen.first_ns.store(now, Ordering::SeqCst);
                    }
                    seen.last_ns.store(now, Ordering::SeqCst);
                    if writer
                        .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

fn instance(url: &str) -> tempfile::TempDir {
    let bin = mission_testkit::fake_agent_bin_dir(
        &std::env::temp_dir().join(format!("mission-bench-notify-{}", std::process::id())),
    );
    let config = format!(
        r#"[dispatch]
max_workers = 8

[workers.luci]
runtime = "shell"
command = ["{worker}"]
max_concurrent = 8

[notify]
poll_interval = "100ms"

[[notify.webhooks]]
name = "sink"
url = "{url}"
secret = "{SECRET}"
events = ["ping"]
timeout = "5s"
{rate}"#,
        rate = std::env::var("BENCH_RATE")
            .map(|r| format!("max_per_second = {r}\n"))
            .unwrap_or_default(),
        worker = bin.join("fake-worker").display()
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mission.toml"), config).unwrap();
    let out = Command::new(MISSION)
        .args(["init", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    dir
}

fn settle_ms() -> u64 {
    std::env::var("BENCH_SETTLE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// BENCH_TRACE: the servers log at debug level, and each side's pickups are printed step by
/// step (the debug log costs a little itself).
fn traced() -> bool {
    std::env::var("BENCH_TRACE").is_ok()
}

fn start(dir: &Path) -> Guard {
    let server = Guard(
        Command::new(MISSION)
            .arg("--config")
            .arg(dir.join("mission.toml"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env(
                "MISSION_LOG",
                if traced() {
                    // BENCH_TRACE_LOG: another filter (`mission_store=trace` times every
                    // write transaction).
                    std::env::var("BENCH_TRACE_LOG").unwrap_or_else(|_| {
                        "warn,mission_engine=debug,mission_store=debug".to_owned()
                    })
                } else {
                    "warn".to_owned()
                },
            )
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("serve.log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap(),
    );
    wait_for_wake_socket(&dir.join("data/wake.sock"), Duration::from_secs(30));
    server
}

async fn settled(store: &SqliteStore, ticket: &TicketId) {
    loop {
        let state = store.ticket(ticket).await.unwrap().state;
        if state != mission_core::State::Running && state != mission_core::State::Todo {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Pickups one after the other: commit in this process, wake the server's socket, wait for the
/// agent's own start stamp. Returns the latencies and when each was measured. With `until`,
/// stops once the receiver has seen that many notifications.
async fn pickups(
    dir: &Path,
    store: &SqliteStore,
    tag: &str,
    until: Option<(&Received, u64)>,
) -> Vec<(Duration, u128, (String, u128, u128))> {
    let socket = dir.join("data/wake.sock");
    let mut out = Vec::new();
    for i in 0..pickups_per_round() {
        if let Some((seen, count)) = until
            && seen.count.load(Ordering::SeqCst) >= count
        {
            break;
        }
        let draft = TicketDraft {
            title: format!("{tag} {i}"),
            assignee: Some("luci".into()),
            ..TicketDraft::default()
        }
        .validate()
        .unwrap();
        let ticket = store
            .create_tickets(
                &TicketKey::default(),
                vec![draft],
                &Change::new(Actor::new("bench"), Timestamp::now()),
            )
            .await
            .unwrap()
            .remove(0);
        let committed = now_ns();
        mission_engine::wake::Waker::wake(&mission_engine::wake::SocketWaker::new(&socket));
        let started = mission_testkit::agent_started_ns(dir, &ticket.id.to_string());
        out.push((
            Duration::from_nanos(started.saturating_sub(committed) as u64),
            started,
            (ticket.id.to_string(), committed, started),
        ));
        settled(store, &ticket.id).await;
        // BENCH_SETTLE_MS: a pause after each run's end, so that the next pickup does not race
        // the last one's aftermath (0, the default: the next pickup at once).
        tokio::time::sleep(Duration::from_millis(settle_ms())).await;
    }
    out
}

fn main() {
    let count: u64 = std::env::var("BENCH_NOTIFICATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (url, seen) = receiver();
        let dir = instance(&url);
        let store = SqliteStore::open(
            &dir.path().join("data/mission.db"),
            SqliteOptions {
                max_connections: 2,
                ..SqliteOptions::default()
            },
        )
        .await
        .unwrap();
        println!("notify benchmark: {count} notifications to a local webhook receiver");

        // Rounds, so that the machine's drift falls on both sides alike: the outbox idle, then
        // `count` notifications queued while no server runs (one transaction) and drained by
        // a new server while the pickups are measured again.
        let rounds: usize = std::env::var("BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3);
        let (mut idle_all, mut busy_all) = (Vec::new(), Vec::new());
        let (mut idle_traces, mut busy_traces) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            seen.count.store(0, Ordering::SeqCst);
            let server = start(dir.path());
            let idle = pickups(dir.path(), &store, "idle", None).await;
            drop(server);
            assert_eq!(seen.count.load(Ordering::SeqCst), 0);
            let now = Timestamp::now().as_millis();
            let pool = sqlx::SqlitePool::connect(&format!(
                "sqlite:{}",
                dir.path().join("data/mission.db").display()
            ))
            .await
            .unwrap();
            sqlx::query(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
                 INSERT INTO outbox (channel, topic, payload, created_at, next_attempt_at) \
                 SELECT 'sink', 'ping', json_object('n', i), ?, ? FROM n",
            )
            .bind(count as i64)
            .bind(now)
            .bind(now)
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
            let started = Instant::now();
            let server = start(dir.path());
            let draining = pickups(dir.path(), &store, "draining", Some((&seen, count))).await;
            while seen.count.load(Ordering::SeqCst) < count {
                assert!(started.elapsed() < Duration::from_secs(600), "not drained");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let first = u128::from(seen.first_ns.load(Ordering::SeqCst));
            let last = u128::from(seen.last_ns.load(Ordering::SeqCst));
            let span = Duration::from_nanos((last - first) as u64);
            // Everything recorded as sent, not only received.
            loop {
                let pending = store
                    .outbox(&mission_store::OutboxFilter {
                        status: Some(mission_core::notify::OutboxStatus::Pending),
                        limit: 1,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                if pending.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let recorded = started.elapsed();
            drop(server);
            // Only the pickups that started before the drain ended count as "draining".
            let measured = draining.len();
            let draining: Vec<_> = draining
                .into_iter()
                .filter(|(_, at, _)| *at <= last)
                .collect();
            idle_traces.extend(idle.iter().map(|(_, _, t)| t.clone()));
            busy_traces.extend(draining.iter().map(|(_, _, t)| t.clone()));
            let draining: Vec<Duration> = draining.into_iter().map(|(d, _, _)| d).collect();
            let idle: Vec<Duration> = idle.into_iter().map(|(d, _, _)| d).collect();
            println!(
                "round {round}: drain {count} in {:.2}s = {:.0}/s (first to last request), all recorded sent {:.2}s after the server started; pickups p50 idle {:.1} ms, draining {:.1} ms ({} of {measured} before the last request)",
                span.as_secs_f64(),
                count as f64 / span.as_secs_f64(),
                recorded.as_secs_f64(),
                Stats::new(idle.clone()).percentile(0.5).as_secs_f64() * 1000.0,
                Stats::new(draining.clone()).percentile(0.5).as_secs_f64() * 1000.0,
                draining.len(),
            );
            idle_all.extend(idle);
            busy_all.extend(draining);
        }
        let idle = Stats::new(idle_all);
        println!("{}", idle.line("pickup, outbox idle: commit -> agent started"));
        if busy_all.is_empty() {
            println!("no pickup finished while the outbox drained");
            return;
        }
        let busy = Stats::new(busy_all);
        println!("{}", busy.line("pickup, outbox draining: commit -> agent started"));
        let ratio = |q: f64| busy.percentile(q).as_secs_f64() / idle.percentile(q).as_secs_f64();
        println!(
            "draining / idle, every round pooled: p50 {:.2}, p90 {:.2}, p99 {:.2}",
            ratio(0.5),
            ratio(0.9),
            ratio(0.99)
        );
        if traced() {
            let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
            // BENCH_KEEP_LOG: where to keep the servers' log.
            if let Ok(keep) = std::env::var("BENCH_KEEP_LOG") {
                std::fs::write(keep, &log).unwrap();
            }
            let breakdown = mission_testkit::breakdown::report;
            breakdown("pickup breakdown, outbox idle", &log, &idle_traces);
            breakdown("pickup breakdown, outbox draining", &log, &busy_traces);
            println!("slowest pickups while draining, with the server's log:");
            mission_testkit::breakdown::slowest(&log, &busy_traces, 4);
            println!("slowest pickups with the outbox idle, with the server's log:");
            mission_testkit::breakdown::slowest(&log, &idle_traces, 2);
        }
        store.close().await;
    });
}
