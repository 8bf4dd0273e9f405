//! Notifications: which facts are worth telling someone about (`Topic`, `topic_of`), the
//! configuration of the channels that tell them (`[notify]`, `[notify.telegram]`,
//! `[[notify.webhooks]]`), how a failed delivery is retried (`NotifyRetry`: capped exponential
//! backoff with jitter, then dead), and the Standard Webhooks signature
//! (<https://www.standardwebhooks.com/>) of a webhook's body.
//!
//! The outbox itself is the store's: a notification is a row written by the store's one
//! `append_event` in the transaction of the fact's event, one row per channel subscribed to the
//! fact's topic. Nothing here does I/O: signing is a pure function of the secret and the bytes.

use crate::config::{ConfigError, Secret};
use crate::event::EventKind;
use crate::id::Name;
use crate::time::deserialize_duration;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What a notification is about. Stable strings: they are what `events = [...]` subscribes to,
/// the `type` of a webhook's body, and what the outbox stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Topic {
    /// A worker asked a question (an inbox item of kind `question` was created).
    #[serde(rename = "inbox.question")]
    Question,
    /// A ticket waits for a person's review (`review_request`).
    #[serde(rename = "inbox.review_request")]
    ReviewRequest,
    /// Something waits for a yes or no (`approval`).
    #[serde(rename = "inbox.approval")]
    Approval,
    /// An inbox alert (an item that could not be delivered, a merge conflict).
    #[serde(rename = "inbox.alert")]
    Alert,
    /// A failed ticket's inbox item (`failed_ticket`).
    #[serde(rename = "inbox.failed_ticket")]
    FailedTicketItem,
    /// A ticket moved to `failed`.
    #[serde(rename = "ticket.failed")]
    TicketFailed,
    /// A run ended and moved its ticket (or ended without moving it).
    #[serde(rename = "run.finished")]
    RunFinished,
    /// An incident was opened.
    #[serde(rename = "incident.opened")]
    IncidentOpened,
    /// A resolved incident's condition came back.
    #[serde(rename = "incident.reopened")]
    IncidentReopened,
    /// The verdict changed (`health.changed`).
    #[serde(rename = "health.changed")]
    HealthChanged,
    /// `mission webhook test NAME`: a ping, to one channel.
    #[serde(rename = "ping")]
    Ping,
}

impl Topic {
    pub const ALL: [Topic; 11] = [
        Topic::Question,
        Topic::ReviewRequest,
        Topic::Approval,
        Topic::Alert,
        Topic::FailedTicketItem,
        Topic::TicketFailed,
        Topic::RunFinished,
        Topic::IncidentOpened,
        Topic::IncidentReopened,
        Topic::HealthChanged,
        Topic::Ping,
    ];

    /// What a channel subscribes to when its configuration names no `events`: everything a
    /// person may have to act on (not `run.finished`, which is chatty).
    pub const DEFAULT: [Topic; 9] = [
        Topic::Question,
        Topic::ReviewRequest,
        Topic::Approval,
        Topic::Alert,
        Topic::FailedTicketItem,
        Topic::TicketFailed,
        Topic::IncidentOpened,
        Topic::IncidentReopened,
        Topic::HealthChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Question => "inbox.question",
            Topic::ReviewRequest => "inbox.review_request",
            Topic::Approval => "inbox.approval",
            Topic::Alert => "inbox.alert",
            Topic::FailedTicketItem => "inbox.failed_ticket",
            Topic::TicketFailed => "ticket.failed",
            Topic::RunFinished => "run.finished",
            Topic::IncidentOpened => "incident.opened",
            Topic::IncidentReopened => "incident.reopened",
            Topic::HealthChanged => "health.changed",
            Topic::Ping => "ping",
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Topic {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Topic::ALL.iter().map(|t| t.as_str()).collect();
                format!("unknown event {s:?}; expected one of {}", known.join(", "))
            })
    }
}

