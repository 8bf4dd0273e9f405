//! The HTTP side's benchmark, against the real `mission serve` over loopback:
//!
//! - the board page with 10,000 tickets: `GET /` (every column), one state's first page and a
//!   deep page of it, one request at a time on a kept-alive connection (so the time is the
//!   server's, plus a loopback round trip), and the server's own mean from its
//!   `mission_http_request_duration_seconds` for the route;
//! - `GET /api/v1/tickets/ID` at 500 requests/s for 10 s, open loop: each request's latency runs
//!   from the moment it was due, so a stall of the server is counted, not hidden by a waiting
//!   client;
//! - pickup latency through `POST /api/v1/tickets` next to `mission ticket add`: to the agent's
//!   start as the fake agent stamps it, on an idle server;
//! - an idle server, without and with one open event stream (SSE) client: CPU share.
//!
//! Run: `cargo bench -p mission --bench web` (BENCH_TICKETS scales the board).

use mission_core::{Actor, TicketDraft, TicketKey, Timestamp};
use mission_store::prelude::*;
use mission_store::sqlite::SqliteOptions;
use mission_store::{Change, SqliteStore};
use mission_testkit::process::{Guard, cpu_share, wait_for_wake_socket};
use mission_testkit::stats::Stats;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MISSION: &str = env!("CARGO_BIN_EXE_mission");

/// Requests per second of the load on one ticket, and for how long.
const RATE: u64 = 500;
const LOAD_SPAN: Duration = Duration::from_secs(10);
/// Pickups measured per path.
const PICKUPS: usize = 100;

fn main() {
    let tickets: usize = std::env::var("BENCH_TICKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    println!("web benchmark: board of {tickets} tickets, {RATE} requests/s on one ticket");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bin = mission_testkit::fake_agent_bin_dir(
        &std::env::temp_dir().join(format!("mission-bench-web-{}", std::process::id())),
    );
    runtime.block_on(async {
        board(tickets, &bin).await;
        pickups(&bin).await;
    });
    idle(&bin);
}

/// `mission init` in a new folder with the fake agent as the worker `luci`.
fn instance(bin: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[dispatch]\nmax_workers = 8\n\n[workers.luci]\nruntime = \"shell\"\ncommand = [\"{}\"]\nmax_concurrent = 8\n",
        bin.join("fake-worker").display()
    );
    std::fs::write(dir.path().join("mission.toml"), config).unwrap();
    let out = Command::new(MISSION)
        .args(["init", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    dir
}

async fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join("data/mission.db"), SqliteOptions::default())
        .await
        .unwrap()
}

/// Waits until the event log has not grown for a second (at most a minute).
async fn settle(dir: &Path) {
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite:{}", dir.join("data/mission.db").display()))
            .await
            .unwrap();
    let newest = || async {
        sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(seq) FROM events")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let started = Instant::now();
    let mut last = newest().await;
    let mut still_since = Instant::now();
    while still_since.elapsed() < Duration::from_secs(1)
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = newest().await;
        if now != last {
            last = now;
            still_since = Instant::now();
        }
    }
    println!(
        "the server judged the board in {:.1}s (not measured)",
        started.elapsed().as_secs_f64()
    );
    pool.close().await;
}

/// `mission serve` on a port of its own; its address from its log.
fn serve(dir: &Path) -> (Guard, SocketAddr) {
    let log_path = dir.join("serve.log");
    let server = Guard(
        Command::new(MISSION)
            .arg("--config")
            .arg(dir.join("mission.toml"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("MISSION_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_wake_socket(&dir.join("data/wake.sock"), Duration::from_secs(60));
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(addr) = log
            .lines()
            .find_map(|l| l.strip_prefix("mission: listening on http://"))
        {
            return (server, addr.trim().parse().unwrap());
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A kept-alive HTTP/1.1 connection, one request at a time.
struct Connection {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn new(addr: SocketAddr) -> Connection {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Connection {
            addr,
            reader: BufReader::new(stream),
        }
    }

    /// `method path` with an optional JSON body; the status and the body.
    fn send(&mut self, method: &str, path: &str, body: Option<&str>) -> (u16, Vec<u8>) {
        let body = body.unwrap_or("");
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        request.push_str("\r\n");
        request.push_str(body);
        self.reader.get_mut().write_all(request.as_bytes()).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status: u16 = line[9..12].parse().unwrap();
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.trim().parse::<usize>().unwrap());
            }
            if name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked") {
                chunked = true;
            }
        }
        let mut body = Vec::new();
        if let Some(length) = length {
            body.resize(length, 0);
            self.reader.read_exact(&mut body).unwrap();
        } else if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line).unwrap();
                let size = usize::from_str_radix(line.trim(), 16).unwrap();
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk).unwrap();
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        }
        (status, body)
    }
}

