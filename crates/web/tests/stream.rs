//! The event stream over a real socket: replay after `Last-Event-ID`, then follow; new-only
//! without it; ended by the server's shutdown.

mod common;

use common::TestWeb;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An open stream: what it received so far.
struct Stream {
    socket: TcpStream,
    received: String,
}

impl Stream {
    async fn open(addr: std::net::SocketAddr, headers: &str) -> Stream {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /api/v1/events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{headers}\r\n"
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        Stream {
            socket,
            received: String::new(),
        }
    }

    /// Reads until `needle` arrived (or panics after a while).
    async fn until(&mut self, needle: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while !self.received.contains(needle) {
            let read = tokio::time::timeout_at(deadline, self.socket.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", self.received))
                .unwrap();
            assert!(read > 0, "closed before {needle:?}: {:?}", self.received);
            self.received
                .push_str(&String::from_utf8_lossy(&buf[..read]));
        }
    }

    /// The event ids received, in order.
    fn ids(&self) -> Vec<i64> {
        self.received
            .lines()
            .filter_map(|l| l.strip_prefix("id: "))
            .map(|id| id.trim().parse().unwrap())
            .collect()
    }
}

#[tokio::test]
async fn a_reconnecting_client_misses_nothing() {
    let t = TestWeb::new(false).await;
    for i in 0..3 {
        t.post("/api/v1/tickets", json!({"title": format!("t{i}")}))
            .await;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mission_web::serve(
        listener,
        t.web.clone(),
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));

    // Resuming after event 1 replays 2 and 3, then follows.
    let mut resumed = Stream::open(addr, "Last-Event-ID: 1\r\n").await;
    resumed.until("id: 3\n").await;
    assert!(
        resumed.received.starts_with("HTTP/1.1 200"),
        "{}",
        resumed.received
    );
    assert!(resumed.received.contains("text/event-stream"));
    // Without a starting point: only what comes next.
    let mut fresh = Stream::open(addr, "").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    t.post("/api/v1/tickets", json!({"title": "t3"})).await;
    resumed.until("id: 4\n").await;
    fresh.until("id: 4\n").await;
    assert_eq!(resumed.ids(), [2, 3, 4]);
    assert_eq!(fresh.ids(), [4]);
    assert!(resumed.received.contains("\"kind\":\"ticket.created\""));
    assert!(resumed.received.contains("\"title\":\"t3\""));

    // A filter by ticket, from the start.
    let mut filtered = TcpStream::connect(addr).await.unwrap();
    filtered
        .write_all(
            b"GET /api/v1/events/stream?since=0&ticket=MC-2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        )
        .await
        .unwrap();
    let mut filtered = Stream {
        socket: filtered,
        received: String::new(),
    };
    filtered.until("id: 2\n").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(filtered.ids(), [2]);

    // Shutdown ends the streams, and the server with them.
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops with streams open")
        .unwrap()
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        resumed.socket.read_to_end(&mut rest),
    )
    .await
    .expect("the stream ends")
    .ok();
}

#[tokio::test]
async fn a_bad_last_event_id_is_refused() {
    let t = TestWeb::new(false).await;
    let mut request =
        TestWeb::request(axum::http::Method::GET, "/api/v1/events/stream", None, None);
    request
        .headers_mut()
        .insert("last-event-id", "yesterday".parse().unwrap());
    let reply = t.send(request).await;
    common::assert_error(&reply, 422, "invalid");
    assert_eq!(reply.body["error"]["field"], "Last-Event-ID");
}

#[tokio::test]
async fn a_runs_log_streams_live_and_ends_with_its_run() {
    let t = TestWeb::new(false).await;
    let id = t.ticket("streamed", Some("luci"), "none").await;
    let run = t
        .start_run(&id, &format!("first line\nsecret {}\n", common::CANARY))
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mission_web::serve(
        listener,
        t.web.clone(),
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    let open = |headers: &'static str| async move {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /api/v1/tickets/MC-1/runs/1/log/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n"
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        Stream {
            socket,
            received: String::new(),
        }
    };
    let mut live = open("").await;
    live.until("first line").await;
    live.until("secret [REDACTED]").await;
    assert!(!live.received.contains(common::CANARY), "{}", live.received);

    // What the run writes next arrives without asking.
    std::fs::OpenOptions::new()
        .append(true)
        .open(t.log_path(&run))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"working\n"))
        .unwrap();
    live.until("working\\n").await;
    let offsets = live.ids();
    assert_eq!(
        *offsets.last().unwrap() as usize,
        std::fs::metadata(t.log_path(&run)).unwrap().len() as usize
    );
    // A reconnecting client goes on from its last offset: only what followed.
    let mut resumed = open("Last-Event-ID: 11\r\n").await;
    resumed.until("working\\n").await;
    assert!(
        !resumed.received.contains("first line"),
        "{}",
        resumed.received
    );

    // The run ends: the stream says so, and closes.
    t.submit(&run).await;
    live.until("event: end").await;
    live.until("\"outcome\":\"submitted\"").await;
    // The response's last chunk: the stream is over (the connection may stay for another).
    live.until("\r\n0\r\n\r\n").await;
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
