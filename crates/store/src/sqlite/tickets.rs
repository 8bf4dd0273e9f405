//! Tickets in SQLite: the board, and the one way a ticket changes state (`apply_transition`),
//! used by operator moves, claims, run reports and answers alike.

use super::SqliteStore;
use super::events::append_event;
use super::rows::{self, decode_summary, decode_ticket, state_from_db};
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
use sqlx::{Row, Sqlite, SqliteConnection};
use std::collections::HashMap;

const TICKET_COLUMNS: &str = "id, title, body, state, assignee, owner, labels, priority, \
    evidence_policy, repo, created_at, updated_at, version, attempts, resume, not_before";

/// The counter ticket numbers are taken from (`counters`, migration 4).
const TICKET_NUMBER_COUNTER: &str = "ticket_number";

/// Moves a ticket inside a write transaction: checks the transition against the state read in
/// this transaction, carries out its side effects as the core plans them, applies `adjust`
/// (attempts, resume, backoff), writes the row and one `ticket.moved` event whose data is
/// `{from, to, via}` plus the fields of `extra`.
pub(super) async fn transition(
    conn: &mut SqliteConnection,
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
    conn: &mut SqliteConnection,
    mut ticket: Ticket,
    to: State,
    via: Via,
    extra: Value,
    change: &Change,
    adjust: impl FnOnce(&mut Ticket),
) -> Result<Ticket> {
    let id = &ticket.id.clone();
    let from = ticket.state;
    let effects = plan_transition(from, to, via).map_err(|source| StoreError::Transition {
        id: id.clone(),
        source,
    })?;
    if effects.close_question {
        sqlx::query(
            "UPDATE questions SET closed_at = ? WHERE ticket = ? AND answer IS NULL AND closed_at IS NULL",
        )
        .bind(change.at.as_millis())
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    }
    adjust(&mut ticket);
    ticket.state = to;
    ticket.updated_at = change.at;
    ticket.version += 1;
    sqlx::query(
        "UPDATE tickets SET state = ?, updated_at = ?, state_since = ?, version = ?, attempts = ?, \
         resume = ?, not_before = ? WHERE id = ?",
    )
    .bind(to.as_str())
    .bind(change.at.as_millis())
    .bind(change.at.as_millis())
    .bind(ticket.version)
    .bind(ticket.attempts)
    .bind(i64::from(ticket.resume))
    .bind(ticket.not_before.map(|t| t.as_millis()))
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    let mut data = serde_json::json!({ "from": from, "to": to, "via": via });
    if let (Value::Object(data), Value::Object(extra)) = (&mut data, extra) {
        for (k, v) in extra {
            if !v.is_null() {
                data.insert(k, v);
            }
        }
    }
    append_event(conn, EventKind::TicketMoved, Some(id), change, &data).await?;
    Ok(ticket)
}

/// Loads a ticket and its dependency ids.
pub(super) async fn load_ticket(conn: &mut SqliteConnection, id: &TicketId) -> Result<Ticket> {
    let sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?");
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(id.clone()))?;
    let deps: Vec<String> =
        sqlx::query_scalar("SELECT depends_on FROM ticket_dependencies WHERE ticket = ?")
            .bind(id.to_string())
            .fetch_all(&mut *conn)
            .await?;
    decode_ticket(&row, deps)
}

/// The states of a ticket's dependencies (`None` for one that does not exist), by id.
pub(super) async fn dependency_states(
    conn: &mut SqliteConnection,
    id: &TicketId,
) -> Result<Vec<DependencyState>> {
    let rows = sqlx::query(
        "SELECT d.depends_on, t.state FROM ticket_dependencies d \
         LEFT JOIN tickets t ON t.id = d.depends_on WHERE d.ticket = ?",
    )
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut deps = Vec::with_capacity(rows.len());
    for row in rows {
        deps.push(DependencyState {
            id: rows::ticket_id(&row.try_get::<String, _>(0)?)?,
            state: row
                .try_get::<Option<String>, _>(1)?
                .map(|s| state_from_db(&s))
                .transpose()?,
        });
    }
    deps.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(deps)
}

/// Many tickets with their dependencies' states, in `ids`' order, in three statements whatever
/// their number (the health snapshot asks the policy about each waiting ticket). Ids that name
/// no ticket are left out.
pub(super) async fn load_tickets_with_dependencies(
    conn: &mut SqliteConnection,
    ids: &[TicketId],
) -> Result<Vec<(Ticket, Vec<DependencyState>)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let wanted = serde_json::to_string(&ids.iter().map(|id| id.to_string()).collect::<Vec<_>>())
        .expect("ids serialize");
    let sql = format!(
        "SELECT {TICKET_COLUMNS} FROM tickets WHERE id IN (SELECT value FROM json_each(?))"
    );
    let rows = sqlx::query(&sql)
        .bind(&wanted)
        .fetch_all(&mut *conn)
        .await?;
    let edges = sqlx::query(
        "SELECT d.ticket, d.depends_on, t.state FROM ticket_dependencies d \
         LEFT JOIN tickets t ON t.id = d.depends_on \
         WHERE d.ticket IN (SELECT value FROM json_each(?))",
    )
    .bind(&wanted)
    .fetch_all(&mut *conn)
    .await?;
    let edges = edges
        .iter()
        .map(|e| Ok((e.try_get(0)?, e.try_get(1)?, e.try_get(2)?)))
        .collect::<Result<Vec<_>>>()?;
    crate::tickets::assemble_with_dependencies(
        ids,
        rows,
        edges,
        |row| Ok(row.try_get("id")?),
        decode_ticket,
        state_from_db,
    )
}