fn change() -> Change {
    Change::new(Actor::new("bench"), Timestamp::now())
}

/// The server's own mean time for `route`, from its metrics: (sum of seconds, count).
fn server_time(addr: SocketAddr, route: &str) -> (f64, f64) {
    let (_, text) = Connection::new(addr).send("GET", "/metrics", None);
    let text = String::from_utf8(text).unwrap();
    let figure = |suffix: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "mission_http_request_duration_seconds_{suffix}{{route=\"{route}\"}} "
                ))
            })
            .map_or(0.0, |v| v.trim().parse().unwrap())
    };
    (figure("sum"), figure("count"))
}

/// Requests `path` `n` times in a row on one connection; their times, and the server's own mean.
fn in_a_row(addr: SocketAddr, path: &str, route: &str, n: usize) -> (Stats, f64) {
    let mut connection = Connection::new(addr);
    for _ in 0..3 {
        assert_eq!(connection.send("GET", path, None).0, 200, "{path}");
    }
    let (sum_before, count_before) = server_time(addr, route);
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let (status, _) = connection.send("GET", path, None);
        samples.push(start.elapsed());
        assert_eq!(status, 200, "{path}");
    }
    let (sum_after, count_after) = server_time(addr, route);
    let mean = (sum_after - sum_before) / (count_after - count_before).max(1.0);
    (Stats::new(samples), mean)
}

async fn board(tickets: usize, bin: &Path) {
    let dir = instance(bin);
    // The board: tickets that wait (assigned to a name no worker has: each shows why it is not
    // running), a tenth of them blocked and a tenth cancelled, made through the store in batches.
    {
        let store = open(dir.path()).await;
        let key = TicketKey::default();
        let mut made = 0;
        while made < tickets {
            let batch: Vec<_> = (made..tickets.min(made + 1000))
                .map(|i| {
                    TicketDraft {
                        title: format!("board ticket {i}"),
                        assignee: Some("nobody".into()),
                        priority: Some((i % 7) as i64),
                        ..TicketDraft::default()
                    }
                    .validate()
                    .unwrap()
                })
                .collect();
            made += batch.len();
            let created = store.create_tickets(&key, batch, &change()).await.unwrap();
            for (i, ticket) in created.iter().enumerate() {
                let to = match i % 10 {
                    0 => mission_core::State::Blocked,
                    1 => mission_core::State::Cancelled,
                    _ => continue,
                };
                store
                    .move_ticket(
                        &ticket.id,
                        &mission_store::Move {
                            to,
                            via: mission_core::transition::Via::Operator,
                            reason: None,
                        },
                        &change(),
                    )
                    .await
                    .unwrap();
            }
        }
        store.close().await;
    }
    let (server, addr) = serve(dir.path());
    // Let the first dispatch passes record their decisions (a why-not-running for each waiting
    // ticket, a pass at a time): measured once the event log has been still for a second, so
    // that the pages and the load below meet a server at rest, not one still judging the board.
    settle(dir.path()).await;
    let deep = format!("/?state=todo&offset={}", tickets * 7 / 10);
    for (what, path) in [
        ("board page GET / (every column)", "/"),
        ("board page GET /?state=todo", "/?state=todo"),
        ("board page, a deep page of todo", deep.as_str()),
    ] {
        let (stats, mean) = in_a_row(addr, path, "/", 100);
        println!(
            "{}  server mean={:.3}ms",
            stats.line(&format!("{what}, {tickets} tickets")),
            mean * 1000.0
        );
    }
    let one = format!("/api/v1/tickets/MC-{}", tickets / 2);
    let (stats, mean) = in_a_row(addr, &one, "/api/v1/tickets/{id}", 200);
    println!(
        "{}  server mean={:.3}ms",
        stats.line("GET /api/v1/tickets/ID, one at a time"),
        mean * 1000.0
    );
    println!(
        "{}",
        load(addr, &one).line(&format!("GET /api/v1/tickets/ID at {RATE}/s, open loop"))
    );
    drop(server);
}

