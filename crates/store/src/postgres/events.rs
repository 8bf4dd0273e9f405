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
/// through here or through `append_events`.
pub(super) async fn append_event(
    conn: &mut PgConnection,
    kind: EventKind,
    ticket: Option<&TicketId>,
    change: &Change,
    data: &Value,
) -> Result<i64> {
    let seqs = append_events(conn, &[(kind, ticket, data)], change).await?;
    Ok(seqs[0])
}

/// Appends events, in the order given, inside the caller's write transaction, in one statement:
/// the counter moves by their number and they take its last values, in order. Returns their
/// sequence numbers.
pub(super) async fn append_events(
    conn: &mut PgConnection,
    events: &[(EventKind, Option<&TicketId>, &Value)],
    change: &Change,
) -> Result<Vec<i64>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
    let kinds: Vec<&str> = events.iter().map(|(kind, _, _)| kind.as_str()).collect();
    let tickets: Vec<Option<String>> = events
        .iter()
        .map(|(_, ticket, _)| ticket.map(|t| t.to_string()))
        .collect();
    let data: Vec<String> = events.iter().map(|(_, _, data)| data.to_string()).collect();
    let mut seqs: Vec<i64> = sqlx::query_scalar(
        "WITH next AS (UPDATE counters SET value = value + $2 WHERE name = $1 RETURNING value) \
         INSERT INTO events (seq, at, kind, ticket, actor, data) \
         SELECT next.value - $2 + e.ord, $3, e.kind, e.ticket, $4, e.data \
         FROM next, UNNEST($5::text[], $6::text[], $7::text[]) WITH ORDINALITY \
         AS e(kind, ticket, data, ord) ORDER BY e.ord RETURNING seq",
    )
    .bind(EVENT_SEQ_COUNTER)
    .bind(count)
    .bind(change.at.as_millis())
    .bind(change.actor.as_str())
    .bind(&kinds)
    .bind(&tickets)
    .bind(&data)
    .fetch_all(&mut *conn)
    .await?;
    if seqs.len() != events.len() {
        return Err(StoreError::Corrupt(
            "the event sequence counter is missing".to_owned(),
        ));
    }
    // The i-th event took the i-th number, whatever order RETURNING lists them in.
    seqs.sort_unstable();
    // The notifications of the facts, in their transaction (`OutboxStore`).
    let numbered: Vec<_> = seqs
        .iter()
        .zip(events)
        .map(|(&seq, &(kind, ticket, data))| (seq, kind, ticket, data))
        .collect();
    super::outbox::enqueue_for_events(conn, &numbered, change).await?;
    Ok(seqs)
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