/// The topic of an event, if it is one a channel may subscribe to. Called by the store's
/// `append_event` for every event, inside its transaction: the one decision of what is
/// notifiable.
pub fn topic_of(kind: EventKind, data: &Value) -> Option<Topic> {
    let text = |key: &str| data.get(key).and_then(Value::as_str);
    match kind {
        EventKind::InboxCreated => match text("kind")? {
            "question" => Some(Topic::Question),
            "review_request" => Some(Topic::ReviewRequest),
            "approval" => Some(Topic::Approval),
            "alert" => Some(Topic::Alert),
            "failed_ticket" => Some(Topic::FailedTicketItem),
            _ => None,
        },
        EventKind::TicketMoved if text("to") == Some("failed") => Some(Topic::TicketFailed),
        // A move a run's end made (it names the run); a claim names its run too, but starts it.
        EventKind::TicketMoved
            if data.get("run").is_some_and(|r| !r.is_null()) && text("via") != Some("claim") =>
        {
            Some(Topic::RunFinished)
        }
        EventKind::RunEnded => Some(Topic::RunFinished),
        EventKind::IncidentOpened => Some(Topic::IncidentOpened),
        EventKind::IncidentReopened => Some(Topic::IncidentReopened),
        EventKind::HealthChanged => Some(Topic::HealthChanged),
        _ => None,
    }
}

/// Where a notification stands in the outbox. Stable strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Waiting for (another) attempt.
    Pending,
    /// A receiver took it (a 2xx, Telegram's `ok`).
    Sent,
    /// Its attempts are used up; an incident was raised.
    Dead,
}

impl OutboxStatus {
    pub const ALL: [OutboxStatus; 3] = [
        OutboxStatus::Pending,
        OutboxStatus::Sent,
        OutboxStatus::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Dead => "dead",
        }
    }
}

impl fmt::Display for OutboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutboxStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OutboxStatus::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown outbox state {s:?}; expected pending, sent or dead"))
    }
}

/// How failed deliveries are retried: the attempt after attempt `n` waits
/// `min(max, base × 2^(n-1))`, of which a random half (the jitter) is taken off, unless the
/// receiver said how long to wait (Telegram's `retry_after`, a `Retry-After` header), which is
/// waited exactly (capped at `max`). After `max_attempts` attempts the notification is dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotifyRetry {
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

/// What follows a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterAttempt {
    /// Try again after this long.
    Retry(Duration),
    /// Attempts used up.
    Dead,
}

impl NotifyRetry {
    /// What follows the failure of attempt `attempts` (1 for the first). `jitter` in `[0, 1)`
    /// comes from the caller (the engine draws it), so that this stays a pure function.
    pub fn after_failure(
        &self,
        attempts: u32,
        jitter: f64,
        retry_after: Option<Duration>,
    ) -> AfterAttempt {
        if attempts >= self.max_attempts {
            return AfterAttempt::Dead;
        }
        if let Some(wait) = retry_after {
            return AfterAttempt::Retry(wait.min(self.backoff_max));
        }
        let exponent = attempts.clamp(1, 32) - 1;
        let full = self
            .backoff_base
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.backoff_max);
        let jitter = jitter.clamp(0.0, 1.0);
        AfterAttempt::Retry(full.mul_f64(1.0 - jitter / 2.0))
    }
}

/// The `[notify]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Attempts per notification before it is dead (an incident).
    pub max_attempts: u32,
    #[serde(deserialize_with = "deserialize_duration")]
    pub backoff_base: Duration,
    #[serde(deserialize_with = "deserialize_duration")]
    pub backoff_max: Duration,
    /// How often the sender looks for new notifications when nothing woke it.
    #[serde(deserialize_with = "deserialize_duration")]
    pub poll_interval: Duration,
    /// The dashboard's address as people reach it, for links in messages
    /// (`https://mission.example.com`); none: messages carry no link.
    pub dashboard_url: Option<String>,
    pub telegram: Option<TelegramConfig>,
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            max_attempts: 8,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(600),
            poll_interval: Duration::from_secs(1),
            dashboard_url: None,
            telegram: None,
            webhooks: Vec::new(),
        }
    }
}

