//! The store: one `Store` trait, one implementation per backend (SQLite now), embedded
//! migrations. Every change is written together with its event in one transaction; every check
//! that needs the board (does the ticket exist, is the move legal from its current state, would
//! the new dependencies close a cycle) happens inside that transaction.

mod error;
mod migrate;
pub mod sqlite;
mod web;

use async_trait::async_trait;
use mission_core::policy::DependencyState;
use mission_core::task::{Outcome, TaskResult};
use mission_core::transition::Via;
use mission_core::{
    ActiveCounts, Actor, Attempt, Event, FailureClass, Lane, Name, NewTicket, RetryPolicy, Run,
    RunId, SlotLimits, State, Ticket, TicketId, TicketKey, TicketPatch, Timestamp,
};
use serde_json::Value;
use std::time::Duration;

pub use error::StoreError;
pub use migrate::MigrationReport;
pub use sqlite::SqliteStore;
pub use web::{
    ApiToken, IdempotencyKey, NewApiToken, Reservation, RunCount, TaskOutcomeCount, WebStore,
};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Who made a change and when; passed to every write so that time stays injectable.
#[derive(Clone, Debug)]
pub struct Change {
    pub actor: Actor,
    pub at: Timestamp,
}

impl Change {
    pub fn new(actor: Actor, at: Timestamp) -> Self {
        Change { actor, at }
    }
}

/// A request to move a ticket to another state.
#[derive(Clone, Debug)]
pub struct Move {
    pub to: State,
    pub via: Via,
    pub reason: Option<String>,
}

/// Which tickets `list_tickets` returns. Empty fields match everything.
#[derive(Clone, Debug, Default)]
pub struct TicketFilter {
    pub state: Option<State>,
    pub assignee: Option<Name>,
    pub limit: Option<u32>,
    /// Skip this many tickets first (paging).
    pub offset: Option<u32>,
}

/// A ticket without its body and dependencies, as listed on the board.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TicketSummary {
    pub id: TicketId,
    pub title: String,
    pub state: State,
    pub assignee: Option<Name>,
    pub owner: Option<Name>,
    pub labels: Vec<String>,
    pub priority: i64,
    pub updated_at: Timestamp,
}

/// Events to read: those after `since`, at most `limit`, optionally of one ticket.
#[derive(Clone, Debug)]
pub struct EventQuery {
    pub since: i64,
    pub limit: u32,
    pub ticket: Option<TicketId>,
}

#[async_trait]
pub trait Store: WebStore + Send + Sync {
    /// Applies pending migrations; refuses a database whose schema is newer than this binary.
    async fn migrate(&self) -> Result<MigrationReport>;

    /// Creates tickets in one transaction, allocating their numbers; all or none.
    async fn create_tickets(
        &self,
        key: &TicketKey,
        tickets: Vec<NewTicket>,
        change: &Change,
    ) -> Result<Vec<Ticket>>;

    async fn ticket(&self, id: &TicketId) -> Result<Ticket>;

    /// The ticket and the current state of each of its dependencies, read in one snapshot.
    async fn ticket_with_dependencies(
        &self,
        id: &TicketId,
    ) -> Result<(Ticket, Vec<DependencyState>)>;

    /// Tickets ordered by priority (highest first), then number.
    async fn list_tickets(&self, filter: &TicketFilter) -> Result<Vec<TicketSummary>>;

    /// Moves a ticket if the transition is legal from its current state; writes `ticket.moved`.
    async fn move_ticket(&self, id: &TicketId, request: &Move, change: &Change) -> Result<Ticket>;

    /// Edits a ticket's fields; writes `ticket.edited` with what changed, or nothing when nothing
    /// did. New dependencies must exist and must not close a cycle.
    async fn edit_ticket(
        &self,
        id: &TicketId,
        patch: &TicketPatch,
        change: &Change,
    ) -> Result<Ticket>;

    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>>;

    /// The sequence number of the newest event, 0 when there is none.
    async fn last_event_seq(&self) -> Result<i64>;

    // --- Dispatch -------------------------------------------------------------------------------

    /// Active runs counted per worker and pool.
    async fn active_counts(&self) -> Result<ActiveCounts>;

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
    /// now todo in `lane`, and the last sequence number read.
    async fn touched_tickets(
        &self,
        lane: Lane,
        since: i64,
        limit: u32,
    ) -> Result<(Vec<TicketId>, i64)>;

    /// Reads a dispatcher-wide value (e.g. the decision cursor).
    async fn dispatcher_value(&self, name: &str) -> Result<Option<String>>;

    /// Writes a dispatcher-wide value; with `event`, also records an event of that kind when the
    /// value changed. Returns whether it changed.
    async fn set_dispatcher_value(
        &self,
        name: &str,
        value: &str,
        event: Option<(&str, Value)>,
        change: &Change,
    ) -> Result<bool>;

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

    // --- Runs -----------------------------------------------------------------------------------

    async fn run(&self, id: RunId) -> Result<Run>;

    async fn run_for_token(&self, token_hash: &str) -> Result<Option<Run>>;

    async fn runs_of(&self, ticket: &TicketId) -> Result<Vec<Run>>;

    async fn active_runs(&self) -> Result<Vec<Run>>;

    /// Runs not yet settled: live, or ended while their process was not yet seen gone.
    async fn unsettled_runs(&self) -> Result<Vec<Run>>;

    /// Records what the runner learned when the process started. Fenced.
    async fn run_started(&self, run: RunId, attempt: Attempt, start: &RunStart) -> Result<()>;

