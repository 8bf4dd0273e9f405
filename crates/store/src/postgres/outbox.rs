//! The outbox in PostgreSQL: rows queued by `append_events` (`enqueue_for_events`), claimed in
//! order under a lease (the channel's head rows locked `FOR UPDATE`, so two servers never claim
//! the same row), settled with one attempt row each. Claims and records write no event and do not
//! take the event counter, except a record with a dead row, whose incident writes an event.

use super::PgStore;
use super::incidents::record_audit_in;
use super::rows::{text, ticket_id};
use crate::error::corrupt;
use crate::outbox::payload;
use crate::{
    AuditPass, Change, DeliveryOutcome, DeliveryResult, OutboxAttempt, OutboxFilter, OutboxItem,
    OutboxStore, Result, StoreError,
};
use async_trait::async_trait;
use mission_core::notify::{OutboxStatus, Subscription, Topic, topic_of};
use mission_core::{EventKind, TicketId, Timestamp};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, Row};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const COLUMNS: &str = "id, channel, topic, event_seq, ticket, payload, created_at, status, \
    attempts, next_attempt_at, lease_until, last_error, sent_at, remote_id";

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn decode(row: &PgRow) -> Result<OutboxItem> {
    let topic: String = row.try_get("topic")?;
    let status: String = row.try_get("status")?;
    let payload: String = row.try_get("payload")?;
    let time = |name: &str| -> Result<Option<Timestamp>> {
        Ok(row
            .try_get::<Option<i64>, _>(name)?
            .map(Timestamp::from_millis))
    };
    Ok(OutboxItem {
        id: row.try_get("id")?,
        channel: row.try_get("channel")?,
        topic: topic.parse().map_err(|_| corrupt("outbox topic", &topic))?,
        event_seq: row.try_get("event_seq")?,
        ticket: row
            .try_get::<Option<String>, _>("ticket")?
            .map(|t| ticket_id(&t))
            .transpose()?,
        payload: serde_json::from_str(&payload).map_err(|_| corrupt("outbox payload", &payload))?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        status: status
            .parse()
            .map_err(|_| corrupt("outbox status", &status))?,
        attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: Timestamp::from_millis(row.try_get("next_attempt_at")?),
        lease_until: time("lease_until")?,
        last_error: row.try_get("last_error")?,
        sent_at: time("sent_at")?,
        remote_id: row.try_get("remote_id")?,
    })
}

/// Queues the notifications of events inside their transaction, in one statement: one row per
/// channel subscribed to each event's topic, in the events' order (then the channels'). Called by
/// `append_events` for every event it writes.
pub(super) async fn enqueue_for_events(
    conn: &mut PgConnection,
    events: &[(i64, EventKind, Option<&TicketId>, &Value)],
    change: &Change,
) -> Result<()> {
    let mut seqs = Vec::new();
    let mut tickets = Vec::new();
    let mut payloads = Vec::new();
    let mut topics = Vec::new();
    for &(seq, kind, ticket, data) in events {
        if let Some(topic) = topic_of(kind, data) {
            seqs.push(seq);
            tickets.push(ticket.map(|t| t.to_string()));
            payloads.push(payload(kind, seq, ticket, change, data).to_string());
            topics.push(topic.as_str());
        }
    }
    if seqs.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO outbox (channel, topic, event_seq, ticket, payload, created_at, \
         next_attempt_at) SELECT s.channel, s.topic, e.seq, e.ticket, e.payload, $1, $1 \
         FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[]) \
         AS e(seq, ticket, payload, topic) \
         JOIN notify_subscriptions s ON s.topic = e.topic ORDER BY e.seq, s.channel",
    )
    .bind(change.at.as_millis())
    .bind(&seqs)
    .bind(&tickets)
    .bind(&payloads)
    .bind(&topics)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn load(conn: &mut PgConnection, id: i64) -> Result<OutboxItem> {
    let sql = format!("SELECT {COLUMNS} FROM outbox WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("outbox row {id} vanished")))?;
    decode(&row)
}

async fn load_locked(conn: &mut PgConnection, id: i64) -> Result<OutboxItem> {
    let sql = format!("SELECT {COLUMNS} FROM outbox WHERE id = $1 FOR UPDATE");
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("outbox row {id} vanished")))?;
    decode(&row)
}

