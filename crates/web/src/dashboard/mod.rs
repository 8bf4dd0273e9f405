//! The dashboard: server-rendered pages, each a `#[derive(Template)]` struct (askama) that its
//! handler fills from the same use cases the API calls, and forms that post to handlers calling
//! those use cases too. No page holds a rule: "why not running" is `App::explain_each`, the
//! verdict is `App::status`, an answer is `App::inbox_act`.
//!
//! Every page shows the health verdict with its reasons (the banner, `Shell`). Live updates come
//! from one small script (`assets/live.js`, no build step): it follows the event stream and,
//! when the log moves, fetches the page again and swaps its live regions (`data-live`), leaving
//! alone a region whose form is being filled in; a ticket page follows its run's log stream.
//!
//! Pages are bounded like the API (no page reads the whole board: columns and lists are pages
//! of the store's own paging). Their answers carry a strict Content-Security-Policy (scripts
//! and styles only from this server, nothing inline, no framing) and `Cache-Control: no-store`.

mod board;
mod forms;
mod inbox;
mod incidents;
mod login;
mod tasks;
mod ticket;
mod view;

use crate::Web;
use crate::api::RouteInfo;
use crate::auth::Principal;
use crate::session::Csrf;
use askama::Template;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get, post};
use mission_engine::AppError;
use mission_engine::app::StatusReport;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use view::Shell;

/// How long the verdict shown on pages is reused while no event is written: a page refreshed
/// by every event does not assess the board for each of its fetches at one event, and the facts
/// that change without an event (heartbeats, the time) are looked at again this often.
pub const VERDICT_TTL: Duration = Duration::from_secs(2);

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

const LIVE_JS: &str = include_str!("../../assets/live.js");
const STYLE_CSS: &str = include_str!("../../assets/style.css");

/// Whether `path` is the dashboard's (everything but the API, metrics and liveness).
pub fn is_page(path: &str) -> bool {
    !(path == "/api" || path.starts_with("/api/") || path == "/metrics" || path == "/healthz")
}

/// The verdict last assessed for the pages, with the newest event then.
#[derive(Default)]
pub struct VerdictCache(Mutex<Option<(Instant, i64, Arc<StatusReport>)>>);

impl VerdictCache {
    /// The verdict, assessed again when an event was written since the last one (a page that
    /// refreshes for an event — a run's end, `health.changed` — shows what followed it) or when
    /// the last one is older than `VERDICT_TTL`.
    pub(crate) async fn get(&self, web: &Web) -> Result<Arc<StatusReport>, AppError> {
        let seq = web.app.store().last_event_seq().await?;
        if let Some((at, seen, report)) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && *seen == seq
            && at.elapsed() < VERDICT_TTL
        {
            return Ok(report.clone());
        }
        let report = Arc::new(
            web.app
                .status(&mission_core::Actor::new("dashboard"))
                .await?,
        );
        // The assessment may have written `health.changed` itself: keyed by the seq read
        // before it, the next page looks again, and then reuses it.
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), seq, report.clone()));
        Ok(report)
    }
}

/// Sends the browser to the login form, to come back to `uri` after.
pub fn to_login(uri: &Uri) -> Response {
    let back = uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let target = if back == "/" {
        "/login".to_owned()
    } else {
        format!("/login?next={}", forms::percent_encode(&back))
    };
    Redirect::to(&target).into_response()
}

/// A page that says why a request was refused, with its status.
pub fn refusal(status: StatusCode, message: &str) -> Response {
    PageError {
        status,
        message: message.to_owned(),
    }
    .into_response()
}

/// A failed page or form: its status and one line saying why (a use case's message).
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl From<AppError> for PageError {
    fn from(error: AppError) -> Self {
        let api = crate::error::ApiError::from(error);
        PageError {
            status: api.status,
            message: api.message,
        }
    }
}

impl From<crate::error::ApiError> for PageError {
    fn from(error: crate::error::ApiError) -> Self {
        PageError {
            status: error.status,
            message: error.message,
        }
    }
}

