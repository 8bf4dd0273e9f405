//! Notification benchmark: `mission serve` drains notifications to a local webhook receiver
//! (signed, one HTTP/1.1 keep-alive connection, a 204 each), and the dispatcher's pickup latency
//! (a ticket's commit to its agent's start) is measured in the same run.
//!
//! Pickups with the outbox idle and while it drains are taken in windows interleaved on one
//! server, so that both sides see the same minutes of this shared machine: a draining window
//! queues 10,000 notifications (BENCH_NOTIFICATIONS) in one transaction and takes pickups until
//! the receiver has them all — its drain rate is first to last request —; an idle window, with
//! the outbox empty, takes as many pickups. Windows go on until each side has 1,500 pickups
//! (BENCH_PICKUPS), so that the p99 is a rank among many (the 15th largest).
//!
//! The webhook's `max_per_second` is the default (`WEBHOOK_RATE`) unless BENCH_RATE sets it (0:
//! no pace). BENCH_TRACE prints each side's pickups step by step (servers at debug level, or
//! BENCH_TRACE_LOG's filter); BENCH_SETTLE_MS pauses after each run's end before the next
//! pickup; BENCH_KEEP_LOG keeps the servers' log there.
//!
//! Run: `cargo bench -p mission --bench notify`.

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
/// Pickups per side, unless BENCH_PICKUPS says otherwise.
const PICKUPS: u64 = 1_500;

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
    env_number("BENCH_SETTLE_MS", 0)
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

/// A pickup: its latency, and the ticket with its commit and agent-start times (ns since the
/// epoch), for the trace.
type Pickup = (Duration, (String, u128, u128));

/// Pickups one after the other, at most `limit`: commit in this process, wake the server's
/// socket, wait for the agent's own start stamp. With `until`, stops once the receiver has seen
/// that many notifications.
async fn pickups(
    dir: &Path,
    store: &SqliteStore,
    tag: &str,
    limit: usize,
    until: Option<(&Received, u64)>,
) -> Vec<Pickup> {
    let socket = dir.join("data/wake.sock");
    let mut out = Vec::new();
    for i in 0..limit {
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
            (ticket.id.to_string(), committed, started),
        ));
        settled(store, &ticket.id).await;
        // BENCH_SETTLE_MS: a pause after each run's end, so that the next pickup does not race
        // the last one's aftermath (0, the default: the next pickup at once).
        tokio::time::sleep(Duration::from_millis(settle_ms())).await;
    }
    out
}

/// Queues `count` ping notifications in one transaction, from this process (as a CLI or the
/// HTTP side would).
async fn queue(db: &Path, count: u64) {
    let now = Timestamp::now().as_millis();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", db.display()))
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
}

/// Until the receiver has seen `count` requests in all and every row is recorded as sent.
async fn drained(store: &SqliteStore, seen: &Received, count: u64) {
    let started = Instant::now();
    while seen.count.load(Ordering::SeqCst) < count {
        assert!(started.elapsed() < Duration::from_secs(600), "not drained");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let chunk = env_number("BENCH_NOTIFICATIONS", 10_000);
    let per_side = env_number("BENCH_PICKUPS", PICKUPS) as usize;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (url, seen) = receiver();
        let dir = instance(&url);
        let db = dir.path().join("data/mission.db");
        let store = SqliteStore::open(
            &db,
            SqliteOptions {
                max_connections: 2,
                ..SqliteOptions::default()
            },
        )
        .await
        .unwrap();
        println!(
            "notify benchmark: windows with the outbox idle and windows draining {chunk} \
             notifications to a local webhook receiver, interleaved, until {per_side} pickups a side"
        );
        let server = start(dir.path());
        // A few pickups first, so that neither side pays for the server's first moments.
        pickups(dir.path(), &store, "warm-up", 20, None).await;

        // Idle and draining windows interleaved on the same server, so that both sides see the
        // same minutes of this machine: a draining window queues `chunk` notifications (one
        // transaction, as a CLI or the HTTP side would) and takes pickups until the receiver
        // has seen them all (only those that started before its last request count); an idle
        // window, with nothing queued, takes as many. Pairs alternate which side goes first.
        let (mut idle_all, mut busy_all) = (Vec::new(), Vec::new());
        let (mut idle_traces, mut busy_traces) = (Vec::new(), Vec::new());
        let mut rates = Vec::new();
        let mut total = 0;
        let mut pair = 0;
        while idle_all.len() < per_side || busy_all.len() < per_side {
            let mut taken = 0;
            for draining in [pair % 2 == 0, pair % 2 == 1] {
                if draining {
                    let base = seen.count.load(Ordering::SeqCst);
                    queue(&db, chunk).await;
                    total += chunk;
                    // The window opens with the drain's first request.
                    let (first, first_count) = loop {
                        let count = seen.count.load(Ordering::SeqCst);
                        if count > base {
                            break (seen.last_ns.load(Ordering::SeqCst), count);
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    };
                    let window =
                        pickups(dir.path(), &store, "draining", usize::MAX, Some((&seen, total)))
                            .await;
                    drained(&store, &seen, total).await;
                    let last = u128::from(seen.last_ns.load(Ordering::SeqCst));
                    rates.push(
                        (total - first_count) as f64
                            / Duration::from_nanos(last as u64 - first).as_secs_f64(),
                    );
                    for (latency, trace) in window {
                        if trace.2 <= last {
                            busy_all.push(latency);
                            busy_traces.push(trace);
                            taken += 1;
                        }
                    }
                } else {
                    // As many as the pair's draining window took; going first, the draining
                    // windows' average so far (50 at least).
                    let n = if taken > 0 { taken } else { busy_all.len() / pair.max(1) };
                    let window = pickups(dir.path(), &store, "idle", n.max(50), None).await;
                    for (latency, trace) in window {
                        idle_all.push(latency);
                        idle_traces.push(trace);
                    }
                }
            }
            pair += 1;
        }
        drop(server);
        rates.sort_by(f64::total_cmp);
        println!(
            "{} draining windows, {total} notifications: drained at {:.0}/s (median window; \
             slowest {:.0}/s, fastest {:.0}/s; first to last request)",
            rates.len(),
            rates[rates.len() / 2],
            rates[0],
            rates[rates.len() - 1],
        );
        let idle = Stats::new(idle_all);
        println!("{}", idle.line("pickup, outbox idle: commit -> agent started"));
        let busy = Stats::new(busy_all);
        println!("{}", busy.line("pickup, outbox draining: commit -> agent started"));
        let ratio = |q: f64| busy.percentile(q).as_secs_f64() / idle.percentile(q).as_secs_f64();
        println!(
            "draining / idle, windows interleaved: p50 {:.2}, p90 {:.2}, p99 {:.2}",
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