#[async_trait]
impl OutboxStore for PgStore {
    async fn set_subscriptions(&self, subscriptions: &[Subscription]) -> Result<()> {
        // Under the event counter: no event-writing transaction reads half of the new set.
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM notify_subscriptions")
            .execute(&mut *tx)
            .await?;
        for subscription in subscriptions {
            for topic in &subscription.topics {
                sqlx::query("INSERT INTO notify_subscriptions (channel, topic) VALUES ($1, $2)")
                    .bind(&subscription.channel)
                    .bind(topic.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn subscriptions(&self) -> Result<Vec<Subscription>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT channel, topic FROM notify_subscriptions ORDER BY channel, topic",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut by_channel: BTreeMap<String, BTreeSet<Topic>> = BTreeMap::new();
        for (channel, topic) in rows {
            let topic = topic.parse().map_err(|_| corrupt("outbox topic", &topic))?;
            by_channel.entry(channel).or_default().insert(topic);
        }
        Ok(by_channel
            .into_iter()
            .map(|(channel, topics)| Subscription { channel, topics })
            .collect())
    }

    async fn enqueue_notification(
        &self,
        channel: &str,
        topic: Topic,
        payload: &Value,
        at: Timestamp,
    ) -> Result<OutboxItem> {
        let mut tx = self.row_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO outbox (channel, topic, payload, created_at, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(channel)
        .bind(topic.as_str())
        .bind(payload.to_string())
        .bind(at.as_millis())
        .bind(at.as_millis())
        .fetch_one(&mut *tx)
        .await?;
        let item = load(&mut tx, id).await?;
        tx.commit().await?;
        Ok(item)
    }

    async fn claim_outbox(
        &self,
        channel: &str,
        now: Timestamp,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxItem>> {
        let now_ms = now.as_millis();
        // Most polls find nothing: look before taking the write lock.
        let head: Option<(i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT id, next_attempt_at, lease_until FROM outbox \
             WHERE channel = $1 AND status = 'pending' ORDER BY id LIMIT 1",
        )
        .bind(channel)
        .fetch_optional(&self.pool)
        .await?;
        match head {
            Some((_, due, lease_until))
                if due <= now_ms && lease_until.is_none_or(|l| l <= now_ms) => {}
            _ => return Ok(Vec::new()),
        }
        // Without the event counter: the channel's head rows are locked, so a second server
        // claiming the channel waits, then sees the lease.
        let mut tx = self.row_tx().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM outbox WHERE channel = $1 AND status = 'pending' \
             ORDER BY id LIMIT $2 FOR UPDATE"
        );
        let rows = sqlx::query(&sql)
            .bind(channel)
            .bind(i64::from(limit.max(1)))
            .fetch_all(&mut *tx)
            .await?;
        let until = now.plus(lease);
        let mut claimed = Vec::new();
        for row in &rows {
            let mut item = decode(row)?;
            let free = item.lease_until.is_none_or(|l| l <= now);
            if item.next_attempt_at > now || !free {
                break;
            }
            sqlx::query("UPDATE outbox SET lease_until = $1 WHERE id = $2")
                .bind(until.as_millis())
                .bind(item.id)
                .execute(&mut *tx)
                .await?;
            item.lease_until = Some(until);
            claimed.push(item);
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn record_deliveries(
        &self,
        results: &[DeliveryResult],
        change: &Change,
    ) -> Result<Vec<OutboxItem>> {
        // A dead row's incident writes an event: only then is the event counter taken.
        let dies = results
            .iter()
            .any(|r| matches!(r.outcome, DeliveryOutcome::Dead { .. }));
        let mut tx = if dies {
            self.write_tx().await?
        } else {
            self.row_tx().await?
        };
        let at = change.at.as_millis();
        let mut items = Vec::new();
        for result in results {
            let current = load_locked(&mut tx, result.id).await?;
            if current.status != OutboxStatus::Pending {
                items.push(current);
                continue;
            }
            let (ok, error) = match &result.outcome {
                DeliveryOutcome::Released => {
                    sqlx::query("UPDATE outbox SET lease_until = NULL WHERE id = $1")
                        .bind(result.id)
                        .execute(&mut *tx)
                        .await?;
                    items.push(load(&mut tx, result.id).await?);
                    continue;
                }
                DeliveryOutcome::Sent { remote_id } => {
                    sqlx::query(
                        "UPDATE outbox SET status = 'sent', attempts = attempts + 1, \
                         lease_until = NULL, sent_at = $1, remote_id = $2, last_error = NULL \
                         WHERE id = $3",
                    )
                    .bind(at)
                    .bind(remote_id)
                    .bind(result.id)
                    .execute(&mut *tx)
                    .await?;
                    (true, None)
                }
                DeliveryOutcome::Retry { error, at: retry } => {
                    sqlx::query(
                        "UPDATE outbox SET attempts = attempts + 1, lease_until = NULL, \
                         next_attempt_at = $1, last_error = $2 WHERE id = $3",
                    )
                    .bind(retry.as_millis())
                    .bind(text(error))
                    .bind(result.id)
                    .execute(&mut *tx)
                    .await?;
                    (false, Some(error))
                }
                DeliveryOutcome::Dead { error, finding } => {
                    sqlx::query(
                        "UPDATE outbox SET status = 'dead', attempts = attempts + 1, \
                         lease_until = NULL, last_error = $1 WHERE id = $2",
                    )
                    .bind(text(error))
                    .bind(result.id)
                    .execute(&mut *tx)
                    .await?;
                    let pass = AuditPass {
                        findings: vec![finding.clone()],
                        ..AuditPass::default()
                    };
                    record_audit_in(&mut tx, &pass, change).await?;
                    (false, Some(error))
                }
            };
            sqlx::query(
                "INSERT INTO outbox_attempts (outbox, number, at, ok, http_status, latency_ms, \
                 error) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(result.id)
            .bind(i32::try_from(current.attempts).unwrap_or(i32::MAX - 1) + 1)
            .bind(at)
            .bind(ok)
            .bind(result.http_status.map(i32::from))
            .bind(millis(result.latency))
            .bind(error.map(|e| text(e).into_owned()))
            .execute(&mut *tx)
            .await?;
            items.push(load(&mut tx, result.id).await?);
        }
        tx.commit().await?;
        Ok(items)
    }

    async fn outbox(&self, filter: &OutboxFilter) -> Result<Vec<OutboxItem>> {
        let mut query = sqlx::QueryBuilder::<Postgres>::new(format!(
            "SELECT {COLUMNS} FROM outbox WHERE 1 = 1"
        ));
        if let Some(status) = filter.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(channel) = &filter.channel {
            query.push(" AND channel = ").push_bind(channel.clone());
        }
        query
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(filter.limit.max(1)));
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(decode).collect()
    }

    async fn outbox_attempts(&self, id: i64) -> Result<Vec<OutboxAttempt>> {
        let rows = sqlx::query(
            "SELECT number, at, ok, http_status, latency_ms, error FROM outbox_attempts \
             WHERE outbox = $1 ORDER BY number",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OutboxAttempt {
                    number: u32::try_from(row.try_get::<i32, _>("number")?).unwrap_or(0),
                    at: Timestamp::from_millis(row.try_get("at")?),
                    ok: row.try_get("ok")?,
                    http_status: row
                        .try_get::<Option<i32>, _>("http_status")?
                        .and_then(|s| u16::try_from(s).ok()),
                    latency: Duration::from_millis(
                        u64::try_from(row.try_get::<i64, _>("latency_ms")?).unwrap_or(0),
                    ),
                    error: row.try_get("error")?,
                })
            })
            .collect()
    }

    async fn outbox_by_remote(&self, channel: &str, remote_id: &str) -> Result<Option<OutboxItem>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM outbox WHERE channel = $1 AND remote_id = $2 \
             ORDER BY id DESC LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(channel)
            .bind(remote_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    async fn next_outbox_due(&self, channel: &str) -> Result<Option<Timestamp>> {
        let head: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT next_attempt_at, lease_until FROM outbox \
             WHERE channel = $1 AND status = 'pending' ORDER BY id LIMIT 1",
        )
        .bind(channel)
        .fetch_optional(&self.pool)
        .await?;
        Ok(head.map(|(due, lease)| Timestamp::from_millis(due.max(lease.unwrap_or(0)))))
    }

    async fn notify_cursor(&self, name: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM notify_cursors WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn advance_notify_cursor(&self, name: &str, value: i64, ignored: u64) -> Result<()> {
        let mut tx = self.row_tx().await?;
        sqlx::query(
            "INSERT INTO notify_cursors (name, value) VALUES ($1, $2) ON CONFLICT (name) \
             DO UPDATE SET value = GREATEST(notify_cursors.value, excluded.value)",
        )
        .bind(name)
        .bind(value)
        .execute(&mut *tx)
        .await?;
        if ignored > 0 {
            sqlx::query(
                "INSERT INTO notify_cursors (name, value) VALUES ($1, $2) ON CONFLICT (name) \
                 DO UPDATE SET value = notify_cursors.value + excluded.value",
            )
            .bind(format!("{name}.ignored"))
            .bind(i64::try_from(ignored).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
