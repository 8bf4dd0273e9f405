//! The HTTP API through the real binary: `mission serve` with its HTTP side, `mission token`,
//! the bind rule, and a ticket created over HTTP picked up by the server's own dispatcher.

mod common;

use common::{FAST, Instance};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `mission serve` with its stderr collected, and the address its HTTP side listens on.
struct Served {
    child: Child,
    log: Arc<Mutex<String>>,
    addr: SocketAddr,
}

impl Served {
    fn start(instance: &Instance, env: &[(&str, &str)]) -> Served {
        let mut command = instance.command(&["serve", "--bind", "127.0.0.1:0"]);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let start = Instant::now();
        let addr = loop {
            let found = log
                .lock()
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("mission: listening on http://"))
                .map(|a| a.parse::<SocketAddr>().unwrap());
            if let Some(addr) = found {
                break addr;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the server did not listen: {}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Served { child, log, addr }
    }

    /// One request, `Connection: close`; the status and the body parsed as JSON (or Null).
    fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, text) = self.request_text(method, path, token, body);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// One request, `Connection: close`; the status and the body as text.
    fn request_text(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut socket = TcpStream::connect(self.addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        if let Some(token) = token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(&body);
        socket.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        socket.read_to_string(&mut response).unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    fn stop(mut self) -> String {
        common::signal(self.child.id() as i32, libc::SIGTERM);
        let status = self.child.wait().unwrap();
        // Let the reader thread drain the pipe.
        std::thread::sleep(Duration::from_millis(100));
        let log = self.log.lock().unwrap().clone();
        assert!(status.success(), "{log}");
        log
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_ticket_created_over_http_is_picked_up_at_once() {
    // The reconcile interval is long: only the in-process wake-up explains a quick pickup.
    let instance = Instance::with_fake_workers(&FAST.replace(
        "reconcile_interval = \"100ms\"",
        "reconcile_interval = \"1h\"",
    ));
    let server = Served::start(&instance, &[]);
    let started = Instant::now();
    let (status, ticket) = server.request(
        "POST",
        "/api/v1/tickets",
        None,
        Some(json!({"title": "over http", "assignee": "luci"})),
    );
    assert_eq!(status, 201, "{ticket}");
    let id = ticket["id"].as_str().unwrap().to_owned();
    instance.wait_for_state(&id, "review", Duration::from_secs(10));
    assert!(started.elapsed() < Duration::from_secs(10));
    let (status, shown) = server.request("GET", &format!("/api/v1/tickets/{id}"), None, None);
    assert_eq!(status, 200);
    assert_eq!(shown["ticket"]["state"], "review");
    assert_eq!(shown["runs"][0]["outcome"], "submitted", "{shown}");
    let (status, metrics) = server.request_text("GET", "/metrics", None, None);
    assert_eq!(status, 200);
    for line in [
        "mission_tickets{state=\"review\"} 1",
        "mission_runs_ended_total{outcome=\"submitted\",failure_class=\"\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    let passes: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mission_dispatch_passes_total "))
        .expect("dispatch passes")
        .trim()
        .parse()
        .unwrap();
    assert!(passes >= 2, "{metrics}");
    server.stop();
}

#[test]
fn a_non_loopback_bind_is_refused_without_auth() {
    let instance = Instance::with_fake_workers(FAST);
    let out = instance.run(&["serve", "--bind", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without authentication"),
        "{stderr}"
    );
    // The same from the configuration.
    let out = instance
        .command(&["serve"])
        .env("MISSION_SERVER__BIND", "0.0.0.0:0")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !instance.path().join("data/wake.sock").exists(),
        "nothing started"
    );

    // With auth on, it starts, and wants a token for everything but liveness.
    let mut child = instance
        .command(&["serve", "--bind", "0.0.0.0:0"])
        .env("MISSION_SERVER__AUTH", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no listening line"
        );
        if let Some(addr) = line.trim().strip_prefix("mission: listening on http://") {
            break addr.parse::<SocketAddr>().unwrap();
        }
    };
    let port = addr.port();
    let served = Served {
        child,
        log: Arc::default(),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let (status, body) = served.request("GET", "/api/v1/tickets", None, None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(served.request("GET", "/healthz", None, None).0, 200);
}

#[test]
fn tokens_from_the_cli_work_until_revoked_and_never_leak() {
    let instance = Instance::with_fake_workers(FAST);
    let auth = [("MISSION_SERVER__AUTH", "true")];
    let read = instance
        .ok(&["token", "create", "--scope", "read"])
        .trim()
        .to_owned();
    let created = instance.json(&[
        "token",
        "create",
        "--scope",
        "write",
        "--expires",
        "1h",
        "--label",
        "ci",
    ]);
    let write = created["token"].as_str().unwrap().to_owned();
    assert!(read.starts_with("mc_") && write.starts_with("mc_"));
    assert_ne!(read, write);
    let write_id = created["id"].as_i64().unwrap();

    let server = Served::start(&instance, &auth);
    assert_eq!(
        server
            .request("GET", "/api/v1/tickets", Some(&read), None)
            .0,
        200
    );
    let ticket = json!({"title": "by token", "assignee": "lucienne"});
    assert_eq!(
        server
            .request("POST", "/api/v1/tickets", Some(&read), Some(ticket.clone()))
            .0,
        403
    );
    let (status, body) = server.request(
        "POST",
        "/api/v1/tickets",
        Some(&write),
        Some(ticket.clone()),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        server
            .request("GET", "/api/v1/tokens", Some(&write), None)
            .0,
        403
    );

    let listed = instance.ok(&["token", "list"]);
    assert!(listed.contains("read") && listed.contains("ci"), "{listed}");
    let listed_json = instance.ok(&["token", "list", "--json"]);
    let revoked = instance.json(&["token", "revoke", &write_id.to_string()]);
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    assert_eq!(
        server
            .request("POST", "/api/v1/tickets", Some(&write), Some(ticket))
            .0,
        401
    );
    let out = instance.run(&["token", "revoke", "999"]);
    assert_eq!(out.status.code(), Some(2));
    let out = instance.run(&["token", "create", "--scope", "root"]);
    assert_eq!(out.status.code(), Some(2));

    let log = server.stop();
    // The tokens appear nowhere but in their one create output.
    let events = instance.ok(&["events"]);
    let mut store = std::fs::read(instance.path().join("data/mission.db")).unwrap();
    store.extend(std::fs::read(instance.path().join("data/mission.db-wal")).unwrap_or_default());
    for secret in [&read, &write] {
        for (what, text) in [
            ("server log", &log),
            ("token list", &listed),
            ("token list --json", &listed_json),
            ("events", &events),
        ] {
            assert!(
                !text.contains(secret.as_str()),
                "a token in the {what}: {text}"
            );
        }
        assert!(
            !store.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a token in the store file"
        );
    }
}
