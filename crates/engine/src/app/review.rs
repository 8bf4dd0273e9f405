//! Review: a person's verdict (`mission ticket review`), and a reviewer run's
//! (`mission run review`, under the token of the run auto-review started).

use super::{App, AppError, AppResult};
use crate::gatekeeper::Closing;
use mission_core::review::{ReviewDecision, ReviewEffect};
use mission_core::{Actor, Name, ReviewRecord, Reviewer, ReviewerKind, Ticket, TicketId};
use mission_store::{RecordReview, ReviewResult, StoreError, Verdict};
use serde::Serialize;

/// A verdict recorded, and what followed.
#[derive(Clone, Debug, Serialize)]
pub struct Reviewed {
    pub review: ReviewRecord,
    pub ticket: Ticket,
    /// After an approval by a person, the gate was asked: what it said.
    pub gate: Option<Closing>,
}

impl App {
    /// A person's verdict on a ticket in review. An approval asks the gate at once.
    pub async fn review_ticket(
        &self,
        id: &TicketId,
        decision: ReviewDecision,
        reason: &str,
        reviewer: Name,
        actor: &Actor,
    ) -> AppResult<Reviewed> {
        let ticket = self.store.ticket(id).await?;
        let reviewer = Reviewer {
            name: reviewer,
            kind: ReviewerKind::Human,
        };
        let result = self
            .record_verdict(&ticket, decision, reason, reviewer, None, actor)
            .await?;
        let gate = match result.effect {
            ReviewEffect::AskGate => Some(self.gatekeeper().close(id, actor).await?),
            _ => None,
        };
        self.waker.wake();
        Ok(Reviewed {
            ticket: gate
                .as_ref()
                .map_or(result.ticket, |closing| closing.ticket.clone()),
            review: result.record,
            gate,
        })
    }

    /// A reviewer run's verdict, found by its token. The gate is asked by auto-review once the
    /// run has ended, not inside the reviewer's run.
    pub async fn run_review(
        &self,
        token: &str,
        decision: ReviewDecision,
        reason: &str,
    ) -> AppResult<Reviewed> {
        let request = self
            .store
            .review_request_for_token(&crate::token::hash(token))
            .await?
            .ok_or_else(|| {
                AppError::invalid("the run token does not name a review of this instance")
            })?;
        if request.closed_at.is_some() {
            return Err(AppError::refused(format!(
                "refused: the review of {} attempt {} is already closed",
                request.ticket, request.attempt
            )));
        }
        let ticket = self.store.ticket(&request.ticket).await?;
        let reviewer = Reviewer {
            name: request.reviewer.clone(),
            kind: ReviewerKind::Worker,
        };
        let actor = Actor::new(format!("review:{}#{}", request.ticket, request.id));
        let result = self
            .record_verdict(&ticket, decision, reason, reviewer, Some(&request), &actor)
            .await?;
        self.waker.wake();
        Ok(Reviewed {
            review: result.record,
            ticket: result.ticket,
            gate: None,
        })
    }

    async fn record_verdict(
        &self,
        ticket: &Ticket,
        decision: ReviewDecision,
        reason: &str,
        reviewer: Reviewer,
        request: Option<&mission_store::ReviewRequest>,
        actor: &Actor,
    ) -> AppResult<ReviewResult> {
        let record = RecordReview {
            ticket: ticket.id.clone(),
            attempt: request.map_or(ticket.current_attempt(), |r| r.attempt),
            verdict: Verdict::Decision {
                decision,
                reason: reason.to_owned(),
                reviewer,
            },
            request: request.map(|r| r.id),
            rules: &self.settings.gate.review,
            max_attempts: self.settings.dispatch.max_attempts,
            routes: &self.settings.gate.routes,
        };
        self.store
            .record_review(&record, &self.change(actor))
            .await
            .map_err(refusal)
    }
}

/// A verdict the rules refuse (the author's own, a worker where a human is required, an
/// outdated one) is a "no" (exit 1), not a malformed request.
pub(super) fn refusal(error: StoreError) -> AppError {
    match &error {
        StoreError::Review {
            source: mission_core::review::ReviewRefusal::Reason(_),
            ..
        } => error.into(),
        StoreError::Review { .. } | StoreError::StaleReview { .. } => {
            AppError::refused(format!("refused: {error}"))
        }
        _ => error.into(),
    }
}
