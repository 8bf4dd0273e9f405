//! Runs in PostgreSQL: reports fenced by attempt, the end of a run as the core settles it,
//! questions and answers.
//!
//! Reports that write an event (progress, ask, submit, the end) run in a `write_tx`. Those that do
//! not (the start, heartbeats, the session) lock only the run's row: a concurrent end of the run
//! holds that row until it commits, after which the report sees the run ended and is fenced.

use super::PgStore;
use super::events::append_event;
use super::inbox::{insert_item, settle_items_of};
use super::rows::{RUN_COLUMNS, decode_run, opt_text, text};
use super::tickets::{load_ticket, transition};
use super::usage::{account_run_end, run_figures};
use crate::{
    Change, EndedRun, Heartbeat, Result, ResumeContext, RunEnd, RunStart, RunStore, StoreError,
};
use async_trait::async_trait;
use mission_core::proof::InboxRoutes;
use mission_core::transition::Via;
use mission_core::{
    ActionKind, Addressee, Attempt, EventKind, FailureClass, InboxId, InboxKind, NewInboxItem,
    RetryPolicy, Run, RunEnding, RunId, Settlement, State, Ticket, TicketEffect, TicketId,
    Timestamp, Uncharged, settle,
};
use serde_json::{Value, json};
use sqlx::{PgConnection, Row};
use std::time::Duration;

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Loads a run; `lock` also locks its row until the end of the transaction.
async fn load_run(conn: &mut PgConnection, id: RunId, lock: bool) -> Result<Run> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = sqlx::query(&sql)
        .bind(id.get())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::RunNotFound(id))?;
    decode_run(&row)
}

/// Locks the run's row and checks that it is the live, current attempt of its ticket.
pub(super) async fn fenced_run(
    conn: &mut PgConnection,
    id: RunId,
    attempt: Attempt,
) -> Result<(Run, Ticket)> {
    let run = load_run(&mut *conn, id, true).await?;
    let ticket = load_ticket(&mut *conn, &run.ticket).await?;
    if run.attempt != attempt || ticket.current_attempt() != attempt || run.ended_at.is_some() {
        return Err(StoreError::Fenced { run: id, attempt });
    }
    Ok((run, ticket))
}

async fn runs_where(store: &PgStore, condition: &str, bind: Option<String>) -> Result<Vec<Run>> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE {condition} ORDER BY id");
    let mut query = sqlx::query(&sql);
    if let Some(value) = bind {
        query = query.bind(value);
    }
    let rows = query.fetch_all(&store.pool).await?;
    rows.iter().map(decode_run).collect()
}

