//! The HTTP API through the real binary: `mission serve` with its HTTP side, `mission token`,
//! the bind rule, a ticket created over HTTP picked up by the server's own dispatcher, `/metrics`
//! with real values (pickups, inbox, incidents, the verdict of `mission status`), and
//! Schemathesis (from `scripts/ensure-pytools.sh`) against the running server's own OpenAPI
//! document: no 5xx, and every status, content type, header and body as documented.

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
    let instance = Instance::with_fake_workers(&format!(
        "{}\n[[audit.probes]]\nname = \"flag\"\nkind = \"command\"\ncommand = [\"false\"]\n",
        FAST.replace(
            "reconcile_interval = \"100ms\"",
            "reconcile_interval = \"1h\""
        )
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
    // An open incident (a probe that fails, seen by the audit) and an open question.
    // (The audit task may have run on its schedule already: opened, or updated.)
    let audit = instance.json(&["task", "run", "operator-audit"]);
    assert_eq!(audit["outcome"], "acted", "{audit}");
    let incidents = instance.json(&["incident", "list"]);
    assert_eq!(incidents.as_array().unwrap().len(), 1, "{incidents}");
    assert_eq!(incidents[0]["fingerprint"], "probe.command:flag");
    let asked = instance.add_with_body("asks", "luci", b"fake-agent: ask Which way?\n");
    instance.wait_for_state(&asked, "needs_input", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1100));
    let verdict = instance.json(&["status"])["verdict"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, metrics) = server.request_text("GET", "/metrics", None, None);
    assert_eq!(status, 200);
    let verdict_line = format!("mission_verdict{{verdict=\"{verdict}\"}} 1");
    for line in [
        "mission_tickets{state=\"review\"} 1",
        "mission_tickets{state=\"needs_input\"} 1",
        "mission_runs_ended_total{outcome=\"submitted\",failure_class=\"\"} 1",
        "mission_runs_ended_total{outcome=\"asked\",failure_class=\"\"} 1",
        "mission_incidents_open{severity=\"warning\"} 1",
        "mission_incidents_open{severity=\"critical\"} 0",
        "mission_inbox_items{kind=\"question\",status=\"pending\"} 1",
        "mission_inbox_items{kind=\"alert\",status=\"pending\"} 0",
        verdict_line.as_str(),
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    // The other verdicts are 0.
    let verdicts: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("mission_verdict{"))
        .collect();
    assert_eq!(verdicts.len(), 3, "{metrics}");
    assert_eq!(
        verdicts.iter().filter(|l| l.ends_with(" 1")).count(),
        1,
        "{verdicts:?}"
    );
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
            .trim()
            .parse()
            .unwrap()
    };
    // The question waited more than a second.
    let age = value("mission_inbox_oldest_age_seconds{kind=\"question\"} ");
    assert!((1.0..60.0).contains(&age), "{age}");
    assert_eq!(
        value("mission_inbox_oldest_age_seconds{kind=\"alert\"} "),
        0.0
    );
    // Two pickups by this server (the ticket over HTTP, the question), each in a bucket.
    assert_eq!(
        value("mission_pickup_latency_seconds_count "),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        value("mission_pickup_latency_seconds_bucket{le=\"+Inf\"} "),
        2.0
    );
    assert!(value("mission_pickup_latency_seconds_sum ") < 10.0);
    let passes: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mission_dispatch_passes_total "))
        .expect("dispatch passes")
        .trim()
        .parse()
        .unwrap();
    assert!(passes >= 2, "{metrics}");
    // Every dispatch pass is in the duration histogram too (the same scrape).
    assert_eq!(
        value("mission_dispatch_pass_duration_seconds_count "),
        passes as f64,
        "{metrics}"
    );
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

/// Runs schemathesis against the running server's own document; its exit status and output.
fn schemathesis(python: &std::path::Path, server: &Served, args: &[&str]) -> (bool, String) {
    let tool = python.with_file_name("schemathesis");
    let report = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(tool)
        .arg("run")
        .arg(format!("http://{}/api/v1/openapi.json", server.addr))
        .args(args)
        .arg("--report-dir")
        .arg(report.path())
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .env("NO_COLOR", "1")
        .current_dir(report.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn schemathesis_finds_no_server_error_and_no_response_off_the_document() {
    let Some(python) = mission_testkit::pytools::python_or_skip(
        "schemathesis_finds_no_server_error_and_no_response_off_the_document",
    ) else {
        return;
    };
    // The fake workers: whatever tickets the generated requests create run the fake agent.
    let instance = Instance::with_fake_workers(FAST);
    let admin = instance
        .ok(&["token", "create", "--scope", "admin"])
        .trim()
        .to_owned();
    // A board with something in most states: asked (an open question in the inbox), submitted
    // (in review), untriaged, blocked.
    let asked = instance.add_with_body("asks", "luci", b"fake-agent: ask Which way?\n");
    let submitted = instance.add(&["--title", "submits", "--assignee", "luci"]);
    instance.add(&["--title", "untriaged"]);
    let blocked = instance.add(&["--title", "blocked", "--assignee", "lucienne"]);
    instance.ok(&["ticket", "move", &blocked, "blocked"]);
    let server = Served::start(&instance, &[("MISSION_SERVER__AUTH", "true")]);
    instance.wait_for_state(&asked, "needs_input", Duration::from_secs(20));
    instance.wait_for_state(&submitted, "review", Duration::from_secs(20));

    let header = format!("Authorization: Bearer {admin}");
    let common = [
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
        "--header",
        &header,
        "--max-examples",
        "15",
        // One worker: Python 3.11's `ast` raises "AST constructor recursion depth mismatch"
        // when two threads parse at once, which Hypothesis does while describing strategies.
        "--workers",
        "1",
        "--seed",
        "20261128",
        "--request-timeout",
        "10",
        "--max-response-time",
        "5",
        "--suppress-health-check",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-failures",
        "30",
    ];
    // Everything but the streams, which never end (they are tested over a socket), and the
    // revocation of tokens, which would revoke the token the run uses: it runs last, alone.
    let mut first = common.to_vec();
    first.extend(["--exclude-path-regex", "(/stream$|/tokens/\\{id\\}$)"]);
    let started = Instant::now();
    let (passed, output) = schemathesis(&python, &server, &first);
    std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis.txt"),
        &output,
    )
    .unwrap();
    assert!(
        passed,
        "schemathesis found problems:\n{output}\nserver log:\n{}",
        server.log.lock().unwrap()
    );
    let mut last = common.to_vec();
    last.extend(["--include-path-regex", "/tokens/\\{id\\}$"]);
    let (passed, revoke_output) = schemathesis(&python, &server, &last);
    assert!(
        passed,
        "schemathesis found problems in revoke:\n{revoke_output}\nserver log:\n{}",
        server.log.lock().unwrap()
    );
    eprintln!(
        "schemathesis took {:?}:\n{output}\n{revoke_output}",
        started.elapsed()
    );
    server.stop();
}
