//! The notification sender: one task per configured channel (each webhook, Telegram) that takes
//! its channel's due outbox rows in order (`OutboxStore::claim_outbox`, under a lease), delivers
//! them one by one, and records every attempt in one transaction per batch. A failure is retried
//! after the core's backoff (`NotifyRetry`, with jitter; a receiver's `retry_after` is honoured),
//! and holds back the channel's later rows, so a chat reads its notifications in order; the last
//! attempt kills the row and opens the `notify_dead:CHANNEL` incident in the same transaction.
//!
//! The sender runs on its own store connections and its own tasks: nothing the dispatcher waits
//! for; and it yields to the dispatcher: before each claim and each delivery it waits while a
//! pass or a run's start is in flight (`foreground.rs`). It polls its channel every `notify.poll_interval` when idle (any process may queue a
//! notification: the CLI, the HTTP side, runs' callbacks), and works through a backlog without
//! pausing. Telegram's replies and button presses come back through `telegram::poll`.

pub mod render;
pub mod telegram;
pub mod webhook;

use crate::app::App;
use crate::clock::Clock;
use crate::settings::Settings;
use async_trait::async_trait;
use mission_core::notify::{AfterAttempt, NotifySettings, TELEGRAM_CHANNEL};
use mission_core::{Actor, Finding, Fingerprint, Severity, Timestamp};
use mission_store::{Change, DeliveryOutcome, DeliveryResult, OutboxItem, Store};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The most rows claimed and delivered per transaction pair.
pub const BATCH: u32 = 32;

/// A batch's deliveries may take this long at most (its lease is this, plus a second): the
/// longest delay before a row claimed by a sender that died is delivered again. Webhooks with
/// the default 10 s timeout take full batches; Telegram takes one message at a time.
pub const BATCH_TIME: Duration = Duration::from_secs(320);

/// The longest the sender waits for foreground work (a dispatch pass, runs starting) before a
/// delivery.
const YIELD_LIMIT: Duration = Duration::from_millis(500);

/// The actor of the sender's records (a dead row's incident).
pub fn actor() -> Actor {
    Actor::new("notify")
}

/// What one delivery attempt came to.
#[derive(Clone, Debug, Default)]
pub struct Attempted {
    pub ok: bool,
    /// What the receiver called it (a Telegram message id).
    pub remote_id: Option<String>,
    pub http_status: Option<u16>,
    /// Why it failed: no secret, no URL.
    pub error: Option<String>,
    /// How long the receiver asked us to wait.
    pub retry_after: Option<Duration>,
}

impl Attempted {
    pub fn failed(error: impl Into<String>, http_status: Option<u16>) -> Self {
        Attempted {
            error: Some(error.into()),
            http_status,
            ..Attempted::default()
        }
    }
}

/// A channel: where notifications go.
#[async_trait]
pub trait Channel: Send + Sync {
    fn name(&self) -> &str;
    fn paused(&self) -> bool;
    /// The longest one delivery may take (the lease covers a batch of them).
    fn timeout(&self) -> Duration;
    /// Rows per claim: as many as fit in `BATCH_TIME` at the channel's timeout, up to `BATCH`.
    fn batch(&self) -> u32 {
        let fits = BATCH_TIME.as_millis() / self.timeout().as_millis().max(1);
        u32::try_from(fits).unwrap_or(BATCH).clamp(1, BATCH)
    }
    async fn deliver(&self, item: &OutboxItem) -> Attempted;
    /// Deliveries a second at most; 0: no limit.
    fn max_per_second(&self) -> u32 {
        0
    }
}

/// A number in `[0, 1)` for the backoff's jitter.
fn jitter() -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The incident of a channel whose notification was given up.
pub fn dead_finding(item: &OutboxItem, attempts: u32, error: &str) -> Finding {
    let fingerprint = Fingerprint::parse(&format!("notify_dead:{}", item.channel))
        .or_else(|_| Fingerprint::parse("notify_dead:channel"))
        .expect("a valid fingerprint");
    Finding {
        fingerprint,
        severity: Severity::Warning,
        detail: format!(
            "notification {} ({}) to {} was given up after {attempts} attempts: {error}",
            item.id, item.topic, item.channel
        ),
        evidence: json!({
            "outbox": item.id,
            "channel": item.channel,
            "topic": item.topic,
            "attempts": attempts,
            "error": error,
        }),
        ticket: item.ticket.clone(),
    }
}

