//! Evidence and the gate: recording what the harness observed, and the one transaction that
//! decides whether a ticket in review reaches `done`.

use crate::{Change, Result};
use async_trait::async_trait;
use mission_core::review::ReviewRules;
use mission_core::{
    Attempt, Evidence, EvidenceId, EvidenceRecord, GateDecision, Name, ReviewMode, ReviewRecord,
    RunId, Ticket, TicketId, Timestamp, Verification,
};

#[async_trait]
pub trait EvidenceStore: Send + Sync {
    /// Records observations for a ticket, one `evidence.recorded` event each, fenced as the
    /// request says. All or none.
    async fn record_evidence(
        &self,
        request: &RecordEvidence,
        change: &Change,
    ) -> Result<Vec<EvidenceRecord>>;

    /// The ticket's evidence, oldest first.
    async fn evidence_of(&self, ticket: &TicketId) -> Result<Vec<EvidenceRecord>>;

    /// Everything the gate and a reviewer read about a ticket, from one snapshot: the ticket,
    /// its evidence, its authors (the workers that ran it) and the review outcomes of its current
    /// round (its current attempt).
    async fn gate_context(&self, ticket: &TicketId) -> Result<GateContext>;

    /// In one transaction: records the fresh observations and re-verifications of the request
    /// (one event each), asks `mission_core::gate` with the state read there and, when it opens
    /// and `close` is set, moves the ticket to done through the gate (`ticket.moved`). A ticket
    /// that is not in review is a transition error.
    async fn decide_gate(&self, request: &GateRequest<'_>, change: &Change) -> Result<GateOutcome>;

    /// Stores the operator audit's re-verifications of `ticket`'s records, in one transaction.
    /// A record whose status changes takes the new verification with one `evidence.verified` or
    /// `evidence.failed` event; a record whose status holds is left as it is (so a failure keeps
    /// the time it was first seen, and a pass that finds nothing new writes nothing). Returns
    /// how many records changed. A record of another ticket is refused.
    async fn reverify_evidence(
        &self,
        ticket: &TicketId,
        checks: &[(EvidenceId, Verification)],
        change: &Change,
    ) -> Result<u32>;
}

/// Who may attach evidence now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fence {
    /// A run's own report: the run must be live and the ticket's current attempt.
    LiveRun { run: RunId, attempt: Attempt },
    /// The harness about a run that may have ended: the attempt must still be the current one.
    Attempt(Attempt),
}

/// One observation of the harness and its verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub evidence: Evidence,
    pub verification: Verification,
}

#[derive(Clone, Debug)]
pub struct RecordEvidence {
    pub ticket: TicketId,
    pub fence: Fence,
    pub observations: Vec<Observation>,
}

/// What `gate_context` returns.
#[derive(Clone, Debug)]
pub struct GateContext {
    pub ticket: Ticket,
    pub evidence: Vec<EvidenceRecord>,
    pub authors: Vec<Name>,
    pub reviews: Vec<ReviewRecord>,
}

/// A gate decision to take.
#[derive(Clone, Debug)]
pub struct GateRequest<'a> {
    pub ticket: TicketId,
    /// Fresh observations (a test run now, a route requested now), recorded first.
    pub new: Vec<Observation>,
    /// Records checked again now (a commit, an artifact), with what the check found.
    pub reverified: Vec<(EvidenceId, Verification)>,
    /// Verifications older than this do not count.
    pub verified_since: Timestamp,
    /// The review rules; the ticket's mode is taken from them with its labels and assignee.
    pub review: &'a ReviewRules,
    /// Move the ticket to done when the gate opens (false: only record and decide).
    pub close: bool,
}

#[derive(Clone, Debug)]
pub struct GateOutcome {
    pub decision: GateDecision,
    /// The ticket afterwards.
    pub ticket: Ticket,
    pub review: ReviewMode,
    /// The records written by this decision.
    pub recorded: Vec<EvidenceRecord>,
}
