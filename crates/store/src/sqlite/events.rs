//! The event log in SQLite: the one function that appends an event, and reading them back.
//! `seq` is `AUTOINCREMENT` under SQLite's single writer: it increases in commit order and is
//! never reused.

use super::SqliteStore;
use super::rows::decode_event;
use crate::{Change, EventLog, EventQuery, Result};
use async_trait::async_trait;
use mission_core::{Event, EventKind, TicketId};
use serde_json::Value;
use sqlx::{Sqlite, SqliteConnection};

/// Appends one event inside the caller's write transaction: every event the store writes goes
/// through here.
pub(super) async fn append_event(
    conn: &mut SqliteConnection,
    kind: EventKind,
    ticket: Option<&TicketId>,
    change: &Change,
    data: &Value,
) -> Result<i64> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO events (at, kind, ticket, actor, data) VALUES (?, ?, ?, ?, ?) RETURNING seq",
    )
    .bind(change.at.as_millis())
    .bind(kind.as_str())
    .bind(ticket.map(|t| t.to_string()))
    .bind(change.actor.as_str())
    .bind(data.to_string())
    .fetch_one(&mut *conn)
    .await?;
    // The notifications of the fact, in its transaction (`OutboxStore`).
    super::outbox::enqueue_for_event(conn, seq, kind, ticket, change, data).await?;
    Ok(seq)
}

#[async_trait]
impl EventLog for SqliteStore {
    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        let mut builder = sqlx::QueryBuilder::<Sqlite>::new(
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
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
