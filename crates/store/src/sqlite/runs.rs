//! Dispatch and run records in SQLite: claims, fencing, questions, decisions.

use super::rows::{RUN_COLUMNS, decode_run, ticket_id};
use super::{SqliteStore, append_event, apply_transition, load_ticket, transition};
use crate::{
    Change, ClaimOutcome, ClaimRefusal, ClaimRequest, EndedRun, Heartbeat, Result, ResumeContext,
    RunEnd, RunStart, StoreError,
};
use mission_core::transition::Via;
use mission_core::{
    ActiveCounts, Attempt, EventKind, FailureClass, Lane, Name, RetryPolicy, Run, RunEnding, RunId,
    Settlement, State, Ticket, TicketEffect, TicketId, Timestamp, settle,
};
use serde_json::{Value, json};
use sqlx::{Row, Sqlite, SqliteConnection};
use std::time::Duration;

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(super) async fn active_counts(store: &SqliteStore) -> Result<ActiveCounts> {
    let mut conn = store.pool.acquire().await?;
    active_counts_in(&mut conn).await
}

/// Live runs counted per worker and pool, inside the caller's transaction.
async fn active_counts_in(conn: &mut SqliteConnection) -> Result<ActiveCounts> {
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

pub(super) async fn dispatch_candidates(
    store: &SqliteStore,
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
    let ids: Vec<String> = query.build_query_scalar().fetch_all(&store.pool).await?;
    ids.iter().map(|id| ticket_id(id)).collect()
}

pub(super) async fn touched_tickets(
    store: &SqliteStore,
    lane: Lane,
    since: i64,
    limit: u32,
) -> Result<(Vec<TicketId>, i64)> {
    let rows = sqlx::query(
        "SELECT e.seq, e.ticket, t.state = 'todo' AND t.resume = ? FROM events e \
         LEFT JOIN tickets t ON t.id = e.ticket WHERE e.seq > ? AND e.ticket IS NOT NULL \
         AND e.kind IN ('ticket.created', 'ticket.moved', 'ticket.edited') ORDER BY e.seq LIMIT ?",
    )
    .bind(i64::from(lane == Lane::NeedsInput))
    .bind(since)
    .bind(i64::from(limit))
    .fetch_all(&store.pool)
    .await?;
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
            .fetch_one(&store.pool)
            .await?;
        last = last.max(newest);
    }
    Ok((ids, last))
}

pub(super) async fn dispatcher_value(store: &SqliteStore, name: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT value FROM dispatcher_state WHERE name = ?")
            .bind(name)
            .fetch_optional(&store.pool)
            .await?,
    )
}

