//! The HTTP API through the real binary: `mission serve` with its HTTP side, `mission token`,
//! the bind rule, and a ticket created over HTTP picked up by the server's own dispatcher.

mod common;

use common::{FAST, Instance, Served};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
