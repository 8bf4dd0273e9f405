//! Tickets in PostgreSQL: the board, and the one way a ticket changes state (`apply_transition`),
//! used by operator moves, claims, run reports and answers alike. Every write here runs in a
//! `write_tx`, holding the event counter from its first statement.

use super::PgStore;
use super::events::{append_event, append_events};
use super::rows::{
    self, SUMMARY_COLUMNS, TICKET_COLUMNS, decode_summary, decode_ticket, state_from_db,
};
use crate::tickets::created_event_data;
use crate::{Change, Move, Result, StoreError, TicketFilter, TicketStore, TicketSummary};
use async_trait::async_trait;
use mission_core::deps::find_cycle;
use mission_core::policy::DependencyState;
use mission_core::transition::Via;
use mission_core::{
    EventKind, NewTicket, State, Ticket, TicketId, TicketKey, TicketPatch, Timestamp,
    ValidationError, plan_transition,
};
use serde_json::Value;
use sqlx::{PgConnection, Postgres, Row};
use std::collections::HashMap;

/// The counter ticket numbers are taken from.
const TICKET_NUMBER_COUNTER: &str = "ticket_number";

/// Moves a ticket inside a write transaction: checks the transition against the state read in
/// this transaction, carries out its side effects as the core plans them, applies `adjust`
/// (attempts, resume, backoff), writes the row and one `ticket.moved` event whose data is
/// `{from, to, via}` plus the fields of `extra`.
pub(super) async fn transition(
    conn: &mut PgConnection,
    id: &TicketId,
    to: State,
    via: Via,
    extra: Value,
    change: &Change,
    adjust: impl FnOnce(&mut Ticket),
) -> Result<Ticket> {
    let ticket = load_ticket(&mut *conn, id).await?;
    apply_transition(conn, ticket, to, via, extra, change, adjust).await
}

/// `transition` for a ticket already read in this transaction.
pub(super) async fn apply_transition(
    conn: &mut PgConnection,
    mut ticket: Ticket,
    to: State,
    via: Via,
    extra: Value,
    change: &Change,
    adjust: impl FnOnce(&mut Ticket),
) -> Result<Ticket> {
    let from = ticket.state;
    adjust(&mut ticket);
    ticket.state = from;
    let moved = apply_transitions(
        conn,
        vec![Moving {
            ticket,
            to,
            via,
            extra,
        }],
        change,
        |_, _| {},
    )
    .await?;
    Ok(moved.into_iter().next().expect("one ticket moved"))
}

/// A ticket read in this transaction, the state it moves to, the path, and the fields its
/// `ticket.moved` event carries besides `{from, to, via}`.
pub(super) struct Moving {
    pub ticket: Ticket,
    pub to: State,
    pub via: Via,
    pub extra: Value,
}

/// `apply_transition` for several distinct tickets at once, in a few statements whatever their
/// number (a dispatch pass's claims): every transition is checked before anything is written;
/// `adjust(i, ticket)` adjusts the i-th; the events are written in the order given.
pub(super) async fn apply_transitions(
    conn: &mut PgConnection,
    moves: Vec<Moving>,
    change: &Change,
    mut adjust: impl FnMut(usize, &mut Ticket),
) -> Result<Vec<Ticket>> {
    let mut closing = Vec::new();
    for moving in &moves {
        let id = &moving.ticket.id;
        let effects =
            plan_transition(moving.ticket.state, moving.to, moving.via).map_err(|source| {
                StoreError::Transition {
                    id: id.clone(),
                    source,
                }
            })?;
        if effects.close_question {
            closing.push(id.to_string());
        }
    }
    if !closing.is_empty() {
        sqlx::query(
            "UPDATE questions SET closed_at = $1 \
             WHERE ticket = ANY($2) AND answer IS NULL AND closed_at IS NULL",
        )
        .bind(change.at.as_millis())
        .bind(&closing)
        .execute(&mut *conn)
        .await?;
    }
    let mut moved = Vec::with_capacity(moves.len());
    let mut data = Vec::with_capacity(moves.len());
    for (i, moving) in moves.into_iter().enumerate() {
        let Moving {
            mut ticket,
            to,
            via,
            extra,
        } = moving;
        let from = ticket.state;
        adjust(i, &mut ticket);
        ticket.state = to;
        ticket.updated_at = change.at;
        ticket.version += 1;
        let mut event = serde_json::json!({ "from": from, "to": to, "via": via });
        if let (Value::Object(event), Value::Object(extra)) = (&mut event, extra) {
            for (k, v) in extra {
                if !v.is_null() {
                    event.insert(k, v);
                }
            }
        }
        moved.push(ticket);
        data.push(event);
    }
    let ids: Vec<String> = moved.iter().map(|t| t.id.to_string()).collect();
    let states: Vec<&str> = moved.iter().map(|t| t.state.as_str()).collect();
    let versions: Vec<i64> = moved.iter().map(|t| t.version).collect();
    let attempts: Vec<i64> = moved.iter().map(|t| t.attempts).collect();
    let resumes: Vec<bool> = moved.iter().map(|t| t.resume).collect();
    let not_before: Vec<Option<i64>> = moved
        .iter()
        .map(|t| t.not_before.map(|at| at.as_millis()))
        .collect();
    sqlx::query(
        "UPDATE tickets t SET state = m.state, updated_at = $1, state_since = $1, \
         version = m.version, attempts = m.attempts, resume = m.resume, \
         not_before = m.not_before \
         FROM UNNEST($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bool[], \
         $7::bigint[]) AS m(id, state, version, attempts, resume, not_before) WHERE t.id = m.id",
    )
    .bind(change.at.as_millis())
    .bind(&ids)
    .bind(&states)
    .bind(&versions)
    .bind(&attempts)
    .bind(&resumes)
    .bind(&not_before)
    .execute(&mut *conn)
    .await?;
    let events: Vec<_> = moved
        .iter()
        .zip(&data)
        .map(|(ticket, data)| (EventKind::TicketMoved, Some(&ticket.id), data))
        .collect();
    append_events(conn, &events, change).await?;
    Ok(moved)
}

