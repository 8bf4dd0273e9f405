//! Decoding rows into domain types. A value the domain rejects means the file was written by
//! something else or damaged: that is reported as corruption, not silently patched over.

use crate::error::corrupt;
use crate::{Result, TicketSummary};
use mission_core::{
    Attempt, Event, EvidencePolicy, Name, Run, RunId, State, Ticket, TicketId, Timestamp,
};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

pub(crate) fn ticket_id(text: &str) -> Result<TicketId> {
    TicketId::parse(text).map_err(|_| corrupt("ticket id", text))
}

pub(crate) fn state_from_db(text: &str) -> Result<State> {
    text.parse().map_err(|_| corrupt("state", text))
}

fn name(text: Option<String>) -> Result<Option<Name>> {
    text.map(|t| Name::parse(&t).map_err(|_| corrupt("name", &t)))
        .transpose()
}

fn labels(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|_| corrupt("labels", text))
}

pub(crate) fn decode_ticket(row: &SqliteRow, deps: Vec<String>) -> Result<Ticket> {
    let mut depends_on = deps
        .iter()
        .map(|d| ticket_id(d))
        .collect::<Result<Vec<_>>>()?;
    depends_on.sort();
    let policy: String = row.try_get("evidence_policy")?;
    Ok(Ticket {
        id: ticket_id(&row.try_get::<String, _>("id")?)?,
        title: row.try_get("title")?,
        body: row.try_get("body")?,
        state: state_from_db(&row.try_get::<String, _>("state")?)?,
        assignee: name(row.try_get("assignee")?)?,
        owner: name(row.try_get("owner")?)?,
        labels: labels(&row.try_get::<String, _>("labels")?)?,
        priority: row.try_get("priority")?,
        depends_on,
        evidence_policy: EvidencePolicy::parse(&policy)
            .map_err(|_| corrupt("evidence policy", &policy))?,
        repo: row.try_get("repo")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
        version: row.try_get("version")?,
        attempts: row.try_get("attempts")?,
        resume: row.try_get::<i64, _>("resume")? != 0,
        not_before: row
            .try_get::<Option<i64>, _>("not_before")?
            .map(Timestamp::from_millis),
    })
}

pub(crate) const RUN_COLUMNS: &str = "id, ticket, attempt, worker, pool, lane, node, started_at, \
    heartbeat_at, lease_expires_at, pid, workspace, session_id, head_before, head_after, log_path, \
    ended_at, outcome, failure_class, detail, exit_code, input_tokens, output_tokens, cost_usd";

pub(crate) fn decode_run(row: &SqliteRow) -> Result<Run> {
    let parsed = |what: &str, text: String| corrupt(what, &text);
    let worker: String = row.try_get("worker")?;
    let lane: String = row.try_get("lane")?;
    let ms = |col: &str| -> Result<Timestamp> { Ok(Timestamp::from_millis(row.try_get(col)?)) };
    Ok(Run {
        id: RunId::new(row.try_get("id")?),
        ticket: ticket_id(&row.try_get::<String, _>("ticket")?)?,
        attempt: Attempt::new(row.try_get("attempt")?),
        worker: Name::parse(&worker).map_err(|_| parsed("worker", worker.clone()))?,
        pool: row.try_get("pool")?,
        lane: lane.parse().map_err(|_| parsed("lane", lane.clone()))?,
        node: row.try_get("node")?,
        started_at: ms("started_at")?,
        heartbeat_at: ms("heartbeat_at")?,
        lease_expires_at: ms("lease_expires_at")?,
        pid: row.try_get("pid")?,
        workspace: row.try_get("workspace")?,
        session_id: row.try_get("session_id")?,
        head_before: row.try_get("head_before")?,
        head_after: row.try_get("head_after")?,
        log_path: row.try_get("log_path")?,
        ended_at: row
            .try_get::<Option<i64>, _>("ended_at")?
            .map(Timestamp::from_millis),
        outcome: row
            .try_get::<Option<String>, _>("outcome")?
            .map(|o| o.parse().map_err(|_| parsed("run outcome", o.clone())))
            .transpose()?,
        failure_class: row
            .try_get::<Option<String>, _>("failure_class")?
            .map(|c| c.parse().map_err(|_| parsed("failure class", c.clone())))
            .transpose()?,
        detail: row.try_get("detail")?,
        exit_code: row.try_get("exit_code")?,
        input_tokens: row.try_get("input_tokens")?,
        output_tokens: row.try_get("output_tokens")?,
        cost_usd: row.try_get("cost_usd")?,
    })
}

pub(crate) fn decode_summary(row: &SqliteRow) -> Result<TicketSummary> {
    Ok(TicketSummary {
        id: ticket_id(&row.try_get::<String, _>("id")?)?,
        title: row.try_get("title")?,
        state: state_from_db(&row.try_get::<String, _>("state")?)?,
        assignee: name(row.try_get("assignee")?)?,
        owner: name(row.try_get("owner")?)?,
        labels: labels(&row.try_get::<String, _>("labels")?)?,
        priority: row.try_get("priority")?,
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
    })
}

pub(crate) fn decode_event(row: &SqliteRow) -> Result<Event> {
    let data: String = row.try_get("data")?;
    Ok(Event {
        seq: row.try_get("seq")?,
        at: Timestamp::from_millis(row.try_get("at")?),
        kind: row.try_get("kind")?,
        ticket: row
            .try_get::<Option<String>, _>("ticket")?
            .map(|t| ticket_id(&t))
            .transpose()?,
        actor: row.try_get("actor")?,
        data: serde_json::from_str(&data).map_err(|_| corrupt("event data", &data))?,
    })
}