/// `[notify.telegram]`: one bot talking to one chat.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// The token BotFather gave (`123456:ABC…`). A secret; prefer `bot_token_env`.
    pub bot_token: Option<Secret>,
    /// The environment variable of the server holding the token.
    pub bot_token_env: Option<String>,
    /// The chat notifications go to (a person's id, or a group's negative id).
    pub chat_id: i64,
    /// Who may answer and approve: Telegram user ids. Messages and button presses from anyone
    /// else, or from another chat, are ignored (and counted).
    #[serde(default)]
    pub allowed_user_ids: Vec<i64>,
    /// The Bot API's address (a local fake in tests).
    #[serde(default = "telegram_api_base")]
    pub api_base: String,
    /// What is sent: topics; none given: `Topic::DEFAULT`.
    pub events: Option<Vec<String>>,
    /// How long one `getUpdates` long poll waits.
    #[serde(default = "thirty_seconds", deserialize_with = "deserialize_duration")]
    pub poll_timeout: Duration,
    /// How long one `sendMessage` may take.
    #[serde(default = "ten_seconds", deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    /// Stop sending (notifications wait, in order) and stop reading replies.
    #[serde(default)]
    pub paused: bool,
    /// Messages a second at most (Telegram answers 429 above about 30 a second).
    #[serde(default = "telegram_rate")]
    pub max_per_second: u32,
}

/// `[notify.telegram] max_per_second` when not given.
pub const TELEGRAM_RATE: u32 = 25;

/// `[[notify.webhooks]] max_per_second` when not given: a backlog drains at this pace, leaving
/// the machine to the dispatcher (see README, "Notifications").
pub const WEBHOOK_RATE: u32 = 600;

fn telegram_rate() -> u32 {
    TELEGRAM_RATE
}

fn webhook_rate() -> u32 {
    WEBHOOK_RATE
}

fn telegram_api_base() -> String {
    "https://api.telegram.org".to_owned()
}

fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}

/// `[[notify.webhooks]]`: one endpoint.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The channel's name (`mission webhook test NAME`, `notify list`).
    pub name: String,
    pub url: String,
    /// `whsec_` followed by the base64 of the key, as Standard Webhooks libraries expect.
    pub secret: Secret,
    /// What is sent: topics; none given: `Topic::DEFAULT`.
    pub events: Option<Vec<String>>,
    /// Notifications wait, in order, while paused.
    #[serde(default)]
    pub paused: bool,
    /// How long one delivery may take.
    #[serde(default = "ten_seconds", deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    /// Deliveries a second at most; 0: as fast as the endpoint answers.
    #[serde(default = "webhook_rate")]
    pub max_per_second: u32,
}

/// The name of the Telegram channel in the outbox.
pub const TELEGRAM_CHANNEL: &str = "telegram";

/// One channel and what it subscribes to, as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub channel: String,
    pub topics: BTreeSet<Topic>,
}

/// The `[notify]` section checked.
#[derive(Clone, Debug)]
pub struct NotifySettings {
    pub retry: NotifyRetry,
    pub poll_interval: Duration,
    pub dashboard_url: Option<String>,
    pub telegram: Option<TelegramSettings>,
    pub webhooks: Vec<WebhookSettings>,
}

#[derive(Clone, Debug)]
pub struct TelegramSettings {
    /// The token, or where to find it: resolved by the engine at start.
    pub token: TokenSource,
    pub chat_id: i64,
    pub allowed_user_ids: BTreeSet<i64>,
    pub api_base: String,
    pub topics: BTreeSet<Topic>,
    pub poll_timeout: Duration,
    pub timeout: Duration,
    pub paused: bool,
    /// Messages a second at most (at least 1).
    pub max_per_second: u32,
}

#[derive(Clone, Debug)]
pub enum TokenSource {
    Value(Secret),
    Env(String),
}

