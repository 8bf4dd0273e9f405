//! Review in SQLite: reviewer runs' requests, and verdicts checked by `mission_core::review` and
//! carried out as `after_review` decides, each in one transaction.

use super::SqliteStore;
use super::events::append_event;
use super::inbox::{insert_item, settle_items_of};
use super::tickets::{apply_transition, load_ticket};
use crate::{
    Change, RecordReview, Result, ReviewRequest, ReviewResult, ReviewStore, StoreError, Verdict,
};
use async_trait::async_trait;
use mission_core::review::{
    ReviewDecision, ReviewEffect, ReviewRefusal, after_review, review as check_review,
};
use mission_core::{
    ActionKind, Attempt, EventKind, InboxId, InboxKind, Name, NewInboxItem, ReviewOutcome,
    ReviewRecord, State, TicketEffect, TicketId, Timestamp,
};
use serde_json::json;
use sqlx::{Row, SqliteConnection};

/// The workers that ran the ticket: none of them may review it.
pub(super) async fn authors(conn: &mut SqliteConnection, ticket: &TicketId) -> Result<Vec<Name>> {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT worker FROM runs WHERE ticket = ? ORDER BY worker")
            .bind(ticket.to_string())
            .fetch_all(&mut *conn)
            .await?;
    names
        .iter()
        .map(|n| Name::parse(n).map_err(|_| StoreError::Corrupt(format!("invalid worker {n:?}"))))
        .collect()
}

/// The review outcomes of the ticket's round `attempt`, oldest first.
pub(super) async fn round_reviews(
    conn: &mut SqliteConnection,
    ticket: &TicketId,
    attempt: Attempt,
) -> Result<Vec<ReviewRecord>> {
    let records: Vec<String> = sqlx::query_scalar(
        "SELECT record FROM reviews WHERE ticket = ? AND attempt = ? ORDER BY id",
    )
    .bind(ticket.to_string())
    .bind(attempt.get())
    .fetch_all(&mut *conn)
    .await?;
    records
        .iter()
        .map(|r| {
            serde_json::from_str(r)
                .map_err(|_| StoreError::Corrupt(format!("invalid review record {r:?}")))
        })
        .collect()
}

fn decode_request(row: &sqlx::sqlite::SqliteRow) -> Result<ReviewRequest> {
    let ticket: String = row.try_get("ticket")?;
    let reviewer: String = row.try_get("reviewer")?;
    Ok(ReviewRequest {
        id: row.try_get("id")?,
        ticket: TicketId::parse(&ticket)
            .map_err(|_| StoreError::Corrupt(format!("invalid ticket id {ticket:?}")))?,
        attempt: Attempt::new(row.try_get("attempt")?),
        reviewer: Name::parse(&reviewer)
            .map_err(|_| StoreError::Corrupt(format!("invalid reviewer {reviewer:?}")))?,
        requested_at: Timestamp::from_millis(row.try_get("requested_at")?),
        closed_at: row
            .try_get::<Option<i64>, _>("closed_at")?
            .map(Timestamp::from_millis),
    })
}

/// A verdict to record in the caller's transaction; `acting_item` is the review-request item
/// being acted on with it (which its caller settles).
pub(super) struct RecordIn<'a, 'b> {
    pub request: &'a RecordReview<'b>,
    pub acting_item: Option<InboxId>,
}