    /// Renews the lease. Fenced: refused once the run ended or is not the current attempt.
    async fn heartbeat(
        &self,
        run: RunId,
        attempt: Attempt,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Heartbeat>;

    /// Records the agent session id as soon as the runtime reports it. Fenced.
    async fn run_session(&self, run: RunId, attempt: Attempt, session_id: &str) -> Result<()>;

    /// A progress report from the run. Fenced.
    async fn run_progress(
        &self,
        run: RunId,
        attempt: Attempt,
        text: &str,
        change: &Change,
    ) -> Result<()>;

    /// The run asks a question: the ticket moves to needs_input, the run ends (its slot and lease
    /// are released), the question is stored. Fenced.
    async fn run_ask(
        &self,
        run: RunId,
        attempt: Attempt,
        question: &str,
        change: &Change,
    ) -> Result<Ticket>;

    /// The run submits its work: the ticket moves to review and the run ends. Fenced.
    async fn run_submit(&self, run: RunId, attempt: Attempt, change: &Change) -> Result<Ticket>;

    /// The runner's account of how the process ended. When the run is still active, this ends
    /// it: a clean finish submits for review; a failure requeues with backoff or fails the
    /// ticket, by `retry`. When the run already ended (it asked or submitted), only the figures
    /// are recorded.
    async fn end_run(
        &self,
        run: RunId,
        attempt: Attempt,
        end: &RunEnd,
        retry: &RetryPolicy,
        change: &Change,
    ) -> Result<EndedRun>;

    /// Answers a ticket's open question; the ticket goes back to todo for the needs-input lane.
    async fn answer(&self, ticket: &TicketId, text: &str, change: &Change) -> Result<Ticket>;

    /// For resuming: the latest run's agent session and the latest answered question.
    async fn resume_context(&self, ticket: &TicketId) -> Result<Option<ResumeContext>>;

    // --- Tasks ----------------------------------------------------------------------------------

    /// Starts a task run. For a scheduled slot, `None` when that slot already fired: each
    /// (task, slot) fires once.
    async fn begin_task_run(&self, start: &TaskRunStart, change: &Change) -> Result<Option<i64>>;

    /// Records the process group of a command task's run.
    async fn set_task_run_pid(&self, id: i64, pid: i64) -> Result<()>;

    /// Ends a task run with its outcome and writes `task.finished`; false when it had already
    /// ended (e.g. cancelled by a replacing run).
    async fn finish_task_run(&self, id: i64, result: &TaskResult, change: &Change) -> Result<bool>;

    /// Records a slot that did not run (overlap, missed while down) as a finished `skipped` run;
    /// false when the slot is already taken.
    async fn record_task_skip(
        &self,
        start: &TaskRunStart,
        result: &TaskResult,
        change: &Change,
    ) -> Result<bool>;

    /// The newest slot of a task that fired or was skipped.
    async fn last_task_slot(&self, task: &str) -> Result<Option<Timestamp>>;

    /// Task runs not yet ended, of one task or of all.
    async fn open_task_runs(&self, task: Option<&str>) -> Result<Vec<TaskRun>>;

    /// A task's runs, newest first.
    async fn task_runs(&self, task: &str, limit: u32) -> Result<Vec<TaskRun>>;

    /// Tickets in `state` since before `entered_before`, oldest first.
    async fn stale_tickets(
        &self,
        state: State,
        entered_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<TicketSummary>>;

    /// Closes connections, checkpointing what the backend needs to.
    async fn close(&self);
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

/// What the runner learned when the process started.
#[derive(Clone, Debug, Default)]
pub struct RunStart {
    pub pid: Option<i64>,
    pub workspace: Option<String>,
    pub head_before: Option<String>,
    pub log_path: Option<String>,
}

/// The answer to a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// The ticket's state now; `cancelled` tells the runner to stop.
    pub ticket_state: State,
    pub progress_at: Option<Timestamp>,
}

/// How a run's process ended, as the runner saw it.
#[derive(Clone, Debug, Default)]
pub struct RunEnd {
    /// `None`: a clean finish.
    pub failure: Option<FailureClass>,
    pub detail: Option<String>,
    pub exit_code: Option<i64>,
    pub head_after: Option<String>,
    pub session_id: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
}

/// The result of `end_run`.
#[derive(Clone, Debug, PartialEq)]
pub struct EndedRun {
    pub run: Run,
    /// The ticket's state afterwards.
    pub ticket_state: State,
    /// Whether this call ended the run (false: it had already ended by ask or submit).
    pub ended_now: bool,
}

/// What the needs-input lane needs to resume a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeContext {
    pub session_id: Option<String>,
    pub question: String,
    pub answer: String,
}

/// How a task run starts.
#[derive(Clone, Debug)]
pub struct TaskRunStart {
    pub task: String,
    pub slot: Option<Timestamp>,
    /// `schedule`, `catch_up` or `manual`.
    pub trigger: String,
    /// `HOST:PID` of the process running it.
    pub node: String,
}

/// A stored task run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TaskRun {
    pub id: i64,
    pub task: String,
    pub slot: Option<Timestamp>,
    pub trigger: String,
    pub node: String,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub duration_ms: Option<i64>,
    pub pid: Option<i64>,
    pub outcome: Option<Outcome>,
    pub reason: Option<String>,
    pub counts: std::collections::BTreeMap<String, i64>,
}

/// The JSON recorded with `ticket.created`: every field but the body, which can be megabytes and
/// is kept on the ticket; its size is recorded instead.
pub(crate) fn created_event_data(ticket: &Ticket) -> Value {
    serde_json::json!({
        "title": ticket.title,
        "state": ticket.state,
        "assignee": ticket.assignee,
        "owner": ticket.owner,
        "labels": ticket.labels,
        "priority": ticket.priority,
        "depends_on": ticket.depends_on,
        "evidence_policy": ticket.evidence_policy,
        "repo": ticket.repo,
        "body_bytes": ticket.body.len(),
    })
}
