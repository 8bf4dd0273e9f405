//! The API at its boundary: every route of the router against authentication, the guards, the
//! error shape, idempotent creates and the OpenAPI document — a real router over a real store.

mod common;

use axum::http::{Method, StatusCode};
use common::{TestWeb, assert_error};
use mission_web::auth::{Scope, required_scope};
use serde_json::{Value, json};

/// One row per route: the request the matrix sends, and the status it gets once through
/// authentication. A route the router has and this table lacks fails the matrix.
struct Row {
    method: Method,
    route: &'static str,
    path: &'static str,
    body: Option<fn() -> Value>,
    ok: u16,
}

fn rows() -> Vec<Row> {
    let row = |method: Method, route, path, body: Option<fn() -> Value>, ok| Row {
        method,
        route,
        path,
        body,
        ok,
    };
    vec![
        row(Method::GET, "/api/v1/tickets", "/api/v1/tickets", None, 200),
        row(
            Method::POST,
            "/api/v1/tickets",
            "/api/v1/tickets",
            Some(|| json!({"title": "from the matrix"})),
            201,
        ),
        row(
            Method::GET,
            "/api/v1/tickets/{id}",
            "/api/v1/tickets/MC-1",
            None,
            200,
        ),
        row(
            Method::PATCH,
            "/api/v1/tickets/{id}",
            "/api/v1/tickets/MC-1",
            Some(|| json!({"priority": 5})),
            200,
        ),
        // An operator may not move a ticket to running: past authentication, a conflict.
        row(
            Method::POST,
            "/api/v1/tickets/{id}/move",
            "/api/v1/tickets/MC-1/move",
            Some(|| json!({"state": "running"})),
            409,
        ),
        // MC-1 has no open question.
        row(
            Method::POST,
            "/api/v1/tickets/{id}/answer",
            "/api/v1/tickets/MC-1/answer",
            Some(|| json!({"text": "yes"})),
            404,
        ),
        row(
            Method::GET,
            "/api/v1/tickets/{id}/explain",
            "/api/v1/tickets/MC-1/explain",
            None,
            200,
        ),
        // MC-1 is in todo: the gate refuses, a review is refused.
        row(
            Method::POST,
            "/api/v1/tickets/{id}/done",
            "/api/v1/tickets/MC-1/done",
            None,
            409,
        ),
        row(
            Method::POST,
            "/api/v1/tickets/{id}/review",
            "/api/v1/tickets/MC-1/review",
            Some(|| json!({"decision": "approve", "reason": "fine"})),
            409,
        ),
        // MC-1 never ran.
        row(
            Method::GET,
            "/api/v1/tickets/{id}/runs/{attempt}/log",
            "/api/v1/tickets/MC-1/runs/1/log",
            None,
            404,
        ),
        row(
            Method::GET,
            "/api/v1/tickets/{id}/runs/{attempt}/log/stream",
            "/api/v1/tickets/MC-1/runs/1/log/stream",
            None,
            404,
        ),
        row(Method::GET, "/api/v1/inbox", "/api/v1/inbox", None, 200),
        row(
            Method::GET,
            "/api/v1/inbox/{id}",
            "/api/v1/inbox/999",
            None,
            404,
        ),
        row(
            Method::POST,
            "/api/v1/inbox/{id}/act",
            "/api/v1/inbox/999/act",
            Some(|| json!({"action": "dismissed"})),
            404,
        ),
        row(
            Method::GET,
            "/api/v1/incidents",
            "/api/v1/incidents",
            None,
            200,
        ),
        row(
            Method::GET,
            "/api/v1/incidents/{id}",
            "/api/v1/incidents/999",
            None,
            404,
        ),
        row(
            Method::POST,
            "/api/v1/incidents/{id}/resolve",
            "/api/v1/incidents/999/resolve",
            Some(|| json!({"reason": "handled"})),
            404,
        ),
        row(Method::GET, "/api/v1/events", "/api/v1/events", None, 200),
        row(
            Method::GET,
            "/api/v1/events/stream",
            "/api/v1/events/stream",
            None,
            200,
        ),
        row(Method::GET, "/api/v1/tasks", "/api/v1/tasks", None, 200),
        row(
            Method::GET,
            "/api/v1/tasks/{name}/history",
            "/api/v1/tasks/nightly/history",
            None,
            200,
        ),
        row(
            Method::POST,
            "/api/v1/tasks/{name}/run",
            "/api/v1/tasks/nightly/run",
            None,
            404,
        ),
        row(Method::GET, "/api/v1/status", "/api/v1/status", None, 200),
        row(Method::GET, "/api/v1/tokens", "/api/v1/tokens", None, 200),
        row(
            Method::POST,
            "/api/v1/tokens",
            "/api/v1/tokens",
            Some(|| json!({"scope": "read"})),
            201,
        ),
        row(
            Method::DELETE,
            "/api/v1/tokens/{id}",
            "/api/v1/tokens/999",
            None,
            404,
        ),
        row(
            Method::GET,
            "/api/v1/openapi.json",
            "/api/v1/openapi.json",
            None,
            200,
        ),
        row(Method::GET, "/healthz", "/healthz", None, 200),
        row(Method::GET, "/metrics", "/metrics", None, 200),
    ]
}