#[derive(Clone, Debug)]
pub struct WebhookSettings {
    pub name: Name,
    pub url: String,
    pub secret: WebhookSecret,
    /// The secret as configured (`whsec_…`), for redaction.
    pub secret_text: Secret,
    pub topics: BTreeSet<Topic>,
    pub paused: bool,
    pub timeout: Duration,
    /// Deliveries a second at most; 0: no limit.
    pub max_per_second: u32,
}

impl NotifySettings {
    /// Every channel and its topics, for the store's subscriptions.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        let mut list: Vec<Subscription> = self
            .webhooks
            .iter()
            .map(|w| Subscription {
                channel: w.name.to_string(),
                topics: w.topics.clone(),
            })
            .collect();
        if let Some(telegram) = &self.telegram {
            list.push(Subscription {
                channel: TELEGRAM_CHANNEL.to_owned(),
                topics: telegram.topics.clone(),
            });
        }
        list
    }

    pub fn webhook(&self, name: &str) -> Option<&WebhookSettings> {
        self.webhooks.iter().find(|w| w.name.as_str() == name)
    }
}

fn topics(key: &str, events: &Option<Vec<String>>) -> Result<BTreeSet<Topic>, ConfigError> {
    match events {
        None => Ok(Topic::DEFAULT.into_iter().collect()),
        Some(list) => list
            .iter()
            .map(|e| e.parse::<Topic>().map_err(|p| ConfigError::new(key, p)))
            .collect(),
    }
}

fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            ConfigError::new(key, format!("{url:?} is not an http:// or https:// URL"))
        })?;
    if rest.is_empty() || rest.starts_with('/') || url.chars().any(char::is_whitespace) {
        return Err(ConfigError::new(key, format!("{url:?} names no host")));
    }
    Ok(())
}

impl NotifyConfig {
    pub fn check(&self) -> Result<NotifySettings, ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::new(
                "notify.max_attempts",
                "must be at least 1",
            ));
        }
        if self.backoff_base.is_zero() || self.backoff_max < self.backoff_base {
            return Err(ConfigError::new(
                "notify.backoff_max",
                "backoff_base must be above zero and backoff_max at least backoff_base",
            ));
        }
        if self.poll_interval.is_zero() {
            return Err(ConfigError::new(
                "notify.poll_interval",
                "must be above zero",
            ));
        }
        if let Some(url) = &self.dashboard_url {
            check_url("notify.dashboard_url", url)?;
        }
        let telegram = match &self.telegram {
            None => None,
            Some(t) => {
                let token = match (&t.bot_token, &t.bot_token_env) {
                    (Some(token), None) => {
                        if !valid_bot_token(token.expose()) {
                            return Err(ConfigError::new(
                                "notify.telegram.bot_token",
                                "not a bot token (expected NUMBER:SECRET, as BotFather gives it)",
                            ));
                        }
                        TokenSource::Value(token.clone())
                    }
                    (None, Some(env)) if !env.is_empty() => TokenSource::Env(env.clone()),
                    _ => {
                        return Err(ConfigError::new(
                            "notify.telegram",
                            "give exactly one of bot_token and bot_token_env",
                        ));
                    }
                };
                check_url("notify.telegram.api_base", &t.api_base)?;
                if t.timeout.is_zero() {
                    return Err(ConfigError::new(
                        "notify.telegram.timeout",
                        "must be above zero",
                    ));
                }
                if t.poll_timeout.is_zero() || t.poll_timeout > Duration::from_secs(50) {
                    return Err(ConfigError::new(
                        "notify.telegram.poll_timeout",
                        "must be between 1s and 50s",
                    ));
                }
                if t.max_per_second == 0 {
                    return Err(ConfigError::new(
                        "notify.telegram.max_per_second",
                        "must be at least 1 (Telegram limits bots to about 30 messages a second)",
                    ));
                }
                Some(TelegramSettings {
                    token,
                    chat_id: t.chat_id,
                    allowed_user_ids: t.allowed_user_ids.iter().copied().collect(),
                    api_base: t.api_base.trim_end_matches('/').to_owned(),
                    topics: topics("notify.telegram.events", &t.events)?,
                    poll_timeout: t.poll_timeout,
                    timeout: t.timeout,
                    paused: t.paused,
                    max_per_second: t.max_per_second,
                })
            }
        };
        let mut webhooks: Vec<WebhookSettings> = Vec::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            let key = |field: &str| format!("notify.webhooks[{i}].{field}");
            let name =
                Name::parse(&w.name).map_err(|e| ConfigError::new(key("name"), e.to_string()))?;
            if name.as_str() == TELEGRAM_CHANNEL || webhooks.iter().any(|o| o.name == name) {
                return Err(ConfigError::new(
                    key("name"),
                    format!("the channel name {name:?} is taken"),
                ));
            }
            check_url(&key("url"), &w.url)?;
            let secret = WebhookSecret::parse(w.secret.expose())
                .map_err(|p| ConfigError::new(key("secret"), p))?;
            if w.timeout.is_zero() {
                return Err(ConfigError::new(key("timeout"), "must be above zero"));
            }
            webhooks.push(WebhookSettings {
                name,
                url: w.url.clone(),
                secret,
                secret_text: w.secret.clone(),
                topics: topics(&key("events"), &w.events)?,
                paused: w.paused,
                timeout: w.timeout,
                max_per_second: w.max_per_second,
            });
        }
        Ok(NotifySettings {
            retry: NotifyRetry {
                max_attempts: self.max_attempts,
                backoff_base: self.backoff_base,
                backoff_max: self.backoff_max,
            },
            poll_interval: self.poll_interval,
            dashboard_url: self
                .dashboard_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_owned()),
            telegram,
            webhooks,
        })
    }
}