pub(super) async fn set_dispatcher_value(
    store: &SqliteStore,
    name: &str,
    value: &str,
    event: Option<(&str, Value)>,
    change: &Change,
) -> Result<bool> {
    // Most passes change nothing: look before taking the write lock, and look again under it.
    if dispatcher_value(store, name).await?.as_deref() == Some(value) {
        return Ok(false);
    }
    let mut tx = store.write_tx().await?;
    let current: Option<String> =
        sqlx::query_scalar("SELECT value FROM dispatcher_state WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
    if current.as_deref() == Some(value) {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO dispatcher_state (name, value, updated_at) VALUES (?, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(value)
    .bind(change.at.as_millis())
    .execute(&mut *tx)
    .await?;
    if let Some((kind, data)) = event {
        sqlx::query("INSERT INTO events (at, kind, ticket, actor, data) VALUES (?, ?, NULL, ?, ?)")
            .bind(change.at.as_millis())
            .bind(kind)
            .bind(change.actor.as_str())
            .bind(data.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn record_decision(
    store: &SqliteStore,
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
        .fetch_optional(&store.pool)
        .await?;
    if seen.as_deref() == Some(fingerprint) {
        return Ok(false);
    }
    let mut tx = store.write_tx().await?;
    let current: Option<String> = sqlx::query_scalar(
        "SELECT fingerprint FROM dispatch_decisions WHERE ticket = ? AND lane = ?",
    )
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

pub(super) async fn claim_many(
    store: &SqliteStore,
    requests: &[ClaimRequest],
    change: &Change,
) -> Result<Vec<ClaimOutcome>> {
    let mut tx = store.write_tx().await?;
    let mut outcomes = Vec::with_capacity(requests.len());
    for request in requests {
        outcomes.push(claim_in(&mut tx, request, change).await?);
    }
    tx.commit().await?;
    Ok(outcomes)
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
    let run = Run {
        id: run_id,
        ticket: request.ticket.clone(),
        attempt,
        worker: request.limits.worker.clone(),
        pool: request.limits.pool.clone(),
        lane: request.lane,
        node: request.node.clone(),
        started_at: change.at,
        heartbeat_at: change.at,
        lease_expires_at: Timestamp::from_millis(lease_until),
        pid: None,
        workspace: None,
        session_id: None,
        head_before: None,
        head_after: None,
        log_path: None,
        ended_at: None,
        outcome: None,
        failure_class: None,
        detail: None,
        exit_code: None,
        input_tokens: None,
        output_tokens: None,
        cost_usd: None,
    };
    Ok(ClaimOutcome::Claimed(Box::new(run)))
}

async fn load_run(conn: &mut SqliteConnection, id: RunId) -> Result<Run> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?");
    let row = sqlx::query(&sql)
        .bind(id.get())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::RunNotFound(id))?;
    decode_run(&row)
}

/// Loads the run and checks that it is the live, current attempt of its ticket.
async fn fenced_run(
    conn: &mut SqliteConnection,
    id: RunId,
    attempt: Attempt,
) -> Result<(Run, Ticket)> {
    let run = load_run(&mut *conn, id).await?;
    let ticket = load_ticket(&mut *conn, &run.ticket).await?;
    if run.attempt != attempt || ticket.current_attempt() != attempt || run.ended_at.is_some() {
        return Err(StoreError::Fenced { run: id, attempt });
    }
    Ok((run, ticket))
}

pub(super) async fn run(store: &SqliteStore, id: RunId) -> Result<Run> {
    let mut conn = store.pool.acquire().await?;
    load_run(&mut conn, id).await
}

async fn runs_where(
    store: &SqliteStore,
    condition: &str,
    bind: Option<String>,
) -> Result<Vec<Run>> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE {condition} ORDER BY id");
    let mut query = sqlx::query(&sql);
    if let Some(value) = bind {
        query = query.bind(value);
    }
    let rows = query.fetch_all(&store.pool).await?;
    rows.iter().map(decode_run).collect()
}

pub(super) async fn run_for_token(store: &SqliteStore, token_hash: &str) -> Result<Option<Run>> {
    Ok(
        runs_where(store, "token_hash = ?", Some(token_hash.to_owned()))
            .await?
            .pop(),
    )
}

pub(super) async fn runs_of(store: &SqliteStore, ticket: &TicketId) -> Result<Vec<Run>> {
    runs_where(store, "ticket = ?", Some(ticket.to_string())).await
}

pub(super) async fn active_runs(store: &SqliteStore) -> Result<Vec<Run>> {
    runs_where(store, "ended_at IS NULL", None).await
}

pub(super) async fn unsettled_runs(store: &SqliteStore) -> Result<Vec<Run>> {
    runs_where(
        store,
        "ended_at IS NULL OR (pid IS NOT NULL AND exited_at IS NULL)",
        None,
    )
    .await
}

pub(super) async fn run_started(
    store: &SqliteStore,
    id: RunId,
    attempt: Attempt,
    start: &RunStart,
) -> Result<()> {
    let mut tx = store.write_tx().await?;
    fenced_run(&mut tx, id, attempt).await?;
    sqlx::query(
        "UPDATE runs SET pid = ?, workspace = ?, head_before = ?, log_path = ? WHERE id = ?",
    )
    .bind(start.pid)
    .bind(&start.workspace)
    .bind(&start.head_before)
    .bind(&start.log_path)
    .bind(id.get())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn heartbeat(
    store: &SqliteStore,
    id: RunId,
    attempt: Attempt,
    now: Timestamp,
    lease: Duration,
) -> Result<Heartbeat> {
    let mut tx = store.write_tx().await?;
    let (run, ticket) = fenced_run(&mut tx, id, attempt).await?;
    sqlx::query("UPDATE runs SET heartbeat_at = ?, lease_expires_at = ? WHERE id = ?")
        .bind(now.as_millis())
        .bind(now.as_millis() + millis(lease))
        .bind(id.get())
        .execute(&mut *tx)
        .await?;
    let progress_at: Option<i64> = sqlx::query_scalar("SELECT progress_at FROM runs WHERE id = ?")
        .bind(run.id.get())
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Heartbeat {
        ticket_state: ticket.state,
        progress_at: progress_at.map(Timestamp::from_millis),
    })
}

pub(super) async fn run_session(
    store: &SqliteStore,
    id: RunId,
    attempt: Attempt,
    session: &str,
) -> Result<()> {
    let mut tx = store.write_tx().await?;
    fenced_run(&mut tx, id, attempt).await?;
    sqlx::query("UPDATE runs SET session_id = ? WHERE id = ?")
        .bind(session)
        .bind(id.get())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn run_progress(
    store: &SqliteStore,
    id: RunId,
    attempt: Attempt,
    text: &str,
    change: &Change,
) -> Result<()> {
    let mut tx = store.write_tx().await?;
    let (run, _) = fenced_run(&mut tx, id, attempt).await?;
    sqlx::query("UPDATE runs SET progress_at = ? WHERE id = ?")
        .bind(change.at.as_millis())
        .bind(id.get())
        .execute(&mut *tx)
        .await?;
    let data = json!({ "run": id, "attempt": attempt, "text": text });
    append_event(
        &mut tx,
        EventKind::RunProgress,
        Some(&run.ticket),
        change,
        &data,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Closes a live run with what the core decided and carries out the decision's effect on the
/// ticket: one `ticket.moved`, or `run.ended` when the ticket stays where an operator put it.
async fn settle_run(
    conn: &mut SqliteConnection,
    run: &Run,
    settlement: Settlement,
    mut data: Value,
    change: &Change,
) -> Result<Ticket> {
    sqlx::query(
        "UPDATE runs SET ended_at = ?, outcome = ?, failure_class = ? \
         WHERE id = ? AND ended_at IS NULL",
    )
    .bind(change.at.as_millis())
    .bind(settlement.outcome.as_str())
    .bind(settlement.failure_class.map(FailureClass::as_str))
    .bind(run.id.get())
    .execute(&mut *conn)
    .await?;
    data["run"] = json!(run.id);
    data["attempt"] = json!(run.attempt);
    data["outcome"] = json!(settlement.outcome);
    if let Some(class) = settlement.failure_class {
        data["failure_class"] = json!(class);
    }
    match settlement.ticket {
        TicketEffect::Move {
            to,
            via,
            not_before,
        } => {
            if let Some(not_before) = not_before {
                data["not_before"] = json!(not_before);
            }
            transition(conn, &run.ticket, to, via, data, change, |t| {
                if not_before.is_some() {
                    t.not_before = not_before;
                }
            })
            .await
        }
        TicketEffect::Stay => {
            let ticket = load_ticket(&mut *conn, &run.ticket).await?;
            data["ticket_state"] = json!(ticket.state);
            append_event(conn, EventKind::RunEnded, Some(&run.ticket), change, &data).await?;
            Ok(ticket)
        }
    }
}

/// A run ending by its own report (ask, submit): settled in one transaction, with the question
/// when it asked one. Fenced.
async fn end_by_report(
    store: &SqliteStore,
    id: RunId,
    attempt: Attempt,
    ending: RunEnding,
    change: &Change,
    question: Option<&str>,
) -> Result<Ticket> {
    let mut tx = store.write_tx().await?;
    let (run, ticket) = fenced_run(&mut tx, id, attempt).await?;
    let mut data = json!({});
    if let Some(question) = question {
        let question_id: i64 = sqlx::query_scalar(
            "INSERT INTO questions (ticket, run, text, asked_at) VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(run.ticket.to_string())
        .bind(id.get())
        .bind(question)
        .bind(change.at.as_millis())
        .fetch_one(&mut *tx)
        .await?;
        data["question"] = json!(question_id);
    }
    // The retry policy plays no part in a report.
    let retry = RetryPolicy {
        max_attempts: 1,
        backoff_base: Duration::ZERO,
        backoff_max: Duration::ZERO,
    };
    let settlement = settle(ending, ticket.state, attempt, &retry, change.at);
    let ticket = settle_run(&mut tx, &run, settlement, data, change).await?;
    tx.commit().await?;
    Ok(ticket)
}

pub(super) async fn run_ask(
    store: &SqliteStore,
    id: RunId,
    attempt: Attempt,
    question: &str,
    change: &Change,
) -> Result<Ticket> {
    end_by_report(store, id, attempt, RunEnding::Asked, change, Some(question)).await
}

pub(super) async fn run_submit(
    store: &SqliteStore,
    id: RunId,
    attempt: Attempt,
    change: &Change,
) -> Result<Ticket> {
    end_by_report(store, id, attempt, RunEnding::Submitted, change, None).await
}

pub(super) async fn end_run(
    store: &SqliteStore,
    id: RunId,
    attempt: Attempt,
    end: &RunEnd,
    retry: &RetryPolicy,
    change: &Change,
) -> Result<EndedRun> {
    let mut tx = store.write_tx().await?;
    let run = load_run(&mut tx, id).await?;
    if run.attempt != attempt {
        return Err(StoreError::Fenced { run: id, attempt });
    }
    sqlx::query(
        "UPDATE runs SET exit_code = COALESCE(?, exit_code), head_after = COALESCE(?, head_after), \
         session_id = COALESCE(?, session_id), input_tokens = COALESCE(?, input_tokens), \
         output_tokens = COALESCE(?, output_tokens), cost_usd = COALESCE(?, cost_usd), \
         detail = COALESCE(detail, ?), exited_at = COALESCE(exited_at, ?) WHERE id = ?",
    )
    .bind(end.exit_code)
    .bind(&end.head_after)
    .bind(&end.session_id)
    .bind(end.input_tokens)
    .bind(end.output_tokens)
    .bind(end.cost_usd)
    .bind(if run.ended_at.is_none() {
        end.detail.as_deref()
    } else {
        None
    })
    .bind(change.at.as_millis())
    .bind(id.get())
    .execute(&mut *tx)
    .await?;
    let ended_now = run.ended_at.is_none();
    let ticket_state = if ended_now {
        let ticket = load_ticket(&mut tx, &run.ticket).await?;
        let settlement = settle(
            RunEnding::Exited(end.failure),
            ticket.state,
            attempt,
            retry,
            change.at,
        );
        let data = json!({ "exit_code": end.exit_code, "detail": end.detail });
        settle_run(&mut tx, &run, settlement, data, change)
            .await?
            .state
    } else {
        load_ticket(&mut tx, &run.ticket).await?.state
    };
    let run = load_run(&mut tx, id).await?;
    tx.commit().await?;
    Ok(EndedRun {
        run,
        ticket_state,
        ended_now,
    })
}

pub(super) async fn answer(
    store: &SqliteStore,
    ticket: &TicketId,
    text: &str,
    change: &Change,
) -> Result<Ticket> {
    let mut tx = store.write_tx().await?;
    let question: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM questions WHERE ticket = ? AND answer IS NULL AND closed_at IS NULL",
    )
    .bind(ticket.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(question) = question else {
        // Distinguish "no such ticket" from "nothing to answer".
        load_ticket(&mut tx, ticket).await?;
        return Err(StoreError::NoQuestion(ticket.clone()));
    };
    sqlx::query("UPDATE questions SET answer = ?, answered_at = ?, answered_by = ? WHERE id = ?")
        .bind(text)
        .bind(change.at.as_millis())
        .bind(change.actor.as_str())
        .bind(question)
        .execute(&mut *tx)
        .await?;
    let extra = json!({ "question": question });
    let ticket = transition(
        &mut tx,
        ticket,
        State::Todo,
        Via::Answer,
        extra,
        change,
        |t| {
            t.resume = true;
            t.not_before = None;
        },
    )
    .await?;
    tx.commit().await?;
    Ok(ticket)
}

pub(super) async fn resume_context(
    store: &SqliteStore,
    ticket: &TicketId,
) -> Result<Option<ResumeContext>> {
    let row = sqlx::query(
        "SELECT q.text, q.answer, r.session_id FROM questions q JOIN runs r ON r.id = q.run \
         WHERE q.ticket = ? AND q.answer IS NOT NULL ORDER BY q.id DESC LIMIT 1",
    )
    .bind(ticket.to_string())
    .fetch_optional(&store.pool)
    .await?;
    row.map(|row| {
        Ok(ResumeContext {
            question: row.try_get(0)?,
            answer: row.try_get(1)?,
            session_id: row.try_get(2)?,
        })
    })
    .transpose()
}
