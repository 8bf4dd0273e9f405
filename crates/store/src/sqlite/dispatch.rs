//! The dispatcher's reads and writes in SQLite: active runs, candidates, touched tickets, its
//! facts, decisions and claims.

use super::SqliteStore;
use super::events::append_event;
use super::rows::ticket_id;
use super::tickets::{apply_transition, load_ticket};
use crate::{
    CapacityFact, Change, ClaimOutcome, ClaimRefusal, ClaimRequest, DispatchStore, Result,
    StoreError,
};
use async_trait::async_trait;
use mission_core::transition::Via;
use mission_core::{ActiveCounts, EventKind, Lane, Name, RunId, State, TicketId, Timestamp};
use serde_json::{Value, json};
use sqlx::{Row, Sqlite, SqliteConnection};
use std::time::Duration;

/// The `dispatcher_state` row of the capacity fact; its values are `CapacityFact::as_str`.
const CAPACITY_FACT: &str = "capacity";

/// The `dispatcher_state` row of a lane's decision cursor.
fn cursor_name(lane: Lane) -> String {
    format!("decision_cursor:{lane}")
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Live runs counted per worker and pool, inside the caller's transaction.
pub(super) async fn active_counts_in(conn: &mut SqliteConnection) -> Result<ActiveCounts> {
    let rows = sqlx::query(
        "SELECT worker, pool, COUNT(*) FROM runs WHERE ended_at IS NULL GROUP BY worker, pool",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut counts = ActiveCounts::default();
    for row in rows {
        let worker: String = row.try_get(0)?;
        let pool: String = row.try_get(1)?;
        let runs: i64 = row.try_get(2)?;
        counts.add_many(&worker, &pool, u32::try_from(runs).unwrap_or(u32::MAX));
    }
    Ok(counts)
}

async fn dispatcher_value(conn: &mut SqliteConnection, name: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT value FROM dispatcher_state WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// Writes a dispatcher-wide value unless it is already there, with `event` when it changed.
/// Returns whether it changed.
async fn set_dispatcher_value(
    store: &SqliteStore,
    name: &str,
    value: &str,
    event: Option<(EventKind, Value)>,
    change: &Change,
) -> Result<bool> {
    // Most passes change nothing: look before taking the write lock, and look again under it.
    let mut conn = store.pool.acquire().await?;
    if dispatcher_value(&mut conn, name).await?.as_deref() == Some(value) {
        return Ok(false);
    }
    drop(conn);
    let mut tx = store.write_tx().await?;
    if dispatcher_value(&mut tx, name).await?.as_deref() == Some(value) {
        return Ok(false);
    }
    // The event's seq is kept beside the value: reading the change back (the capacity's error)
    // is then one lookup by key, not a search of the event log.
    let seq = match event {
        Some((kind, data)) => Some(append_event(&mut tx, kind, None, change, &data).await?),
        None => None,
    };
    sqlx::query(
        "INSERT INTO dispatcher_state (name, value, updated_at, event_seq) VALUES (?, ?, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, \
         updated_at = excluded.updated_at, event_seq = excluded.event_seq",
    )
    .bind(name)
    .bind(value)
    .bind(change.at.as_millis())
    .bind(seq)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// The capacity fact and when it was last set, inside the caller's transaction.
pub(super) async fn capacity_fact_in(
    conn: &mut SqliteConnection,
) -> Result<Option<(CapacityFact, Timestamp)>> {
    let row: Option<(String, i64, Option<i64>)> =
        sqlx::query_as("SELECT value, updated_at, event_seq FROM dispatcher_state WHERE name = ?")
            .bind(CAPACITY_FACT)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((value, updated_at, event_seq)) = row else {
        return Ok(None);
    };
    let fact = match value.as_str() {
        "unknown" => {
            // The error is kept with the event that recorded the change to unknown, found
            // by its seq (stores written before the seq was kept: the newest such event).
            let data: Option<String> = match event_seq {
                Some(seq) => {
                    sqlx::query_scalar("SELECT data FROM events WHERE seq = ?")
                        .bind(seq)
                        .fetch_optional(&mut *conn)
                        .await?
                }
                None => {
                    sqlx::query_scalar(
                        "SELECT data FROM events WHERE kind = ? ORDER BY seq DESC LIMIT 1",
                    )
                    .bind(EventKind::DispatchCapacityUnknown.as_str())
                    .fetch_optional(&mut *conn)
                    .await?
                }
            };
            let error = data
                .and_then(|d| serde_json::from_str::<Value>(&d).ok())
                .and_then(|d| d["error"].as_str().map(str::to_owned))
                .unwrap_or_default();
            CapacityFact::Unknown { error }
        }
        "counted" => CapacityFact::Counted,
        other => {
            return Err(StoreError::Corrupt(format!(
                "invalid capacity fact {other:?} in the database"
            )));
        }
    };
    Ok(Some((fact, Timestamp::from_millis(updated_at))))
}

async fn claim_in(
    tx: &mut SqliteConnection,
    request: &ClaimRequest,
    change: &Change,
) -> Result<ClaimOutcome> {
    let current = load_ticket(&mut *tx, &request.ticket).await?;
    // A live run, or a run whose process may still be exiting (it reported its end, or was
    // stopped, but its supervisor has not seen the process gone), blocks a new attempt —
    // whatever the ticket's state says (an operator may have moved it meanwhile).
    let run: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE ticket = ? AND (ended_at IS NULL OR (pid IS NOT NULL AND exited_at IS NULL)) \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(request.ticket.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(run) = run {
        return Ok(ClaimOutcome::Refused(ClaimRefusal::AlreadyClaimed {
            run: RunId::new(run),
        }));
    }
    if current.state != State::Todo || current.version != request.expected_version {
        return Ok(ClaimOutcome::Refused(ClaimRefusal::Changed {
            state: current.state,
            version: current.version,
        }));
    }
    if Lane::of(current.resume) != request.lane {
        return Ok(ClaimOutcome::Refused(ClaimRefusal::WrongLane));
    }
    let counts = active_counts_in(&mut *tx).await?;
    if let Err(full) = request.limits.check(&counts) {
        return Ok(ClaimOutcome::Refused(ClaimRefusal::CapacityFull {
            detail: full.detail,
        }));
    }

    let attempt = current.current_attempt().next();
    let lease_until = change.at.as_millis() + millis(request.lease);
    // The partial unique index `runs_one_active_per_ticket` refuses a second live run of the
    // ticket, should anything get past the check above.
    let run_id: i64 = sqlx::query_scalar(
        "INSERT INTO runs (ticket, attempt, worker, pool, lane, node, token_hash, started_at, \
         heartbeat_at, lease_expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(request.ticket.to_string())
    .bind(attempt.get())
    .bind(request.limits.worker.as_str())
    .bind(&request.limits.pool)
    .bind(request.lane.as_str())
    .bind(&request.node)
    .bind(&request.token_hash)
    .bind(change.at.as_millis())
    .bind(change.at.as_millis())
    .bind(lease_until)
    .fetch_one(&mut *tx)
    .await?;
    let run_id = RunId::new(run_id);
    let extra = json!({ "run": run_id, "attempt": attempt, "worker": request.limits.worker, "lane": request.lane });
    apply_transition(
        &mut *tx,
        current,
        State::Running,
        Via::Claim,
        extra,
        change,
        |t| {
            t.attempts = attempt.get();
            t.resume = false;
            t.not_before = None;
        },
    )
    .await?;
    // A claimed ticket's old decisions no longer describe it; when it waits again, the new
    // decision is recorded afresh.
    sqlx::query("DELETE FROM dispatch_decisions WHERE ticket = ?")
        .bind(request.ticket.to_string())
        .execute(&mut *tx)
        .await?;
    let run = request.granted(run_id, attempt, change.at);
    Ok(ClaimOutcome::Claimed(Box::new(run)))
}

#[async_trait]
impl DispatchStore for SqliteStore {
    async fn active_counts(&self) -> Result<ActiveCounts> {
        let mut conn = self.pool.acquire().await?;
        active_counts_in(&mut conn).await
    }

    async fn active_counts_versioned(&self) -> Result<(ActiveCounts, Option<i64>)> {
        // One statement, one snapshot: the version's row first (a worker is never NULL).
        let rows = sqlx::query(
            "SELECT NULL, NULL, version FROM holds_version WHERE id = 1 \
             UNION ALL \
             SELECT worker, pool, COUNT(*) FROM runs WHERE ended_at IS NULL GROUP BY worker, pool",
        )
        .fetch_all(&self.pool)
        .await?;
        let (mut counts, mut version) = (ActiveCounts::default(), None);
        for row in rows {
            let worker: Option<String> = row.try_get(0)?;
            let value: i64 = row.try_get(2)?;
            match worker {
                None => version = Some(value),
                Some(worker) => {
                    let pool: String = row.try_get(1)?;
                    counts.add_many(&worker, &pool, u32::try_from(value).unwrap_or(u32::MAX));
                }
            }
        }
        let version =
            version.ok_or_else(|| StoreError::backend("the holds' version row is missing"))?;
        Ok((counts, Some(version)))
    }

    async fn dispatch_candidates(
        &self,
        lane: Lane,
        workers: &[Name],
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<TicketId>> {
        if workers.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT id FROM tickets t WHERE state = 'todo' AND resume = ",
        );
        query.push_bind(i64::from(lane == Lane::NeedsInput));
        query.push(" AND (not_before IS NULL OR not_before <= ");
        query.push_bind(now.as_millis());
        query.push(") AND assignee IN (");
        let mut names = query.separated(", ");
        for worker in workers {
            names.push_bind(worker.as_str().to_owned());
        }
        query.push(
            ") AND NOT EXISTS (SELECT 1 FROM ticket_dependencies d JOIN tickets u ON u.id = d.depends_on \
             WHERE d.ticket = t.id AND u.state <> 'done') \
             AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.ticket = t.id \
                 AND (r.ended_at IS NULL OR (r.pid IS NOT NULL AND r.exited_at IS NULL))) \
             ORDER BY priority DESC, number LIMIT ",
        );
        query.push_bind(i64::from(limit));
        let ids: Vec<String> = query.build_query_scalar().fetch_all(&self.pool).await?;
        ids.iter().map(|id| ticket_id(id)).collect()
    }

    async fn touched_tickets(
        &self,
        lane: Lane,
        since: i64,
        limit: u32,
    ) -> Result<(Vec<TicketId>, i64)> {
        // One read transaction: the newest sequence number below is read in the snapshot of the
        // events read first. Read apart, an event committed between the two reads would lie
        // behind the returned cursor without having been looked at.
        let mut tx = self.read_tx().await?;
        let rows = sqlx::query(
            "SELECT e.seq, e.ticket, t.state = 'todo' AND t.resume = ? FROM events e \
             LEFT JOIN tickets t ON t.id = e.ticket WHERE e.seq > ? AND e.ticket IS NOT NULL \
             AND e.kind IN ('ticket.created', 'ticket.moved', 'ticket.edited') ORDER BY e.seq LIMIT ?",
        )
        .bind(i64::from(lane == Lane::NeedsInput))
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        fail::fail_point!("touched-tickets-between-reads");
        let read = rows.len();
        let mut last = since;
        let mut ids: Vec<TicketId> = Vec::new();
        for row in rows {
            last = row.try_get(0)?;
            let waiting: Option<bool> = row.try_get(2)?;
            if waiting != Some(true) {
                continue;
            }
            let id = ticket_id(&row.try_get::<String, _>(1)?)?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        if read < limit as usize {
            // Past the last ticket event: later events of other kinds need no second look.
            let newest: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
                .fetch_one(&mut *tx)
                .await?;
            last = last.max(newest);
        }
        tx.commit().await?;
        Ok((ids, last))
    }

    async fn capacity_fact(&self) -> Result<Option<CapacityFact>> {
        let mut tx = self.read_tx().await?;
        let fact = capacity_fact_in(&mut tx).await?.map(|(fact, _)| fact);
        tx.commit().await?;
        Ok(fact)
    }

    async fn set_capacity_fact(&self, fact: &CapacityFact, change: &Change) -> Result<bool> {
        let event = match fact {
            CapacityFact::Counted => (EventKind::DispatchCapacityCounted, json!({})),
            CapacityFact::Unknown { error } => (
                EventKind::DispatchCapacityUnknown,
                json!({ "error": error }),
            ),
        };
        set_dispatcher_value(self, CAPACITY_FACT, fact.as_str(), Some(event), change).await
    }

    async fn decision_cursor(&self, lane: Lane) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        Ok(dispatcher_value(&mut conn, &cursor_name(lane))
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    async fn set_decision_cursor(&self, lane: Lane, seq: i64, change: &Change) -> Result<()> {
        set_dispatcher_value(self, &cursor_name(lane), &seq.to_string(), None, change).await?;
        Ok(())
    }

    async fn record_decision(
        &self,
        ticket: &TicketId,
        lane: Lane,
        fingerprint: &str,
        decision: &Value,
        change: &Change,
    ) -> Result<bool> {
        let select = "SELECT fingerprint FROM dispatch_decisions WHERE ticket = ? AND lane = ?";
        // Look before taking the write lock, and look again under it.
        let seen: Option<String> = sqlx::query_scalar(select)
            .bind(ticket.to_string())
            .bind(lane.as_str())
            .fetch_optional(&self.pool)
            .await?;
        if seen.as_deref() == Some(fingerprint) {
            return Ok(false);
        }
        let mut tx = self.write_tx().await?;
        let current: Option<String> = sqlx::query_scalar(select)
            .bind(ticket.to_string())
            .bind(lane.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if current.as_deref() == Some(fingerprint) {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO dispatch_decisions (ticket, lane, fingerprint, decision, decided_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (ticket, lane) DO UPDATE SET \
             fingerprint = excluded.fingerprint, decision = excluded.decision, decided_at = excluded.decided_at",
        )
        .bind(ticket.to_string())
        .bind(lane.as_str())
        .bind(fingerprint)
        .bind(decision.to_string())
        .bind(change.at.as_millis())
        .execute(&mut *tx)
        .await?;
        let mut data = decision.clone();
        data["lane"] = json!(lane);
        append_event(
            &mut tx,
            EventKind::DispatchDecision,
            Some(ticket),
            change,
            &data,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn claim_many(
        &self,
        requests: &[ClaimRequest],
        change: &Change,
    ) -> Result<Vec<ClaimOutcome>> {
        let mut tx = self.write_tx().await?;
        let mut outcomes = Vec::with_capacity(requests.len());
        for request in requests {
            outcomes.push(claim_in(&mut tx, request, change).await?);
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}
