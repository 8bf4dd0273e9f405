//! Notifications through the real binary against local fake receivers: a fake Telegram Bot API
//! (questions reach the chat; a reply answers one and the ticket resumes through the
//! needs-input lane; strangers change nothing; 429, 500 and a dropped connection are retried in
//! order with every attempt recorded; a kill in the middle of a send gives at most one duplicate
//! with the same id; the bot token shows in no log, event, answer or page), the Approve / Reject
//! buttons acting on review requests, and webhooks verified both by a Standard Webhooks verifier
//! written from the specification here and by the specification's reference library
//! (`standardwebhooks` from PyPI, see scripts/ensure-pytools.sh) (retries under the same id, a paused endpoint,
//! a dead endpoint turning into an incident, `mission webhook test`).

mod common;
#[path = "common/fake_http.rs"]
mod fake_http;

use common::{Instance, Served, wait_for};
use fake_http::{FakeHttp, Handler, Reply, Request};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "7000001:CANARYbotTOKENnever-shown_x9";
const CHAT: i64 = -1001;
const PERSON: i64 = 111;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The Bot API as far as the bridge uses it, with scripted failures of `sendMessage`.
#[derive(Default)]
struct Telegram {
    failures: VecDeque<Reply>,
    next_message: i64,
    /// Every `sendMessage` body that succeeded, with its message id.
    sent: Vec<(i64, Value)>,
    updates: Vec<Value>,
}

fn telegram(state: Arc<Mutex<Telegram>>) -> Handler {
    Arc::new(move |request: &Request| {
        let Some(method) = request.path.strip_prefix(&format!("/bot{TOKEN}/")) else {
            return Reply::json(404, json!({"ok": false, "description": "Not Found"}));
        };
        let body = request.json();
        match method {
            "sendMessage" => {
                let mut state = state.lock().unwrap();
                if body.get("reply_markup").is_none()
                    && body["text"].as_str().is_some_and(|t| t.contains("#n"))
                    && let Some(failure) = state.failures.pop_front()
                {
                    return failure;
                }
                state.next_message += 1;
                let id = state.next_message;
                state.sent.push((id, body));
                Reply::json(200, json!({"ok": true, "result": {"message_id": id}}))
            }
            "getUpdates" => {
                let offset = body["offset"].as_i64().unwrap_or(0);
                let pending: Vec<Value> = state
                    .lock()
                    .unwrap()
                    .updates
                    .iter()
                    .filter(|u| u["update_id"].as_i64().unwrap() >= offset)
                    .cloned()
                    .collect();
                let answer = Reply::json(200, json!({"ok": true, "result": pending}));
                if pending.is_empty() {
                    Reply::Delay(Duration::from_millis(150), Box::new(answer))
                } else {
                    answer
                }
            }
            _ => Reply::json(200, json!({"ok": true, "result": true})),
        }
    })
}

fn telegram_config(api: &str, topics: &str) -> String {
    format!(
        r#"
[notify]
poll_interval = "100ms"
backoff_base = "100ms"
backoff_max = "2s"
dashboard_url = "http://mc.example"

[notify.telegram]
bot_token = "{TOKEN}"
chat_id = {CHAT}
allowed_user_ids = [{PERSON}]
api_base = "{api}"
poll_timeout = "1s"
timeout = "2s"
events = {topics}
"#
    )
}

fn reply_update(update_id: i64, chat: i64, from: i64, to_message: i64, text: &str) -> Value {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": 1000 + update_id,
            "from": {"id": from, "is_bot": false, "first_name": "P"},
            "chat": {"id": chat, "type": "private"},
            "text": text,
            "reply_to_message": {"message_id": to_message, "chat": {"id": chat}},
        }
    })
}