/// Loads a ticket and its dependency ids.
pub(super) async fn load_ticket(conn: &mut PgConnection, id: &TicketId) -> Result<Ticket> {
    Ok(load_ticket_with_dependencies(conn, id).await?.0)
}

/// Tickets with their dependencies' ids and states, `rest` being the query's `WHERE` clause and
/// what follows it: one statement (one snapshot, one round trip) whatever their number. Both
/// arrays aggregate the same rows in the same order; a dependency that names no ticket has a
/// NULL state. Every read of a ticket goes through here.
fn tickets_with_dependencies_sql(rest: &str) -> String {
    format!(
        "SELECT {TICKET_COLUMNS}, dep.ids, dep.states FROM tickets t \
         LEFT JOIN LATERAL (SELECT array_agg(d.depends_on ORDER BY d.depends_on) AS ids, \
         array_agg(u.state ORDER BY d.depends_on) AS states FROM ticket_dependencies d \
         LEFT JOIN tickets u ON u.id = d.depends_on WHERE d.ticket = t.id) dep ON TRUE {rest}"
    )
}

/// A row of `tickets_with_dependencies_sql`: the ticket, and its dependencies' states by id.
fn decode_with_dependencies(row: &sqlx::postgres::PgRow) -> Result<(Ticket, Vec<DependencyState>)> {
    let ids: Vec<String> = row
        .try_get::<Option<Vec<String>>, _>("ids")?
        .unwrap_or_default();
    let states: Vec<Option<String>> = row
        .try_get::<Option<Vec<Option<String>>>, _>("states")?
        .unwrap_or_default();
    let mut deps = Vec::with_capacity(ids.len());
    for (dep, state) in ids.iter().zip(states) {
        deps.push(DependencyState {
            id: rows::ticket_id(dep)?,
            state: state.map(|s| state_from_db(&s)).transpose()?,
        });
    }
    deps.sort_by(|a, b| a.id.cmp(&b.id));
    Ok((decode_ticket(row, ids)?, deps))
}

/// A ticket with its dependencies and their states (a dispatch pass reads each candidate this
/// way).
pub(super) async fn load_ticket_with_dependencies(
    conn: &mut PgConnection,
    id: &TicketId,
) -> Result<(Ticket, Vec<DependencyState>)> {
    let row = sqlx::query(&tickets_with_dependencies_sql("WHERE t.id = $1"))
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(id.clone()))?;
    decode_with_dependencies(&row)
}

/// Loads tickets and locks their rows until the end of the transaction (in number order, in
/// one statement whatever their number), keyed by id. A missing one is `NotFound`: the first of
/// `ids`, in their order.
pub(super) async fn lock_tickets(
    conn: &mut PgConnection,
    ids: &[TicketId],
) -> Result<HashMap<String, Ticket>> {
    let wanted: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    let sql =
        tickets_with_dependencies_sql("WHERE t.id = ANY($1) ORDER BY t.number FOR UPDATE OF t");
    let mut tickets = HashMap::with_capacity(ids.len());
    for row in sqlx::query(&sql)
        .bind(&wanted)
        .fetch_all(&mut *conn)
        .await?
    {
        let (ticket, _) = decode_with_dependencies(&row)?;
        tickets.insert(ticket.id.to_string(), ticket);
    }
    if let Some(missing) = ids.iter().find(|id| !tickets.contains_key(&id.to_string())) {
        return Err(StoreError::NotFound(missing.clone()));
    }
    Ok(tickets)
}

