//! The SQLite backend: one file, WAL, `synchronous=FULL`, a busy timeout, and `BEGIN IMMEDIATE`
//! for every write so that a read-then-write transaction never loses its snapshot to another
//! writer (it waits for the write lock instead).

mod rows;
mod runs;
mod tasks;
mod web;

use crate::migrate::{self, Migration, MigrationReport};
use crate::{
    Change, ClaimOutcome, ClaimRequest, EndedRun, EventQuery, Heartbeat, Move, Result,
    ResumeContext, RunEnd, RunStart, Store, StoreError, TaskRun, TaskRunStart, TicketFilter,
    TicketSummary, created_event_data,
};
use async_trait::async_trait;
use mission_core::deps::find_cycle;
use mission_core::policy::DependencyState;
use mission_core::task::TaskResult;
use mission_core::{
    ActiveCounts, Attempt, Event, EventKind, Lane, Name, NewTicket, RetryPolicy, Run, RunId,
    Ticket, TicketId, TicketKey, TicketPatch, Timestamp, ValidationError, plan_transition,
};
use rows::{decode_event, decode_summary, decode_ticket, state_from_db};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Executor, Row, Sqlite, SqliteConnection, Transaction};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_tickets_and_events",
        sql: include_str!("../../migrations/sqlite/0001_tickets_and_events.sql"),
    },
    Migration {
        version: 2,
        name: "0002_runs",
        sql: include_str!("../../migrations/sqlite/0002_runs.sql"),
    },
    Migration {
        version: 3,
        name: "0003_task_runs",
        sql: include_str!("../../migrations/sqlite/0003_task_runs.sql"),
    },
    Migration {
        version: 5,
        name: "0005_web",
        sql: include_str!("../../migrations/sqlite/0005_web.sql"),
    },
];

/// How to open the database file.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Create the file if it does not exist (only `mission init` and tests do).
    pub create: bool,
    /// Pool size: 1-2 for a CLI command, more for the server.
    pub max_connections: u32,
    /// How long a writer waits for the write lock before failing.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            create: false,
            max_connections: 4,
            busy_timeout: Duration::from_secs(30),
        }
    }
}

pub struct SqliteStore {
    pool: SqlitePool,
}

const TICKET_COLUMNS: &str = "id, title, body, state, assignee, owner, labels, priority, \
    evidence_policy, repo, created_at, updated_at, version, attempts, resume, not_before";

impl SqliteStore {
    /// Opens (and with `create`, creates) the database file. Does not migrate: call `migrate`.
    pub async fn open(path: &Path, options: SqliteOptions) -> Result<SqliteStore> {
        if !options.create && !path.exists() {
            return Err(StoreError::Backend(format!(
                "no store at {} (run `mission init` first)",
                path.display()
            )));
        }
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(options.create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .connect_with(connect)
            .await?;
        Ok(SqliteStore { pool })
    }

    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn schema_version(conn: &mut SqliteConnection) -> Result<i64> {
        let has_table: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
        )
        .fetch_one(&mut *conn)
        .await?;
        if has_table {
            let version: Option<i64> =
                sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
                    .fetch_one(&mut *conn)
                    .await?;
            return Ok(version.unwrap_or(0));
        }
        let other_tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_one(&mut *conn)
        .await?;
        if other_tables > 0 {
            return Err(StoreError::Corrupt(
                "it has tables but no schema_migrations".to_owned(),
            ));
        }
        Ok(0)
    }
}

/// Moves a ticket inside a write transaction: checks the transition against the state read in
/// this transaction, applies `adjust` (attempts, resume, backoff), writes the row and one
/// `ticket.moved` event whose data is `{from, to, via}` plus the fields of `extra`.
pub(crate) async fn transition(
    conn: &mut SqliteConnection,
    id: &TicketId,
    to: mission_core::State,
    via: mission_core::transition::Via,
    extra: Value,
    change: &Change,
    adjust: impl FnOnce(&mut Ticket),
) -> Result<Ticket> {
    let ticket = load_ticket(&mut *conn, id).await?;
    apply_transition(conn, ticket, to, via, extra, change, adjust).await
}

/// `transition` for a ticket already read in this transaction.
pub(crate) async fn apply_transition(
    conn: &mut SqliteConnection,
    mut ticket: Ticket,
    to: mission_core::State,
    via: mission_core::transition::Via,
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
pub(crate) async fn load_ticket(conn: &mut SqliteConnection, id: &TicketId) -> Result<Ticket> {
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

async fn ticket_exists(conn: &mut SqliteConnection, id: &TicketId) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tickets WHERE id = ?)")
            .bind(id.to_string())
            .fetch_one(&mut *conn)
            .await?,
    )
}