/// `path` at `RATE` requests per second for `LOAD_SPAN` over 16 kept-alive connections; each
/// latency from the moment the request was due.
fn load(addr: SocketAddr, path: &str) -> Stats {
    let (jobs, queue) = mpsc::channel::<Instant>();
    let queue = Arc::new(Mutex::new(queue));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(0usize));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let queue = queue.clone();
            let samples = samples.clone();
            let errors = errors.clone();
            let path = path.to_owned();
            std::thread::spawn(move || {
                let mut connection = Connection::new(addr);
                loop {
                    let due = match queue.lock().unwrap().recv() {
                        Ok(due) => due,
                        Err(_) => return,
                    };
                    let (status, _) = connection.send("GET", &path, None);
                    let took = due.elapsed();
                    if status == 200 {
                        samples.lock().unwrap().push(took);
                    } else {
                        *errors.lock().unwrap() += 1;
                    }
                }
            })
        })
        .collect();
    let interval = Duration::from_nanos(1_000_000_000 / RATE);
    let start = Instant::now();
    let total = RATE * LOAD_SPAN.as_secs();
    for i in 0..total {
        let due = start + interval * u32::try_from(i).unwrap();
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        jobs.send(due).unwrap();
    }
    drop(jobs);
    for worker in workers {
        worker.join().unwrap();
    }
    let errors = *errors.lock().unwrap();
    assert_eq!(errors, 0, "requests refused under load");
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    Stats::new(samples)
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Waits until the ticket's run is over, so that each pickup is measured alone.
async fn settled(store: &SqliteStore, ticket: &str) {
    let id = mission_core::TicketId::parse(ticket).unwrap();
    loop {
        let state = store.ticket(&id).await.unwrap().state;
        if state != mission_core::State::Running && state != mission_core::State::Todo {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn pickups(bin: &Path) {
    let dir = instance(bin);
    let (server, addr) = serve(dir.path());
    let store = open(dir.path()).await;
    let mut connection = Connection::new(addr);
    let mut http = Vec::new();
    let mut cli = Vec::new();
    let mut cli_commit = Vec::new();
    for i in 0..PICKUPS {
        // Over HTTP: from the moment the request is sent (its commit is within it).
        let body = format!("{{\"title\": \"http pickup {i}\", \"assignee\": \"luci\"}}");
        let sent = now_ns();
        let (status, reply) = connection.send("POST", "/api/v1/tickets", Some(&body));
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&reply));
        let ticket: serde_json::Value = serde_json::from_slice(&reply).unwrap();
        let id = ticket["id"].as_str().unwrap().to_owned();
        let started = mission_testkit::agent_started_ns(dir.path(), &id);
        http.push(Duration::from_nanos(started.saturating_sub(sent) as u64));
        settled(&store, &id).await;

        // Through the CLI: from its commit (its own log) and from its start.
        let spawned = now_ns();
        let out = Command::new(MISSION)
            .arg("--config")
            .arg(dir.path().join("mission.toml"))
            .args(["ticket", "add", "--assignee", "luci", "--json", "--title"])
            .arg(format!("cli pickup {i}"))
            .env("MISSION_LOG", "warn,mission_engine=debug")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let ticket: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let id = ticket["id"].as_str().unwrap().to_owned();
        let committed = String::from_utf8_lossy(&out.stderr)
            .lines()
            .find(|l| l.contains("ticket created"))
            .and_then(log_time_ns)
            .expect("the CLI logs its commit");
        let started = mission_testkit::agent_started_ns(dir.path(), &id);
        cli.push(Duration::from_nanos(started.saturating_sub(spawned) as u64));
        cli_commit.push(Duration::from_nanos(
            started.saturating_sub(committed) as u64
        ));
        settled(&store, &id).await;
    }
    println!(
        "{}",
        Stats::new(http).line("pickup, POST /api/v1/tickets sent -> agent started")
    );
    println!(
        "{}",
        Stats::new(cli_commit).line("pickup, `mission ticket add` commit -> agent started")
    );
    println!(
        "{}",
        Stats::new(cli).line("pickup, `mission ticket add` spawned -> agent started")
    );
    store.close().await;
    drop(server);
}

/// A log line's time (`2026-11-28T04:11:10.130426Z …`) in nanoseconds since the epoch.
fn log_time_ns(line: &str) -> Option<u128> {
    let stamp = line.split_whitespace().next()?;
    let time = chrono::DateTime::parse_from_rfc3339(stamp).ok()?;
    u128::try_from(time.timestamp_nanos_opt()?).ok()
}

fn idle(bin: &Path) {
    let dir = instance(bin);
    // The example tasks fire on their schedules; an idle server here runs none.
    for task in std::fs::read_dir(dir.path().join("tasks")).unwrap() {
        std::fs::remove_file(task.unwrap().path()).unwrap();
    }
    let (server, addr) = serve(dir.path());
    let pid = server.0.id();
    std::thread::sleep(Duration::from_secs(2));
    let span = Duration::from_secs(15);
    let alone = cpu_share(pid, span);
    // One event stream client, connected and following.
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /api/v1/events/stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let follower = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = reader.read_to_end(&mut sink);
    });
    std::thread::sleep(Duration::from_secs(1));
    let with_client = cpu_share(pid, span);
    println!(
        "{:<48} cpu={alone:.2}% of one core alone, {with_client:.2}% with one SSE client, over {:.0}s each",
        "idle `mission serve`",
        span.as_secs_f64()
    );
    let _ = stream.shutdown(std::net::Shutdown::Both);
    drop(server);
    let _ = follower.join();
}
