//! Mission Control's HTTP side: the JSON API under `/api/v1` with its OpenAPI document, the
//! dashboard (server-rendered pages with live updates), authentication (API tokens with scopes;
//! dashboard sessions opened with a token, with CSRF tokens on every form), the guards that keep
//! the server safe to expose (Host allow-list, Origin check, bounded concurrency and time),
//! `/metrics` and `/healthz`.
//!
//! Every handler is a thin adapter over a use case of `mission_engine::App` (or of `Tokens`):
//! it parses the request, calls one function and converts the result. No rule lives here.
//! `serve` is the whole server: a test starts it on port 0 and stops it with its shutdown future.

pub mod api;
pub mod auth;
pub mod dashboard;
pub mod error;
mod guard;
pub mod metrics;
pub mod session;

use crate::api::events::EventFeed;
use crate::auth::Tokens;
use crate::metrics::Metrics;
use mission_engine::App;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

pub use api::{RouteInfo, Server, build};
pub use error::{ApiError, ErrorBody};

/// How the HTTP side behaves.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// Require a token on every route but `/healthz`. Without it, every request may do
    /// everything: allowed only on a loopback address (`check_bind`).
    pub auth: bool,
    /// Host names answered besides `localhost` and IP addresses.
    pub allowed_hosts: Vec<String>,
    /// Requests handled at once (streams aside); more are refused with 503 at once.
    pub max_requests: usize,
    /// Open event streams at once.
    pub max_streams: usize,
    /// A request taking longer is answered 503 (`timeout`).
    pub request_timeout: Duration,
    /// How long `POST /tasks/{name}/run` waits for the outcome before answering `running`.
    pub task_wait: Duration,
    /// How often the event streams look for new events.
    pub event_poll: Duration,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            auth: false,
            allowed_hosts: Vec::new(),
            max_requests: 64,
            max_streams: 64,
            request_timeout: Duration::from_secs(30),
            task_wait: Duration::from_secs(20),
            event_poll: Duration::from_millis(250),
        }
    }
}

/// Refuses to listen beyond loopback without authentication.
pub fn check_bind(bind: SocketAddr, auth: bool) -> Result<(), String> {
    if auth || bind.ip().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "refusing to listen on {bind} without authentication: set `[server] auth = true` \
         (and create a token with `mission token create`), or bind a loopback address such as \
         127.0.0.1:3001"
    ))
}

/// What every handler runs with. Cheap to clone.
#[derive(Clone)]
pub struct Web(Arc<WebInner>);

pub struct WebInner {
    pub app: App,
    pub tokens: Tokens,
    pub config: WebConfig,
    pub feed: EventFeed,
    pub metrics: Metrics,
    pub sessions: session::Sessions,
    /// The verdict the pages show, assessed again after an event or `dashboard::VERDICT_TTL`.
    pub(crate) verdict: dashboard::VerdictCache,
    requests: Arc<Semaphore>,
    streams: Arc<Semaphore>,
}

impl std::ops::Deref for Web {
    type Target = WebInner;

    fn deref(&self) -> &WebInner {
        &self.0
    }
}

impl Web {
    /// The HTTP side over `app`, whose waker should be the server's own `WakeSignal` so that a
    /// request that makes work runnable wakes the dispatcher at once.
    ///
    /// Fails only when the kernel gives no random bytes (for the CSRF token of this process).
    pub fn new(app: App, config: WebConfig) -> std::io::Result<Self> {
        let tokens = Tokens::new(app.store().clone(), app.clock().clone());
        let feed = EventFeed::new(app.store().clone(), config.event_poll);
        Ok(Web(Arc::new(WebInner {
            tokens,
            feed,
            metrics: Metrics::default(),
            sessions: session::Sessions::new()?,
            verdict: dashboard::VerdictCache::default(),
            requests: Arc::new(Semaphore::new(config.max_requests)),
            streams: Arc::new(Semaphore::new(config.max_streams)),
            config,
            app,
        })))
    }
}

/// Serves the HTTP side on `listener` until `shutdown` resolves; open event streams end then,
/// and requests in flight get `grace` to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    web: Web,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let feed = web.feed.clone();
    let router = build(web).router;
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let graceful = {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let server = axum::serve(listener, router).with_graceful_shutdown(graceful);
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut server => {
            feed.close();
            return result;
        }
        _ = shutdown => {}
    }
    // Streams end first, so that graceful shutdown does not wait on them.
    feed.close();
    let _ = stopping.send(true);
    match tokio::time::timeout(grace, &mut server).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "HTTP requests still open after the grace period; closing them"
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_loopback_needs_auth() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(check_bind(at("127.0.0.1:3001"), false).is_ok());
        assert!(check_bind(at("[::1]:3001"), false).is_ok());
        assert!(check_bind(at("0.0.0.0:3001"), false).is_err());
        assert!(check_bind(at("192.168.1.5:80"), false).is_err());
        assert!(check_bind(at("0.0.0.0:3001"), true).is_ok());
    }
}
