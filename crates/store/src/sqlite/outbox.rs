//! The outbox in SQLite: rows queued by `append_event` (`enqueue_for_event`), claimed in order
//! under a lease, settled with one attempt row each. Claims and records write no event: they take
//! the write lock for one short transaction (a dead row's incident adds its event to it).

use super::SqliteStore;
use super::incidents::record_audit_in;
use super::rows::ticket_id;
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
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, SqliteConnection};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const COLUMNS: &str = "id, channel, topic, event_seq, ticket, payload, created_at, status, \
    attempts, next_attempt_at, lease_until, last_error, sent_at, remote_id";

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn decode(row: &SqliteRow) -> Result<OutboxItem> {
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
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: Timestamp::from_millis(row.try_get("next_attempt_at")?),
        lease_until: time("lease_until")?,
        last_error: row.try_get("last_error")?,
        sent_at: time("sent_at")?,
        remote_id: row.try_get("remote_id")?,
    })
}

/// Queues the notifications of an event inside its transaction: one row per channel subscribed
/// to its topic. Called by `append_event` for every event.
pub(super) async fn enqueue_for_event(
    conn: &mut SqliteConnection,
    seq: i64,
    kind: EventKind,
    ticket: Option<&TicketId>,
    change: &Change,
    data: &Value,
) -> Result<()> {
    let Some(topic) = topic_of(kind, data) else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO outbox (channel, topic, event_seq, ticket, payload, created_at, \
         next_attempt_at) SELECT channel, topic, ?, ?, ?, ?, ? FROM notify_subscriptions \
         WHERE topic = ? ORDER BY channel",
    )
    .bind(seq)
    .bind(ticket.map(|t| t.to_string()))
    .bind(payload(kind, seq, ticket, change, data).to_string())
    .bind(change.at.as_millis())
    .bind(change.at.as_millis())
    .bind(topic.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Rows of one statement at most (each binds a few values; SQLite allows 32,766).
const ROWS_PER_STATEMENT: usize = 500;

/// `?, ?, …` for `n` values.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// The rows `ids`, by id, in one statement per [`ROWS_PER_STATEMENT`]; a missing row is an error.
async fn load_many(conn: &mut SqliteConnection, ids: &[i64]) -> Result<BTreeMap<i64, OutboxItem>> {
    let mut found = BTreeMap::new();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT {COLUMNS} FROM outbox WHERE id IN ({})",
            marks(chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let item = decode(&row)?;
            found.insert(item.id, item);
        }
    }
    if let Some(missing) = ids.iter().find(|id| !found.contains_key(id)) {
        return Err(StoreError::Corrupt(format!(
            "outbox row {missing} vanished"
        )));
    }
    Ok(found)
}