#[tokio::test]
async fn every_route_has_a_row_in_the_auth_matrix() {
    let t = TestWeb::new(true).await;
    let rows = rows();
    for route in &t.server.routes {
        assert!(
            rows.iter()
                .any(|r| r.method == route.method && r.route == route.path),
            "{} {} has no row in the auth matrix",
            route.method,
            route.path
        );
    }
    for row in &rows {
        assert!(
            t.server
                .routes
                .iter()
                .any(|r| r.method == row.method && r.path == row.route),
            "the matrix row {} {} names no route",
            row.method,
            row.route
        );
    }
}

#[tokio::test]
async fn auth_matrix() {
    let t = TestWeb::new(true).await;
    t.web
        .app
        .add_ticket(
            mission_core::TicketDraft {
                title: "first".to_owned(),
                ..Default::default()
            },
            &mission_core::Actor::new("test"),
        )
        .await
        .unwrap();
    let read = t.token("read", None).await;
    let write = t.token("write", None).await;
    let admin = t.token("admin", None).await;
    let expired = t.token("admin", Some("1ms")).await;
    let revoked = t.token("admin", None).await;
    let revoked_id = t.web.tokens.list().await.unwrap().last().unwrap().id;
    t.web.tokens.revoke(revoked_id).await.unwrap();
    // A run token is for a run's callbacks only; here it names nothing.
    let run_token = format!("mcr_{}", "ab".repeat(32));
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    let principals: [(&str, Option<&str>, Option<Scope>); 7] = [
        ("no token", None, None),
        ("read", Some(&read), Some(Scope::Read)),
        ("write", Some(&write), Some(Scope::Write)),
        ("admin", Some(&admin), Some(Scope::Admin)),
        ("expired", Some(&expired), None),
        ("revoked", Some(&revoked), None),
        ("run token", Some(&run_token), None),
    ];
    let mut failures = Vec::new();
    for row in rows() {
        let needed = required_scope(&row.method, row.path);
        for (who, token, scope) in &principals {
            let expected = match (needed, scope) {
                (None, _) => row.ok,
                (Some(_), None) => 401,
                (Some(needed), Some(scope)) if scope.allows(needed) => row.ok,
                (Some(_), Some(_)) => 403,
            };
            let reply = t
                .call(row.method.clone(), row.path, *token, row.body.map(|b| b()))
                .await;
            if reply.status.as_u16() != expected {
                failures.push(format!(
                    "{} {} as {who}: {} (expected {expected}) {}",
                    row.method, row.path, reply.status, reply.text
                ));
            }
            if matches!(expected, 401 | 403) {
                assert_error(
                    &reply,
                    expected,
                    if expected == 401 {
                        "unauthorized"
                    } else {
                        "forbidden"
                    },
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn without_auth_every_route_is_open_on_loopback() {
    let t = TestWeb::new(false).await;
    t.post("/api/v1/tickets", json!({"title": "first"})).await;
    for row in rows() {
        let reply = t
            .call(row.method.clone(), row.path, None, row.body.map(|b| b()))
            .await;
        assert_eq!(
            reply.status.as_u16(),
            row.ok,
            "{} {}: {}",
            row.method,
            row.path,
            reply.text
        );
    }
}

#[tokio::test]
async fn a_foreign_host_is_refused_whatever_the_token() {
    let t = TestWeb::new(true).await;
    let admin = t.token("admin", None).await;
    for host in [
        "evil.example.com",
        "evil.example.com:3001",
        "localhost.evil.example.com",
    ] {
        let mut request = TestWeb::request(Method::GET, "/api/v1/tickets", Some(&admin), None);
        request.headers_mut().insert("host", host.parse().unwrap());
        assert_error(&t.send(request).await, 403, "host_not_allowed");
    }
    // Liveness too: a rebinding page learns nothing.
    let mut request = TestWeb::request(Method::GET, "/healthz", None, None);
    request
        .headers_mut()
        .insert("host", "evil.example.com".parse().unwrap());
    assert_error(&t.send(request).await, 403, "host_not_allowed");
    for host in [
        "localhost:3001",
        "127.0.0.1",
        "[::1]:3001",
        "mission.example.org",
    ] {
        let mut request = TestWeb::request(Method::GET, "/api/v1/tickets", Some(&admin), None);
        request.headers_mut().insert("host", host.parse().unwrap());
        assert_eq!(t.send(request).await.status, StatusCode::OK, "{host}");
    }
}

#[tokio::test]
async fn a_cross_site_write_is_refused() {
    let t = TestWeb::new(false).await;
    let body = Some(json!({"title": "csrf"}));
    for (name, value) in [
        ("origin", "http://evil.example.com"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let mut request = TestWeb::request(Method::POST, "/api/v1/tickets", None, body.clone());
        request.headers_mut().insert(name, value.parse().unwrap());
        assert_error(&t.send(request).await, 403, "cross_origin");
    }
    // The page's own origin may write; reads are never refused for their origin.
    let mut request = TestWeb::request(Method::POST, "/api/v1/tickets", None, body.clone());
    request
        .headers_mut()
        .insert("origin", "http://127.0.0.1:3001".parse().unwrap());
    request
        .headers_mut()
        .insert("sec-fetch-site", "same-origin".parse().unwrap());
    assert_eq!(t.send(request).await.status, StatusCode::CREATED);
    let mut request = TestWeb::request(Method::GET, "/api/v1/tickets", None, None);
    request
        .headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(t.send(request).await.status, StatusCode::OK);
    let tickets = t.get("/api/v1/tickets").await.body["tickets"].clone();
    assert_eq!(
        tickets.as_array().unwrap().len(),
        1,
        "only the same-origin create: {tickets}"
    );
}

#[tokio::test]
async fn errors_have_one_shape_and_the_use_cases_status() {
    let t = TestWeb::new(false).await;
    let created = t
        .post(
            "/api/v1/tickets",
            json!({"title": "one", "assignee": "luci"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["id"], "MC-1");
    assert_eq!(created.body["state"], "todo");
    assert_eq!(created.headers["location"], "/api/v1/tickets/MC-1");

    assert_error(&t.get("/api/v1/tickets/MC-99").await, 404, "not_found");
    assert_error(&t.get("/api/v1/tickets/99/explain").await, 404, "not_found");
    let reply = t.get("/api/v1/tickets/not-an-id").await;
    assert_error(&reply, 422, "invalid");
    assert_eq!(reply.body["error"]["field"], "id");
    assert_error(
        &t.post("/api/v1/tickets/MC-1/move", json!({"state": "done"}))
            .await,
        409,
        "conflict",
    );
    let reply = t.post("/api/v1/tickets", json!({"title": ""})).await;
    assert_error(&reply, 422, "invalid");
    assert_eq!(reply.body["error"]["field"], "title");
    let reply = t
        .post("/api/v1/tickets", json!({"title": "x", "priority": 5000}))
        .await;
    assert_eq!(reply.body["error"]["field"], "priority", "{}", reply.text);
    assert_error(
        &t.post("/api/v1/tickets", json!({"title": "x", "colour": "red"}))
            .await,
        422,
        "invalid",
    );
    let reply = t
        .call(
            Method::PATCH,
            "/api/v1/tickets/MC-1",
            None,
            Some(json!({"depends_on": ["MC-1"]})),
        )
        .await;
    assert_error(&reply, 422, "invalid");
    assert_error(
        &t.call(Method::PATCH, "/api/v1/tickets/MC-1", None, Some(json!({})))
            .await,
        422,
        "invalid",
    );
    assert_error(&t.get("/api/v1/tickets?limit=0").await, 422, "invalid");
    assert_error(
        &t.get("/api/v1/tickets?state=sleeping").await,
        422,
        "invalid",
    );
    assert_error(&t.get("/api/v1/events?since=-1").await, 422, "invalid");
    assert_error(&t.get("/api/v1/nothing-here").await, 404, "not_found");
    assert_error(
        &t.call(Method::DELETE, "/api/v1/tickets", None, None).await,
        405,
        "method_not_allowed",
    );
    // A body that is not declared JSON.
    let mut request = TestWeb::request(Method::POST, "/api/v1/tickets", None, None);
    *request.body_mut() = axum::body::Body::from("title=x");
    request.headers_mut().insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    assert_error(&t.send(request).await, 415, "unsupported_media_type");
    let reply = t.post("/api/v1/tickets", json!("just a string")).await;
    assert_error(&reply, 422, "invalid");
    // A body over the limit, on the create (which reads its body itself, for the idempotency
    // key's hash) and on an action: the same shape.
    for path in ["/api/v1/tickets", "/api/v1/incidents/1/resolve"] {
        let huge = json!({ "title": "x".repeat(6 * 1024 * 1024), "reason": "x" });
        assert_error(&t.post(path, huge).await, 413, "payload_too_large");
    }
}

#[tokio::test]
async fn a_retried_create_returns_the_first_result() {
    let t = TestWeb::new(false).await;
    let create = |key: &'static str, title: &'static str| {
        let mut request = TestWeb::request(
            Method::POST,
            "/api/v1/tickets",
            None,
            Some(json!({"title": title, "assignee": "luci"})),
        );
        request
            .headers_mut()
            .insert("idempotency-key", key.parse().unwrap());
        t.send(request)
    };
    let first = create("k-1", "once").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let again = create("k-1", "once").await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, first.body, "the stored first result");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.headers["location"], first.headers["location"]);
    // The same key for another request is refused; another key creates.
    let other = create("k-1", "twice").await;
    assert_error(&other, 422, "invalid");
    assert_eq!(other.body["error"]["field"], "Idempotency-Key");
    assert_eq!(create("k-2", "twice").await.status, StatusCode::CREATED);
    // A refused create is remembered as refused.
    let mut request = TestWeb::request(
        Method::POST,
        "/api/v1/tickets",
        None,
        Some(json!({"title": ""})),
    );
    request
        .headers_mut()
        .insert("idempotency-key", "k-3".parse().unwrap());
    let refused = t.send(request).await;
    assert_error(&refused, 422, "invalid");

    // Concurrent retries of one key make one ticket.
    let (a, b) = tokio::join!(create("k-4", "raced"), create("k-4", "raced"));
    for reply in [&a, &b] {
        assert!(
            matches!(reply.status.as_u16(), 201 | 409),
            "{} {}",
            reply.status,
            reply.text
        );
    }
    let tickets = t.get("/api/v1/tickets?limit=500").await.body["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    assert_eq!(tickets, ["once", "twice", "raced"]);
}

#[tokio::test]
async fn the_board_pages_and_filters() {
    let t = TestWeb::new(false).await;
    for i in 0..7 {
        let assignee = if i % 2 == 0 {
            json!("luci")
        } else {
            Value::Null
        };
        t.post(
            "/api/v1/tickets",
            json!({"title": format!("t{i}"), "assignee": assignee}),
        )
        .await;
    }
    let page = t.get("/api/v1/tickets?limit=3").await.body;
    assert_eq!(page["tickets"].as_array().unwrap().len(), 3);
    assert_eq!(page["next_offset"], 3);
    let last = t.get("/api/v1/tickets?limit=3&offset=6").await.body;
    assert_eq!(last["tickets"].as_array().unwrap().len(), 1);
    assert_eq!(last["next_offset"], Value::Null);
    let todo = t.get("/api/v1/tickets?state=todo&assignee=luci").await.body;
    assert_eq!(todo["tickets"].as_array().unwrap().len(), 4);
    let triage = t.get("/api/v1/tickets?state=triage").await.body;
    assert_eq!(triage["tickets"].as_array().unwrap().len(), 3);

    let shown = t.get("/api/v1/tickets/2").await.body;
    assert_eq!(shown["ticket"]["id"], "MC-2");
    assert_eq!(shown["timeline"][0]["kind"], "ticket.created");
    assert_eq!(shown["timeline"][0]["actor"], "api");
    let explained = t.get("/api/v1/tickets/MC-2/explain").await.body;
    assert_eq!(explained["runnable"], false);
    assert_eq!(explained["reasons"][0]["code"], "state_not_todo");

    let events = t.get("/api/v1/events?since=2&limit=3").await.body;
    let seqs: Vec<i64> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(events["next_since"], 5);
}

#[tokio::test]
async fn status_is_the_verdict_of_mission_status() {
    let t = TestWeb::new(false).await;
    let status = t.get("/api/v1/status").await.body;
    // No server beats its heartbeat in this test: the verdict is broken, with its reason.
    assert_eq!(
        status["verdict"], "broken",
        "never a fake working: {status}"
    );
    assert_eq!(status["server_alive"], false, "{status}");
    let codes: Vec<&str> = status["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"server_down"), "{status}");
}

#[tokio::test]
async fn metrics_count_the_board() {
    let t = TestWeb::new(false).await;
    t.post("/api/v1/tickets", json!({"title": "a", "assignee": "luci"}))
        .await;
    t.post("/api/v1/tickets", json!({"title": "b"})).await;
    let reply = t.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    for line in [
        "mission_tickets{state=\"todo\"} 1",
        "mission_tickets{state=\"triage\"} 1",
        "mission_tickets{state=\"done\"} 0",
        "mission_http_requests_total{method=\"POST\",route=\"/api/v1/tickets\",status=\"201\"} 2",
    ] {
        assert!(reply.text.contains(line), "{line} in\n{}", reply.text);
    }
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document() {
    let t = TestWeb::new(false).await;
    let reply = t.get("/api/v1/openapi.json").await;
    assert_eq!(reply.status, StatusCode::OK);
    let document = reply.body;
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        document["openapi"]
    );
    for route in &t.server.routes {
        let operation = &document["paths"][&route.path][route.method.as_str().to_lowercase()];
        assert!(
            route.documented && operation.is_object(),
            "{} {} is not in the OpenAPI document",
            route.method,
            route.path
        );
        assert!(
            operation["responses"]
                .as_object()
                .is_some_and(|r| !r.is_empty()),
            "{} {} documents no response",
            route.method,
            route.path
        );
        // What the guards may answer on any route is documented on each (liveness needs no
        // token), and 422 wherever a parameter is parsed.
        let open = route.path == "/healthz";
        let mut expected = vec!["403", "503"];
        if !open {
            expected.push("401");
        }
        if operation["parameters"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
        {
            expected.push("422");
        }
        for status in expected {
            assert!(
                operation["responses"][status]["content"]["application/json"].is_object(),
                "{} {} does not document {status}",
                route.method,
                route.path
            );
        }
        assert_eq!(
            operation["responses"]["401"].is_null(),
            open,
            "{} {}",
            route.method,
            route.path
        );
    }
    // And nothing is documented that the router does not have.
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            assert!(
                t.server
                    .routes
                    .iter()
                    .any(|r| &r.path == path && r.method.as_str().eq_ignore_ascii_case(method)),
                "{method} {path} is documented but not routed"
            );
        }
    }
    assert!(document["components"]["schemas"]["ErrorBody"].is_object());
}

#[tokio::test]
async fn tokens_are_shown_once_and_never_listed() {
    let t = TestWeb::new(true).await;
    let admin = t.token("admin", None).await;
    let created = t
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&admin),
            Some(json!({"scope": "write", "expires": "30d", "label": "ci"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let secret = created.body["token"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("mc_") && secret.len() == 3 + 64,
        "{secret}"
    );
    assert_eq!(created.body["scope"], "write");
    assert!(created.body["expires_at"].is_string());

    // The new token works, for what its scope allows, and its use is recorded.
    let reply = t
        .call(
            Method::POST,
            "/api/v1/tickets",
            Some(&secret),
            Some(json!({"title": "by ci"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let id = created.body["id"].as_i64().unwrap();
    let shown = t.get_with("/api/v1/events", &secret).await;
    assert_eq!(shown.body["events"][0]["actor"], format!("api:token-{id}"));
    let listed = t
        .call(Method::GET, "/api/v1/tokens", Some(&admin), None)
        .await;
    assert!(!listed.text.contains(&secret) && !listed.text.contains(&admin));
    assert!(!listed.text.contains("hash"), "{}", listed.text);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let listed = t
        .call(Method::GET, "/api/v1/tokens", Some(&admin), None)
        .await;
    let record = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap()
        .clone();
    assert!(record["last_used_at"].is_string(), "{record}");

    let revoked = t
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert!(revoked.body["revoked_at"].is_string());
    assert_eq!(revoked.body["state"], "revoked");
    assert_error(
        &t.get_with("/api/v1/tickets", &secret).await,
        401,
        "unauthorized",
    );
    let bad = t
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&admin),
            Some(json!({"scope": "root"})),
        )
        .await;
    assert_error(&bad, 422, "invalid");
    assert_eq!(bad.body["error"]["field"], "scope");
}

trait GetWith {
    async fn get_with(&self, path: &str, token: &str) -> common::Reply;
}

impl GetWith for TestWeb {
    async fn get_with(&self, path: &str, token: &str) -> common::Reply {
        self.call(Method::GET, path, Some(token), None).await
    }
}

#[tokio::test]
async fn requests_beyond_the_bound_are_refused_at_once() {
    let t = TestWeb::with_config(mission_web::WebConfig {
        max_requests: 0,
        ..mission_web::WebConfig::default()
    })
    .await;
    let reply = t.get("/api/v1/tickets").await;
    assert_error(&reply, 503, "overloaded");
    assert_eq!(reply.headers["retry-after"], "1");
    // Streams have their own bound.
    assert_eq!(t.get("/api/v1/events/stream").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_slow_request_times_out_but_its_task_run_goes_on() {
    let t = TestWeb::with_config(mission_web::WebConfig {
        request_timeout: std::time::Duration::from_millis(300),
        ..mission_web::WebConfig::default()
    })
    .await;
    std::fs::write(
        t.dir.path().join("tasks/slow.md"),
        "+++\nkind = \"command\"\nevery = \"1h\"\n+++\nsleep 1\n",
    )
    .unwrap();
    let reply = t
        .call(Method::POST, "/api/v1/tasks/slow/run", None, None)
        .await;
    assert_error(&reply, 503, "timeout");
    // The run was not cut off with the request: it ends with its own outcome.
    let start = std::time::Instant::now();
    loop {
        let history = t.get("/api/v1/tasks/slow/history").await.body;
        if history[0]["outcome"] == "acted" {
            break;
        }
        assert!(start.elapsed().as_secs() < 20, "{history}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