fn sqlite(instance: &Instance, sql: &str) -> Vec<Vec<Value>> {
    use sqlx::Row;
    let path = instance.path().join("data/mission.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = format!("sqlite:{}?mode=ro", path.display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let rows = sqlx::query(sql).fetch_all(&pool).await.unwrap();
        let out = rows
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        row.try_get::<i64, _>(i)
                            .map(Value::from)
                            .or_else(|_| row.try_get::<String, _>(i).map(Value::from))
                            .unwrap_or(Value::Null)
                    })
                    .collect()
            })
            .collect();
        pool.close().await;
        out
    })
}

fn outbox(instance: &Instance, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["notify", "list"];
    all.extend_from_slice(args);
    let listed = instance.json(&all);
    listed.as_array().unwrap().clone()
}

#[test]
fn a_question_reaches_the_chat_and_a_reply_answers_it_in_order_despite_failures() {
    let state = Arc::new(Mutex::new(Telegram::default()));
    // The first question's message meets a rate limit, a server error and a dropped connection
    // before it goes through; the second waits behind it.
    state.lock().unwrap().failures = VecDeque::from([
        Reply::json(
            429,
            json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}}),
        ),
        Reply::json(
            500,
            json!({"ok": false, "error_code": 500, "description": "Internal Server Error"}),
        ),
        Reply::Close,
    ]);
    let api = FakeHttp::start(telegram(state.clone()));
    let instance = Instance::with_fake_workers(&format!(
        "{}{}",
        common::FAST,
        telegram_config(&api.url(), r#"["inbox.question"]"#)
    ));
    let served = Served::start(&instance, &[]);
    let first = instance.add_with_body(
        "pick a database",
        "luci",
        b"fake-agent: ask Which database <b>?\n",
    );
    instance.wait_for_state(&first, "needs_input", Duration::from_secs(20));
    let second = instance.add_with_body("pick a port", "luci", b"fake-agent: ask Which port?\n");
    instance.wait_for_state(&second, "needs_input", Duration::from_secs(20));
    wait_for(Duration::from_secs(30), || {
        state.lock().unwrap().sent.len() >= 2
    });

    // In outbox order, each message once, escaped, with its ticket and the dashboard link.
    let sent = state.lock().unwrap().sent.clone();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let rows = outbox(&instance, &["--channel", "telegram"]);
    let mut ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    ids.sort();
    for ((_, body), id) in sent.iter().zip(&ids) {
        let text = body["text"].as_str().unwrap();
        assert!(text.ends_with(&format!("#n{id}")), "{text}");
        assert_eq!(body["chat_id"], CHAT);
        assert_eq!(body["parse_mode"], "HTML");
    }
    let (first_message, first_body) = &sent[0];
    let first_text = first_body["text"].as_str().unwrap();
    let first_ticket = if first_text.contains("Which database") {
        &first
    } else {
        &second
    };
    if first_ticket == &first {
        assert!(
            first_text.contains("Which database &lt;b&gt;?"),
            "{first_text}"
        );
        assert!(
            first_text.contains(&format!("<b>{first}</b> pick a database")),
            "{first_text}"
        );
        assert!(first_text.contains(&format!("http://mc.example/tickets/{first}")));
    }
    // Every attempt recorded: the three failures, then the delivery.
    let head = rows.iter().find(|r| r["id"] == ids[0]).unwrap();
    assert_eq!(head["status"], "sent");
    assert_eq!(head["attempts"], 4, "{head}");
    let attempts = sqlite(
        &instance,
        &format!(
            "SELECT ok, http_status, error FROM outbox_attempts WHERE outbox = {} ORDER BY number",
            ids[0]
        ),
    );
    assert_eq!(attempts.len(), 4, "{attempts:?}");
    assert_eq!(attempts[0][1], 429);
    assert!(
        attempts[0][2]
            .as_str()
            .unwrap()
            .contains("Too Many Requests")
    );
    assert_eq!(attempts[1][1], 500);
    assert!(
        attempts[2][2].as_str().unwrap().starts_with("sendMessage:"),
        "{attempts:?}"
    );
    assert_eq!(attempts[3][0], 1);

    // A stranger's reply, and a reply from the right chat by someone not allowed: ignored.
    {
        let mut state = state.lock().unwrap();
        state
            .updates
            .push(reply_update(1, -5, 999, *first_message, "drop tables"));
        state
            .updates
            .push(reply_update(2, CHAT, 333, *first_message, "mysql"));
    }
    wait_for(Duration::from_secs(10), || {
        sqlite(
            &instance,
            "SELECT value FROM notify_cursors WHERE name = 'telegram'",
        )
        .first()
        .is_some_and(|r| r[0] == 3)
    });
    assert_eq!(
        instance.state(first_ticket),
        "needs_input",
        "ignored updates change nothing"
    );
    assert_eq!(
        sqlite(
            &instance,
            "SELECT value FROM notify_cursors WHERE name = 'telegram.ignored'"
        )[0][0],
        2
    );

    // The person's reply answers the question: the ticket resumes in the needs-input lane.
    state
        .lock()
        .unwrap()
        .updates
        .push(reply_update(3, CHAT, PERSON, *first_message, "postgres"));
    wait_for(Duration::from_secs(20), || {
        instance
            .events()
            .iter()
            .any(|e| e["kind"] == "inbox.acted" && e["actor"] == format!("telegram:{PERSON}"))
    });
    wait_for(Duration::from_secs(20), || {
        instance.events().iter().any(|e| {
            e["ticket"] == first_ticket.as_str()
                && e["kind"] == "ticket.moved"
                && e["data"]["from"] == "todo"
                && e["data"]["lane"] == "needs-input"
        }) || instance.state(first_ticket) != "todo"
            && instance.state(first_ticket) != "needs_input"
    });
    let answered = std::fs::read_dir(instance.path().join("data/runs"))
        .map(|_| instance.show(first_ticket))
        .unwrap();
    assert_ne!(answered["ticket"]["state"], "needs_input", "{answered}");
    let other = if first_ticket == &first {
        &second
    } else {
        &first
    };
    assert_eq!(instance.state(other), "needs_input");
    // The acknowledgement went to the chat, as a reply.
    wait_for(Duration::from_secs(5), || {
        state.lock().unwrap().sent.iter().any(|(_, b)| {
            b["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Answered"))
        })
    });

    // The token is in no log, event, answer or page.
    let mut seen = String::new();
    for path in [
        "/",
        "/inbox",
        &format!("/tickets/{first_ticket}"),
        "/incidents",
        "/api/v1/events?limit=500",
    ] {
        let (_, page) = served.request_text("GET", path, None, None);
        seen.push_str(&page);
    }
    seen.push_str(&instance.ok(&["events"]));
    seen.push_str(&instance.ok(&["notify", "list", "--json"]));
    seen.push_str(&instance.ok(&["inbox", "list", "--all", "--json"]));
    seen.push_str(&format!(
        "{:?}",
        sqlite(
            &instance,
            "SELECT error FROM outbox_attempts WHERE error IS NOT NULL"
        )
    ));
    let log = served.stop();
    seen.push_str(&log);
    let secret_part = TOKEN.split_once(':').unwrap().1;
    assert!(!seen.contains(secret_part), "the bot token leaked");
    assert!(
        seen.contains("Which database"),
        "the canary looked at real output"
    );
}

