//! What acting on an inbox item does to its ticket, and the outcome of an inbox-drain pass.
//!
//! An action is written in the same transaction as its effect: answering a question answers
//! the ticket's question (the ticket goes back to todo for the needs-input lane), approving or
//! rejecting a review request is a human's review verdict, requeueing puts the ticket back to
//! todo. Escalating or dismissing settles the item and leaves the ticket alone.

use crate::inbox::{ActionKind, InboxKind};
use crate::review::ReviewDecision;
use crate::task::{Outcome, TaskResult};

/// The effect of an action on the item's ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionEffect {
    /// The ticket's open question is answered with the action's text.
    AnswerQuestion,
    /// A reviewer's verdict on the ticket in review.
    Review(ReviewDecision),
    /// The ticket goes back to todo (an operator's move).
    Requeue,
    /// Nothing beyond the action itself.
    None,
}

/// The effect of `action` on an item of `kind` (the action is allowed for the kind: see
/// `InboxKind::allows`).
pub fn action_effect(kind: InboxKind, action: ActionKind) -> ActionEffect {
    match (kind, action) {
        (InboxKind::Question, ActionKind::Answered) => ActionEffect::AnswerQuestion,
        (InboxKind::ReviewRequest, ActionKind::Approved) => {
            ActionEffect::Review(ReviewDecision::Approve)
        }
        (InboxKind::ReviewRequest, ActionKind::Rejected) => {
            ActionEffect::Review(ReviewDecision::Reject)
        }
        (_, ActionKind::Requeued) => ActionEffect::Requeue,
        _ => ActionEffect::None,
    }
}

/// What one inbox-drain pass did; its task outcome follows from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InboxDrainTally {
    /// Items delivered to a worker run in this pass.
    pub delivered: u32,
    /// Delivered items the worker acted on.
    pub acted: u32,
    /// Delivered items whose run ended without acting: they stay delivered until their lease
    /// expires, then are delivered again.
    pub unacted: u32,
    /// Leases that expired: items back to pending for another delivery.
    pub expired: u32,
    /// Items that failed (deliveries used up, addressee gone), each raising an alert.
    pub failed: u32,
}

impl InboxDrainTally {
    /// `degraded` when an item was left unacted or failed — never `acted` then; `acted` when
    /// every delivered item was acted on; `noop` when nothing was to deliver.
    pub fn result(&self) -> TaskResult {
        let result = if self.unacted > 0 || self.failed > 0 {
            let mut parts = Vec::new();
            if self.unacted > 0 {
                parts.push(format!("{} delivered but not acted on", self.unacted));
            }
            if self.failed > 0 {
                parts.push(format!("{} failed", self.failed));
            }
            TaskResult::new(Outcome::Degraded, parts.join(", "))
        } else if self.delivered > 0 || self.expired > 0 {
            TaskResult::new(
                Outcome::Acted,
                format!(
                    "delivered {}, all acted on; {} leases expired",
                    self.delivered, self.expired
                ),
            )
        } else {
            TaskResult::new(Outcome::Noop, "no inbox item waits for a worker")
        };
        result
            .count("delivered", self.delivered.into())
            .count("acted", self.acted.into())
            .count("unacted", self.unacted.into())
            .count("expired", self.expired.into())
            .count("failed", self.failed.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_by_kind_and_action() {
        use ActionKind::*;
        use InboxKind::*;
        let cases = [
            (Question, Answered, ActionEffect::AnswerQuestion),
            (Question, Dismissed, ActionEffect::None),
            (
                ReviewRequest,
                Approved,
                ActionEffect::Review(ReviewDecision::Approve),
            ),
            (
                ReviewRequest,
                Rejected,
                ActionEffect::Review(ReviewDecision::Reject),
            ),
            (Approval, Approved, ActionEffect::None),
            (FailedTicket, Requeued, ActionEffect::Requeue),
            (Alert, Requeued, ActionEffect::Requeue),
            (Alert, Escalated, ActionEffect::None),
        ];
        for (kind, action, effect) in cases {
            assert!(kind.allows(action), "{kind} {action}");
            assert_eq!(action_effect(kind, action), effect, "{kind} {action}");
        }
    }

    #[test]
    fn a_drain_that_left_an_item_unacted_is_degraded() {
        let tally = |delivered, acted, unacted, expired, failed| {
            InboxDrainTally {
                delivered,
                acted,
                unacted,
                expired,
                failed,
            }
            .result()
            .outcome
        };
        assert_eq!(tally(0, 0, 0, 0, 0), Outcome::Noop);
        assert_eq!(tally(2, 2, 0, 0, 0), Outcome::Acted);
        assert_eq!(tally(0, 0, 0, 1, 0), Outcome::Acted);
        assert_eq!(tally(2, 1, 1, 0, 0), Outcome::Degraded);
        assert_eq!(tally(0, 0, 0, 0, 1), Outcome::Degraded);
    }
}
