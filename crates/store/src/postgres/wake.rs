//! Wake-ups across nodes: `NOTIFY` on one channel of the database, `LISTEN` on it in every server.
//! Best effort by design, like every wake-up: the servers' periodic reconcile is the fallback, so
//! a notification lost (a listener reconnecting, a notifier that cannot reach the database) costs
//! at most one reconcile interval. A listener that loses its connection says so (one wake-up, for
//! whatever it may have missed) and connects again.
//!
//! The engine turns these into its `Waker` and `WakeSignal` (`mission_engine::wake`); nothing here
//! knows the dispatcher.

use crate::{Result, StoreError};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The channel every server of an instance listens on.
pub const WAKE_CHANNEL: &str = "mission_wake";

/// A listener that heard nothing this long checks that its connection still answers (a
/// connection cut without a reset would otherwise wait forever).
const LISTENER_IDLE_CHECK: Duration = Duration::from_secs(30);
/// How long that check, or a connection attempt, may take.
const LISTENER_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// Waits between attempts to connect the listener again: doubling up to the last.
const RECONNECT_BACKOFF: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

fn options(url: &str, application: &str) -> Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(url)
        .map_err(|_| StoreError::UnsupportedUrl("the postgres:// URL cannot be parsed".to_owned()))?
        .application_name(application))
}

enum Request {
    Notify,
    Flush(oneshot::Sender<()>),
}

/// Sends wake-ups to every server listening on the database. `notify` never blocks: a background
/// task sends them (a burst is sent once) on a connection of its own, made when first needed.
#[derive(Clone)]
pub struct Notifier {
    requests: mpsc::UnboundedSender<Request>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifier")
    }
}

impl Notifier {
    /// A notifier for the database `url` names. Connects when it first notifies; must be called
    /// within a tokio runtime.
    pub fn new(url: &str) -> Result<Notifier> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(LISTENER_CHECK_TIMEOUT)
            .connect_lazy_with(options(url, "mission-notifier")?);
        let (requests, mut received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(request) = received.recv().await {
                let mut flushes = Vec::new();
                let mut notify = false;
                // Everything queued by now is answered by one notification.
                let mut next = Some(request);
                while let Some(request) = next {
                    match request {
                        Request::Notify => notify = true,
                        Request::Flush(done) => flushes.push(done),
                    }
                    next = received.try_recv().ok();
                }
                if notify {
                    send(&pool).await;
                }
                for done in flushes {
                    let _ = done.send(());
                }
            }
            pool.close().await;
        });
        Ok(Notifier { requests })
    }

    /// Wakes every server listening, soon.
    pub fn notify(&self) {
        let _ = self.requests.send(Request::Notify);
    }

    /// Waits until every wake-up asked for before has been sent (or failed): a command that
    /// notifies and then exits calls this last.
    pub async fn flush(&self) {
        let (done, sent) = oneshot::channel();
        if self.requests.send(Request::Flush(done)).is_ok() {
            let _ = sent.await;
        }
    }
}

async fn send(pool: &PgPool) {
    let sent = sqlx::query("SELECT pg_notify($1, '')")
        .bind(WAKE_CHANNEL)
        .execute(pool)
        .await;
    if let Err(error) = sent {
        // The servers' reconcile finds the work instead.
        tracing::warn!(%error, "could not notify the servers of a change");
    }
}

/// Listens on the wake channel of the database `url` names and calls `on_wake` for every
/// notification, and once more each time it (re)connects, for what it may have missed while it
/// was not listening. Runs until the task is aborted; reconnects after any failure.
pub fn listen(
    url: &str,
    on_wake: impl Fn() + Send + Sync + 'static,
) -> Result<tokio::task::JoinHandle<()>> {
    let options = options(url, "mission-listener")?;
    let on_wake = Arc::new(on_wake);
    Ok(tokio::spawn(async move {
        let mut failures = 0usize;
        loop {
            match listen_once(&options, on_wake.as_ref()).await {
                Ok(()) => failures = 0,
                Err(error) => {
                    tracing::warn!(%error, "wake-up listener lost its connection; connecting again");
                    failures += 1;
                }
            }
            let wait = RECONNECT_BACKOFF[failures.min(RECONNECT_BACKOFF.len() - 1)];
            tokio::time::sleep(wait).await;
        }
    }))
}

/// One connection's worth of listening: returns when the connection is lost or stops answering.
async fn listen_once(options: &PgConnectOptions, on_wake: &(dyn Fn() + Send + Sync)) -> Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(LISTENER_CHECK_TIMEOUT)
        .connect_lazy_with(options.clone());
    let mut listener = PgListener::connect_with(&pool).await?;
    // A lost connection ends this attempt; the caller connects again.
    listener.eager_reconnect(false);
    listener.listen(WAKE_CHANNEL).await?;
    tracing::debug!("listening for wake-ups");
    // Whatever was notified while nobody listened.
    on_wake();
    loop {
        match tokio::time::timeout(LISTENER_IDLE_CHECK, listener.try_recv()).await {
            Ok(Ok(Some(_))) => on_wake(),
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(error)) => return Err(error.into()),
            Err(_idle) => {
                let check = tokio::time::timeout(
                    LISTENER_CHECK_TIMEOUT,
                    sqlx::query("SELECT 1").execute(&mut listener),
                )
                .await;
                match check {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return Err(error.into()),
                    Err(_) => {
                        return Err(StoreError::Unavailable(
                            "the listener's connection stopped answering".into(),
                        ));
                    }
                }
            }
        }
    }
}