#[test]
fn a_kill_in_the_middle_of_a_send_delivers_at_most_once_more_with_the_same_id() {
    let state = Arc::new(Mutex::new(Telegram::default()));
    // The first send is answered late: the server is killed while it waits.
    state.lock().unwrap().failures =
        VecDeque::from([Reply::Delay(Duration::from_secs(5), Box::new(Reply::Close))]);
    let api = FakeHttp::start(telegram(state.clone()));
    let instance = Instance::with_fake_workers(&format!(
        "{}{}",
        common::FAST,
        telegram_config(&api.url(), r#"["health.changed"]"#)
    ));
    // Queued while no server runs: the verdict's first record is a change.
    instance.run(&["status"]);
    let queued = outbox(&instance, &[]);
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0]["status"], "pending");
    let id = queued[0]["id"].as_i64().unwrap();

    let served = Served::start(&instance, &[]);
    let sends = |api: &FakeHttp| {
        api.requests()
            .iter()
            .filter(|r| r.path.ends_with("/sendMessage"))
            .filter(|r| {
                r.json()["text"]
                    .as_str()
                    .is_some_and(|t| t.ends_with(&format!("#n{id}")))
            })
            .count()
    };
    wait_for(Duration::from_secs(20), || sends(&api) == 1);
    // SIGKILL (`Served` kills its child when dropped).
    drop(served);

    // Restarted: the row is still pending, delivered again once its lease ran out.
    let row = |instance: &Instance| {
        outbox(instance, &[])
            .into_iter()
            .find(|r| r["id"] == id)
            .unwrap()
    };
    assert_eq!(row(&instance)["status"], "pending");
    let served = Served::start(&instance, &[]);
    wait_for(Duration::from_secs(20), || {
        row(&instance)["status"] == "sent"
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sends(&api), 2, "one duplicate, no more");
    let sent = state.lock().unwrap().sent.clone();
    let ours: Vec<_> = sent
        .iter()
        .filter(|(_, b)| b["text"].as_str().unwrap().ends_with(&format!("#n{id}")))
        .collect();
    assert_eq!(ours.len(), 1, "{sent:?}");
    assert_eq!(row(&instance)["attempts"], 1);
    served.stop();
}

