//! Runs: what the runner reports about a run (fenced by its attempt), its end, the question it
//! asked and the answer.

use crate::{Change, Result};
use async_trait::async_trait;
use mission_core::proof::InboxRoutes;
use mission_core::{
    Attempt, FailureClass, RetryPolicy, Run, RunId, State, Ticket, TicketId, Timestamp,
};
use std::time::Duration;

#[async_trait]
pub trait RunStore: Send + Sync {
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
    /// are released), the question is stored and a `question` inbox item for
    /// `routes.questions` is created, all in one transaction. Fenced.
    async fn run_ask(
        &self,
        run: RunId,
        attempt: Attempt,
        question: &str,
        routes: &InboxRoutes,
        change: &Change,
    ) -> Result<Ticket>;

    /// The run submits its work: the ticket moves to review and the run ends. Fenced.
    async fn run_submit(&self, run: RunId, attempt: Attempt, change: &Change) -> Result<Ticket>;

    /// The runner's account of how the process ended. When the run is still active, this ends
    /// it as `mission_core::settle` decides (a clean finish submits for review; a failure
    /// requeues with backoff or fails the ticket, by `retry`; a failed ticket raises a
    /// `failed_ticket` inbox item for `routes.failures` in the same transaction). When the run
    /// already ended (it asked or submitted), only the figures are recorded.
    async fn end_run(
        &self,
        run: RunId,
        attempt: Attempt,
        end: &RunEnd,
        retry: &RetryPolicy,
        routes: &InboxRoutes,
        change: &Change,
    ) -> Result<EndedRun>;

    /// Answers a ticket's open question; the ticket goes back to todo for the needs-input lane,
    /// and the question's inbox item is acted on (`answered`) in the same transaction.
    async fn answer(&self, ticket: &TicketId, text: &str, change: &Change) -> Result<Ticket>;

    /// For resuming: the latest run's agent session and the latest answered question.
    async fn resume_context(&self, ticket: &TicketId) -> Result<Option<ResumeContext>>;
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
    /// The part of the input served from the prompt cache.
    pub cached_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    /// The reset time of the rate or usage limit the runtime reported (a `rate_limited` end):
    /// the worker is parked until then.
    pub limit_reset: Option<Timestamp>,
}

/// The result of `end_run`.
#[derive(Clone, Debug, PartialEq)]
pub struct EndedRun {
    pub run: Run,
    /// The ticket's state afterwards.
    pub ticket_state: State,
    /// Whether this call ended the run (false: it had already ended by ask or submit).
    pub ended_now: bool,
    /// What the end did to the ledger, the worker's park and breaker.
    pub accounting: mission_core::usage::Accounting,
}

/// What the needs-input lane needs to resume a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeContext {
    pub session_id: Option<String>,
    pub question: String,
    pub answer: String,
}