async fn ticket_exists(conn: &mut SqliteConnection, id: &TicketId) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tickets WHERE id = ?)")
            .bind(id.to_string())
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// Takes `count` ticket numbers from the counter, inside the creating transaction; returns the
/// first. The row lock (here, SQLite's write lock) serializes creators, and a rolled back
/// transaction gives its numbers back.
async fn take_ticket_numbers(conn: &mut SqliteConnection, count: i64) -> Result<i64> {
    let last: i64 =
        sqlx::query_scalar("UPDATE counters SET value = value + ? WHERE name = ? RETURNING value")
            .bind(count)
            .bind(TICKET_NUMBER_COUNTER)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt("the ticket number counter is missing".to_owned())
            })?;
    Ok(last - count + 1)
}

async fn insert_dependencies(
    conn: &mut SqliteConnection,
    id: &TicketId,
    deps: &[TicketId],
) -> Result<()> {
    for dep in deps {
        sqlx::query("INSERT INTO ticket_dependencies (ticket, depends_on) VALUES (?, ?)")
            .bind(id.to_string())
            .bind(dep.to_string())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The dependency edges of every ticket reachable from `start`.
async fn reachable_edges(
    conn: &mut SqliteConnection,
    start: &[TicketId],
) -> Result<HashMap<TicketId, Vec<TicketId>>> {
    let start_json = Value::from(start.iter().map(|id| id.to_string()).collect::<Vec<_>>());
    let rows = sqlx::query(
        "WITH RECURSIVE reach(id) AS ( \
             SELECT value FROM json_each(?) \
             UNION SELECT d.depends_on FROM ticket_dependencies d JOIN reach r ON d.ticket = r.id) \
         SELECT d.ticket, d.depends_on FROM ticket_dependencies d JOIN reach r ON d.ticket = r.id",
    )
    .bind(start_json.to_string())
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
impl TicketStore for SqliteStore {
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
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
            )
            .bind(ticket.id.number())
            .bind(ticket.id.to_string())
            .bind(&ticket.title)
            .bind(&ticket.body)
            .bind(ticket.state.as_str())
            .bind(ticket.assignee.as_ref().map(|n| n.as_str()))
            .bind(ticket.owner.as_ref().map(|n| n.as_str()))
            .bind(Value::from(ticket.labels.clone()).to_string())
            .bind(ticket.priority)
            .bind(ticket.evidence_policy.to_string())
            .bind(ticket.repo.as_deref())
            .bind(change.at.as_millis())
            .bind(change.at.as_millis())
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
        // A read transaction, so that the ticket and its dependencies come from one snapshot.
        let mut tx = self.read_tx().await?;
        let ticket = load_ticket(&mut tx, id).await?;
        let deps = dependency_states(&mut tx, id).await?;
        tx.commit().await?;
        Ok((ticket, deps))
    }

    async fn list_tickets(&self, filter: &TicketFilter) -> Result<Vec<TicketSummary>> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT id, title, state, assignee, owner, labels, priority, updated_at FROM tickets WHERE 1 = 1",
        );
        if let Some(state) = filter.state {
            query.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(assignee) = &filter.assignee {
            query
                .push(" AND assignee = ")
                .push_bind(assignee.as_str().to_owned());
        }
        query.push(" ORDER BY priority DESC, number");
        // SQLite takes an OFFSET only after a LIMIT; -1 is no limit.
        match (filter.limit, filter.offset) {
            (Some(limit), offset) => {
                query.push(" LIMIT ").push_bind(i64::from(limit));
                if let Some(offset) = offset {
                    query.push(" OFFSET ").push_bind(i64::from(offset));
                }
            }
            (None, Some(offset)) => {
                query.push(" LIMIT -1 OFFSET ").push_bind(i64::from(offset));
            }
            (None, None) => {}
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
            "UPDATE tickets SET title = ?, body = ?, assignee = ?, owner = ?, labels = ?, \
             priority = ?, evidence_policy = ?, repo = ?, updated_at = ?, version = ? WHERE id = ?",
        )
        .bind(&ticket.title)
        .bind(&ticket.body)
        .bind(ticket.assignee.as_ref().map(|n| n.as_str()))
        .bind(ticket.owner.as_ref().map(|n| n.as_str()))
        .bind(Value::from(ticket.labels.clone()).to_string())
        .bind(ticket.priority)
        .bind(ticket.evidence_policy.to_string())
        .bind(ticket.repo.as_deref())
        .bind(change.at.as_millis())
        .bind(ticket.version)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if changes.get("depends_on").is_some() {
            sqlx::query("DELETE FROM ticket_dependencies WHERE ticket = ?")
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
        let rows = sqlx::query(
            "SELECT id, title, state, assignee, owner, labels, priority, updated_at FROM tickets \
             WHERE state = ? AND state_since < ? ORDER BY state_since LIMIT ?",
        )
        .bind(state.as_str())
        .bind(entered_before.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_summary).collect()
    }
}
