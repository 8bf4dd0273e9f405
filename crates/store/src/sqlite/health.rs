//! The health facts in SQLite: the servers' heartbeat rows, one snapshot of what the verdict
//! reads (a read transaction: every statement sees the same WAL snapshot), and the verdict
//! recorded once per change.

use super::SqliteStore;
use super::dispatch::{active_counts_in, capacity_fact_in};
use super::events::append_event;
use super::rows::ticket_id;
use super::tickets::load_tickets_with_dependencies;
use crate::error::corrupt;
use crate::{
    CapacityFact, Change, HealthQuery, HealthSnapshot, HealthStore, InboxFacts, RecordedVerdict,
    Result, ServerHeartbeat, StoreError, WaitingTicket,
};
use async_trait::async_trait;
use mission_core::health::{
    CapacityUncounted, FailedItem, HealthChange, InvalidEvidence, LiveRun, OpenIncident,
    ServerBeat, TaskRunFact, UnsettledItem, change,
};
use mission_core::{
    EventKind, Fingerprint, HealthReport, InboxId, IncidentId, RunId, SlotLimits, Timestamp,
    Verdict,
};
use serde_json::json;
use sqlx::{Row, Sqlite, SqliteConnection};
use std::time::Duration;

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

async fn last_verdict_in(conn: &mut SqliteConnection) -> Result<Option<RecordedVerdict>> {
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT verdict, changed_at FROM health_verdict WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await?;
    row.map(|(verdict, at)| {
        Ok(RecordedVerdict {
            verdict: verdict.parse().map_err(|_| corrupt("verdict", &verdict))?,
            at: Timestamp::from_millis(at),
        })
    })
    .transpose()
}

async fn servers_in(conn: &mut SqliteConnection) -> Result<(Vec<ServerBeat>, Option<Timestamp>)> {
    let rows = sqlx::query(
        "SELECT node, started_at, beat_at, interval_ms, dispatcher_pass_at FROM server_heartbeats \
         ORDER BY node",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut servers = Vec::with_capacity(rows.len());
    let mut last_pass: Option<Timestamp> = None;
    for row in rows {
        let interval: i64 = row.try_get("interval_ms")?;
        servers.push(ServerBeat {
            node: row.try_get("node")?,
            started_at: Timestamp::from_millis(row.try_get("started_at")?),
            last_beat: Timestamp::from_millis(row.try_get("beat_at")?),
            interval: Duration::from_millis(u64::try_from(interval).unwrap_or(0)),
        });
        if let Some(pass) = row.try_get::<Option<i64>, _>("dispatcher_pass_at")? {
            let pass = Timestamp::from_millis(pass);
            last_pass = Some(last_pass.map_or(pass, |p| p.max(pass)));
        }
    }
    Ok((servers, last_pass))
}

/// Todo tickets of an enabled worker with a free slot, out of backoff, with no open dependency
/// and no live run, oldest first: a narrowing; the engine asks the policy about each.
async fn waiting_in(
    conn: &mut SqliteConnection,
    query: &HealthQuery<'_>,
    active: &mission_core::ActiveCounts,
) -> Result<Vec<WaitingTicket>> {
    let free: Vec<String> = query
        .workforce
        .workers()
        .filter(|(name, worker)| {
            worker.enabled
                && SlotLimits::of(query.workforce, name).is_some_and(|l| l.check(active).is_ok())
        })
        .map(|(name, _)| name.to_string())
        .collect();
    if free.is_empty() || query.waiting_limit == 0 {
        return Ok(Vec::new());
    }
    let mut sql = sqlx::QueryBuilder::<Sqlite>::new(
        "SELECT id, state_since, not_before FROM tickets t INDEXED BY tickets_waiting \
         WHERE state = 'todo' \
         AND (not_before IS NULL OR not_before <= ",
    );
    sql.push_bind(query.now.as_millis());
    sql.push(") AND assignee IN (");
    let mut names = sql.separated(", ");
    for worker in &free {
        names.push_bind(worker.clone());
    }
    sql.push(
        ") AND NOT EXISTS (SELECT 1 FROM ticket_dependencies d JOIN tickets u ON u.id = d.depends_on \
         WHERE d.ticket = t.id AND u.state <> 'done') \
         AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.ticket = t.id \
             AND (r.ended_at IS NULL OR (r.pid IS NOT NULL AND r.exited_at IS NULL))) \
         ORDER BY state_since LIMIT ",
    );
    sql.push_bind(i64::from(query.waiting_limit));
    let rows: Vec<(String, i64, Option<i64>)> = sql.build_query_as().fetch_all(&mut *conn).await?;
    let rows = rows
        .into_iter()
        .map(|(id, state_since, not_before)| Ok((ticket_id(&id)?, state_since, not_before)))
        .collect::<Result<Vec<_>>>()?;
    let ids: Vec<_> = rows.iter().map(|(id, _, _)| id.clone()).collect();
    let loaded = load_tickets_with_dependencies(&mut *conn, &ids).await?;
    Ok(WaitingTicket::of_rows(rows, loaded))
}

async fn live_runs_in(conn: &mut SqliteConnection) -> Result<Vec<LiveRun>> {
    let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
        "SELECT id, ticket, heartbeat_at, lease_expires_at FROM runs WHERE ended_at IS NULL \
         ORDER BY lease_expires_at",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(id, ticket, heartbeat_at, lease)| {
            Ok(LiveRun {
                run: RunId::new(id),
                ticket: ticket_id(&ticket)?,
                heartbeat_at: Timestamp::from_millis(heartbeat_at),
                lease_expires_at: Timestamp::from_millis(lease),
            })
        })
        .collect()
}

