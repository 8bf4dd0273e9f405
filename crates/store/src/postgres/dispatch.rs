//! The dispatcher's reads and writes in PostgreSQL: active runs, candidates, touched tickets, its
//! facts, decisions and claims.
//!
//! Claims run in a `write_tx`: the event counter, which every claim and every end of a run takes
//! first, serializes them, so capacity re-counted inside the transaction is exact on any number
//! of nodes; the tickets' rows are locked before they are compared. A pass's claims take a few
//! statements whatever their number (`claim_batch`). (A `SKIP LOCKED` scan would skip
//! nothing here: no other transaction can hold a ticket's row lock without holding the counter.)

use super::PgStore;
use super::events::append_event;
use super::rows::ticket_id;
use super::tickets::{Moving, apply_transitions, lock_tickets};
use crate::{
    CapacityFact, Change, ClaimOutcome, ClaimRefusal, ClaimRequest, DispatchStore, Result,
    StoreError,
};
use async_trait::async_trait;
use mission_core::transition::Via;
use mission_core::{
    ActiveCounts, EventKind, Lane, Name, Run, RunId, State, Ticket, TicketId, Timestamp,
};
use serde_json::{Value, json};
use sqlx::{PgConnection, Row};
use std::collections::HashMap;
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
/// The live runs counted by worker and pool.
const ACTIVE_COUNTS: &str =
    "SELECT worker, pool, COUNT(*) FROM runs WHERE ended_at IS NULL GROUP BY worker, pool";

pub(super) async fn active_counts_in(conn: &mut PgConnection) -> Result<ActiveCounts> {
    let rows = sqlx::query(ACTIVE_COUNTS).fetch_all(&mut *conn).await?;
    let mut counts = ActiveCounts::default();
    for row in rows {
        let worker: String = row.try_get(0)?;
        let pool: String = row.try_get(1)?;
        let runs: i64 = row.try_get(2)?;
        counts.add_many(&worker, &pool, u32::try_from(runs).unwrap_or(u32::MAX));
    }
    Ok(counts)
}