/// Closes a live run with what the core decided and carries out the decision's effect on the
/// ticket: one `ticket.moved`, or `run.ended` when the ticket stays where an operator put it.
///
/// A ticket that fails raises a `failed_ticket` inbox item for `failures` in the same
/// transaction.
async fn settle_run(
    conn: &mut PgConnection,
    run: &Run,
    settlement: Settlement,
    mut data: Value,
    failures: Option<&Addressee>,
    change: &Change,
) -> Result<Ticket> {
    sqlx::query(
        "UPDATE runs SET ended_at = $1, outcome = $2, failure_class = $3 \
         WHERE id = $4 AND ended_at IS NULL",
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
            let detail = data["detail"].as_str().map(str::to_owned);
            let ticket = transition(conn, &run.ticket, to, via, data, change, |t| {
                if not_before.is_some() {
                    t.not_before = not_before;
                }
            })
            .await?;
            if to == State::Failed
                && let Some(failures) = failures
            {
                let class = settlement
                    .failure_class
                    .map_or("failed".to_owned(), |c| c.to_string());
                let detail = detail.map(|d| format!(" ({d})")).unwrap_or_default();
                let text = format!(
                    "{} failed: attempt {} by {} ended {class}{detail}, and it will not be retried.",
                    run.ticket, run.attempt, run.worker
                );
                let new = NewInboxItem::new(
                    InboxKind::FailedTicket,
                    Some(run.ticket.clone()),
                    failures.clone(),
                    &text,
                )?;
                insert_item(conn, &new, None, change).await?;
            }
            Ok(ticket)
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
    store: &PgStore,
    id: RunId,
    attempt: Attempt,
    ending: RunEnding,
    change: &Change,
    question: Option<(&str, &InboxRoutes)>,
) -> Result<Ticket> {
    let mut tx = store.write_tx().await?;
    let (run, ticket) = fenced_run(&mut tx, id, attempt).await?;
    let mut data = json!({});
    let mut item = None;
    if let Some((question, routes)) = question {
        let question_id: i64 = sqlx::query_scalar(
            "INSERT INTO questions (ticket, run, text, asked_at) VALUES ($1, $2, $3, $4) \
             RETURNING id",
        )
        .bind(run.ticket.to_string())
        .bind(id.get())
        .bind(text(question))
        .bind(change.at.as_millis())
        .fetch_one(&mut *tx)
        .await?;
        data["question"] = json!(question_id);
        let new = NewInboxItem::new(
            InboxKind::Question,
            Some(run.ticket.clone()),
            routes.questions.clone(),
            question,
        )?;
        item = Some((new, question_id));
    }
    // The retry policy plays no part in a report.
    let retry = RetryPolicy {
        max_attempts: 1,
        backoff_base: Duration::ZERO,
        backoff_max: Duration::ZERO,
        max_orphaned: 1,
        ..RetryPolicy::default()
    };
    let settlement = settle(
        ending,
        ticket.state,
        attempt,
        Uncharged::default(),
        &retry,
        change.at,
    );
    let ticket = settle_run(&mut tx, &run, settlement, data, None, change).await?;
    if let Some((new, question_id)) = item {
        insert_item(&mut tx, &new, Some(question_id), change).await?;
    }
    tx.commit().await?;
    Ok(ticket)
}

/// Answers question `question` of `ticket` and moves the ticket back to todo for the
/// needs-input lane, in the caller's transaction (a `write_tx`); the ticket's unsettled question
/// items but `acting_item` (the one being acted on, if any) are acted on as answered.
pub(super) async fn answer_question(
    conn: &mut PgConnection,
    ticket: &TicketId,
    question: i64,
    answer: &str,
    acting_item: Option<InboxId>,
    change: &Change,
) -> Result<Ticket> {
    let updated = sqlx::query(
        "UPDATE questions SET answer = $1, answered_at = $2, answered_by = $3 \
         WHERE id = $4 AND ticket = $5 AND answer IS NULL AND closed_at IS NULL",
    )
    .bind(text(answer))
    .bind(change.at.as_millis())
    .bind(change.actor.as_str())
    .bind(question)
    .bind(ticket.to_string())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(StoreError::NoQuestion(ticket.clone()));
    }
    let extra = json!({ "question": question });
    let moved = transition(
        &mut *conn,
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
    settle_items_of(
        conn,
        ticket,
        InboxKind::Question,
        ActionKind::Answered,
        Some(answer),
        acting_item,
        change,
    )
    .await?;
    Ok(moved)
}

#[async_trait]
impl RunStore for PgStore {
    async fn run(&self, id: RunId) -> Result<Run> {
        let mut conn = self.pool.acquire().await?;
        load_run(&mut conn, id, false).await
    }

    async fn run_for_token(&self, token_hash: &str) -> Result<Option<Run>> {
        Ok(
            runs_where(self, "token_hash = $1", Some(token_hash.to_owned()))
                .await?
                .pop(),
        )
    }

    async fn runs_of(&self, ticket: &TicketId) -> Result<Vec<Run>> {
        runs_where(self, "ticket = $1", Some(ticket.to_string())).await
    }

    async fn active_runs(&self) -> Result<Vec<Run>> {
        runs_where(self, "ended_at IS NULL", None).await
    }

    async fn unsettled_runs(&self) -> Result<Vec<Run>> {
        runs_where(
            self,
            "ended_at IS NULL OR (pid IS NOT NULL AND exited_at IS NULL)",
            None,
        )
        .await
    }

    async fn run_started(&self, id: RunId, attempt: Attempt, start: &RunStart) -> Result<()> {
        let mut tx = self.row_tx().await?;
        fenced_run(&mut tx, id, attempt).await?;
        sqlx::query(
            "UPDATE runs SET pid = $1, workspace = $2, head_before = $3, log_path = $4 \
             WHERE id = $5",
        )
        .bind(start.pid)
        .bind(opt_text(start.workspace.as_deref()))
        .bind(opt_text(start.head_before.as_deref()))
        .bind(opt_text(start.log_path.as_deref()))
        .bind(id.get())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn heartbeat(
        &self,
        id: RunId,
        attempt: Attempt,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Heartbeat> {
        let mut tx = self.row_tx().await?;
        let (_, ticket) = fenced_run(&mut tx, id, attempt).await?;
        let progress_at: Option<i64> = sqlx::query_scalar(
            "UPDATE runs SET heartbeat_at = $1, lease_expires_at = $2 WHERE id = $3 \
             RETURNING progress_at",
        )
        .bind(now.as_millis())
        .bind(now.as_millis() + millis(lease))
        .bind(id.get())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Heartbeat {
            ticket_state: ticket.state,
            progress_at: progress_at.map(Timestamp::from_millis),
        })
    }

    async fn run_session(&self, id: RunId, attempt: Attempt, session: &str) -> Result<()> {
        let mut tx = self.row_tx().await?;
        fenced_run(&mut tx, id, attempt).await?;
        sqlx::query("UPDATE runs SET session_id = $1 WHERE id = $2")
            .bind(text(session))
            .bind(id.get())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn run_progress(
        &self,
        id: RunId,
        attempt: Attempt,
        text: &str,
        change: &Change,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let (run, _) = fenced_run(&mut tx, id, attempt).await?;
        sqlx::query("UPDATE runs SET progress_at = $1 WHERE id = $2")
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

    async fn run_ask(
        &self,
        id: RunId,
        attempt: Attempt,
        question: &str,
        routes: &InboxRoutes,
        change: &Change,
    ) -> Result<Ticket> {
        end_by_report(
            self,
            id,
            attempt,
            RunEnding::Asked,
            change,
            Some((question, routes)),
        )
        .await
    }

    async fn run_submit(&self, id: RunId, attempt: Attempt, change: &Change) -> Result<Ticket> {
        end_by_report(self, id, attempt, RunEnding::Submitted, change, None).await
    }

    async fn end_run(
        &self,
        id: RunId,
        attempt: Attempt,
        end: &RunEnd,
        retry: &RetryPolicy,
        routes: &InboxRoutes,
        change: &Change,
    ) -> Result<EndedRun> {
        let mut tx = self.write_tx().await?;
        let run = load_run(&mut tx, id, true).await?;
        if run.attempt != attempt {
            return Err(StoreError::Fenced { run: id, attempt });
        }
        let figures_before = run_figures(&mut tx, id).await?;
        sqlx::query(
            "UPDATE runs SET exit_code = COALESCE($1, exit_code), \
             head_after = COALESCE($2, head_after), session_id = COALESCE($3, session_id), \
             input_tokens = COALESCE($4, input_tokens), \
             output_tokens = COALESCE($5, output_tokens), cost_usd = COALESCE($6, cost_usd), \
             detail = COALESCE(detail, $7), exited_at = COALESCE(exited_at, $8), \
             cached_tokens = COALESCE($10, cached_tokens) WHERE id = $9",
        )
        .bind(end.exit_code)
        .bind(opt_text(end.head_after.as_deref()))
        .bind(opt_text(end.session_id.as_deref()))
        .bind(end.input_tokens)
        .bind(end.output_tokens)
        .bind(end.cost_usd)
        .bind(if run.ended_at.is_none() {
            opt_text(end.detail.as_deref())
        } else {
            None
        })
        .bind(change.at.as_millis())
        .bind(id.get())
        .bind(end.cached_tokens)
        .execute(&mut *tx)
        .await?;
        let ended_now = run.ended_at.is_none();
        let ticket_state = if ended_now {
            let ticket = load_ticket(&mut tx, &run.ticket).await?;
            // Attempts orphaned by a server crash or ended by a rate limit are counted apart
            // (`RetryPolicy`).
            let row = sqlx::query(
                "SELECT COUNT(*) FILTER (WHERE failure_class = 'orphaned'), \
                 COUNT(*) FILTER (WHERE failure_class IN ('rate_limited', 'budget_stopped')) \
                 FROM runs WHERE ticket = $1 AND id <> $2",
            )
            .bind(run.ticket.to_string())
            .bind(id.get())
            .fetch_one(&mut *tx)
            .await?;
            let count = |i: usize| -> Result<u32> {
                Ok(u32::try_from(row.try_get::<i64, _>(i)?).unwrap_or(u32::MAX))
            };
            let uncharged = Uncharged {
                orphaned: count(0)?,
                limited: count(1)?,
            };
            let settlement = settle(
                RunEnding::Exited(end.failure),
                ticket.state,
                attempt,
                uncharged,
                retry,
                change.at,
            );
            let data = json!({ "exit_code": end.exit_code, "detail": end.detail });
            settle_run(
                &mut tx,
                &run,
                settlement,
                data,
                Some(&routes.failures),
                change,
            )
            .await?
            .state
        } else {
            load_ticket(&mut tx, &run.ticket).await?.state
        };
        let run = load_run(&mut tx, id, false).await?;
        let labels = load_ticket(&mut tx, &run.ticket).await?.labels;
        let accounting = account_run_end(
            &mut tx,
            figures_before,
            &run,
            &labels,
            end.limit_reset,
            retry,
            change,
        )
        .await?;
        tx.commit().await?;
        Ok(EndedRun {
            run,
            ticket_state,
            ended_now,
            accounting,
        })
    }

    async fn answer(&self, ticket: &TicketId, text: &str, change: &Change) -> Result<Ticket> {
        let mut tx = self.write_tx().await?;
        let question: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM questions WHERE ticket = $1 AND answer IS NULL AND closed_at IS NULL",
        )
        .bind(ticket.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(question) = question else {
            // Distinguish "no such ticket" from "nothing to answer".
            load_ticket(&mut tx, ticket).await?;
            return Err(StoreError::NoQuestion(ticket.clone()));
        };
        let ticket = answer_question(&mut tx, ticket, question, text, None, change).await?;
        tx.commit().await?;
        Ok(ticket)
    }

    async fn resume_context(&self, ticket: &TicketId) -> Result<Option<ResumeContext>> {
        let row = sqlx::query(
            "SELECT q.text, q.answer, r.session_id FROM questions q JOIN runs r ON r.id = q.run \
             WHERE q.ticket = $1 AND q.answer IS NOT NULL ORDER BY q.id DESC LIMIT 1",
        )
        .bind(ticket.to_string())
        .fetch_optional(&self.pool)
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
}
