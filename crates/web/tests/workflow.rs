//! The routes that act on work in progress, over a real store: a run's log (its tail, a read on
//! from an offset, secrets redacted), the inbox (a question answered), the gate (`done`) and a
//! person's review, incidents found by the operator audit and resolved.

mod common;

use axum::http::StatusCode;
use common::{CANARY, TestWeb, assert_error};
use serde_json::json;

#[tokio::test]
async fn a_runs_log_is_read_in_pieces_with_secrets_redacted() {
    let t = TestWeb::new(false).await;
    let id = t.ticket("logged", Some("luci"), "none").await;
    let run = t
        .start_run(
            &id,
            &format!("starting\nAPI_KEY={CANARY}\nhalf a line without its end"),
        )
        .await;

    let tail = t.get("/api/v1/tickets/MC-1/runs/1/log").await;
    assert_eq!(tail.status, StatusCode::OK, "{}", tail.text);
    assert_eq!(tail.body["text"], "starting\nAPI_KEY=[REDACTED]\n");
    assert!(!tail.text.contains(CANARY), "{}", tail.text);
    assert_eq!(tail.body["ended"], false);
    assert_eq!(tail.body["outcome"], serde_json::Value::Null);
    // The line without its end waits for its end (the run may still write it).
    let end = tail.body["end"].as_u64().unwrap();
    assert_eq!(
        end,
        "starting\nAPI_KEY=\n".len() as u64 + CANARY.len() as u64
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(t.log_path(&run))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b", and its end\nmore\n"))
        .unwrap();
    let next = t
        .get(&format!("/api/v1/tickets/MC-1/runs/1/log?from={end}"))
        .await;
    assert_eq!(
        next.body["text"],
        "half a line without its end, and its end\nmore\n"
    );
    let small = t
        .get("/api/v1/tickets/MC-1/runs/1/log?from=0&bytes=9")
        .await;
    assert_eq!(small.body["text"], "starting\n");

    // Once the run ended, everything is shown, and the outcome.
    t.ask(&run, "Which branch?").await;
    let ended = t.get("/api/v1/tickets/1/runs/1/log").await;
    assert_eq!(ended.body["ended"], true);
    assert_eq!(ended.body["outcome"], "asked");

    assert_error(
        &t.get("/api/v1/tickets/MC-1/runs/2/log").await,
        404,
        "not_found",
    );
    let reply = t.get("/api/v1/tickets/MC-1/runs/zero/log").await;
    assert_error(&reply, 422, "invalid");
    assert_eq!(reply.body["error"]["field"], "attempt");
    assert_error(
        &t.get("/api/v1/tickets/MC-1/runs/1/log?bytes=0").await,
        422,
        "invalid",
    );
}