async fn dispatcher_value(conn: &mut PgConnection, name: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT value FROM dispatcher_state WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// Writes a dispatcher-wide value unless it is already there, with `event` when it changed.
/// Returns whether it changed.
async fn set_dispatcher_value(
    store: &PgStore,
    name: &str,
    value: &str,
    event: Option<(EventKind, Value)>,
    change: &Change,
) -> Result<bool> {
    // Most passes change nothing: look before writing, and look again in the writing
    // transaction (under the event counter when an event goes with the change).
    let mut conn = store.pool.acquire().await?;
    if dispatcher_value(&mut conn, name).await?.as_deref() == Some(value) {
        return Ok(false);
    }
    drop(conn);
    let mut tx = match event {
        Some(_) => store.write_tx().await?,
        None => store.row_tx().await?,
    };
    let current: Option<String> =
        sqlx::query_scalar("SELECT value FROM dispatcher_state WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
    if current.as_deref() == Some(value) {
        return Ok(false);
    }
    // The event's seq is kept beside the value: reading the change back (the capacity's error)
    // is then one lookup by key, not a search of the event log.
    let seq = match event {
        Some((kind, data)) => Some(append_event(&mut tx, kind, None, change, &data).await?),
        None => None,
    };
    sqlx::query(
        "INSERT INTO dispatcher_state (name, value, updated_at, event_seq) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, \
         updated_at = EXCLUDED.updated_at, event_seq = EXCLUDED.event_seq",
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
    conn: &mut PgConnection,
) -> Result<Option<(CapacityFact, Timestamp)>> {
    let row: Option<(String, i64, Option<i64>)> =
        sqlx::query_as("SELECT value, updated_at, event_seq FROM dispatcher_state WHERE name = $1")
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
                    sqlx::query_scalar("SELECT data FROM events WHERE seq = $1")
                        .bind(seq)
                        .fetch_optional(&mut *conn)
                        .await?
                }
                None => {
                    sqlx::query_scalar(
                        "SELECT data FROM events WHERE kind = $1 ORDER BY seq DESC LIMIT 1",
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

/// What a pass's claim request comes to before anything is written.
enum Planned {
    Refused(ClaimRefusal),
    /// The k-th claim to write.
    Claim(usize),
    /// The same ticket as the k-th claim of this batch.
    Again(usize),
}

/// A batch of claims inside the caller's write transaction, each its own compare-and-set as if
/// made one after the other in the order given, in a few statements whatever their number: the
/// tickets locked and read at once, their live runs looked up at once, capacity counted once
/// and then counted on by each claim, the runs inserted, the tickets moved and their events
/// written in one statement each.
async fn claim_batch(
    tx: &mut PgConnection,
    requests: &[ClaimRequest],
    change: &Change,
) -> Result<Vec<ClaimOutcome>> {
    let ids: Vec<TicketId> = requests.iter().map(|r| r.ticket.clone()).collect();
    let keys: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let tickets = lock_tickets(&mut *tx, &ids).await?;
    // A live run, or a run whose process may still be exiting (it reported its end, or was
    // stopped, but its supervisor has not seen the process gone), blocks a new attempt —
    // whatever the ticket's state says (an operator may have moved it meanwhile). With the live
    // runs counted by worker and pool, in one statement (its first rows have no pool).
    let sql = format!(
        "SELECT * FROM (SELECT DISTINCT ON (ticket) ticket, NULL::TEXT AS pool, id FROM runs \
         WHERE ticket = ANY($1) AND (ended_at IS NULL OR (pid IS NOT NULL AND exited_at IS NULL)) \
         ORDER BY ticket, id DESC) live UNION ALL {ACTIVE_COUNTS}"
    );
    let rows = sqlx::query(&sql).bind(&keys).fetch_all(&mut *tx).await?;
    let mut live: HashMap<String, i64> = HashMap::new();
    let mut counts = ActiveCounts::default();
    for row in rows {
        let name: String = row.try_get(0)?;
        let value: i64 = row.try_get(2)?;
        match row.try_get::<Option<String>, _>(1)? {
            None => {
                live.insert(name, value);
            }
            Some(pool) => counts.add_many(&name, &pool, u32::try_from(value).unwrap_or(u32::MAX)),
        }
    }

    let mut planned = Vec::with_capacity(requests.len());
    let mut claims: Vec<&ClaimRequest> = Vec::new();
    let mut claiming: HashMap<&str, usize> = HashMap::new();
    for (request, key) in requests.iter().zip(&keys) {
        if let Some(&k) = claiming.get(key.as_str()) {
            planned.push(Planned::Again(k));
            continue;
        }
        if let Some(&run) = live.get(key) {
            planned.push(Planned::Refused(ClaimRefusal::AlreadyClaimed {
                run: RunId::new(run),
            }));
            continue;
        }
        let current = &tickets[key];
        if current.state != State::Todo || current.version != request.expected_version {
            planned.push(Planned::Refused(ClaimRefusal::Changed {
                state: current.state,
                version: current.version,
            }));
            continue;
        }
        if Lane::of(current.resume) != request.lane {
            planned.push(Planned::Refused(ClaimRefusal::WrongLane));
            continue;
        }
        if let Err(full) = request.limits.check(&counts) {
            planned.push(Planned::Refused(ClaimRefusal::CapacityFull {
                detail: full.detail,
            }));
            continue;
        }
        counts.add(request.limits.worker.as_str(), &request.limits.pool);
        claiming.insert(key.as_str(), claims.len());
        planned.push(Planned::Claim(claims.len()));
        claims.push(request);
    }

    let runs = if claims.is_empty() {
        Vec::new()
    } else {
        insert_claims(&mut *tx, &claims, &tickets, change).await?
    };
    Ok(planned
        .into_iter()
        .map(|plan| match plan {
            Planned::Refused(refusal) => ClaimOutcome::Refused(refusal),
            Planned::Claim(k) => ClaimOutcome::Claimed(Box::new(runs[k].clone())),
            Planned::Again(k) => {
                ClaimOutcome::Refused(ClaimRefusal::AlreadyClaimed { run: runs[k].id })
            }
        })
        .collect())
}

/// Writes the accepted claims: their runs, their tickets moved to running (one `ticket.moved`
/// each, in order), their old decisions deleted. Returns the runs, in order.
async fn insert_claims(
    tx: &mut PgConnection,
    claims: &[&ClaimRequest],
    tickets: &HashMap<String, Ticket>,
    change: &Change,
) -> Result<Vec<Run>> {
    let keys: Vec<String> = claims.iter().map(|r| r.ticket.to_string()).collect();
    let attempts: Vec<_> = keys
        .iter()
        .map(|key| tickets[key].current_attempt().next())
        .collect();
    let leases: Vec<i64> = claims
        .iter()
        .map(|r| change.at.as_millis() + millis(r.lease))
        .collect();
    // The partial unique index `runs_one_active_per_ticket` refuses a second live run of a
    // ticket, should anything get past the checks.
    let inserted: HashMap<String, i64> = sqlx::query_as(
        "INSERT INTO runs (ticket, attempt, worker, pool, lane, node, token_hash, started_at, \
         heartbeat_at, lease_expires_at) \
         SELECT c.ticket, c.attempt, c.worker, c.pool, c.lane, c.node, c.token_hash, $1, $1, \
         c.lease FROM UNNEST($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], \
         $7::text[], $8::text[], $9::bigint[]) WITH ORDINALITY \
         AS c(ticket, attempt, worker, pool, lane, node, token_hash, lease, ord) \
         ORDER BY c.ord RETURNING ticket, id",
    )
    .bind(change.at.as_millis())
    .bind(&keys)
    .bind(attempts.iter().map(|a| a.get()).collect::<Vec<i64>>())
    .bind(
        claims
            .iter()
            .map(|r| r.limits.worker.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        claims
            .iter()
            .map(|r| r.limits.pool.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(claims.iter().map(|r| r.lane.as_str()).collect::<Vec<_>>())
    .bind(claims.iter().map(|r| r.node.as_str()).collect::<Vec<_>>())
    .bind(
        claims
            .iter()
            .map(|r| r.token_hash.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(&leases)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let mut runs = Vec::with_capacity(claims.len());
    let mut moves = Vec::with_capacity(claims.len());
    for ((request, key), attempt) in claims.iter().zip(&keys).zip(&attempts) {
        let run_id = RunId::new(*inserted.get(key).ok_or_else(|| {
            StoreError::Corrupt(format!("the run claimed for {key} was not inserted"))
        })?);
        moves.push(Moving {
            ticket: tickets[key].clone(),
            to: State::Running,
            via: Via::Claim,
            extra: json!({ "run": run_id, "attempt": attempt, "worker": request.limits.worker, "lane": request.lane }),
        });
        runs.push(request.granted(run_id, *attempt, change.at));
    }
    apply_transitions(&mut *tx, moves, change, |i, t| {
        t.attempts = attempts[i].get();
        t.resume = false;
        t.not_before = None;
    })
    .await?;
    // A claimed ticket's old decisions no longer describe it; when it waits again, the new
    // decision is recorded afresh.
    sqlx::query("DELETE FROM dispatch_decisions WHERE ticket = ANY($1)")
        .bind(&keys)
        .execute(&mut *tx)
        .await?;
    Ok(runs)
}

#[async_trait]
impl DispatchStore for PgStore {
    async fn active_counts(&self) -> Result<ActiveCounts> {
        let mut conn = self.pool.acquire().await?;
        active_counts_in(&mut conn).await
    }

    /// PostgreSQL keeps no holds' version (see `UsageStore::holds_version`).
    async fn active_counts_versioned(&self) -> Result<(ActiveCounts, Option<i64>)> {
        Ok((self.active_counts().await?, None))
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
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM tickets t WHERE state = 'todo' AND resume = $1 \
             AND (not_before IS NULL OR not_before <= $2) AND assignee = ANY($3) \
             AND NOT EXISTS (SELECT 1 FROM ticket_dependencies d JOIN tickets u ON u.id = d.depends_on \
                 WHERE d.ticket = t.id AND u.state <> 'done') \
             AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.ticket = t.id \
                 AND (r.ended_at IS NULL OR (r.pid IS NOT NULL AND r.exited_at IS NULL))) \
             ORDER BY priority DESC, number LIMIT $4",
        )
        .bind(lane == Lane::NeedsInput)
        .bind(now.as_millis())
        .bind(
            workers
                .iter()
                .map(|w| w.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        ids.iter().map(|id| ticket_id(id)).collect()
    }

    async fn touched_tickets(
        &self,
        lane: Lane,
        since: i64,
        limit: u32,
    ) -> Result<(Vec<TicketId>, i64)> {
        // One REPEATABLE READ snapshot: the newest sequence number below is read in the snapshot
        // of the events read first. Read apart, an event committed between the two reads would
        // lie behind the returned cursor without having been looked at.
        let mut tx = self.read_tx().await?;
        let rows = sqlx::query(
            "SELECT e.seq, e.ticket, t.state = 'todo' AND t.resume = $1 FROM events e \
             LEFT JOIN tickets t ON t.id = e.ticket WHERE e.seq > $2 AND e.ticket IS NOT NULL \
             AND e.kind IN ('ticket.created', 'ticket.moved', 'ticket.edited') \
             ORDER BY e.seq LIMIT $3",
        )
        .bind(lane == Lane::NeedsInput)
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
            let newest: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM events")
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
        let select = "SELECT fingerprint FROM dispatch_decisions WHERE ticket = $1 AND lane = $2";
        // Look before taking the event counter, and look again under it.
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
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (ticket, lane) DO UPDATE SET \
             fingerprint = EXCLUDED.fingerprint, decision = EXCLUDED.decision, \
             decided_at = EXCLUDED.decided_at",
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
        let outcomes = claim_batch(&mut tx, requests, change).await?;
        tx.commit().await?;
        Ok(outcomes)
    }
}