/// Whether `token` looks like a bot token: digits, a colon, then `[A-Za-z0-9_-]`.
pub fn valid_bot_token(token: &str) -> bool {
    match token.split_once(':') {
        Some((id, secret)) => {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && secret.len() >= 8
                && secret
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }
        None => false,
    }
}

/// A webhook's signing key: `whsec_` + base64 in the configuration, the decoded bytes here.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl WebhookSecret {
    pub fn parse(text: &str) -> Result<Self, String> {
        let encoded = text
            .strip_prefix("whsec_")
            .ok_or("must start with whsec_ (whsec_ followed by base64, e.g. from `openssl rand -base64 32`)")?;
        let key = BASE64
            .decode(encoded)
            .map_err(|_| "the part after whsec_ is not base64".to_owned())?;
        if !(24..=64).contains(&key.len()) {
            return Err(format!(
                "the key is {} bytes; Standard Webhooks keys are 24 to 64 bytes",
                key.len()
            ));
        }
        Ok(WebhookSecret(key))
    }

    /// The `webhook-signature` header's value for a message: `v1,` and the base64 of
    /// HMAC-SHA256 over `{id}.{timestamp}.{body}`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-id` of an outbox row: the same for every attempt, so that receivers drop a
/// duplicate.
pub fn message_id(outbox_id: i64) -> String {
    format!("msg_mc{outbox_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn topics_of_events() {
        let cases = [
            (
                EventKind::InboxCreated,
                json!({"kind": "question"}),
                Some(Topic::Question),
            ),
            (
                EventKind::InboxCreated,
                json!({"kind": "review_request"}),
                Some(Topic::ReviewRequest),
            ),
            (
                EventKind::InboxCreated,
                json!({"kind": "failed_ticket"}),
                Some(Topic::FailedTicketItem),
            ),
            (
                EventKind::TicketMoved,
                json!({"to": "failed", "run": 3}),
                Some(Topic::TicketFailed),
            ),
            (
                EventKind::TicketMoved,
                json!({"to": "review", "run": 3}),
                Some(Topic::RunFinished),
            ),
            (EventKind::TicketMoved, json!({"to": "todo"}), None),
            (
                EventKind::TicketMoved,
                json!({"to": "running", "via": "claim", "run": 3}),
                None,
            ),
            (
                EventKind::IncidentOpened,
                json!({}),
                Some(Topic::IncidentOpened),
            ),
            (EventKind::IncidentUpdated, json!({}), None),
            (
                EventKind::IncidentReopened,
                json!({}),
                Some(Topic::IncidentReopened),
            ),
            (
                EventKind::HealthChanged,
                json!({}),
                Some(Topic::HealthChanged),
            ),
            (EventKind::TicketCreated, json!({}), None),
        ];
        for (kind, data, want) in cases {
            assert_eq!(topic_of(kind, &data), want, "{kind:?} {data}");
        }
        for topic in Topic::ALL {
            assert_eq!(topic.as_str().parse::<Topic>(), Ok(topic));
            assert_eq!(serde_json::to_value(topic).unwrap(), json!(topic.as_str()));
        }
    }

    #[test]
    fn retries_back_off_with_jitter_up_to_the_cap_then_die() {
        let retry = NotifyRetry {
            max_attempts: 5,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(10),
        };
        let at = |n, j| retry.after_failure(n, j, None);
        assert_eq!(at(1, 0.0), AfterAttempt::Retry(Duration::from_secs(2)));
        assert_eq!(at(2, 0.0), AfterAttempt::Retry(Duration::from_secs(4)));
        assert_eq!(at(3, 0.0), AfterAttempt::Retry(Duration::from_secs(8)));
        assert_eq!(at(4, 0.0), AfterAttempt::Retry(Duration::from_secs(10)));
        assert_eq!(at(2, 0.5), AfterAttempt::Retry(Duration::from_secs(3)));
        for jitter in [0.0, 0.3, 0.999] {
            let AfterAttempt::Retry(wait) = at(3, jitter) else {
                panic!()
            };
            assert!(wait > Duration::from_secs(4) && wait <= Duration::from_secs(8));
        }
        assert_eq!(at(5, 0.0), AfterAttempt::Dead);
        assert_eq!(
            retry.after_failure(1, 0.5, Some(Duration::from_secs(3))),
            AfterAttempt::Retry(Duration::from_secs(3))
        );
        assert_eq!(
            retry.after_failure(1, 0.5, Some(Duration::from_secs(3600))),
            AfterAttempt::Retry(Duration::from_secs(10))
        );
    }

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification and its reference libraries.
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn bad_configuration_is_refused_naming_the_key() {
        let parse = |text: &str| -> Result<NotifySettings, ConfigError> {
            let config: NotifyConfig = toml::from_str(text).unwrap();
            config.check()
        };
        let cases = [
            (
                "[[webhooks]]\nname='a'\nurl='ftp://x'\nsecret='whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'",
                "notify.webhooks[0].url",
            ),
            (
                "[[webhooks]]\nname='a'\nurl='http://x'\nsecret='nope'",
                "notify.webhooks[0].secret",
            ),
            (
                "[[webhooks]]\nname='a'\nurl='http://x'\nsecret='whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'\nevents=['nope']",
                "notify.webhooks[0].events",
            ),
            (
                "[[webhooks]]\nname='telegram'\nurl='http://x'\nsecret='whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'",
                "notify.webhooks[0].name",
            ),
            ("[telegram]\nchat_id=1", "notify.telegram"),
            (
                "[telegram]\nchat_id=1\nbot_token='nope'",
                "notify.telegram.bot_token",
            ),
            ("max_attempts = 0", "notify.max_attempts"),
        ];
        for (text, key) in cases {
            let error = parse(text).expect_err(text);
            assert_eq!(error.key, key, "{text}: {error}");
        }
        let ok = parse(
            "[telegram]\nchat_id=-100\nbot_token='123:ABCDEFGHIJ'\n[[webhooks]]\nname='ops'\nurl='http://127.0.0.1:9/h'\nsecret='whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'\nevents=['incident.opened']",
        )
        .unwrap();
        assert_eq!(ok.subscriptions().len(), 2);
        assert!(format!("{ok:?}").find("ABCDEFGHIJ").is_none());
    }
}