/// Standard Webhooks verification, written from the specification
/// (<https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>):
/// the key is the base64 after `whsec_`; the signed content is `id.timestamp.body`; the header
/// holds space-separated `v1,BASE64` signatures; the timestamp must be within five minutes.
fn verify(secret: &str, request: &Request) -> Result<Value, String> {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine
        .decode(secret.strip_prefix("whsec_").ok_or("no whsec_ prefix")?)
        .map_err(|e| e.to_string())?;
    let id = request.header("webhook-id").ok_or("no webhook-id")?;
    let timestamp = request
        .header("webhook-timestamp")
        .ok_or("no webhook-timestamp")?;
    let signatures = request
        .header("webhook-signature")
        .ok_or("no webhook-signature")?;
    let seconds: i64 = timestamp.parse().map_err(|_| "bad timestamp")?;
    let now = chrono::Utc::now().timestamp();
    if (now - seconds).abs() > 300 {
        return Err(format!("timestamp {seconds} too far from {now}"));
    }
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(&request.body);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(&content);
    let expected = engine.encode(mac.finalize().into_bytes());
    let matched = signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| s == expected);
    if !matched {
        return Err(format!("no signature matches in {signatures:?}"));
    }
    serde_json::from_slice(&request.body).map_err(|e| e.to_string())
}

