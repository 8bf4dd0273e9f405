//! The outbox: notifications waiting for their channel. A row is written by the backend's one
//! `append_event` in the transaction of the fact's event — one per channel subscribed to the
//! event's topic (`mission_core::notify::topic_of`) — so a fact and its notifications commit
//! together or not at all. The sender claims a channel's oldest due rows under a lease (in
//! order: a row waiting for its retry holds back the rows behind it), delivers them, and records
//! each attempt; a row whose attempts are used up is dead, and its incident is opened in the same
//! transaction. A sender that dies between a delivery and its record leaves the lease to expire:
//! the row is delivered again, under the same id.

use crate::{Change, Result};
use async_trait::async_trait;
use mission_core::notify::{OutboxStatus, Subscription, Topic};
use mission_core::{EventKind, Finding, TicketId, Timestamp};
use serde_json::{Value, json};
use std::time::Duration;

/// The payload a notification carries: the event as written.
pub(crate) fn payload(
    kind: EventKind,
    seq: i64,
    ticket: Option<&TicketId>,
    change: &Change,
    data: &Value,
) -> Value {
    json!({
        "event": kind.as_str(),
        "seq": seq,
        "at": change.at,
        "actor": change.actor.as_str(),
        "ticket": ticket.map(|t| t.to_string()),
        "data": data,
    })
}

#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Replaces every channel's subscriptions (from the configuration, at the server's start).
    /// Rows already queued stay.
    async fn set_subscriptions(&self, subscriptions: &[Subscription]) -> Result<()>;

    /// The subscriptions on record, by channel.
    async fn subscriptions(&self) -> Result<Vec<Subscription>>;

    /// Queues a notification for one channel that no event caused (a ping).
    async fn enqueue_notification(
        &self,
        channel: &str,
        topic: Topic,
        payload: &Value,
        at: Timestamp,
    ) -> Result<OutboxItem>;

    /// Claims up to `limit` of `channel`'s pending rows, oldest first, under a lease until
    /// `now + lease`: the oldest pending row must be due (its retry time passed) and unclaimed,
    /// and the rows after it are taken while they are too.
    async fn claim_outbox(
        &self,
        channel: &str,
        now: Timestamp,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxItem>>;

    /// Records what became of claimed rows, in one transaction: an attempt row for each one
    /// tried, the row sent, waiting for its retry, or dead (with `Dead`'s finding applied to the
    /// incidents, `incident.opened` or `.updated`, in the same transaction); a released row was
    /// not tried and is claimable again at once. A row already settled (another sender recorded
    /// it first) keeps its state. Returns the rows as they are now.
    async fn record_deliveries(
        &self,
        results: &[DeliveryResult],
        change: &Change,
    ) -> Result<Vec<OutboxItem>>;

    /// Rows, newest first.
    async fn outbox(&self, filter: &OutboxFilter) -> Result<Vec<OutboxItem>>;

    /// A row's attempts, oldest first.
    async fn outbox_attempts(&self, id: i64) -> Result<Vec<OutboxAttempt>>;

    /// The row a channel delivered as `remote_id` (a Telegram message a person replied to).
    async fn outbox_by_remote(&self, channel: &str, remote_id: &str) -> Result<Option<OutboxItem>>;

    /// When the channel's oldest pending row may be tried (its retry time, or its lease's end),
    /// if it has one.
    async fn next_outbox_due(&self, channel: &str) -> Result<Option<Timestamp>>;

    /// A channel's cursor (Telegram's next `getUpdates` offset).
    async fn notify_cursor(&self, name: &str) -> Result<Option<i64>>;

    /// Moves a channel's cursor forward (never back), adding `ignored` to its count of ignored
    /// input (`NAME.ignored`).
    async fn advance_notify_cursor(&self, name: &str, value: i64, ignored: u64) -> Result<()>;
}

/// A notification for one channel.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct OutboxItem {
    pub id: i64,
    pub channel: String,
    pub topic: Topic,
    /// The event of the fact; none for a ping.
    pub event_seq: Option<i64>,
    pub ticket: Option<TicketId>,
    /// `{event, seq, at, actor, ticket, data}`: the event as written.
    pub payload: Value,
    pub created_at: Timestamp,
    pub status: OutboxStatus,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub lease_until: Option<Timestamp>,
    pub last_error: Option<String>,
    pub sent_at: Option<Timestamp>,
    pub remote_id: Option<String>,
}

/// One attempt at a delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxAttempt {
    pub number: u32,
    pub at: Timestamp,
    pub ok: bool,
    pub http_status: Option<u16>,
    pub latency: Duration,
    pub error: Option<String>,
}

/// What became of one claimed row.
#[derive(Clone, Debug)]
pub struct DeliveryResult {
    pub id: i64,
    pub outcome: DeliveryOutcome,
    pub http_status: Option<u16>,
    pub latency: Duration,
}

#[derive(Clone, Debug)]
pub enum DeliveryOutcome {
    /// The receiver took it.
    Sent { remote_id: Option<String> },
    /// The attempt failed; try again at this time.
    Retry { error: String, at: Timestamp },
    /// The attempt failed and was the last: the row is dead and this finding is recorded.
    Dead { error: String, finding: Finding },
    /// Not tried (an earlier row of the channel failed): claimable again at once.
    Released,
}

/// Which rows `outbox` returns.
#[derive(Clone, Debug, Default)]
pub struct OutboxFilter {
    pub status: Option<OutboxStatus>,
    pub channel: Option<String>,
    pub limit: u32,
}
