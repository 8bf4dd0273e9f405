//! The dashboard at its boundary, over a real store: every page renders with the verdict
//! banner, forms act through the use cases and only with their CSRF token, sessions are
//! opened with a token and end with it, the board stays a page per column at any size, and no
//! page or API answer ever shows a worker's secret or a token.

mod common;

use axum::http::{Method, StatusCode};
use common::{CANARY, TestWeb, browser, csrf_of};
use serde_json::json;

/// Every dashboard route: (method, route, a path to request).
fn pages() -> Vec<(Method, &'static str, &'static str)> {
    vec![
        (Method::GET, "/", "/"),
        (Method::POST, "/", "/"),
        (Method::GET, "/tickets/{id}", "/tickets/MC-1"),
        (Method::POST, "/tickets/{id}/move", "/tickets/MC-1/move"),
        (Method::POST, "/tickets/{id}/answer", "/tickets/MC-1/answer"),
        (Method::POST, "/tickets/{id}/done", "/tickets/MC-1/done"),
        (Method::POST, "/tickets/{id}/review", "/tickets/MC-1/review"),
        (Method::GET, "/inbox", "/inbox"),
        (Method::POST, "/inbox/{id}/act", "/inbox/1/act"),
        (Method::GET, "/tasks", "/tasks"),
        (Method::GET, "/tasks/{name}", "/tasks/nightly"),
        (Method::POST, "/tasks/{name}/run", "/tasks/nightly/run"),
        (Method::GET, "/incidents", "/incidents"),
        (Method::GET, "/incidents/{id}", "/incidents/1"),
        (
            Method::POST,
            "/incidents/{id}/resolve",
            "/incidents/1/resolve",
        ),
        (Method::GET, "/login", "/login"),
        (Method::POST, "/login", "/login"),
        (Method::POST, "/logout", "/logout"),
        (Method::GET, "/static/live.js", "/static/live.js"),
        (Method::GET, "/static/style.css", "/static/style.css"),
    ]
}

#[tokio::test]
async fn every_page_route_has_a_row() {
    let t = TestWeb::new(true).await;
    let rows = pages();
    for route in &t.server.pages {
        assert!(
            rows.iter()
                .any(|(m, r, _)| *m == route.method && *r == route.path),
            "{} {} has no row",
            route.method,
            route.path
        );
    }
    assert_eq!(rows.len(), t.server.pages.len());
}

#[tokio::test]
async fn without_a_session_pages_send_to_the_login_form() {
    let t = TestWeb::new(true).await;
    for (method, route, path) in pages() {
        let form: &[(&str, &str)] = &[];
        let body = (method == Method::POST).then_some(form);
        let reply = t.send(browser(method.clone(), path, None, body)).await;
        // The login form, its post (refused here: no CSRF token), a logout (nothing to end)
        // and the static files need no session.
        let open = match (&method, route) {
            (&Method::GET, "/login" | "/static/live.js" | "/static/style.css") => Some(200),
            (&Method::POST, "/login") => Some(403),
            (&Method::POST, "/logout") => Some(303),
            _ => None,
        };
        if let Some(status) = open {
            assert_eq!(
                reply.status.as_u16(),
                status,
                "{method} {path}: {}",
                reply.text
            );
            continue;
        }
        assert_eq!(
            reply.status,
            StatusCode::SEE_OTHER,
            "{method} {path}: {}",
            reply.text
        );
        let location = reply.headers["location"].to_str().unwrap();
        assert!(
            location.starts_with("/login"),
            "{method} {path} → {location}"
        );
    }
    let reply = t
        .send(browser(Method::GET, "/inbox?status=all", None, None))
        .await;
    assert_eq!(
        reply.headers["location"],
        "/login?next=%2Finbox%3Fstatus%3Dall"
    );
    // A made-up cookie is no session.
    let reply = t
        .send(browser(Method::GET, "/", Some("mc_session=0123"), None))
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
}