pub(crate) async fn append_event(
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
    Ok(seq)
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
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<MigrationReport> {
        let mut tx = self.write_tx().await?;
        let found = SqliteStore::schema_version(&mut tx).await?;
        let supported = migrate::latest(MIGRATIONS);
        if found > supported {
            return Err(StoreError::SchemaTooNew { found, supported });
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations ( \
                 version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let mut applied = Vec::new();
        for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
            tx.execute(migration.sql).await?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            )
            .bind(migration.version)
            .bind(migration.name)
            .bind(mission_core::Timestamp::now().as_millis())
            .execute(&mut *tx)
            .await?;
            applied.push(migration.name.to_owned());
        }
        tx.commit().await?;
        if !applied.is_empty() {
            tracing::info!(
                from_version = found,
                to_version = supported,
                "store migrated"
            );
        }
        Ok(MigrationReport {
            from_version: found,
            to_version: supported,
            applied,
        })
    }

    async fn create_tickets(
        &self,
        key: &TicketKey,
        tickets: Vec<NewTicket>,
        change: &Change,
    ) -> Result<Vec<Ticket>> {
        let mut tx = self.write_tx().await?;
        let mut next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(number), 0) + 1 FROM tickets")
            .fetch_one(&mut *tx)
            .await?;
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
        let mut tx = self.pool.begin().await?;
        let ticket = load_ticket(&mut tx, id).await?;
        let rows = sqlx::query(
            "SELECT d.depends_on, t.state FROM ticket_dependencies d \
             LEFT JOIN tickets t ON t.id = d.depends_on WHERE d.ticket = ?",
        )
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
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

    async fn active_counts(&self) -> Result<ActiveCounts> {
        runs::active_counts(self).await
    }

    async fn dispatch_candidates(
        &self,
        lane: Lane,
        workers: &[Name],
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<TicketId>> {
        runs::dispatch_candidates(self, lane, workers, now, limit).await
    }

    async fn touched_tickets(
        &self,
        lane: Lane,
        since: i64,
        limit: u32,
    ) -> Result<(Vec<TicketId>, i64)> {
        runs::touched_tickets(self, lane, since, limit).await
    }

    async fn dispatcher_value(&self, name: &str) -> Result<Option<String>> {
        runs::dispatcher_value(self, name).await
    }

    async fn set_dispatcher_value(
        &self,
        name: &str,
        value: &str,
        event: Option<(&str, Value)>,
        change: &Change,
    ) -> Result<bool> {
        runs::set_dispatcher_value(self, name, value, event, change).await
    }

    async fn record_decision(
        &self,
        ticket: &TicketId,
        lane: Lane,
        fingerprint: &str,
        decision: &Value,
        change: &Change,
    ) -> Result<bool> {
        runs::record_decision(self, ticket, lane, fingerprint, decision, change).await
    }

    async fn claim_many(
        &self,
        requests: &[ClaimRequest],
        change: &Change,
    ) -> Result<Vec<ClaimOutcome>> {
        runs::claim_many(self, requests, change).await
    }

    async fn run(&self, id: RunId) -> Result<Run> {
        runs::run(self, id).await
    }

    async fn run_for_token(&self, token_hash: &str) -> Result<Option<Run>> {
        runs::run_for_token(self, token_hash).await
    }

    async fn runs_of(&self, ticket: &TicketId) -> Result<Vec<Run>> {
        runs::runs_of(self, ticket).await
    }

    async fn active_runs(&self) -> Result<Vec<Run>> {
        runs::active_runs(self).await
    }

    async fn unsettled_runs(&self) -> Result<Vec<Run>> {
        runs::unsettled_runs(self).await
    }

    async fn run_started(&self, run: RunId, attempt: Attempt, start: &RunStart) -> Result<()> {
        runs::run_started(self, run, attempt, start).await
    }

    async fn heartbeat(
        &self,
        run: RunId,
        attempt: Attempt,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Heartbeat> {
        runs::heartbeat(self, run, attempt, now, lease).await
    }

    async fn run_session(&self, run: RunId, attempt: Attempt, session_id: &str) -> Result<()> {
        runs::run_session(self, run, attempt, session_id).await
    }

    async fn run_progress(
        &self,
        run: RunId,
        attempt: Attempt,
        text: &str,
        change: &Change,
    ) -> Result<()> {
        runs::run_progress(self, run, attempt, text, change).await
    }

    async fn run_ask(
        &self,
        run: RunId,
        attempt: Attempt,
        question: &str,
        change: &Change,
    ) -> Result<Ticket> {
        runs::run_ask(self, run, attempt, question, change).await
    }

    async fn run_submit(&self, run: RunId, attempt: Attempt, change: &Change) -> Result<Ticket> {
        runs::run_submit(self, run, attempt, change).await
    }

    async fn end_run(
        &self,
        run: RunId,
        attempt: Attempt,
        end: &RunEnd,
        retry: &RetryPolicy,
        change: &Change,
    ) -> Result<EndedRun> {
        runs::end_run(self, run, attempt, end, retry, change).await
    }

    async fn answer(&self, ticket: &TicketId, text: &str, change: &Change) -> Result<Ticket> {
        runs::answer(self, ticket, text, change).await
    }

    async fn resume_context(&self, ticket: &TicketId) -> Result<Option<ResumeContext>> {
        runs::resume_context(self, ticket).await
    }

    async fn begin_task_run(&self, start: &TaskRunStart, change: &Change) -> Result<Option<i64>> {
        tasks::begin_task_run(self, start, change).await
    }

    async fn set_task_run_pid(&self, id: i64, pid: i64) -> Result<()> {
        tasks::set_task_run_pid(self, id, pid).await
    }

    async fn finish_task_run(&self, id: i64, result: &TaskResult, change: &Change) -> Result<bool> {
        tasks::finish_task_run(self, id, result, change).await
    }

    async fn record_task_skip(
        &self,
        start: &TaskRunStart,
        result: &TaskResult,
        change: &Change,
    ) -> Result<bool> {
        tasks::record_task_skip(self, start, result, change).await
    }

    async fn last_task_slot(&self, task: &str) -> Result<Option<Timestamp>> {
        tasks::last_task_slot(self, task).await
    }

    async fn open_task_runs(&self, task: Option<&str>) -> Result<Vec<TaskRun>> {
        tasks::open_task_runs(self, task).await
    }

    async fn task_runs(&self, task: &str, limit: u32) -> Result<Vec<TaskRun>> {
        tasks::task_runs(self, task, limit).await
    }

    async fn stale_tickets(
        &self,
        state: mission_core::State,
        entered_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<TicketSummary>> {
        tasks::stale_tickets(self, state, entered_before, limit).await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
