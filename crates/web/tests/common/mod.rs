//! A test server: the real router over a real SQLite store in a temporary folder, driven in
//! process with one request at a time (`send`), or bound to port 0 for streams.

#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use mission_core::config::{Config, WorkerConfig};
use mission_core::{Lane, Name, Run, SlotLimits, TicketId};
use mission_engine::wake::WakeSignal;
use mission_engine::{App, Settings, SystemClock};
use mission_store::SqliteStore;
use mission_store::prelude::*;
use mission_store::sqlite::SqliteOptions;
use mission_store::{Change, ClaimOutcome, ClaimRequest, RunStart};
use mission_web::{Server, Web, WebConfig};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use tower::ServiceExt;

/// The secret of the worker `luci` (`env = { API_KEY = … }`): it must never be shown.
pub const CANARY: &str = "canary-3f9d0c2e7a51-do-not-show";

pub struct TestWeb {
    pub dir: tempfile::TempDir,
    pub web: Web,
    pub server: Server,
    pub wake: WakeSignal,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestWeb {
    pub async fn new(auth: bool) -> TestWeb {
        TestWeb::with_config(WebConfig {
            auth,
            allowed_hosts: vec!["mission.example.org".to_owned()],
            ..WebConfig::default()
        })
        .await
    }

    pub async fn with_config(config: WebConfig) -> TestWeb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        std::fs::create_dir_all(path.join("tasks")).unwrap();
        let store = SqliteStore::open(
            &path.join("mission.db"),
            SqliteOptions {
                create: true,
                ..SqliteOptions::default()
            },
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let mut workers = BTreeMap::new();
        let worker: WorkerConfig = toml::from_str(&format!(
            "runtime = \"shell\"\ncommand = [\"/bin/true\"]\nenv = {{ API_KEY = \"{CANARY}\" }}\n"
        ))
        .unwrap();
        workers.insert("luci".to_owned(), worker);
        let instance = Config {
            workers,
            ..Config::default()
        };
        let settings = Settings::from_config(&instance, path, path, "test", "/bin/true").unwrap();
        let wake = WakeSignal::new();
        let store: Arc<dyn Store> = Arc::new(store);
        let app = App::new(
            store,
            Arc::new(settings),
            Arc::new(SystemClock),
            Arc::new(wake.clone()),
        );
        let web = Web::new(app, config).unwrap();
        let server = mission_web::build(web.clone());
        TestWeb {
            dir,
            web,
            server,
            wake,
        }
    }

    /// A request from a well-behaved client: `Host: 127.0.0.1`, JSON when there is a body.
    pub fn request(
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Request<Body> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1:3001");
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        match body {
            Some(body) => builder
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
            None => builder.body(Body::empty()).unwrap(),
        }
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.server.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let is_stream = headers
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
        if is_stream {
            return Reply {
                status,
                headers,
                body: Value::Null,
                text: String::new(),
            };
        }
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.send(TestWeb::request(method, path, token, body)).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, None, Some(body)).await
    }

    /// Creates a ticket through the use case, with `policy` as its evidence policy.
    pub async fn ticket(&self, title: &str, assignee: Option<&str>, policy: &str) -> TicketId {
        self.web
            .app
            .add_ticket(
                mission_core::TicketDraft {
                    title: title.to_owned(),
                    assignee: assignee.map(str::to_owned),
                    evidence_policy: Some(policy.to_owned()),
                    ..Default::default()
                },
                &mission_core::Actor::new("test"),
            )
            .await
            .unwrap()
            .id
    }

    /// Claims `ticket` for `luci` as the dispatcher would, and records its start with a log
    /// holding `log`; returns the run.
    pub async fn start_run(&self, ticket: &TicketId, log: &str) -> Run {
        let store = self.web.app.store();
        let version = store.ticket(ticket).await.unwrap().version;
        let request = ClaimRequest {
            ticket: ticket.clone(),
            lane: Lane::Normal,
            expected_version: version,
            limits: SlotLimits {
                worker: Name::parse("luci").unwrap(),
                worker_max: 8,
                pool: "default".into(),
                pool_max: None,
                global_max: 8,
            },
            node: "test:1".into(),
            token_hash: format!("token-{ticket}"),
            lease: std::time::Duration::from_secs(600),
        };
        let ClaimOutcome::Claimed(run) = store.claim(&request, &self.change()).await.unwrap()
        else {
            panic!("the claim of {ticket} was refused");
        };
        let path = self.log_path(&run);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, log).unwrap();
        store
            .run_started(
                run.id,
                run.attempt,
                &RunStart {
                    log_path: Some(path.to_string_lossy().into_owned()),
                    ..RunStart::default()
                },
            )
            .await
            .unwrap();
        *run
    }

    /// Where a run's log is: `RUNS/KEY-N/ATTEMPT/output.log`.
    pub fn log_path(&self, run: &Run) -> std::path::PathBuf {
        self.web
            .app
            .settings()
            .runs_dir
            .join(run.ticket.to_string())
            .join(run.attempt.get().to_string())
            .join("output.log")
    }

    /// The run asks a question: its ticket waits in needs_input, with an inbox item.
    pub async fn ask(&self, run: &Run, question: &str) {
        self.web.app.run_ask(run, question).await.unwrap();
    }

    /// The run submits its work: its ticket goes to review.
    pub async fn submit(&self, run: &Run) {
        self.web
            .app
            .store()
            .run_submit(run.id, run.attempt, &self.change())
            .await
            .unwrap();
    }

    fn change(&self) -> Change {
        Change::new(
            mission_core::Actor::new("test"),
            mission_core::Timestamp::now(),
        )
    }

    /// Creates a token through the use case; returns the secret.
    pub async fn token(&self, scope: &str, expires: Option<&str>) -> String {
        let (_, secret) = self.web.tokens.create(scope, expires, None).await.unwrap();
        secret.expose().to_owned()
    }
}

/// Asserts the one error shape: `{"error": {"code", "message", "field"?}}`.
pub fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.text);
    let error = &reply.body["error"];
    assert_eq!(error["code"], code, "{}", reply.text);
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty() && !m.contains('\n')),
        "{}",
        reply.text
    );
    let keys: Vec<&String> = reply.body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["error"], "{}", reply.text);
    for key in error.as_object().unwrap().keys() {
        assert!(
            ["code", "message", "field"].contains(&key.as_str()),
            "{}",
            reply.text
        );
    }
}

/// A browser's request: `Host: 127.0.0.1:3001`, a session cookie when given, a form body when
/// given (with the page's own Origin and `Sec-Fetch-Site: same-origin`, as a browser sends).
pub fn browser(
    method: Method,
    path: &str,
    cookie: Option<&str>,
    form: Option<&[(&str, &str)]>,
) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1:3001");
    if let Some(cookie) = cookie {
        builder = builder.header("cookie", cookie);
    }
    match form {
        Some(fields) => builder
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", "http://127.0.0.1:3001")
            .header("sec-fetch-site", "same-origin")
            .body(Body::from(serde_urlencoded::to_string(fields).unwrap()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

/// The CSRF token a page's forms carry.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no form with a CSRF token in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}