async fn task_runs_in(
    conn: &mut SqliteConnection,
    task: &str,
    limit: u32,
) -> Result<Vec<TaskRunFact>> {
    let rows: Vec<(i64, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT id, outcome, reason, ended_at FROM task_runs \
         WHERE task = ? AND ended_at IS NOT NULL ORDER BY id DESC LIMIT ?",
    )
    .bind(task)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(run, outcome, reason, ended_at)| {
            Ok(TaskRunFact {
                run,
                outcome: outcome.parse().map_err(StoreError::Corrupt)?,
                reason: reason.unwrap_or_default(),
                ended_at: Timestamp::from_millis(ended_at),
            })
        })
        .collect()
}

async fn open_incidents_in(conn: &mut SqliteConnection) -> Result<Vec<OpenIncident>> {
    let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
        "SELECT id, fingerprint, severity, opened_at FROM incidents WHERE status = 'open' \
         ORDER BY opened_at, id",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(id, fingerprint, severity, opened_at)| {
            Ok(OpenIncident {
                id: IncidentId::new(id),
                fingerprint: Fingerprint::parse(&fingerprint)
                    .map_err(|_| corrupt("incident fingerprint", &fingerprint))?,
                severity: severity
                    .parse()
                    .map_err(|_| corrupt("incident severity", &severity))?,
                opened_at: Timestamp::from_millis(opened_at),
            })
        })
        .collect()
}

/// Pending and delivered inbox items, oldest first, and the newest failed ones; at most `limit`
/// of each.
async fn inbox_facts_in(conn: &mut SqliteConnection, limit: u32) -> Result<InboxFacts> {
    let rows: Vec<(i64, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT id, kind, ticket, created_at FROM inbox_items \
         WHERE status IN ('pending', 'delivered') ORDER BY created_at, id LIMIT ?",
    )
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    let unsettled = rows
        .into_iter()
        .map(|(id, kind, ticket, created_at)| {
            Ok(UnsettledItem {
                id: InboxId::new(id),
                kind: kind.parse().map_err(|_| corrupt("inbox kind", &kind))?,
                ticket: ticket.as_deref().map(ticket_id).transpose()?,
                since: Timestamp::from_millis(created_at),
            })
        })
        .collect::<Result<_>>()?;
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT id, failed_at FROM inbox_items WHERE status = 'failed' AND failed_at IS NOT NULL \
         ORDER BY failed_at DESC, id DESC LIMIT ?",
    )
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    let failed = rows
        .into_iter()
        .map(|(id, at)| FailedItem {
            id: InboxId::new(id),
            at: Timestamp::from_millis(at),
        })
        .collect();
    Ok(InboxFacts { unsettled, failed })
}

/// Done tickets with a record whose verification failed after the ticket reached done (the
/// operator audit's re-verification; the gate's own refusals happen before done), with the
/// first such failure.
async fn invalid_evidence_in(
    conn: &mut SqliteConnection,
    limit: u32,
) -> Result<Vec<InvalidEvidence>> {
    // From the (few) failed records to their tickets, never the other way round: SQLite's
    // planner, knowing nothing of an empty or young evidence table, would walk every done
    // ticket. CROSS JOIN keeps evidence the outer loop, on its partial index of failures.
    let rows: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT e.ticket, e.evidence, e.failure, e.verified_at FROM evidence e \
         CROSS JOIN tickets t ON t.id = e.ticket \
         WHERE t.state = 'done' AND e.status = 'failed' AND e.verified_at >= t.state_since \
         ORDER BY e.ticket, e.verified_at, e.id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut invalid: Vec<InvalidEvidence> = Vec::new();
    for (ticket, evidence, failure, at) in rows {
        let ticket = ticket_id(&ticket)?;
        if invalid.last().is_some_and(|e| e.ticket == ticket) {
            continue;
        }
        if invalid.len() >= limit as usize {
            break;
        }
        let evidence: mission_core::Evidence =
            serde_json::from_str(&evidence).map_err(|_| corrupt("evidence", &evidence))?;
        invalid.push(InvalidEvidence {
            ticket,
            reason: format!(
                "{} no longer verifies: {}",
                evidence.summary(),
                failure.unwrap_or_default()
            ),
            since: Timestamp::from_millis(at),
        });
    }
    Ok(invalid)
}