/// Delivers one claimed batch in order; after the first failure the rest are released untried.
pub async fn deliver_batch(
    channel: &dyn Channel,
    settings: &NotifySettings,
    clock: &dyn Clock,
    batch: &[OutboxItem],
) -> Vec<DeliveryResult> {
    let mut results = Vec::with_capacity(batch.len());
    let mut failed = false;
    for item in batch {
        if failed {
            results.push(DeliveryResult {
                id: item.id,
                outcome: DeliveryOutcome::Released,
                http_status: None,
                latency: Duration::ZERO,
            });
            continue;
        }
        // A pickup in flight goes first (`foreground.rs`).
        crate::foreground::yield_to_foreground(YIELD_LIMIT).await;
        let started = Instant::now();
        let attempted = channel.deliver(item).await;
        let latency = started.elapsed();
        let outcome = if attempted.ok {
            DeliveryOutcome::Sent {
                remote_id: attempted.remote_id,
            }
        } else {
            failed = true;
            let attempts = item.attempts + 1;
            let error = attempted.error.unwrap_or_else(|| "failed".to_owned());
            tracing::warn!(channel = channel.name(), outbox = item.id, attempts, %error, "notification not delivered");
            match settings
                .retry
                .after_failure(attempts, jitter(), attempted.retry_after)
            {
                AfterAttempt::Retry(wait) => DeliveryOutcome::Retry {
                    error,
                    at: clock.now().plus(wait),
                },
                AfterAttempt::Dead => DeliveryOutcome::Dead {
                    finding: dead_finding(item, attempts, &error),
                    error,
                },
            }
        };
        results.push(DeliveryResult {
            id: item.id,
            outcome,
            http_status: attempted.http_status,
            latency,
        });
    }
    results
}

/// One pass over a channel: claim, deliver, record. Returns how many rows it settled or tried.
pub async fn pass(
    store: &dyn Store,
    channel: &dyn Channel,
    settings: &NotifySettings,
    clock: &dyn Clock,
) -> Result<usize, mission_store::StoreError> {
    // A paced channel takes at most a tenth of a second's allowance at a time, so that its
    // pace holds over short spans too, not only on average.
    let size = match channel.max_per_second() {
        0 => channel.batch(),
        rate => channel.batch().min((rate / 10).max(1)),
    };
    let lease = channel.timeout().saturating_mul(size) + Duration::from_secs(1);
    crate::foreground::yield_to_foreground(YIELD_LIMIT).await;
    let batch = store
        .claim_outbox(channel.name(), clock.now(), lease, size)
        .await?;
    if batch.is_empty() {
        return Ok(0);
    }
    let results = deliver_batch(channel, settings, clock, &batch).await;
    crate::foreground::yield_to_foreground(YIELD_LIMIT).await;
    store
        .record_deliveries(&results, &Change::new(actor(), clock.now()))
        .await?;
    Ok(batch.len())
}

/// A channel's loop until `stopped`.
async fn run_channel(
    store: Arc<dyn Store>,
    channel: Arc<dyn Channel>,
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
    mut stopped: watch::Receiver<bool>,
) {
    let notify = &settings.notify;
    loop {
        if *stopped.borrow() {
            return;
        }
        let began = tokio::time::Instant::now();
        let worked = if channel.paused() {
            0
        } else {
            match pass(store.as_ref(), channel.as_ref(), notify, clock.as_ref()).await {
                Ok(n) => n,
                Err(error) => {
                    tracing::error!(channel = channel.name(), %error, "the outbox could not be read");
                    0
                }
            }
        };
        if worked > 0 {
            // A backlog drains at the channel's pace: the next batch starts no sooner than
            // this one's share of a second after it began.
            if let Some(next) = paced(began, worked, channel.max_per_second()) {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = stopped.changed() => {}
                }
            }
            continue;
        }
        // Idle: until the head's retry time, or the poll interval.
        let mut wait = notify.poll_interval;
        if let Ok(Some(due)) = store.next_outbox_due(channel.name()).await {
            let now = clock.now();
            if due > now {
                wait = wait.min(Duration::from_millis(
                    u64::try_from(due.as_millis() - now.as_millis()).unwrap_or(0),
                ));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => {}
        }
    }
}