impl From<askama::Error> for PageError {
    fn from(error: askama::Error) -> Self {
        tracing::error!(%error, "a page could not be rendered");
        PageError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "the page could not be rendered".to_owned(),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            status: self.status.as_u16(),
            reason: self.status.canonical_reason().unwrap_or("Error"),
            message: &self.message,
        };
        let body = page
            .render()
            .unwrap_or_else(|_| format!("{} {}", self.status, self.message));
        (self.status, html_headers(), body).into_response()
    }
}

pub type PageResult = Result<Response, PageError>;

fn html_headers() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

/// A rendered page.
pub fn page(template: &impl Template) -> PageResult {
    let body = template.render()?;
    Ok((html_headers(), body).into_response())
}

/// What a page handler knows of its request: who asks, and the CSRF token its forms carry.
#[derive(Clone, Debug)]
pub struct Visitor {
    pub principal: Principal,
    pub csrf: Csrf,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Visitor {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, PageError> {
        let principal = parts.extensions.get::<Principal>().cloned();
        let csrf = parts.extensions.get::<Csrf>().cloned();
        match (principal, csrf) {
            (Some(principal), Some(csrf)) => Ok(Visitor { principal, csrf }),
            _ => Err(PageError {
                status: StatusCode::UNAUTHORIZED,
                message: "not signed in".to_owned(),
            }),
        }
    }
}

/// The dashboard's routes, each recorded (the pages' tests walk them).
pub(crate) struct Pages {
    router: axum::Router<Web>,
    list: Vec<RouteInfo>,
}

impl Pages {
    fn new() -> Self {
        Pages {
            router: axum::Router::new(),
            list: Vec::new(),
        }
    }

    fn route(mut self, path: &str, methods: &[Method], route: MethodRouter<Web>) -> Self {
        for method in methods {
            self.list.push(RouteInfo {
                method: method.clone(),
                path: path.to_owned(),
                documented: false,
            });
        }
        self.router = self.router.route(path, route);
        self
    }
}

/// The dashboard's router and the list of its routes.
pub(crate) fn router() -> (axum::Router<Web>, Vec<RouteInfo>) {
    let g = [Method::GET];
    let p = [Method::POST];
    let pages = Pages::new()
        .route(
            "/",
            &[Method::GET, Method::POST],
            get(board::board).post(forms::create_ticket),
        )
        .route("/tickets/{id}", &g, get(ticket::ticket))
        .route("/tickets/{id}/move", &p, post(forms::move_ticket))
        .route("/tickets/{id}/answer", &p, post(forms::answer))
        .route("/tickets/{id}/done", &p, post(forms::done))
        .route("/tickets/{id}/review", &p, post(forms::review))
        .route("/inbox", &g, get(inbox::inbox))
        .route("/inbox/{id}/act", &p, post(forms::act))
        .route("/tasks", &g, get(tasks::tasks))
        .route("/tasks/{name}", &g, get(tasks::task))
        .route("/tasks/{name}/run", &p, post(forms::run_task))
        .route("/incidents", &g, get(incidents::incidents))
        .route("/incidents/{id}", &g, get(incidents::incident))
        .route("/incidents/{id}/resolve", &p, post(forms::resolve))
        .route(
            "/login",
            &[Method::GET, Method::POST],
            get(login::form).post(login::login),
        )
        .route("/logout", &p, post(login::logout))
        .route("/static/live.js", &g, get(live_js))
        .route("/static/style.css", &g, get(style_css));
    (
        pages.router.layer(axum::middleware::from_fn(headers)),
        pages.list,
    )
}

/// The headers of every dashboard answer: what the page may load, and that it is not framed.
async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: under it a browser sends `Origin: null` with the pages' own forms,
    // which the Origin guard (rightly) refuses.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

async fn live_js() -> Response {
    static_file("text/javascript; charset=utf-8", LIVE_JS)
}

async fn style_css() -> Response {
    static_file("text/css; charset=utf-8", STYLE_CSS)
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}
