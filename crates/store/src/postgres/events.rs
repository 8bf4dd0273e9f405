//! The event log in PostgreSQL: the one function that appends an event, and reading them back.
//! `seq` comes from the `event_seq` counter row, taken in the writing transaction (which locked
//! the row first, in `write_tx`): numbers follow commit order and a rolled back transaction gives
//! its number back.

use super::PgStore;
use super::rows::decode_event;
use crate::{Change, EventLog, EventQuery, Result, StoreError};
use async_trait::async_trait;
use mission_core::{Event, EventKind, TicketId};
use serde_json::Value;
use sqlx::{PgConnection, Postgres};

/// The counter event sequence numbers are taken from.
pub(super) const EVENT_SEQ_COUNTER: &str = "event_seq";

/// Appends one event inside the caller's write transaction: every event the store writes goes
/// through here.
pub(super) async fn append_event(
    conn: &mut PgConnection,
    kind: EventKind,
    ticket: Option<&TicketId>,
    change: &Change,
    data: &Value,
) -> Result<i64> {
    let seq: Option<i64> = sqlx::query_scalar(
        "WITH next AS (UPDATE counters SET value = value + 1 WHERE name = $1 RETURNING value) \
         INSERT INTO events (seq, at, kind, ticket, actor, data) \
         SELECT value, $2, $3, $4, $5, $6 FROM next RETURNING seq",
    )
    .bind(EVENT_SEQ_COUNTER)
    .bind(change.at.as_millis())
    .bind(kind.as_str())
    .bind(ticket.map(|t| t.to_string()))
    .bind(change.actor.as_str())
    .bind(data.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let seq =
        seq.ok_or_else(|| StoreError::Corrupt("the event sequence counter is missing".to_owned()))?;
    // The notifications of the fact, in its transaction (`OutboxStore`).
    super::outbox::enqueue_for_event(conn, seq, kind, ticket, change, data).await?;
    Ok(seq)
}

#[async_trait]
impl EventLog for PgStore {
    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        let mut builder = sqlx::QueryBuilder::<Postgres>::new(
            "SELECT seq, at, kind, ticket, actor, data FROM events WHERE seq > ",
        );
        builder.push_bind(query.since);
        if let Some(ticket) = &query.ticket {
            builder.push(" AND ticket = ").push_bind(ticket.to_string());
        }
        builder
            .push(" ORDER BY seq LIMIT ")
            .push_bind(i64::from(query.limit));
        let rows = builder.build().fetch_all(&self.pool).await?;
        rows.iter().map(decode_event).collect()
    }

    async fn last_event_seq(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM events")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