async fn load(conn: &mut SqliteConnection, id: i64) -> Result<OutboxItem> {
    let sql = format!("SELECT {COLUMNS} FROM outbox WHERE id = ?");
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("outbox row {id} vanished")))?;
    decode(&row)
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn set_subscriptions(&self, subscriptions: &[Subscription]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM notify_subscriptions")
            .execute(&mut *tx)
            .await?;
        for subscription in subscriptions {
            for topic in &subscription.topics {
                sqlx::query("INSERT INTO notify_subscriptions (channel, topic) VALUES (?, ?)")
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
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO outbox (channel, topic, payload, created_at, next_attempt_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING id",
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
             WHERE channel = ? AND status = 'pending' ORDER BY id LIMIT 1",
        )
        .bind(channel)
        .fetch_optional(&self.pool)
        .await?;
        match head {
            Some((_, due, lease_until))
                if due <= now_ms && lease_until.is_none_or(|l| l <= now_ms) => {}
            _ => return Ok(Vec::new()),
        }
        let mut tx = self.write_tx().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM outbox WHERE channel = ? AND status = 'pending' \
             ORDER BY id LIMIT ?"
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
            item.lease_until = Some(until);
            claimed.push(item);
        }
        // One statement leases the batch: the write lock is held for as short as can be.
        for chunk in claimed.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE outbox SET lease_until = ? WHERE id IN ({})",
                marks(chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(until.as_millis());
            for item in chunk {
                query = query.bind(item.id);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn record_deliveries(
        &self,
        results: &[DeliveryResult],
        change: &Change,
    ) -> Result<Vec<OutboxItem>> {
        let mut tx = self.write_tx().await?;
        let at = change.at.as_millis();
        let ids: Vec<i64> = results.iter().map(|r| r.id).collect();
        let current = load_many(&mut tx, &ids).await?;
        // The common case, a sent row, is settled in bulk (one UPDATE for the batch, one INSERT
        // of its attempts); the rare ones row by row.
        let mut sent: Vec<(i64, Option<&str>)> = Vec::new();
        let mut attempts: Vec<(&DeliveryResult, i64, bool, Option<&str>)> = Vec::new();
        for result in results {
            let current = &current[&result.id];
            if current.status != OutboxStatus::Pending {
                continue;
            }
            let number = i64::from(current.attempts) + 1;
            match &result.outcome {
                DeliveryOutcome::Released => {
                    sqlx::query("UPDATE outbox SET lease_until = NULL WHERE id = ?")
                        .bind(result.id)
                        .execute(&mut *tx)
                        .await?;
                }
                DeliveryOutcome::Sent { remote_id } => {
                    sent.push((result.id, remote_id.as_deref()));
                    attempts.push((result, number, true, None));
                }
                DeliveryOutcome::Retry { error, at: retry } => {
                    sqlx::query(
                        "UPDATE outbox SET attempts = attempts + 1, lease_until = NULL, \
                         next_attempt_at = ?, last_error = ? WHERE id = ?",
                    )
                    .bind(retry.as_millis())
                    .bind(error)
                    .bind(result.id)
                    .execute(&mut *tx)
                    .await?;
                    attempts.push((result, number, false, Some(error)));
                }
                DeliveryOutcome::Dead { error, finding } => {
                    sqlx::query(
                        "UPDATE outbox SET status = 'dead', attempts = attempts + 1, \
                         lease_until = NULL, last_error = ? WHERE id = ?",
                    )
                    .bind(error)
                    .bind(result.id)
                    .execute(&mut *tx)
                    .await?;
                    let pass = AuditPass {
                        findings: vec![finding.clone()],
                        ..AuditPass::default()
                    };
                    record_audit_in(&mut tx, &pass, change).await?;
                    attempts.push((result, number, false, Some(error)));
                }
            }
        }
        for chunk in sent.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE outbox SET status = 'sent', attempts = attempts + 1, lease_until = NULL, \
                 sent_at = ?, remote_id = sent.remote_id, last_error = NULL \
                 FROM (SELECT column1 AS id, column2 AS remote_id FROM (VALUES {})) AS sent \
                 WHERE outbox.id = sent.id",
                vec!["(?, ?)"; chunk.len()].join(", ")
            );
            let mut query = sqlx::query(&sql).bind(at);
            for (id, remote_id) in chunk {
                query = query.bind(id).bind(remote_id);
            }
            query.execute(&mut *tx).await?;
        }
        for chunk in attempts.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO outbox_attempts (outbox, number, at, ok, http_status, latency_ms, \
                 error) VALUES {}",
                vec!["(?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ")
            );
            let mut query = sqlx::query(&sql);
            for (result, number, ok, error) in chunk {
                query = query
                    .bind(result.id)
                    .bind(number)
                    .bind(at)
                    .bind(ok)
                    .bind(result.http_status.map(i64::from))
                    .bind(millis(result.latency))
                    .bind(error);
            }
            query.execute(&mut *tx).await?;
        }
        let mut settled = load_many(&mut tx, &ids).await?;
        tx.commit().await?;
        Ok(ids.iter().filter_map(|id| settled.remove(id)).collect())
    }

    async fn outbox(&self, filter: &OutboxFilter) -> Result<Vec<OutboxItem>> {
        let mut query =
            sqlx::QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM outbox WHERE 1 = 1"));
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
             WHERE outbox = ? ORDER BY number",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OutboxAttempt {
                    number: u32::try_from(row.try_get::<i64, _>("number")?).unwrap_or(0),
                    at: Timestamp::from_millis(row.try_get("at")?),
                    ok: row.try_get("ok")?,
                    http_status: row
                        .try_get::<Option<i64>, _>("http_status")?
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
            "SELECT {COLUMNS} FROM outbox WHERE channel = ? AND remote_id = ? \
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
             WHERE channel = ? AND status = 'pending' ORDER BY id LIMIT 1",
        )
        .bind(channel)
        .fetch_optional(&self.pool)
        .await?;
        Ok(head.map(|(due, lease)| Timestamp::from_millis(due.max(lease.unwrap_or(0)))))
    }

    async fn notify_cursor(&self, name: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM notify_cursors WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn advance_notify_cursor(&self, name: &str, value: i64, ignored: u64) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO notify_cursors (name, value) VALUES (?, ?) ON CONFLICT (name) \
             DO UPDATE SET value = MAX(value, excluded.value)",
        )
        .bind(name)
        .bind(value)
        .execute(&mut *tx)
        .await?;
        if ignored > 0 {
            sqlx::query(
                "INSERT INTO notify_cursors (name, value) VALUES (?, ?) ON CONFLICT (name) \
                 DO UPDATE SET value = value + excluded.value",
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