#[async_trait]
impl HealthStore for SqliteStore {
    async fn record_heartbeat(&self, beat: &ServerHeartbeat) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO server_heartbeats (node, pid, started_at, beat_at, interval_ms, \
             dispatcher_pass_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (node) DO UPDATE SET \
             pid = excluded.pid, started_at = excluded.started_at, beat_at = excluded.beat_at, \
             interval_ms = excluded.interval_ms, dispatcher_pass_at = excluded.dispatcher_pass_at",
        )
        .bind(&beat.node)
        .bind(i64::from(beat.pid))
        .bind(beat.started_at.as_millis())
        .bind(beat.at.as_millis())
        .bind(millis(beat.interval))
        .bind(beat.dispatcher_pass_at.map(|t| t.as_millis()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn health_snapshot(&self, query: &HealthQuery<'_>) -> Result<HealthSnapshot> {
        let mut tx = self.read_tx().await?;
        let (servers, dispatcher_last_pass) = servers_in(&mut tx).await?;
        let capacity_unknown = match capacity_fact_in(&mut tx).await? {
            Some((CapacityFact::Unknown { error }, since)) => {
                Some(CapacityUncounted { since, error })
            }
            _ => None,
        };
        let active = active_counts_in(&mut tx).await?;
        let waiting = waiting_in(&mut tx, query, &active).await?;
        let tickets_in_triage: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tickets WHERE state = 'triage'")
                .fetch_one(&mut *tx)
                .await?;
        let live_runs = live_runs_in(&mut tx).await?;
        let mut task_runs = Vec::with_capacity(query.tasks.len());
        for task in query.tasks {
            let runs = task_runs_in(&mut tx, task, query.runs_per_task).await?;
            task_runs.push((task.clone(), runs));
        }
        let open_incidents = open_incidents_in(&mut tx).await?;
        let last_verdict = last_verdict_in(&mut tx).await?;
        let inbox = inbox_facts_in(&mut tx, query.waiting_limit).await?;
        let invalid_evidence = invalid_evidence_in(&mut tx, query.waiting_limit).await?;
        tx.commit().await?;
        Ok(HealthSnapshot {
            servers,
            dispatcher_last_pass,
            capacity_unknown,
            active,
            waiting,
            tickets_in_triage: u64::try_from(tickets_in_triage).unwrap_or(0),
            live_runs,
            task_runs,
            open_incidents,
            last_verdict,
            inbox: Some(inbox),
            invalid_evidence: Some(invalid_evidence),
        })
    }

    async fn record_verdict(
        &self,
        report: &HealthReport,
        at: &Change,
    ) -> Result<Option<HealthChange>> {
        // Most assessments change nothing: look before taking the write lock, and again under it.
        let mut conn = self.pool.acquire().await?;
        let seen = last_verdict_in(&mut conn).await?.map(|v| v.verdict);
        drop(conn);
        if change(seen, report).is_none() {
            return Ok(None);
        }
        let mut tx = self.write_tx().await?;
        let previous: Option<Verdict> = last_verdict_in(&mut tx).await?.map(|v| v.verdict);
        let Some(changed) = change(previous, report) else {
            return Ok(None);
        };
        let data = json!({
            "from": changed.from,
            "to": changed.to,
            "codes": changed.codes,
        });
        let seq = append_event(&mut tx, EventKind::HealthChanged, None, at, &data).await?;
        sqlx::query(
            "INSERT INTO health_verdict (id, verdict, codes, changed_at, event_seq) \
             VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET verdict = excluded.verdict, \
             codes = excluded.codes, changed_at = excluded.changed_at, \
             event_seq = excluded.event_seq",
        )
        .bind(changed.to.as_str())
        .bind(serde_json::to_string(&changed.codes).expect("codes serialize"))
        .bind(at.at.as_millis())
        .bind(seq)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(changed))
    }
}