/// When a batch of `worked` deliveries begun at `began` lets the next one begin, at
/// `max_per_second` (0: at once, `None`).
fn paced(
    began: tokio::time::Instant,
    worked: usize,
    max_per_second: u32,
) -> Option<tokio::time::Instant> {
    (max_per_second > 0)
        .then(|| began + Duration::from_secs_f64(worked as f64 / f64::from(max_per_second)))
}

/// The HTTP client of every channel: rustls (ring), no proxy from the environment, no
/// redirects (a redirect could carry a signed body elsewhere).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_rustls()
        .build()
        .expect("the HTTP client builds")
}

/// Records the configured channels' subscriptions when the store's differ (every process that
/// runs use cases does, so that a fact recorded by any of them is queued for the channels the
/// configuration names now).
pub async fn sync_subscriptions(
    store: &dyn Store,
    settings: &NotifySettings,
) -> Result<(), mission_store::StoreError> {
    let mut wanted: Vec<_> = settings
        .subscriptions()
        .into_iter()
        .filter(|s| !s.topics.is_empty())
        .collect();
    wanted.sort_by(|a, b| a.channel.cmp(&b.channel));
    if store.subscriptions().await? != wanted {
        store.set_subscriptions(&wanted).await?;
    }
    Ok(())
}

/// Starts the sender: records the configured subscriptions, then one task per channel, and
/// Telegram's update poller. `app` is how replies and button presses act (the same use cases as
/// the CLI and the dashboard). The channels claim and record their deliveries on `deliveries`,
/// which may defer its commits' durability (`OpenOptions::deferred_durability`): a delivery
/// record lost with the machine means a redelivery with the same id; Telegram's update offset
/// and what replies do are written on `store`, durably. Returns the tasks; they end when
/// `stopped` turns true.
pub async fn start(
    store: Arc<dyn Store>,
    deliveries: Arc<dyn Store>,
    app: App,
    clock: Arc<dyn Clock>,
    stopped: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, String> {
    let settings = app.settings().clone();
    let notify = &settings.notify;
    sync_subscriptions(store.as_ref(), notify)
        .await
        .map_err(|e| format!("recording the notification subscriptions: {e}"))?;
    let http = http_client();
    let mut channels: Vec<Arc<dyn Channel>> = Vec::new();
    for hook in &notify.webhooks {
        channels.push(Arc::new(webhook::Webhook::new(
            hook.clone(),
            http.clone(),
            clock.clone(),
        )));
    }
    let mut tasks = Vec::new();
    if let Some(config) = &notify.telegram {
        let bot = Arc::new(telegram::Bot::new(
            config,
            http.clone(),
            store.clone(),
            notify.dashboard_url.clone(),
        )?);
        channels.push(bot.clone());
        if !config.paused {
            tasks.push(tokio::spawn(telegram::poll(bot, app, stopped.clone())));
        }
    }
    for channel in channels {
        tracing::info!(
            channel = channel.name(),
            paused = channel.paused(),
            "notification channel"
        );
        tasks.push(tokio::spawn(run_channel(
            deliveries.clone(),
            channel,
            settings.clone(),
            clock.clone(),
            stopped.clone(),
        )));
    }
    Ok(tasks)
}

/// Whether a configured channel of that name exists.
pub fn is_channel(settings: &NotifySettings, name: &str) -> bool {
    (name == TELEGRAM_CHANNEL && settings.telegram.is_some()) || settings.webhook(name).is_some()
}

/// Seconds since the epoch, for the `webhook-timestamp` header.
pub fn unix_seconds(at: Timestamp) -> i64 {
    at.as_millis().div_euclid(1000)
}