/// Signs in with `token` through the form; returns the session cookie (`name=value`).
async fn sign_in(t: &TestWeb, token: &str) -> String {
    let form = t.send(browser(Method::GET, "/login", None, None)).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    let csrf = csrf_of(&form.text);
    let reply = t
        .send(browser(
            Method::POST,
            "/login",
            None,
            Some(&[("csrf", &csrf), ("token", token), ("next", "/inbox")]),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    assert_eq!(reply.headers["location"], "/inbox");
    let cookie = reply.headers["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains(token), "the cookie is not the token");
    cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_token_opens_a_session_that_ends_with_it() {
    let t = TestWeb::new(true).await;
    let write = t.token("write", None).await;
    let read = t.token("read", None).await;

    // A wrong token: refused, more slowly each time.
    let form = t.send(browser(Method::GET, "/login", None, None)).await;
    let csrf = csrf_of(&form.text);
    let started = std::time::Instant::now();
    let refused = t
        .send(browser(
            Method::POST,
            "/login",
            None,
            Some(&[("csrf", &csrf), ("token", "mc_wrong")]),
        ))
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.headers.get("set-cookie").is_none());
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
    // The login form's own CSRF token is needed too.
    let forged = t
        .send(browser(
            Method::POST,
            "/login",
            None,
            Some(&[("csrf", "forged"), ("token", &write)]),
        ))
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let cookie = sign_in(&t, &write).await;
    let again = sign_in(&t, &write).await;
    assert_ne!(cookie, again, "every login is a new session");
    let board = t.send(browser(Method::GET, "/", Some(&cookie), None)).await;
    assert_eq!(board.status, StatusCode::OK, "{}", board.text);
    let first_token_id = t.web.tokens.list().await.unwrap()[0].id;
    assert!(
        board
            .text
            .contains(&format!("token {first_token_id}, write"))
    );
    // The session reads the API (the page's live updates) but does not write through it.
    let events = t
        .send(browser(Method::GET, "/api/v1/events", Some(&cookie), None))
        .await;
    assert_eq!(events.status, StatusCode::OK);
    let mut post = TestWeb::request(
        Method::POST,
        "/api/v1/tickets",
        None,
        Some(json!({"title": "through the cookie"})),
    );
    post.headers_mut().insert("cookie", cookie.parse().unwrap());
    assert_eq!(t.send(post).await.status, StatusCode::UNAUTHORIZED);

    // A read token's session sees pages and cannot post forms.
    let reader = sign_in(&t, &read).await;
    let page = t.send(browser(Method::GET, "/", Some(&reader), None)).await;
    let csrf = csrf_of(&page.text);
    let create = t
        .send(browser(
            Method::POST,
            "/",
            Some(&reader),
            Some(&[("csrf", &csrf), ("title", "by a reader")]),
        ))
        .await;
    assert_eq!(create.status, StatusCode::FORBIDDEN, "{}", create.text);

    // Sign out: the session is gone.
    let page = t.send(browser(Method::GET, "/", Some(&again), None)).await;
    let csrf = csrf_of(&page.text);
    let out = t
        .send(browser(
            Method::POST,
            "/logout",
            Some(&again),
            Some(&[("csrf", &csrf)]),
        ))
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(
        out.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = t.send(browser(Method::GET, "/", Some(&again), None)).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);

    // Revoking the token ends its sessions at once.
    t.web.tokens.revoke(first_token_id).await.unwrap();
    let revoked = t.send(browser(Method::GET, "/", Some(&cookie), None)).await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    assert!(
        revoked.headers["location"]
            .to_str()
            .unwrap()
            .starts_with("/login")
    );
}

#[tokio::test]
async fn every_page_shows_the_verdict_and_is_locked_down() {
    let t = TestWeb::new(false).await;
    let id = t.ticket("a ticket", Some("luci"), "none").await;
    let run = t.start_run(&id, "hello from the run\n").await;
    t.ask(&run, "Which branch?").await;
    std::fs::write(
        t.dir.path().join("tasks/nightly.md"),
        "+++\nkind = \"command\"\nevery = \"1h\"\n+++\ntrue\n",
    )
    .unwrap();
    for path in [
        "/",
        "/?state=needs_input",
        "/?assignee=luci",
        "/tickets/MC-1",
        "/inbox",
        "/inbox?status=all",
        "/tasks",
        "/tasks/nightly",
        "/incidents",
        "/incidents?all=true",
    ] {
        let reply = t.send(browser(Method::GET, path, None, None)).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
        // No server beats here: the banner says broken, with its reason.
        assert!(reply.text.contains("verdict-broken"), "{path}");
        assert!(reply.text.contains("server_down"), "{path}");
        let csp = reply.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(reply.headers["cache-control"], "no-store");
        assert!(
            !reply.text.contains("<script>"),
            "no inline script on {path}"
        );
    }
    let ticket = t
        .send(browser(Method::GET, "/tickets/MC-1", None, None))
        .await;
    assert!(ticket.text.contains("hello from the run"), "the log's tail");
    assert!(
        ticket
            .text
            .contains("data-log-stream=\"/api/v1/tickets/MC-1/runs/1/log/stream\"")
    );
    assert!(ticket.text.contains("Which branch?"), "its open question");
    assert!(ticket.text.contains("ticket.moved"), "its timeline");
    let missing = t
        .send(browser(Method::GET, "/tickets/MC-9", None, None))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.text.contains("MC-9"), "{}", missing.text);
    let nowhere = t.send(browser(Method::GET, "/nowhere", None, None)).await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    assert!(
        nowhere.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let script = t
        .send(browser(Method::GET, "/static/live.js", None, None))
        .await;
    assert!(
        script.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(script.text.contains("EventSource"));
}

#[tokio::test]
async fn forms_act_through_the_use_cases_and_only_with_their_csrf_token() {
    let t = TestWeb::new(false).await;
    let id = t.ticket("asks", Some("luci"), "none").await;
    let run = t.start_run(&id, "").await;
    t.ask(&run, "Which branch?").await;
    let inbox = t.send(browser(Method::GET, "/inbox", None, None)).await;
    assert!(inbox.text.contains("Which branch?"));
    assert!(inbox.text.contains("value=\"answered\""), "the answer form");
    let csrf = csrf_of(&inbox.text);

    // Without the token, with a wrong one, or from another site: refused, nothing changes.
    let answer = |csrf: &str| {
        vec![
            ("csrf", csrf.to_owned()),
            ("action", "answered".to_owned()),
            ("text", "main".to_owned()),
            ("back", "/inbox".to_owned()),
        ]
    };
    let fields = |v: &Vec<(&'static str, String)>| {
        v.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>()
    };
    for bad in ["", "forged"] {
        let f = fields(&answer(bad));
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = t
            .send(browser(Method::POST, "/inbox/1/act", None, Some(&f)))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{bad:?}: {}",
            reply.text
        );
    }
    let f = fields(&answer(&csrf));
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut cross_site = browser(Method::POST, "/inbox/1/act", None, Some(&f));
    cross_site
        .headers_mut()
        .insert("origin", "http://evil.example.com".parse().unwrap());
    cross_site
        .headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(t.send(cross_site).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        t.get("/api/v1/tickets/MC-1").await.body["ticket"]["state"],
        "needs_input"
    );

    // With it: answered, the ticket requeued; the next page shows the notice once.
    let reply = t
        .send(browser(Method::POST, "/inbox/1/act", None, Some(&f)))
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    assert_eq!(reply.headers["location"], "/inbox");
    let notice = reply.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let ticket = t.get("/api/v1/tickets/MC-1").await.body["ticket"].clone();
    assert_eq!(ticket["state"], "todo");
    assert_eq!(ticket["resume"], true);
    let item = t.get("/api/v1/inbox/1").await.body;
    assert_eq!(item["action"]["actor"], "dashboard");
    let shown = t
        .send(browser(Method::GET, "/inbox", Some(&notice), None))
        .await;
    assert!(
        shown.text.contains("inbox item 1 answered (MC-1)"),
        "{}",
        shown.text
    );
    assert!(
        shown.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    // Acting again on a settled item: the use case's refusal, as a page.
    let again = t
        .send(browser(Method::POST, "/inbox/1/act", None, Some(&f)))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    // A new ticket, a move, a review, the gate, a task run, an incident resolved.
    let created = t
        .send(browser(
            Method::POST,
            "/",
            None,
            Some(&[
                ("csrf", &csrf),
                ("title", "from the form"),
                ("assignee", "luci"),
                ("labels", "ops, docs"),
                ("priority", "5"),
            ]),
        ))
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text);
    assert_eq!(created.headers["location"], "/tickets/MC-2");
    let made = t.get("/api/v1/tickets/MC-2").await.body["ticket"].clone();
    assert_eq!(
        (made["priority"].as_i64(), made["labels"].clone()),
        (Some(5), json!(["docs", "ops"]))
    );
    let moved = t
        .send(browser(
            Method::POST,
            "/tickets/MC-2/move",
            None,
            Some(&[("csrf", &csrf), ("state", "blocked"), ("reason", "waits")]),
        ))
        .await;
    assert_eq!(moved.status, StatusCode::SEE_OTHER, "{}", moved.text);
    assert_eq!(
        t.get("/api/v1/tickets/MC-2").await.body["ticket"]["state"],
        "blocked"
    );
    let illegal = t
        .send(browser(
            Method::POST,
            "/tickets/MC-2/move",
            None,
            Some(&[("csrf", &csrf), ("state", "done")]),
        ))
        .await;
    assert_eq!(illegal.status, StatusCode::CONFLICT);

    let reviewed_id = t.ticket("to review", Some("luci"), "none").await;
    let run = t.start_run(&reviewed_id, "").await;
    t.submit(&run).await;
    let page = t
        .send(browser(Method::GET, "/tickets/MC-3", None, None))
        .await;
    assert!(
        page.text.contains("value=\"approve\""),
        "review forms on a ticket in review"
    );
    let approved = t
        .send(browser(
            Method::POST,
            "/tickets/MC-3/review",
            None,
            Some(&[("csrf", &csrf), ("decision", "approve"), ("reason", "good")]),
        ))
        .await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.text);
    assert_eq!(
        t.get("/api/v1/tickets/MC-3").await.body["ticket"]["state"],
        "done"
    );
    let gate = t
        .send(browser(
            Method::POST,
            "/tickets/MC-1/done",
            None,
            Some(&[("csrf", &csrf)]),
        ))
        .await;
    assert_eq!(gate.status, StatusCode::CONFLICT, "MC-1 is not in review");

    std::fs::write(
        t.dir.path().join("tasks/nightly.md"),
        "+++\nkind = \"command\"\nevery = \"1h\"\n+++\ntrue\n",
    )
    .unwrap();
    let ran = t
        .send(browser(
            Method::POST,
            "/tasks/nightly/run",
            None,
            Some(&[("csrf", &csrf)]),
        ))
        .await;
    assert_eq!(ran.status, StatusCode::SEE_OTHER, "{}", ran.text);
    let history = t.get("/api/v1/tasks/nightly/history").await.body;
    assert_eq!(history[0]["outcome"], "acted", "{history}");
    let tasks = t.send(browser(Method::GET, "/tasks", None, None)).await;
    assert!(
        tasks.text.contains("class=\"outcome-acted\""),
        "a bar per outcome"
    );
}

#[tokio::test]
async fn the_board_reads_a_page_per_column_at_any_size() {
    let t = TestWeb::new(false).await;
    let drafts: Vec<mission_core::NewTicket> = (0..600)
        .map(|i| {
            mission_core::TicketDraft {
                title: format!("ticket number {i}"),
                assignee: (i % 2 == 0).then(|| "luci".to_owned()),
                ..Default::default()
            }
            .validate()
            .unwrap()
        })
        .collect();
    t.web
        .app
        .store()
        .create_tickets(
            &t.web.app.settings().ticket_key,
            drafts,
            &mission_store::Change::new(
                mission_core::Actor::new("test"),
                mission_core::Timestamp::now(),
            ),
        )
        .await
        .unwrap();
    let board = t.send(browser(Method::GET, "/", None, None)).await;
    assert_eq!(board.status, StatusCode::OK);
    let cards = board.text.matches("class=\"card\"").count();
    assert!(cards <= 7 * 15, "{cards} cards");
    assert!(board.text.contains("todo 300"), "the counts of every state");
    assert!(board.text.contains("all 300 →"), "a link to the rest");
    // Every waiting ticket shown says why it is not running.
    let todo_cards = board.text.matches("state state-todo").count();
    let reasons = board
        .text
        .matches("runnable: waits for the dispatcher")
        .count()
        + board.text.matches("title=\"why not running\"").count();
    assert!(
        todo_cards > 0 && reasons >= todo_cards,
        "{todo_cards} todo, {reasons} reasons"
    );
    let list = t
        .send(browser(Method::GET, "/?state=todo&offset=250", None, None))
        .await;
    assert_eq!(list.text.matches("class=\"card\"").count(), 50);
    assert!(list.text.contains("251–300"));
    assert!(list.text.contains("offset=200"), "a previous page");
    assert!(!list.text.contains("offset=300"), "no page after the last");
}

#[tokio::test]
async fn no_page_or_answer_shows_a_secret() {
    let t = TestWeb::new(true).await;
    let admin = t.token("admin", None).await;
    let id = t.ticket("leaky", Some("luci"), "none").await;
    // The agent printed its key: the log shows it redacted.
    let run = t.start_run(&id, &format!("env: API_KEY={CANARY}\n")).await;
    t.ask(&run, "May I?").await;
    let cookie = sign_in(&t, &admin).await;
    let mut seen = String::new();
    for path in [
        "/",
        "/tickets/MC-1",
        "/inbox",
        "/inbox?status=all",
        "/tasks",
        "/incidents",
        "/api/v1/tickets",
        "/api/v1/tickets/MC-1",
        "/api/v1/tickets/MC-1/runs/1/log",
        "/api/v1/tickets/MC-1/runs/1/log?from=0",
        "/api/v1/tickets/MC-1/explain",
        "/api/v1/events?limit=1000",
        "/api/v1/inbox?status=all",
        "/api/v1/inbox/1",
        "/api/v1/tasks",
        "/api/v1/incidents?all=true",
        "/api/v1/status",
        "/api/v1/tokens",
        "/api/v1/openapi.json",
        "/metrics",
    ] {
        let reply = t
            .send(browser(Method::GET, path, Some(&cookie), None))
            .await;
        let reply = if path.starts_with("/api/v1/tokens") {
            t.call(Method::GET, path, Some(&admin), None).await
        } else {
            reply
        };
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
        seen.push_str(&reply.text);
        for (name, value) in &reply.headers {
            seen.push_str(&format!("{name}: {value:?}\n"));
        }
    }
    assert!(seen.contains("[REDACTED]"), "the log was read");
    assert!(!seen.contains(CANARY), "the worker's secret shows");
    assert!(!seen.contains(&admin), "a token shows");
    assert!(!seen.contains(&admin[3..]), "a token's secret part shows");
}
