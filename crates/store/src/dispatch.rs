//! What the dispatcher reads and writes: active runs, candidates, the tickets touched since its
//! last pass, its own facts (capacity, decision cursors), decisions and claims.

use crate::{Change, Result};
use async_trait::async_trait;
use mission_core::{
    ActiveCounts, Attempt, Lane, Name, Run, RunId, SlotLimits, State, TicketId, Timestamp,
};
use serde_json::Value;
use std::time::Duration;

#[async_trait]
pub trait DispatchStore: Send + Sync {
    /// Active runs counted per worker and pool.
    async fn active_counts(&self) -> Result<ActiveCounts>;

    /// Active runs counted, and the holds' version (`UsageStore::holds_version`) read in the same
    /// statement: what a dispatch pass reads first, so that judging by the holds it kept costs
    /// no round trip of its own. `None` where the backend keeps no version.
    async fn active_counts_versioned(&self) -> Result<(ActiveCounts, Option<i64>)>;

    /// Todo tickets of `lane` assigned to one of `workers`, out of backoff at `now`, with no open
    /// dependency: highest priority first, at most `limit`. A narrowing of the board for the
    /// dispatcher, which still asks the policy about each.
    async fn dispatch_candidates(
        &self,
        lane: Lane,
        workers: &[Name],
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<TicketId>>;

    /// Tickets named by ticket events after `since` (reading at most `limit` events) that are
    /// now todo in `lane`, and the sequence number to resume from: every event up to it was
    /// looked at, so a cursor moved there skips no event committed before or after the call.
    async fn touched_tickets(
        &self,
        lane: Lane,
        since: i64,
        limit: u32,
    ) -> Result<(Vec<TicketId>, i64)>;

    /// Whether the dispatcher's last pass could count active runs; `None` before any pass.
    async fn capacity_fact(&self) -> Result<Option<CapacityFact>>;

    /// Records whether active runs could be counted, with `dispatch.capacity_counted` or
    /// `dispatch.capacity_unknown` when that changed (not at every pass). Returns whether it
    /// changed.
    async fn set_capacity_fact(&self, fact: &CapacityFact, change: &Change) -> Result<bool>;

    /// The sequence number up to which the dispatcher has looked at the events of `lane`; 0 before
    /// any pass.
    async fn decision_cursor(&self, lane: Lane) -> Result<i64>;

    /// Moves the decision cursor of `lane` to `seq`.
    async fn set_decision_cursor(&self, lane: Lane, seq: i64, change: &Change) -> Result<()>;

    /// Records the dispatcher's decision about a ticket in a lane, with a `dispatch.decision`
    /// event, unless the same decision (by fingerprint) is already recorded. Returns whether it
    /// recorded.
    async fn record_decision(
        &self,
        ticket: &TicketId,
        lane: Lane,
        fingerprint: &str,
        decision: &Value,
        change: &Change,
    ) -> Result<bool>;

    /// Claims a ticket for a new run: compare-and-set on the ticket's state, lane and version,
    /// capacity re-counted inside the same write transaction.
    async fn claim(&self, request: &ClaimRequest, change: &Change) -> Result<ClaimOutcome> {
        let mut outcomes = self
            .claim_many(std::slice::from_ref(request), change)
            .await?;
        Ok(outcomes.remove(0))
    }

    /// Several claims in one write transaction (one commit), each a compare-and-set of its own
    /// with capacity re-counted, in order; one outcome per request.
    async fn claim_many(
        &self,
        requests: &[ClaimRequest],
        change: &Change,
    ) -> Result<Vec<ClaimOutcome>>;
}

/// The dispatcher-wide fact "could active runs be counted at the last pass".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapacityFact {
    Counted,
    /// They could not; `error` says why (as recorded with `dispatch.capacity_unknown`).
    Unknown {
        error: String,
    },
}

impl CapacityFact {
    /// The stored form of the fact (the error is detail, kept with the event).
    pub fn as_str(&self) -> &'static str {
        match self {
            CapacityFact::Counted => "counted",
            CapacityFact::Unknown { .. } => "unknown",
        }
    }
}

/// A request to claim a ticket for a run.
#[derive(Clone, Debug)]
pub struct ClaimRequest {
    pub ticket: TicketId,
    pub lane: Lane,
    /// The ticket version the dispatcher's policy check saw.
    pub expected_version: i64,
    /// The worker and the limits its run must fit under, re-checked in the claiming transaction.
    pub limits: SlotLimits,
    pub node: String,
    pub token_hash: String,
    pub lease: Duration,
}

impl ClaimRequest {
    /// The run this request starts when granted: run `id`, its ticket's `attempt`, claimed at
    /// `at` (its first heartbeat), its lease from then.
    pub(crate) fn granted(&self, id: RunId, attempt: Attempt, at: Timestamp) -> Run {
        let lease = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        Run {
            id,
            ticket: self.ticket.clone(),
            attempt,
            worker: self.limits.worker.clone(),
            pool: self.limits.pool.clone(),
            lane: self.lane,
            node: self.node.clone(),
            started_at: at,
            heartbeat_at: at,
            lease_expires_at: Timestamp::from_millis(at.as_millis().saturating_add(lease)),
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
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ClaimOutcome {
    Claimed(Box<Run>),
    Refused(ClaimRefusal),
}

/// Why a claim was refused, typed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum ClaimRefusal {
    /// Someone else claimed it first.
    AlreadyClaimed { run: RunId },
    /// The ticket changed since the policy looked at it.
    Changed { state: State, version: i64 },
    /// The ticket belongs to the other lane.
    WrongLane,
    /// Capacity filled up since the policy looked.
    CapacityFull { detail: String },
}
