//! Review: reviewer runs asked for by auto-review, and verdicts with what they do to the
//! ticket, each in one transaction.

use crate::{Change, Result};
use async_trait::async_trait;
use mission_core::proof::InboxRoutes;
use mission_core::review::{ReviewDecision, ReviewEffect, ReviewRules};
use mission_core::{Attempt, Name, ReviewRecord, Reviewer, Ticket, TicketId, Timestamp};
use serde::Serialize;

#[async_trait]
pub trait ReviewStore: Send + Sync {
    /// Records that `reviewer` is asked to review the ticket's current attempt
    /// (`review.requested`); its run's token (hashed) is how its verdict finds the request.
    /// Refused unless the ticket is in review at `attempt`.
    async fn request_review(
        &self,
        ticket: &TicketId,
        attempt: Attempt,
        reviewer: &Name,
        token_hash: &str,
        change: &Change,
    ) -> Result<ReviewRequest>;

    async fn review_request_for_token(&self, token_hash: &str) -> Result<Option<ReviewRequest>>;

    /// Closes a request whose reviewer run ended without a verdict. No event: the request
    /// changes nothing on the board.
    async fn close_review_request(&self, id: i64, at: Timestamp) -> Result<()>;

    /// A verdict, checked by `mission_core::review` against the state read in the transaction
    /// (in review, at `attempt`; the reviewer is no author; a human where required), recorded
    /// (`review.*`), and carried out as `after_review` decides: a rejection moves the ticket
    /// (back to todo with the reason added to its text, or to failed with a `failed_ticket`
    /// item), an oversized diff raises a `review_request` item. Open review requests of the
    /// ticket are closed and its pending review-request items acted on with the verdict.
    async fn record_review(
        &self,
        request: &RecordReview<'_>,
        change: &Change,
    ) -> Result<ReviewResult>;
}

/// A reviewer worker's run on a ticket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReviewRequest {
    pub id: i64,
    pub ticket: TicketId,
    pub attempt: Attempt,
    pub reviewer: Name,
    pub requested_at: Timestamp,
    pub closed_at: Option<Timestamp>,
}

/// What was decided about the diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A reviewer's decision.
    Decision {
        decision: ReviewDecision,
        reason: String,
        reviewer: Reviewer,
    },
    /// Auto-review did not look: the diff is over the cap.
    SkippedOversized { changed_lines: u64, cap: u64 },
}

#[derive(Clone, Debug)]
pub struct RecordReview<'a> {
    pub ticket: TicketId,
    /// The attempt reviewed; refused when the ticket has moved on.
    pub attempt: Attempt,
    pub verdict: Verdict,
    /// The reviewer run's request, closed with the verdict.
    pub request: Option<i64>,
    pub rules: &'a ReviewRules,
    pub max_attempts: u32,
    pub routes: &'a InboxRoutes,
}

#[derive(Clone, Debug)]
pub struct ReviewResult {
    pub record: ReviewRecord,
    pub effect: ReviewEffect,
    /// The ticket afterwards.
    pub ticket: Ticket,
}