/// Many tickets with their dependencies' states, in `ids`' order, in one statement whatever
/// their number (the health snapshot asks the policy about each waiting ticket). Ids that name
/// no ticket are left out.
pub(super) async fn load_tickets_with_dependencies(
    conn: &mut PgConnection,
    ids: &[TicketId],
) -> Result<Vec<(Ticket, Vec<DependencyState>)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    let sql = tickets_with_dependencies_sql("WHERE t.id = ANY($1)");
    let mut loaded = HashMap::with_capacity(ids.len());
    for row in sqlx::query(&sql)
        .bind(&wanted)
        .fetch_all(&mut *conn)
        .await?
    {
        let (ticket, deps) = decode_with_dependencies(&row)?;
        loaded.insert(ticket.id.to_string(), (ticket, deps));
    }
    Ok(wanted.iter().filter_map(|id| loaded.remove(id)).collect())
}

async fn ticket_exists(conn: &mut PgConnection, id: &TicketId) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tickets WHERE id = $1)")
            .bind(id.to_string())
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// Takes `count` ticket numbers from the counter, inside the creating transaction; returns the
/// first. The row lock serializes creators until they commit, and a rolled back transaction gives
/// its numbers back.
async fn take_ticket_numbers(conn: &mut PgConnection, count: i64) -> Result<i64> {
    let last: i64 = sqlx::query_scalar(
        "UPDATE counters SET value = value + $1 WHERE name = $2 RETURNING value",
    )
    .bind(count)
    .bind(TICKET_NUMBER_COUNTER)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::Corrupt("the ticket number counter is missing".to_owned()))?;
    Ok(last - count + 1)
}