#[tokio::test]
async fn a_question_is_answered_through_the_inbox() {
    let t = TestWeb::new(false).await;
    let id = t.ticket("asks", Some("luci"), "none").await;
    let run = t.start_run(&id, "").await;
    t.ask(&run, "Which branch?").await;
    assert_eq!(
        t.get("/api/v1/tickets/MC-1").await.body["ticket"]["state"],
        "needs_input"
    );

    let page = t.get("/api/v1/inbox").await.body;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    let item = &items[0];
    assert_eq!(item["kind"], "question");
    assert_eq!(item["ticket"], "MC-1");
    assert_eq!(item["text"], "Which branch?");
    assert_eq!(item["status"], "pending");
    assert_eq!(
        item["actions"],
        json!(["answered", "escalated", "dismissed"])
    );
    let item_id = item["id"].as_i64().unwrap();
    let path = format!("/api/v1/inbox/{item_id}");
    assert_eq!(t.get(&path).await.body["id"], item_id);

    // An action its kind does not allow, or an answer without its text, changes nothing.
    let act = format!("/api/v1/inbox/{item_id}/act");
    assert_error(
        &t.post(&act, json!({"action": "approved"})).await,
        409,
        "refused",
    );
    assert_error(
        &t.post(&act, json!({"action": "shrugged"})).await,
        422,
        "invalid",
    );
    let acted = t
        .post(&act, json!({"action": "answered", "text": "main"}))
        .await;
    assert_eq!(acted.status, StatusCode::OK, "{}", acted.text);
    assert_eq!(acted.body["item"]["status"], "acted");
    assert_eq!(acted.body["item"]["action"]["kind"], "answered");
    assert_eq!(acted.body["item"]["action"]["text"], "main");
    assert_eq!(acted.body["item"]["action"]["actor"], "api");
    let ticket = t.get("/api/v1/tickets/MC-1").await.body["ticket"].clone();
    assert_eq!(
        (ticket["state"].as_str(), ticket["resume"].as_bool()),
        (Some("todo"), Some(true))
    );
    // Settled: acting again is refused; the open inbox is empty, the acted one has it.
    assert_error(
        &t.post(&act, json!({"action": "dismissed"})).await,
        409,
        "refused",
    );
    assert_eq!(t.get("/api/v1/inbox").await.body["items"], json!([]));
    let acted_page = t.get("/api/v1/inbox?status=acted").await.body;
    assert_eq!(acted_page["items"][0]["id"], item_id);
    assert_error(&t.get("/api/v1/inbox?status=later").await, 422, "invalid");
    assert_error(&t.get("/api/v1/inbox/x").await, 422, "invalid");
}

#[tokio::test]
async fn the_inbox_pages() {
    let t = TestWeb::new(false).await;
    for i in 0..5 {
        let id = t.ticket(&format!("t{i}"), Some("luci"), "none").await;
        let run = t.start_run(&id, "").await;
        t.ask(&run, &format!("question {i}")).await;
    }
    let first = t.get("/api/v1/inbox?limit=2").await.body;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let after = first["next_after"].as_i64().unwrap();
    let second = t
        .get(&format!("/api/v1/inbox?limit=2&after={after}"))
        .await
        .body;
    assert_eq!(second["items"][0]["text"], "question 2");
    let last = t.get("/api/v1/inbox?limit=2&after=4").await.body;
    assert_eq!(last["items"].as_array().unwrap().len(), 1);
    assert_eq!(last["next_after"], serde_json::Value::Null);
    let of_ticket = t.get("/api/v1/inbox?ticket=MC-3").await.body;
    assert_eq!(of_ticket["items"][0]["text"], "question 2");
}

#[tokio::test]
async fn done_asks_the_gate_and_a_person_reviews() {
    let t = TestWeb::new(false).await;
    // MC-1 needs a commit it does not have; MC-2 needs nothing; MC-3 is approved; MC-4 is
    // rejected.
    let policies = ["commit", "none", "none", "none"];
    for (i, policy) in policies.iter().enumerate() {
        let id = t.ticket(&format!("t{i}"), Some("luci"), policy).await;
        let run = t.start_run(&id, "").await;
        t.submit(&run).await;
    }
    let refused = t
        .call(
            axum::http::Method::POST,
            "/api/v1/tickets/MC-1/done",
            None,
            None,
        )
        .await;
    assert_error(&refused, 409, "refused");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("commit"),
        "the gap is named: {}",
        refused.text
    );
    assert_eq!(
        t.get("/api/v1/tickets/MC-1").await.body["ticket"]["state"],
        "review"
    );
    let done = t
        .call(
            axum::http::Method::POST,
            "/api/v1/tickets/MC-2/done",
            None,
            None,
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.body["done"], true);
    assert_eq!(done.body["ticket"]["state"], "done");
    assert_eq!(done.body["missing"], json!([]));

    let approved = t
        .post(
            "/api/v1/tickets/MC-3/review",
            json!({"decision": "approve", "reason": "reads well", "reviewer": "ada"}),
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text);
    assert_eq!(approved.body["review"]["outcome"], "approved");
    assert_eq!(approved.body["review"]["reviewer"], "ada");
    assert_eq!(approved.body["review"]["reviewer_kind"], "human");
    assert_eq!(approved.body["gate"]["done"], true);
    assert_eq!(approved.body["ticket"]["state"], "done");

    // The author may not review its own work.
    let own = t
        .post(
            "/api/v1/tickets/MC-4/review",
            json!({"decision": "approve", "reason": "mine", "reviewer": "luci"}),
        )
        .await;
    assert_error(&own, 409, "refused");
    let rejected = t
        .post(
            "/api/v1/tickets/MC-4/review",
            json!({"decision": "reject", "reason": "the tests are missing"}),
        )
        .await;
    assert_eq!(rejected.status, StatusCode::OK, "{}", rejected.text);
    assert_eq!(rejected.body["review"]["outcome"], "rejected");
    assert_eq!(rejected.body["ticket"]["state"], "todo");
    assert_eq!(rejected.body["gate"], serde_json::Value::Null);
    assert_error(
        &t.post(
            "/api/v1/tickets/MC-4/review",
            json!({"decision": "maybe", "reason": "x"}),
        )
        .await,
        422,
        "invalid",
    );

    // The ticket page has the evidence and the reviews in its timeline.
    let shown = t.get("/api/v1/tickets/MC-3").await.body;
    assert!(shown["evidence"].is_array(), "{shown}");
    let kinds: Vec<&str> = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"review.approved"), "{kinds:?}");
}