/// The verdicts of `standardwebhooks`, the specification's reference verifier (a third party's
/// code, from PyPI), on `requests`: "ok" or its error, one per request. `None` outside CI when
/// the Python tools are not installed.
fn verify_with_the_reference_library(secret: &str, requests: &[Request]) -> Option<Vec<String>> {
    use std::io::Write;
    let python = mission_testkit::pytools::python_or_skip("the standardwebhooks check")?;
    let given = json!({
        "secret": secret,
        "requests": requests.iter().map(|r| json!({
            "headers": r.headers.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "body": String::from_utf8_lossy(&r.body),
        })).collect::<Vec<_>>(),
    });
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhook_verify.py");
    let mut child = std::process::Command::new(python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(given.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn webhooks_are_signed_retried_under_one_id_paused_and_a_dead_endpoint_is_an_incident() {
    let count = Arc::new(Mutex::new(0usize));
    let receiver = {
        let count = count.clone();
        FakeHttp::start(Arc::new(move |_r: &Request| {
            let mut n = count.lock().unwrap();
            *n += 1;
            match *n {
                1 => Reply::json(500, json!({})),
                2 => Reply::Respond(503, vec![("Retry-After".into(), "1".into())], "{}".into()),
                _ => Reply::json(204, json!({})),
            }
        }))
    };
    let paused = FakeHttp::start(Arc::new(|_r: &Request| Reply::json(200, json!({}))));
    let config = format!(
        r#"{fast}
[notify]
poll_interval = "100ms"
backoff_base = "100ms"
backoff_max = "1s"
max_attempts = 3

[[notify.webhooks]]
name = "hook"
url = "{hook}/in"
secret = "{SECRET}"
events = ["health.changed", "ticket.failed", "inbox.failed_ticket", "incident.opened"]
timeout = "2s"

[[notify.webhooks]]
name = "gone"
url = "http://127.0.0.1:9/nobody"
secret = "{SECRET}"
events = ["health.changed"]
timeout = "1s"

[[notify.webhooks]]
name = "later"
url = "{paused}/in"
secret = "{SECRET}"
events = ["health.changed"]
paused = true
"#,
        fast = common::FAST,
        hook = receiver.url(),
        paused = paused.url(),
    );
    let instance = Instance::with_fake_workers(&config);
    instance.run(&["status"]);
    let served = Served::start(&instance, &[]);
    let failing = instance.add_with_body("breaks", "luci", b"fake-agent: exit 3\n");
    instance.wait_for_state(&failing, "failed", Duration::from_secs(30));
    // health.changed, ticket.failed, inbox.failed_ticket, and the dead endpoint's incident.
    let delivered = |receiver: &FakeHttp| -> Vec<Value> {
        let requests = receiver.requests();
        requests
            .iter()
            .enumerate()
            .filter(|(i, _)| *i >= 2)
            .map(|(_, r)| verify(SECRET, r).unwrap())
            .collect()
    };
    wait_for(Duration::from_secs(30), || {
        let types: Vec<Value> = delivered(&receiver)
            .iter()
            .map(|b| b["type"].clone())
            .collect();
        [
            "health.changed",
            "ticket.failed",
            "inbox.failed_ticket",
            "incident.opened",
        ]
        .iter()
        .all(|t| types.contains(&json!(t)))
    });
    let requests = receiver.requests();
    for request in &requests {
        verify(SECRET, request).unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/in");
    }
    // The reference verifier accepts every delivery, and refuses one whose body was changed
    // after signing (so its "ok" means something).
    let mut tampered = requests[0].clone();
    tampered.body.extend_from_slice(b" ");
    let checked: Vec<Request> = requests.iter().cloned().chain([tampered]).collect();
    if let Some(verdicts) = verify_with_the_reference_library(SECRET, &checked) {
        let (last, delivered) = verdicts.split_last().unwrap();
        assert!(delivered.iter().all(|v| v == "ok"), "{verdicts:?}");
        assert!(last.contains("WebhookVerificationError"), "{last}");
    }
    // The first notification was tried three times, under one id.
    let ids: Vec<&str> = requests
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[1], ids[2]);
    let bodies = delivered(&receiver);
    let types: Vec<&str> = bodies.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(types[0], "health.changed", "{types:?}");
    for wanted in ["ticket.failed", "inbox.failed_ticket", "incident.opened"] {
        assert!(types.contains(&wanted), "{types:?}");
    }
    // In outbox order: the ids of the deliveries increase.
    let numbers: Vec<i64> = requests[2..]
        .iter()
        .map(|r| {
            r.header("webhook-id")
                .unwrap()
                .trim_start_matches("msg_mc")
                .parse()
                .unwrap()
        })
        .collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    let incident = bodies
        .iter()
        .find(|b| b["type"] == "incident.opened")
        .unwrap();
    assert_eq!(incident["data"]["data"]["fingerprint"], "notify_dead:gone");

    let dead = outbox(&instance, &["--state", "dead"]);
    assert!(!dead.is_empty());
    for row in &dead {
        assert_eq!(row["channel"], "gone", "{dead:?}");
        assert_eq!(row["attempts"], 3);
    }
    let incidents = instance.json(&["incident", "list"]);
    assert!(
        incidents
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["fingerprint"] == "notify_dead:gone"),
        "{incidents}"
    );
    let hook_rows = outbox(&instance, &["--channel", "hook"]);
    let first = hook_rows.iter().min_by_key(|r| r["id"].as_i64()).unwrap();
    assert_eq!(first["attempts"], 3);
    let attempts = sqlite(
        &instance,
        &format!(
            "SELECT http_status, ok FROM outbox_attempts WHERE outbox = {} ORDER BY number",
            first["id"]
        ),
    );
    assert_eq!(
        attempts,
        [
            [json!(500), json!(0)],
            [json!(503), json!(0)],
            [json!(204), json!(1)]
        ]
    );
    // A paused endpoint's notifications wait.
    let waiting = outbox(&instance, &["--channel", "later", "--state", "pending"]);
    assert!(!waiting.is_empty());
    assert_eq!(
        outbox(&instance, &["--channel", "later"]).len(),
        waiting.len()
    );
    assert!(paused.requests().is_empty());

    // A test ping, signed the same way.
    let out = instance.run(&["webhook", "test", "hook"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ping = receiver.requests().pop().unwrap();
    assert_eq!(verify(SECRET, &ping).unwrap()["type"], "ping");
    let out = instance.run(&["webhook", "test", "gone"]);
    assert_eq!(out.status.code(), Some(1));
    let out = instance.run(&["webhook", "test", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no webhook \"nope\""));
    let out = instance.run(&["notify", "list", "--state", "lost"]);
    assert_eq!(out.status.code(), Some(2));
    served.stop();
}

#[test]
fn bad_notification_settings_are_refused_naming_the_line() {
    let instance = Instance::with_fake_workers("");
    let config = std::fs::read_to_string(instance.config()).unwrap();
    for (extra, key) in [
        (
            "\n[[notify.webhooks]]\nname = \"x\"\nurl = \"http://127.0.0.1:1/\"\nsecret = \"plain\"\n",
            "notify.webhooks[0].secret",
        ),
        ("\n[notify.telegram]\nchat_id = 1\n", "notify.telegram"),
        (
            "\n[notify.telegram]\nchat_id = 1\nbot_token = \"1:abcdefghij\"\nmax_per_second = 0\n",
            "notify.telegram.max_per_second",
        ),
        (
            "\n[[notify.webhooks]]\nname = \"x\"\nurl = \"http://127.0.0.1:1/\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nevents = [\"tickets\"]\n",
            "notify.webhooks[0].events",
        ),
    ] {
        std::fs::write(instance.config(), format!("{config}{extra}")).unwrap();
        let out = instance.run(&["notify", "list"]);
        assert_eq!(out.status.code(), Some(2), "{extra}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("key `{key}`")), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

/// The buttons, through the engine's own pieces over a real store: a review request's message
/// carries Approve / Reject; a press by an allowed person acts on the item through the inbox's
/// use case (an approval asks the gate, a rejection sends the ticket back); a press by anyone
/// else changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_and_reject_buttons_act_on_review_requests() {
    use mission_core::{
        Addressee, Attempt, InboxKind, Lane, Name, NewInboxItem, SlotLimits, TicketDraft,
    };
    use mission_engine::notify::{self, Channel, telegram::Bot};
    use mission_engine::settings::Settings;
    use mission_engine::{App, SystemClock};
    use mission_store::prelude::*;
    use mission_store::{Change, ClaimOutcome, ClaimRequest, SqliteStore};

    let state = Arc::new(Mutex::new(Telegram::default()));
    let api = FakeHttp::start(telegram(state.clone()));
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[workers.luci]\nruntime = \"shell\"\ncommand = [\"true\"]\n{}",
        telegram_config(&api.url(), r#"["inbox.review_request"]"#)
    );
    let config: mission_core::config::Config = toml::from_str(&text).unwrap();
    let settings = Arc::new(
        Settings::from_config(&config, dir.path(), dir.path(), "test", "/bin/true").unwrap(),
    );
    let store = SqliteStore::open(
        &dir.path().join("mission.db"),
        mission_store::OpenOptions {
            create: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let store: Arc<dyn mission_store::Store> = Arc::new(store);
    notify::sync_subscriptions(store.as_ref(), &settings.notify)
        .await
        .unwrap();
    let change = || {
        Change::new(
            mission_core::Actor::new("test"),
            mission_core::Timestamp::now(),
        )
    };
    let key = mission_core::TicketKey::default();
    let drafts = ["approve me", "reject me"].map(|title| {
        TicketDraft {
            title: title.into(),
            assignee: Some("luci".into()),
            ..TicketDraft::default()
        }
        .validate()
        .unwrap()
    });
    let tickets = store
        .create_tickets(&key, drafts.to_vec(), &change())
        .await
        .unwrap();
    let mut items = Vec::new();
    for ticket in &tickets {
        let ClaimOutcome::Claimed(run) = store
            .claim(
                &ClaimRequest {
                    ticket: ticket.id.clone(),
                    lane: Lane::Normal,
                    expected_version: ticket.version,
                    limits: SlotLimits {
                        worker: Name::parse("luci").unwrap(),
                        worker_max: 2,
                        pool: "default".into(),
                        pool_max: None,
                        global_max: 3,
                    },
                    node: "test:1".into(),
                    token_hash: format!("t{}", ticket.id),
                    lease: Duration::from_secs(30),
                },
                &change(),
            )
            .await
            .unwrap()
        else {
            panic!("not claimed")
        };
        store
            .run_submit(run.id, Attempt::new(1), &change())
            .await
            .unwrap();
        let item = NewInboxItem::new(
            InboxKind::ReviewRequest,
            Some(ticket.id.clone()),
            Addressee::Channel(Name::parse("operator").unwrap()),
            "please review",
        )
        .unwrap();
        items.push(store.create_inbox_item(&item, &change()).await.unwrap());
    }
    let telegram_settings = settings.notify.telegram.clone().unwrap();
    let bot = Bot::new(
        &telegram_settings,
        notify::http_client(),
        store.clone(),
        None,
    )
    .unwrap();
    assert_eq!(bot.batch(), 1);
    let clock = SystemClock;
    while notify::pass(store.as_ref(), &bot, &settings.notify, &clock)
        .await
        .unwrap()
        > 0
    {}
    let sent = state.lock().unwrap().sent.clone();
    assert_eq!(sent.len(), 2);
    for ((message, body), item) in sent.iter().zip(&items) {
        let keyboard = &body["reply_markup"]["inline_keyboard"][0];
        assert_eq!(keyboard[0]["text"], "Approve");
        assert_eq!(keyboard[0]["callback_data"], format!("approve:{}", item.id));
        assert_eq!(keyboard[1]["callback_data"], format!("reject:{}", item.id));
        assert!(*message > 0);
    }
    let press = |update: i64, from: i64, chat: i64, message: i64, data: &str| {
        json!({
            "update_id": update,
            "callback_query": {
                "id": format!("cb{update}"),
                "from": {"id": from, "is_bot": false, "first_name": "P"},
                "message": {"message_id": message, "chat": {"id": chat}},
                "data": data,
            }
        })
    };
    {
        let mut state = state.lock().unwrap();
        let (first, second) = (sent[0].0, sent[1].0);
        state.updates = vec![
            // Someone else approving the second: ignored.
            press(10, 999, CHAT, second, &format!("approve:{}", items[1].id)),
            press(11, PERSON, CHAT, first, &format!("approve:{}", items[0].id)),
            press(12, PERSON, CHAT, second, &format!("reject:{}", items[1].id)),
        ];
    }
    let app = App::new(
        store.clone(),
        settings.clone(),
        Arc::new(SystemClock),
        Arc::new(mission_engine::wake::NoWaker),
    );
    assert_eq!(bot.poll_once(&app).await.unwrap(), 3);
    let approved = store.inbox_item(items[0].id).await.unwrap().to_stored();
    assert_eq!(approved.status, mission_core::InboxStatus::Acted);
    assert_eq!(
        approved.action.unwrap().kind,
        mission_core::ActionKind::Approved
    );
    let rejected = store.inbox_item(items[1].id).await.unwrap().to_stored();
    assert_eq!(
        rejected.action.unwrap().kind,
        mission_core::ActionKind::Rejected
    );
    assert_eq!(
        store.ticket(&tickets[1].id).await.unwrap().state,
        mission_core::State::Todo,
        "a rejection sends the ticket back"
    );
    assert_ne!(
        store.ticket(&tickets[0].id).await.unwrap().state,
        mission_core::State::Todo
    );
    // The cursor moved past all three; the stranger's press is counted.
    assert_eq!(store.notify_cursor("telegram").await.unwrap(), Some(13));
    assert_eq!(
        store.notify_cursor("telegram.ignored").await.unwrap(),
        Some(1)
    );
    // Nothing is offered again.
    assert_eq!(bot.poll_once(&app).await.unwrap(), 0);
    let answered: Vec<Value> = api
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/answerCallbackQuery"))
        .map(Request::json)
        .collect();
    assert_eq!(answered.len(), 3);
    assert_eq!(answered[0]["text"], "Not allowed.");
}

/// A backlog drains at its channel's pace: with `max_per_second = 4`, a batch is one delivery
/// (a tenth of a second's allowance, at least one) and the next begins no sooner than a quarter
/// of a second after it; six queued notifications take at least five such steps, never less.
#[test]
fn a_backlog_drains_at_the_channels_pace() {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let receiver = {
        let arrivals = arrivals.clone();
        FakeHttp::start(Arc::new(move |_r: &Request| {
            arrivals.lock().unwrap().push(std::time::Instant::now());
            Reply::json(204, json!({}))
        }))
    };
    let config = format!(
        r#"{fast}
[notify]
poll_interval = "100ms"

[[notify.webhooks]]
name = "paced"
url = "{hook}/in"
secret = "{SECRET}"
events = ["ping"]
max_per_second = 4
"#,
        fast = common::FAST,
        hook = receiver.url(),
    );
    let instance = Instance::with_fake_workers(&config);
    instance.run(&["status"]);
    // Six notifications queued before the server starts.
    let path = instance.path().join("data/mission.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", path.display()))
            .await
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        for n in 0..6 {
            sqlx::query(
                "INSERT INTO outbox (channel, topic, payload, created_at, next_attempt_at) \
                 VALUES ('paced', 'ping', json_object('n', ?), ?, ?)",
            )
            .bind(n)
            .bind(now)
            .bind(now)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    });
    let _served = Served::start(&instance, &[]);
    wait_for(Duration::from_secs(30), || {
        arrivals.lock().unwrap().len() >= 6
    });
    let arrivals = arrivals.lock().unwrap().clone();
    let span = arrivals[5] - arrivals[0];
    // Five steps of 250 ms; a little less is allowed for the jitter of each request's own time
    // after its step began. Without the pace the six arrive within a few milliseconds.
    assert!(
        span >= Duration::from_millis(1150),
        "six deliveries in {span:?}: faster than 4 a second"
    );
    // Each delivery is recorded after its request arrived.
    wait_for(Duration::from_secs(30), || {
        sqlite(
            &instance,
            "SELECT COUNT(*) FROM outbox WHERE channel = 'paced' AND status = 'sent'",
        ) == vec![vec![json!(6)]]
    });
}