async fn insert_dependencies(
    conn: &mut PgConnection,
    id: &TicketId,
    deps: &[TicketId],
) -> Result<()> {
    if deps.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO ticket_dependencies (ticket, depends_on) SELECT $1, unnest($2::TEXT[])",
    )
    .bind(id.to_string())
    .bind(deps.iter().map(|d| d.to_string()).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The dependency edges of every ticket reachable from `start`.
async fn reachable_edges(
    conn: &mut PgConnection,
    start: &[TicketId],
) -> Result<HashMap<TicketId, Vec<TicketId>>> {
    let rows = sqlx::query(
        "WITH RECURSIVE reach(id) AS ( \
             SELECT unnest($1::TEXT[]) \
             UNION SELECT d.depends_on FROM ticket_dependencies d JOIN reach r ON d.ticket = r.id) \
         SELECT d.ticket, d.depends_on FROM ticket_dependencies d JOIN reach r ON d.ticket = r.id",
    )
    .bind(start.iter().map(|id| id.to_string()).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    let mut edges: HashMap<TicketId, Vec<TicketId>> = HashMap::new();
    for row in rows {
        let from = rows::ticket_id(&row.try_get::<String, _>(0)?)?;
        let to = rows::ticket_id(&row.try_get::<String, _>(1)?)?;
        edges.entry(from).or_default().push(to);
    }
    Ok(edges)
}

#[async_trait]
impl TicketStore for PgStore {
    async fn create_tickets(
        &self,
        key: &TicketKey,
        tickets: Vec<NewTicket>,
        change: &Change,
    ) -> Result<Vec<Ticket>> {
        if tickets.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write_tx().await?;
        let count = i64::try_from(tickets.len()).unwrap_or(i64::MAX);
        let mut next = take_ticket_numbers(&mut tx, count).await?;
        let mut created = Vec::with_capacity(tickets.len());
        for new in tickets {
            let id = TicketId::new(key, next);
            next += 1;
            for dep in &new.depends_on {
                if !ticket_exists(&mut tx, dep).await? {
                    return Err(StoreError::MissingDependency {
                        id: id.to_string(),
                        missing: dep.clone(),
                    });
                }
            }
            let ticket = Ticket {
                state: new.initial_state(),
                id,
                title: new.title,
                body: new.body,
                assignee: new.assignee,
                owner: new.owner,
                labels: new.labels,
                priority: new.priority,
                depends_on: new.depends_on,
                evidence_policy: new.evidence_policy,
                repo: new.repo,
                created_at: change.at,
                updated_at: change.at,
                version: 1,
                attempts: 0,
                resume: false,
                not_before: None,
            };
            sqlx::query(
                "INSERT INTO tickets (number, id, title, body, state, assignee, owner, labels, \
                 priority, evidence_policy, repo, created_at, updated_at, state_since, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $12, 1)",
            )
            .bind(ticket.id.number())
            .bind(ticket.id.to_string())
            .bind(&ticket.title)
            .bind(ticket.body.as_bytes())
            .bind(ticket.state.as_str())
            .bind(ticket.assignee.as_ref().map(|n| n.as_str()))
            .bind(ticket.owner.as_ref().map(|n| n.as_str()))
            .bind(Value::from(ticket.labels.clone()).to_string())
            .bind(ticket.priority)
            .bind(ticket.evidence_policy.to_string())
            .bind(rows::opt_text(ticket.repo.as_deref()))
            .bind(change.at.as_millis())
            .execute(&mut *tx)
            .await?;
            insert_dependencies(&mut tx, &ticket.id, &ticket.depends_on).await?;
            append_event(
                &mut tx,
                EventKind::TicketCreated,
                Some(&ticket.id),
                change,
                &created_event_data(&ticket),
            )
            .await?;
            created.push(ticket);
        }
        tx.commit().await?;
        Ok(created)
    }

    async fn ticket(&self, id: &TicketId) -> Result<Ticket> {
        let mut conn = self.pool.acquire().await?;
        load_ticket(&mut conn, id).await
    }

    async fn ticket_with_dependencies(
        &self,
        id: &TicketId,
    ) -> Result<(Ticket, Vec<DependencyState>)> {
        let mut conn = self.pool.acquire().await?;
        load_ticket_with_dependencies(&mut conn, id).await
    }

    async fn list_tickets(&self, filter: &TicketFilter) -> Result<Vec<TicketSummary>> {
        let mut query = sqlx::QueryBuilder::<Postgres>::new(format!(
            "SELECT {SUMMARY_COLUMNS} FROM tickets WHERE TRUE"
        ));
        if let Some(state) = filter.state {
            query.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(assignee) = &filter.assignee {
            query
                .push(" AND assignee = ")
                .push_bind(assignee.as_str().to_owned());
        }
        query.push(" ORDER BY priority DESC, number");
        if let Some(limit) = filter.limit {
            query.push(" LIMIT ").push_bind(i64::from(limit));
        }
        if let Some(offset) = filter.offset {
            query.push(" OFFSET ").push_bind(i64::from(offset));
        }
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(decode_summary).collect()
    }

    async fn move_ticket(&self, id: &TicketId, request: &Move, change: &Change) -> Result<Ticket> {
        let mut tx = self.write_tx().await?;
        let extra = serde_json::json!({ "reason": request.reason });
        let ticket =
            transition(&mut tx, id, request.to, request.via, extra, change, |_| {}).await?;
        tx.commit().await?;
        Ok(ticket)
    }

    async fn edit_ticket(
        &self,
        id: &TicketId,
        patch: &TicketPatch,
        change: &Change,
    ) -> Result<Ticket> {
        let mut tx = self.write_tx().await?;
        let mut ticket = load_ticket(&mut tx, id).await?;
        if let Some(deps) = &patch.depends_on {
            if deps.contains(id) {
                return Err(ValidationError::SelfDependency(id.clone()).into());
            }
            for dep in deps {
                if !ticket_exists(&mut tx, dep).await? {
                    return Err(StoreError::MissingDependency {
                        id: id.to_string(),
                        missing: dep.clone(),
                    });
                }
            }
            let edges = reachable_edges(&mut tx, deps).await?;
            if let Some(cycle) = find_cycle(id, deps, &edges) {
                return Err(StoreError::Cycle(cycle));
            }
        }
        let Some(changes) = patch.apply(&mut ticket) else {
            // Nothing changed: no write, no event.
            return Ok(ticket);
        };
        ticket.updated_at = change.at;
        ticket.version += 1;
        sqlx::query(
            "UPDATE tickets SET title = $1, body = $2, assignee = $3, owner = $4, labels = $5, \
             priority = $6, evidence_policy = $7, repo = $8, updated_at = $9, version = $10 \
             WHERE id = $11",
        )
        .bind(&ticket.title)
        .bind(ticket.body.as_bytes())
        .bind(ticket.assignee.as_ref().map(|n| n.as_str()))
        .bind(ticket.owner.as_ref().map(|n| n.as_str()))
        .bind(Value::from(ticket.labels.clone()).to_string())
        .bind(ticket.priority)
        .bind(ticket.evidence_policy.to_string())
        .bind(rows::opt_text(ticket.repo.as_deref()))
        .bind(change.at.as_millis())
        .bind(ticket.version)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if changes.get("depends_on").is_some() {
            sqlx::query("DELETE FROM ticket_dependencies WHERE ticket = $1")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            insert_dependencies(&mut tx, id, &ticket.depends_on).await?;
        }
        let data = serde_json::json!({ "changes": changes });
        append_event(&mut tx, EventKind::TicketEdited, Some(id), change, &data).await?;
        tx.commit().await?;
        Ok(ticket)
    }

    async fn stale_tickets(
        &self,
        state: State,
        entered_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<TicketSummary>> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM tickets \
             WHERE state = $1 AND state_since < $2 ORDER BY state_since LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(state.as_str())
            .bind(entered_before.as_millis())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_summary).collect()
    }
}