#[tokio::test]
async fn incidents_are_listed_shown_and_resolved() {
    let t = TestWeb::new(false).await;
    let tasks = t.dir.path().join("tasks");
    std::fs::write(
        tasks.join("audit.md"),
        "+++\nkind = \"operator-audit\"\nevery = \"1h\"\n+++\n",
    )
    .unwrap();
    // A broken task file: the audit opens an incident about it.
    std::fs::write(tasks.join("broken.md"), "+++\nkind = \"nonsense\"\n+++\n").unwrap();
    let ran = t
        .call(
            axum::http::Method::POST,
            "/api/v1/tasks/audit/run",
            None,
            None,
        )
        .await;
    assert_eq!(ran.status, StatusCode::OK, "{}", ran.text);

    let listed = t.get("/api/v1/incidents").await.body;
    let incident = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["fingerprint"] == "task_file_broken:broken.md")
        .unwrap_or_else(|| panic!("no incident about broken.md: {listed}"))
        .clone();
    assert_eq!(incident["status"], "open");
    assert_eq!(incident["occurrences"], 1);
    let id = incident["id"].as_i64().unwrap();
    let shown = t.get(&format!("/api/v1/incidents/{id}")).await.body;
    assert_eq!(shown["incident"]["id"], id);
    assert_eq!(shown["occurrences"][0]["number"], 1);

    let resolve = format!("/api/v1/incidents/{id}/resolve");
    assert_error(
        &t.post(&resolve, json!({"reason": ""})).await,
        422,
        "invalid",
    );
    let resolved = t.post(&resolve, json!({"reason": "fixed the file"})).await;
    assert_eq!(resolved.status, StatusCode::OK, "{}", resolved.text);
    assert_eq!(resolved.body["status"], "resolved");
    assert_eq!(resolved.body["resolution"]["by"], "operator");
    assert_eq!(resolved.body["resolution"]["reason"], "fixed the file");
    // Only open ones by default; all with `all`.
    let open = t.get("/api/v1/incidents").await.body;
    assert!(
        open.as_array().unwrap().iter().all(|i| i["id"] != id),
        "{open}"
    );
    let all = t.get("/api/v1/incidents?all=true").await.body;
    assert!(
        all.as_array().unwrap().iter().any(|i| i["id"] == id),
        "{all}"
    );
    assert_error(
        &t.get("/api/v1/incidents?severity=mild").await,
        422,
        "invalid",
    );
    assert_error(&t.get("/api/v1/incidents/abc").await, 422, "invalid");
}