/// Records a verdict and carries out its effect, in the caller's transaction.
pub(super) async fn record_review_in(
    conn: &mut SqliteConnection,
    input: RecordIn<'_, '_>,
    change: &Change,
) -> Result<ReviewResult> {
    let request = input.request;
    let mut ticket = load_ticket(&mut *conn, &request.ticket).await?;
    if ticket.current_attempt() != request.attempt {
        return Err(StoreError::StaleReview {
            ticket: ticket.id.clone(),
            attempt: request.attempt,
        });
    }
    let refused = |source| StoreError::Review {
        ticket: request.ticket.clone(),
        source,
    };
    let authors = authors(conn, &ticket.id).await?;
    let mode = request
        .rules
        .mode_for(&ticket.labels, ticket.assignee.as_ref());
    let outcome = match &request.verdict {
        Verdict::Decision {
            decision,
            reason,
            reviewer,
        } => check_review(
            *decision,
            reason,
            reviewer.clone(),
            &authors,
            mode,
            ticket.state,
        )
        .map_err(refused)?,
        Verdict::SkippedOversized { changed_lines, cap } => {
            if ticket.state != State::Review {
                return Err(refused(ReviewRefusal::NotInReview(ticket.state)));
            }
            ReviewOutcome::SkippedOversized {
                changed_lines: *changed_lines,
                cap: *cap,
            }
        }
    };
    let record = ReviewRecord {
        at: change.at,
        outcome,
    };
    let record_json = serde_json::to_string(&record).expect("a review record serializes");
    let review_id: i64 = sqlx::query_scalar(
        "INSERT INTO reviews (ticket, attempt, at, outcome, record) VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(ticket.id.to_string())
    .bind(request.attempt.get())
    .bind(change.at.as_millis())
    .bind(record.outcome.as_str())
    .bind(&record_json)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("UPDATE review_requests SET closed_at = ? WHERE ticket = ? AND closed_at IS NULL")
        .bind(change.at.as_millis())
        .bind(ticket.id.to_string())
        .execute(&mut *conn)
        .await?;
    let mut data = serde_json::to_value(&record).expect("a review record serializes");
    data["review"] = json!(review_id);
    data["attempt"] = json!(request.attempt);
    data["mode"] = json!(mode);
    data["request"] = json!(request.request);
    append_event(
        conn,
        record.outcome.event_kind(),
        Some(&ticket.id),
        change,
        &data,
    )
    .await?;

    let effect = after_review(&record.outcome, request.attempt, request.max_attempts);
    match &effect {
        ReviewEffect::AskGate => {}
        ReviewEffect::SendBack {
            ticket: move_to,
            note,
            attempts_exhausted,
        } => {
            let TicketEffect::Move { to, via, .. } = *move_to else {
                unreachable!("a rejection always moves its ticket");
            };
            let body = with_note(&ticket.body, note);
            let data = json!({ "review": review_id, "note": note });
            ticket = apply_transition(conn, ticket, to, via, data, change, |_| {}).await?;
            if let Some(body) = body {
                sqlx::query("UPDATE tickets SET body = ? WHERE id = ?")
                    .bind(&body)
                    .bind(ticket.id.to_string())
                    .execute(&mut *conn)
                    .await?;
                ticket.body = body;
            }
            if *attempts_exhausted {
                let text = format!(
                    "{} failed: attempt {} was rejected in review and it has no attempts left. {note}",
                    ticket.id, request.attempt
                );
                let new = NewInboxItem::new(
                    InboxKind::FailedTicket,
                    Some(ticket.id.clone()),
                    request.routes.failures.clone(),
                    &text,
                )?;
                insert_item(conn, &new, None, change).await?;
            }
        }
        ReviewEffect::AskHuman { detail } => {
            let open: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM inbox_items WHERE ticket = ? AND kind = 'review_request' \
                 AND status IN ('pending', 'delivered'))",
            )
            .bind(ticket.id.to_string())
            .fetch_one(&mut *conn)
            .await?;
            if !open {
                let text = format!("{}: {detail}", ticket.id);
                let new = NewInboxItem::new(
                    InboxKind::ReviewRequest,
                    Some(ticket.id.clone()),
                    request.routes.reviews.clone(),
                    &text,
                )?;
                insert_item(conn, &new, None, change).await?;
            }
        }
    }
    // A human's verdict given elsewhere settles the review requests waiting for one.
    if let Verdict::Decision {
        decision, reason, ..
    } = &request.verdict
    {
        let action = match decision {
            ReviewDecision::Approve => ActionKind::Approved,
            ReviewDecision::Reject => ActionKind::Rejected,
        };
        let text = (!reason.trim().is_empty()).then_some(reason.as_str());
        settle_items_of(
            conn,
            &ticket.id,
            InboxKind::ReviewRequest,
            action,
            text,
            input.acting_item,
            change,
        )
        .await?;
    }
    Ok(ReviewResult {
        record,
        effect,
        ticket,
    })
}

/// The body with a reviewer's note added for the author's next run; `None` when it would not
/// fit the body's limit (the note stays in the event).
fn with_note(body: &str, note: &str) -> Option<String> {
    let body = format!("{body}\n\n---\n{note}\n");
    (body.len() <= mission_core::ticket::MAX_BODY_BYTES).then_some(body)
}

#[async_trait]
impl ReviewStore for SqliteStore {
    async fn request_review(
        &self,
        ticket: &TicketId,
        attempt: Attempt,
        reviewer: &Name,
        token_hash: &str,
        change: &Change,
    ) -> Result<ReviewRequest> {
        let mut tx = self.write_tx().await?;
        let current = load_ticket(&mut tx, ticket).await?;
        if current.state != State::Review {
            return Err(StoreError::Review {
                ticket: ticket.clone(),
                source: ReviewRefusal::NotInReview(current.state),
            });
        }
        if current.current_attempt() != attempt {
            return Err(StoreError::StaleReview {
                ticket: ticket.clone(),
                attempt,
            });
        }
        let authors = authors(&mut tx, ticket).await?;
        if authors.contains(reviewer) {
            return Err(StoreError::Review {
                ticket: ticket.clone(),
                source: ReviewRefusal::OwnWork(reviewer.clone()),
            });
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO review_requests (ticket, attempt, reviewer, token_hash, requested_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(ticket.to_string())
        .bind(attempt.get())
        .bind(reviewer.as_str())
        .bind(token_hash)
        .bind(change.at.as_millis())
        .fetch_one(&mut *tx)
        .await?;
        let data = json!({ "request": id, "reviewer": reviewer, "attempt": attempt });
        append_event(
            &mut tx,
            EventKind::ReviewRequested,
            Some(ticket),
            change,
            &data,
        )
        .await?;
        tx.commit().await?;
        Ok(ReviewRequest {
            id,
            ticket: ticket.clone(),
            attempt,
            reviewer: reviewer.clone(),
            requested_at: change.at,
            closed_at: None,
        })
    }

    async fn review_request_for_token(&self, token_hash: &str) -> Result<Option<ReviewRequest>> {
        let row = sqlx::query(
            "SELECT id, ticket, attempt, reviewer, requested_at, closed_at FROM review_requests \
             WHERE token_hash = ?",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_request).transpose()
    }

    async fn close_review_request(&self, id: i64, at: Timestamp) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE review_requests SET closed_at = ? WHERE id = ? AND closed_at IS NULL")
            .bind(at.as_millis())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn record_review(
        &self,
        request: &RecordReview<'_>,
        change: &Change,
    ) -> Result<ReviewResult> {
        let mut tx = self.write_tx().await?;
        if let Some(id) = request.request {
            let closed: Option<Option<i64>> =
                sqlx::query_scalar("SELECT closed_at FROM review_requests WHERE id = ?")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if !matches!(closed, Some(None)) {
                return Err(StoreError::StaleReview {
                    ticket: request.ticket.clone(),
                    attempt: request.attempt,
                });
            }
        }
        let result = record_review_in(
            &mut tx,
            RecordIn {
                request,
                acting_item: None,
            },
            change,
        )
        .await?;
        tx.commit().await?;
        Ok(result)
    }
}
