//! The JSON types of the API: what requests carry and responses return, each with its schema in
//! the OpenAPI document. They are the API's contract, converted from the use cases' results —
//! an exhaustive `match` on every core enum, so a new state or outcome cannot slip through
//! undocumented.

use crate::auth::TokenState;
use mission_core::inbox::StoredInboxItem;
use mission_core::incident::{IncidentState, Resolution};
use mission_core::policy::Reason;
use mission_core::review::ReviewDecision;
use mission_core::task::{Outcome, TaskResult};
use mission_core::{
    ActionKind, Event, EvidenceRecord, FailureClass, Incident, Lane, ReviewOutcome, ReviewRecord,
    ReviewerKind, Run, RunOutcome, State, Ticket, Timestamp, Verification,
};
use mission_engine::app::{
    ActedItem, Explanation, IncidentView, ListedTask, LogChunk, Reviewed, TaskListing,
    TaskRunReport, TicketView,
};
use mission_engine::gatekeeper::Closing;
use mission_store::{ApiToken, TaskRun, TicketSummary};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// A point in time, RFC 3339 in UTC with milliseconds (`2026-01-02T03:04:05.678Z`).
pub type Time = String;

fn time(at: Timestamp) -> Time {
    at.to_rfc3339()
}

fn time_opt(at: Option<Timestamp>) -> Option<Time> {
    at.map(time)
}

/// A ticket's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TicketState {
    Triage,
    Todo,
    Running,
    Review,
    Done,
    NeedsInput,
    Blocked,
    Failed,
    Cancelled,
}

impl From<State> for TicketState {
    fn from(state: State) -> Self {
        match state {
            State::Triage => TicketState::Triage,
            State::Todo => TicketState::Todo,
            State::Running => TicketState::Running,
            State::Review => TicketState::Review,
            State::Done => TicketState::Done,
            State::NeedsInput => TicketState::NeedsInput,
            State::Blocked => TicketState::Blocked,
            State::Failed => TicketState::Failed,
            State::Cancelled => TicketState::Cancelled,
        }
    }
}

impl From<TicketState> for State {
    fn from(state: TicketState) -> Self {
        match state {
            TicketState::Triage => State::Triage,
            TicketState::Todo => State::Todo,
            TicketState::Running => State::Running,
            TicketState::Review => State::Review,
            TicketState::Done => State::Done,
            TicketState::NeedsInput => State::NeedsInput,
            TicketState::Blocked => State::Blocked,
            TicketState::Failed => State::Failed,
            TicketState::Cancelled => State::Cancelled,
        }
    }
}

/// A ticket with its body and dependencies.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TicketBody {
    /// `KEY-N`, e.g. `MC-12`.
    pub id: String,
    pub title: String,
    /// Stored byte for byte.
    pub body: String,
    pub state: TicketState,
    pub assignee: Option<String>,
    pub owner: Option<String>,
    pub labels: Vec<String>,
    pub priority: i64,
    pub depends_on: Vec<String>,
    /// `none`, or evidence kinds joined by `+` (`commit+test`).
    pub evidence_policy: String,
    pub repo: Option<String>,
    pub created_at: Time,
    pub updated_at: Time,
    /// Increases with every change of the ticket.
    pub version: i64,
    /// Attempts made so far.
    pub attempts: i64,
    /// Waiting for the needs-input lane to resume its agent session.
    pub resume: bool,
    /// In backoff until then.
    pub not_before: Option<Time>,
}

impl From<Ticket> for TicketBody {
    fn from(t: Ticket) -> Self {
        TicketBody {
            id: t.id.to_string(),
            title: t.title,
            body: t.body,
            state: t.state.into(),
            assignee: t.assignee.map(|n| n.to_string()),
            owner: t.owner.map(|n| n.to_string()),
            labels: t.labels,
            priority: t.priority,
            depends_on: t.depends_on.iter().map(ToString::to_string).collect(),
            evidence_policy: t.evidence_policy.to_string(),
            repo: t.repo,
            created_at: time(t.created_at),
            updated_at: time(t.updated_at),
            version: t.version,
            attempts: t.attempts,
            resume: t.resume,
            not_before: time_opt(t.not_before),
        }
    }
}

/// A ticket as listed on the board: without body and dependencies.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TicketListItem {
    pub id: String,
    pub title: String,
    pub state: TicketState,
    pub assignee: Option<String>,
    pub owner: Option<String>,
    pub labels: Vec<String>,
    pub priority: i64,
    pub updated_at: Time,
}

impl From<TicketSummary> for TicketListItem {
    fn from(t: TicketSummary) -> Self {
        TicketListItem {
            id: t.id.to_string(),
            title: t.title,
            state: t.state.into(),
            assignee: t.assignee.map(|n| n.to_string()),
            owner: t.owner.map(|n| n.to_string()),
            labels: t.labels,
            priority: t.priority,
            updated_at: time(t.updated_at),
        }
    }
}

/// One page of the board, highest priority first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TicketPage {
    pub tickets: Vec<TicketListItem>,
    pub limit: u32,
    pub offset: u32,
    /// The `offset` of the next page; absent on the last page.
    pub next_offset: Option<u32>,
}

/// Filters and paging of the board.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TicketQuery {
    /// Only tickets in this state.
    pub state: Option<TicketState>,
    /// Only tickets assigned to this name.
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub assignee: Option<String>,
    /// Tickets per page: 1..=500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Tickets to skip (the previous page's `next_offset`).
    pub offset: Option<u32>,
}

/// A new ticket: `todo` when assigned, else `triage`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTicket {
    #[schema(
        max_length = 200,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub assignee: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub owner: Option<String>,
    #[serde(default)]
    #[schema(max_items = 20, inline, value_type = Vec<Label>)]
    pub labels: Vec<String>,
    /// -1000..=1000, higher first; default 0.
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: Option<i64>,
    /// Ticket ids (`MC-3`, or `3` for this instance's key).
    #[serde(default)]
    #[schema(max_items = 50, value_type = Vec<TicketRef>)]
    pub depends_on: Vec<String>,
    #[schema(
        max_length = 4096,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub repo: Option<String>,
    /// `none`, or `commit`, `test`, `route`, `artifact` joined by `+`.
    #[schema(
        pattern = "^(none|(commit|(test|route)(:[A-Za-z0-9][A-Za-z0-9._-]{0,63})?|artifact(:[^+]+)?)(\\+(commit|(test|route)(:[A-Za-z0-9][A-Za-z0-9._-]{0,63})?|artifact(:[^+]+)?))*)$"
    )]
    pub evidence_policy: Option<String>,
}

/// A label: letters, digits, `.`, `_`, `:`, `-`; lowercased when stored.
#[derive(ToSchema)]
#[schema(as = Label, value_type = String, pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,49}$")]
#[allow(dead_code)]
pub struct Label(String);

/// A ticket id: `MC-12`, or `12` for this instance's key.
#[derive(ToSchema)]
#[schema(as = TicketRef, value_type = String, pattern = "^([A-Z][A-Z0-9]{0,9}-)?[1-9][0-9]{0,17}$")]
#[allow(dead_code)]
pub struct TicketRef(String);

/// Fields to change (at least one); an absent field is kept, `null` clears a clearable one.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct EditTicket {
    #[schema(
        max_length = 200,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub title: Option<String>,
    pub body: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub assignee: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub owner: Option<Option<String>>,
    /// Replaces the labels.
    #[schema(max_items = 20, value_type = Option<Vec<Label>>)]
    pub labels: Option<Vec<String>>,
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: Option<i64>,
    /// Replaces the dependencies.
    #[schema(max_items = 50, value_type = Option<Vec<TicketRef>>)]
    pub depends_on: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 4096, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub repo: Option<Option<String>>,
    #[schema(
        pattern = "^(none|(commit|(test|route)(:[A-Za-z0-9][A-Za-z0-9._-]{0,63})?|artifact(:[^+]+)?)(\\+(commit|(test|route)(:[A-Za-z0-9][A-Za-z0-9._-]{0,63})?|artifact(:[^+]+)?))*)$"
    )]
    pub evidence_policy: Option<String>,
}

/// A present field, `null` or not: `Some(None)` is an explicit `null`.
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// An operator's move.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveTicket {
    /// `triage`, `todo`, `blocked`, `cancelled`, …; `running`, `review`, `needs_input` and `done`
    /// are reached only through the dispatcher, runs, answers and the gate.
    pub state: TicketState,
    #[schema(pattern = "\\S")]
    pub reason: Option<String>,
}

/// The answer to a ticket's open question.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerTicket {
    #[schema(pattern = "\\S")]
    pub text: String,
}

/// A run: one attempt of one worker on one ticket.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RunBody {
    pub id: i64,
    pub ticket: String,
    pub attempt: i64,
    pub worker: String,
    pub pool: String,
    /// `normal` or `needs-input`.
    pub lane: String,
    pub node: String,
    pub started_at: Time,
    pub heartbeat_at: Time,
    pub lease_expires_at: Time,
    pub pid: Option<i64>,
    pub workspace: Option<String>,
    pub session_id: Option<String>,
    pub head_before: Option<String>,
    pub head_after: Option<String>,
    pub ended_at: Option<Time>,
    /// `submitted`, `asked` or `failed`; absent while the run is live.
    pub outcome: Option<String>,
    /// `agent_error`, `timeout`, `stalled`, `runtime_missing`, `rate_limited`,
    /// `budget_stopped`, `cancelled`, `orphaned`.
    pub failure_class: Option<String>,
    pub detail: Option<String>,
    pub exit_code: Option<i64>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
}

pub fn lane_str(lane: Lane) -> &'static str {
    match lane {
        Lane::Normal => "normal",
        Lane::NeedsInput => "needs-input",
    }
}

pub fn outcome_str(outcome: RunOutcome) -> &'static str {
    match outcome {
        RunOutcome::Submitted => "submitted",
        RunOutcome::Asked => "asked",
        RunOutcome::Failed => "failed",
    }
}

pub fn failure_str(class: FailureClass) -> &'static str {
    class.as_str()
}

impl From<Run> for RunBody {
    fn from(r: Run) -> Self {
        RunBody {
            id: r.id.get(),
            ticket: r.ticket.to_string(),
            attempt: r.attempt.get(),
            worker: r.worker.to_string(),
            pool: r.pool,
            lane: lane_str(r.lane).to_owned(),
            node: r.node,
            started_at: time(r.started_at),
            heartbeat_at: time(r.heartbeat_at),
            lease_expires_at: time(r.lease_expires_at),
            pid: r.pid,
            workspace: r.workspace,
            session_id: r.session_id,
            head_before: r.head_before,
            head_after: r.head_after,
            ended_at: time_opt(r.ended_at),
            outcome: r.outcome.map(|o| outcome_str(o).to_owned()),
            failure_class: r.failure_class.map(|c| failure_str(c).to_owned()),
            detail: r.detail,
            exit_code: r.exit_code,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cost_usd: r.cost_usd,
        }
    }
}

/// One event of the append-only log.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EventBody {
    /// Strictly increasing in commit order.
    pub seq: i64,
    pub at: Time,
    /// `ticket.created`, `ticket.moved`, `ticket.edited`, `run.progress`, `run.ended`,
    /// `dispatch.decision`, `task.finished`, …
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// Who caused it: `cli`, `api`, `api:TOKEN-ID`, `dispatcher`, `run:MC-12#3`, …
    pub actor: String,
    /// The kind's own fields.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl From<Event> for EventBody {
    fn from(e: Event) -> Self {
        EventBody {
            seq: e.seq,
            at: time(e.at),
            kind: e.kind,
            ticket: e.ticket.map(|t| t.to_string()),
            actor: e.actor,
            data: e.data,
        }
    }
}

/// A ticket with its runs, its evidence and its timeline (at most 500 events, oldest first).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TicketDetail {
    pub ticket: TicketBody,
    pub runs: Vec<RunBody>,
    /// Its evidence, each with its latest verification.
    pub evidence: Vec<EvidenceBody>,
    pub timeline: Vec<EventBody>,
}

impl From<TicketView> for TicketDetail {
    fn from(view: TicketView) -> Self {
        TicketDetail {
            ticket: view.ticket.into(),
            runs: view.runs.into_iter().map(Into::into).collect(),
            evidence: view.evidence.into_iter().map(Into::into).collect(),
            timeline: view.timeline.into_iter().map(Into::into).collect(),
        }
    }
}

/// Why a ticket may not run.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReasonBody {
    /// `state_not_todo`, `unassigned`, `assignee_not_a_worker`, `worker_disabled`,
    /// `controller_parked`, `dependency_open`, `capacity_full`, `capacity_unknown`, `backoff`.
    pub code: String,
    pub detail: String,
}

impl From<Reason> for ReasonBody {
    fn from(r: Reason) -> Self {
        ReasonBody {
            code: r.code.as_str().to_owned(),
            detail: r.detail,
        }
    }
}

/// The runnability policy's answer about one ticket, with the dispatcher's own inputs.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ExplanationBody {
    pub ticket: String,
    pub runnable: bool,
    pub reasons: Vec<ReasonBody>,
}

impl From<Explanation> for ExplanationBody {
    fn from(e: Explanation) -> Self {
        ExplanationBody {
            ticket: e.ticket.to_string(),
            runnable: e.runnable,
            reasons: e.reasons.into_iter().map(Into::into).collect(),
        }
    }
}

/// A page of the event log.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<EventBody>,
    /// The `since` of the next page: the last `seq` returned (or the `since` given).
    pub next_since: i64,
}

#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQueryParams {
    /// Only events after this sequence number; default 0.
    #[param(minimum = 0)]
    pub since: Option<i64>,
    /// Events per page: 1..=1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Only events of this ticket.
    #[param(pattern = "^([A-Z][A-Z0-9]{0,9}-)?[1-9][0-9]{0,17}$")]
    pub ticket: Option<String>,
}

#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventStreamParams {
    /// Start after this sequence number (a `Last-Event-ID` header takes precedence); default:
    /// the newest event, so that only new events follow.
    #[param(minimum = 0)]
    pub since: Option<i64>,
    /// Only events of this ticket.
    #[param(pattern = "^([A-Z][A-Z0-9]{0,9}-)?[1-9][0-9]{0,17}$")]
    pub ticket: Option<String>,
}

/// A task run's outcome.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskOutcome {
    Acted,
    Noop,
    Skipped,
    Degraded,
    Failed,
}

impl From<Outcome> for TaskOutcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Acted => TaskOutcome::Acted,
            Outcome::Noop => TaskOutcome::Noop,
            Outcome::Skipped => TaskOutcome::Skipped,
            Outcome::Degraded => TaskOutcome::Degraded,
            Outcome::Failed => TaskOutcome::Failed,
        }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TaskBody {
    pub name: String,
    /// `command`, `agent`, `dispatch`, `triage`, `board-sweep`.
    pub kind: String,
    pub schedule: String,
    pub enabled: bool,
    pub next: Option<Time>,
    pub last_outcome: Option<TaskOutcome>,
    pub last_reason: Option<String>,
    pub last_at: Option<Time>,
}

impl From<ListedTask> for TaskBody {
    fn from(t: ListedTask) -> Self {
        TaskBody {
            name: t.name,
            kind: t.kind.to_owned(),
            schedule: t.schedule,
            enabled: t.enabled,
            next: time_opt(t.next),
            last_outcome: t.last_outcome.map(Into::into),
            last_reason: t.last_reason,
            last_at: time_opt(t.last_at),
        }
    }
}

/// Every task, and every broken task file (`FILE:LINE: problem`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TaskListBody {
    pub tasks: Vec<TaskBody>,
    pub errors: Vec<String>,
}

impl From<TaskListing> for TaskListBody {
    fn from(l: TaskListing) -> Self {
        TaskListBody {
            tasks: l.tasks.into_iter().map(Into::into).collect(),
            errors: l.errors,
        }
    }
}

/// One run of a task.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TaskRunBody {
    pub id: i64,
    pub task: String,
    /// The scheduled time it fired for; absent for a manual run.
    pub slot: Option<Time>,
    /// `schedule`, `catch_up` or `manual`.
    pub trigger: String,
    pub node: String,
    pub started_at: Time,
    pub ended_at: Option<Time>,
    pub duration_ms: Option<i64>,
    /// Absent while the run goes on.
    pub outcome: Option<TaskOutcome>,
    pub reason: Option<String>,
    pub counts: BTreeMap<String, i64>,
}

impl From<TaskRun> for TaskRunBody {
    fn from(r: TaskRun) -> Self {
        TaskRunBody {
            id: r.id,
            task: r.task,
            slot: time_opt(r.slot),
            trigger: r.trigger.to_string(),
            node: r.node,
            started_at: time(r.started_at),
            ended_at: time_opt(r.ended_at),
            duration_ms: r.duration_ms,
            outcome: r.outcome.map(Into::into),
            reason: r.reason,
            counts: r.counts,
        }
    }
}

#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Runs to return, newest first: 1..=500, default 20.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// The result of running a task now: finished within the wait, or still running.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TaskRunResult {
    pub task: String,
    /// `finished` (the outcome is here) or `running` (see the task's history later).
    pub status: String,
    /// The task run, when one was started.
    pub run: Option<i64>,
    pub outcome: Option<TaskOutcome>,
    pub reason: Option<String>,
    pub counts: BTreeMap<String, i64>,
}

impl TaskRunResult {
    pub fn finished(report: TaskRunReport) -> Self {
        let TaskResult {
            outcome,
            reason,
            counts,
        } = report.result;
        TaskRunResult {
            task: report.task,
            status: "finished".to_owned(),
            run: report.run,
            outcome: Some(outcome.into()),
            reason: Some(reason),
            counts,
        }
    }

    pub fn running(task: String) -> Self {
        TaskRunResult {
            task,
            status: "running".to_owned(),
            run: None,
            outcome: None,
            reason: None,
            counts: BTreeMap::new(),
        }
    }
}

/// The health verdict with its itemized reasons.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct StatusBody {
    /// `working`, `degraded` or `broken`.
    pub verdict: String,
    /// Every reason the verdict is not `working`, worst first.
    pub reasons: Vec<StatusReason>,
    /// Whether a server of this instance beats its heartbeat.
    pub server_alive: bool,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct StatusReason {
    /// A stable reason code (see the README), e.g. `server_down`, `capacity_unknown`.
    pub code: String,
    pub component: String,
    /// `warning` (degraded) or `critical` (broken).
    pub severity: String,
    pub detail: String,
    /// Since when the condition holds (RFC 3339), when known.
    pub since: Option<String>,
    /// What to look at: tickets, runs, tasks, incidents, files.
    pub ids: Vec<String>,
}

/// An API token's record; never the token itself.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TokenBody {
    pub id: i64,
    /// `read`, `write` or `admin`.
    #[schema(pattern = "^(read|write|admin)$")]
    pub scope: String,
    pub label: Option<String>,
    pub created_at: Time,
    pub expires_at: Option<Time>,
    pub last_used_at: Option<Time>,
    pub revoked_at: Option<Time>,
    /// `active`, `expired` or `revoked`.
    pub state: String,
}

impl TokenBody {
    pub fn new(t: ApiToken, state: TokenState) -> Self {
        TokenBody {
            state: state.as_str().to_owned(),
            id: t.id,
            scope: t.scope,
            label: t.label,
            created_at: time(t.created_at),
            expires_at: time_opt(t.expires_at),
            last_used_at: time_opt(t.last_used_at),
            revoked_at: time_opt(t.revoked_at),
        }
    }
}

/// A new token.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// `read`, `write` or `admin`.
    #[schema(pattern = "^(read|write|admin)$")]
    pub scope: String,
    /// How long it is valid, e.g. `30d`, `12h`; default: until revoked. (Any duration of
    /// up to 10 years is taken; the document describes the simple ones.)
    #[schema(pattern = "^[1-9][0-9]{0,2}(s|m|h|d)$")]
    pub expires: Option<String>,
    /// At most 100 characters on one line.
    #[schema(max_length = 100, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub label: Option<String>,
}

/// A token just created: the only response that carries it. Store it now.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CreatedTokenBody {
    pub token: String,
    #[serde(flatten)]
    pub record: TokenBody,
}

/// A piece of evidence as the harness observed it, with its latest verification.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EvidenceBody {
    pub id: i64,
    /// `commit`, `test`, `route` or `artifact`.
    pub kind: String,
    /// The test's or route's name, the artifact's path; none for a commit.
    pub subject: Option<String>,
    pub recorded_at: Time,
    /// `harness`, or the run that asked for it (`run:MC-7#2`).
    pub recorded_by: String,
    /// `verified` or `failed`.
    pub status: String,
    /// When it was last verified.
    pub verified_at: Time,
    /// Why the latest verification failed.
    pub failure: Option<String>,
    /// What was observed: the commit, the test's exit code and output tail, the route's status,
    /// the artifact's hash.
    #[schema(value_type = Object)]
    pub observation: serde_json::Value,
}

impl From<EvidenceRecord> for EvidenceBody {
    fn from(record: EvidenceRecord) -> Self {
        let (status, failure) = match &record.verification {
            Verification::Verified { .. } => ("verified", None),
            Verification::Failed { reason, .. } => ("failed", Some(reason.clone())),
        };
        EvidenceBody {
            id: record.id.get(),
            kind: record.evidence.kind().as_str().to_owned(),
            subject: record.evidence.subject().map(str::to_owned),
            recorded_at: time(record.recorded_at),
            recorded_by: record.recorded_by.as_str().to_owned(),
            status: status.to_owned(),
            verified_at: time(record.verification.at()),
            failure,
            observation: serde_json::to_value(&record.evidence).unwrap_or_default(),
        }
    }
}

/// What the gate said when asked.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct GateBody {
    pub ticket: TicketBody,
    /// The ticket is done.
    pub done: bool,
    /// What stands between the ticket and done, one line each (`test:unit: last run exited
    /// 1`); empty when it is done.
    pub missing: Vec<String>,
    /// The merge into the base branch, when the repository merges on done.
    pub merged: Option<String>,
    /// What went wrong after done that changes nothing of it.
    pub notes: Vec<String>,
}

impl From<Closing> for GateBody {
    fn from(closing: Closing) -> Self {
        GateBody {
            ticket: closing.ticket.into(),
            done: closing.done,
            missing: closing.missing,
            merged: closing.merged,
            notes: closing.notes,
        }
    }
}

/// A person's review verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

impl From<Decision> for ReviewDecision {
    fn from(decision: Decision) -> Self {
        match decision {
            Decision::Approve => ReviewDecision::Approve,
            Decision::Reject => ReviewDecision::Reject,
        }
    }
}

/// A person's verdict on a ticket in review.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewTicket {
    pub decision: Decision,
    #[schema(pattern = "\\S")]
    pub reason: String,
    /// The reviewer's name; default `operator`. An author of the ticket is refused.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub reviewer: Option<String>,
}

/// A review as recorded.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReviewBody {
    /// `approved`, `rejected` or `skipped_oversized` (never a success).
    pub outcome: String,
    pub at: Time,
    pub reviewer: Option<String>,
    /// `human` or `worker`.
    pub reviewer_kind: Option<String>,
    pub reason: Option<String>,
    /// For `skipped_oversized`: the diff's changed lines and the cap.
    pub changed_lines: Option<u64>,
    pub cap: Option<u64>,
}

fn reviewer_kind(kind: ReviewerKind) -> &'static str {
    match kind {
        ReviewerKind::Human => "human",
        ReviewerKind::Worker => "worker",
    }
}

impl From<ReviewRecord> for ReviewBody {
    fn from(record: ReviewRecord) -> Self {
        let outcome = record.outcome.as_str().to_owned();
        let at = time(record.at);
        match record.outcome {
            ReviewOutcome::Approved { by, reason } | ReviewOutcome::Rejected { by, reason } => {
                ReviewBody {
                    outcome,
                    at,
                    reviewer: Some(by.name.to_string()),
                    reviewer_kind: Some(reviewer_kind(by.kind).to_owned()),
                    reason: Some(reason),
                    changed_lines: None,
                    cap: None,
                }
            }
            ReviewOutcome::SkippedOversized { changed_lines, cap } => ReviewBody {
                outcome,
                at,
                reviewer: None,
                reviewer_kind: None,
                reason: None,
                changed_lines: Some(changed_lines),
                cap: Some(cap),
            },
        }
    }
}

/// A verdict recorded, and what followed.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReviewedBody {
    pub ticket: TicketBody,
    pub review: ReviewBody,
    /// After an approval, the gate was asked: what it said.
    pub gate: Option<GateBody>,
}

impl From<Reviewed> for ReviewedBody {
    fn from(reviewed: Reviewed) -> Self {
        ReviewedBody {
            ticket: reviewed.ticket.into(),
            review: reviewed.review.into(),
            gate: reviewed.gate.map(Into::into),
        }
    }
}

/// An action taken on an inbox item.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ActionBody {
    /// `answered`, `approved`, `rejected`, `requeued`, `escalated` or `dismissed`.
    pub kind: String,
    pub ticket: Option<String>,
    pub actor: String,
    /// The answer, the reason.
    pub text: Option<String>,
    pub at: Time,
}

/// A failed item: why, and when.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct FailureBody {
    pub reason: String,
    pub at: Time,
}

/// An inbox item: a message that needs a decision.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct InboxItemBody {
    pub id: i64,
    /// `question`, `review_request`, `approval`, `alert` or `failed_ticket`.
    pub kind: String,
    pub ticket: Option<String>,
    /// `channel:NAME` (a person) or `worker:NAME` (an orchestrator worker).
    pub addressee: String,
    pub text: String,
    pub created_at: Time,
    pub deliveries: u32,
    /// `pending`, `delivered`, `acted` or `failed`.
    pub status: String,
    pub lease_expires_at: Option<Time>,
    pub failure: Option<FailureBody>,
    /// The action it caused, once acted on.
    pub action: Option<ActionBody>,
    /// The actions that settle an item of its kind.
    pub actions: Vec<String>,
}

impl From<StoredInboxItem> for InboxItemBody {
    fn from(item: StoredInboxItem) -> Self {
        InboxItemBody {
            id: item.id.get(),
            kind: item.kind.as_str().to_owned(),
            ticket: item.ticket.map(|t| t.to_string()),
            addressee: item.addressee.to_string(),
            text: item.text,
            created_at: time(item.created_at),
            deliveries: item.deliveries,
            status: item.status.as_str().to_owned(),
            lease_expires_at: time_opt(item.lease_expires_at),
            failure: item.failure.map(|(reason, at)| FailureBody {
                reason,
                at: time(at),
            }),
            action: item.action.map(|a| ActionBody {
                kind: a.kind.as_str().to_owned(),
                ticket: a.ticket.map(|t| t.to_string()),
                actor: a.actor.as_str().to_owned(),
                text: a.text,
                at: time(a.at),
            }),
            actions: ActionKind::ALL
                .into_iter()
                .filter(|action| item.kind.allows(*action))
                .map(|action| action.as_str().to_owned())
                .collect(),
        }
    }
}

/// Which inbox items, a page at a time (oldest first).
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboxQuery {
    /// `open` (pending or delivered: the default), `pending`, `delivered`, `acted`, `failed`
    /// or `all`.
    #[param(pattern = "^(open|pending|delivered|acted|failed|all)$")]
    pub status: Option<String>,
    /// Only items about this ticket.
    #[param(pattern = "^([A-Z][A-Z0-9]{0,9}-)?[1-9][0-9]{0,17}$")]
    pub ticket: Option<String>,
    /// Items per page: 1..=500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Only items after this id (the previous page's `next_after`).
    pub after: Option<i64>,
}

/// A page of the inbox.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct InboxPage {
    pub items: Vec<InboxItemBody>,
    /// The `after` of the next page; absent on the last page.
    pub next_after: Option<i64>,
}

/// A person acts on an inbox item.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActOnItem {
    /// `answered`, `approved`, `rejected`, `requeued`, `escalated` or `dismissed`; the item's
    /// kind decides which are allowed (its `actions`).
    #[schema(pattern = "^(answered|approved|rejected|requeued|escalated|dismissed)$")]
    pub action: String,
    /// The answer (needed to answer), the reason (needed to reject).
    #[schema(pattern = "\\S")]
    pub text: Option<String>,
    /// Who acts; default `operator`.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub by: Option<String>,
}

/// An item acted on, and what followed.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ActedBody {
    pub item: InboxItemBody,
    /// After an approval, the gate was asked: what it said.
    pub gate: Option<GateBody>,
}

impl From<ActedItem> for ActedBody {
    fn from(acted: ActedItem) -> Self {
        ActedBody {
            item: acted.item.into(),
            gate: acted.gate.map(Into::into),
        }
    }
}

/// How an incident was resolved.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ResolutionBody {
    /// `cleared` (the audit no longer found it) or `operator`.
    pub by: String,
    pub at: Time,
    pub actor: Option<String>,
    pub reason: Option<String>,
}

/// A persistent bad condition, keyed by its fingerprint.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct IncidentBody {
    pub id: i64,
    /// `check:subject`, e.g. `stuck_run:MC-12`.
    pub fingerprint: String,
    /// `warning` or `critical`.
    pub severity: String,
    /// `open` or `resolved`.
    pub status: String,
    pub resolution: Option<ResolutionBody>,
    pub occurrences: u64,
    pub first_seen: Time,
    pub last_seen: Time,
    /// When it was last opened or reopened.
    pub opened_at: Time,
    /// How many times it came back after being resolved.
    pub reopened: u64,
    /// The latest occurrence's detail.
    pub detail: String,
    pub ticket: Option<String>,
}

impl From<Incident> for IncidentBody {
    fn from(i: Incident) -> Self {
        let (status, resolution) = match i.state {
            IncidentState::Open => ("open", None),
            IncidentState::Resolved { at, resolution } => (
                "resolved",
                Some(match resolution {
                    Resolution::Cleared => ResolutionBody {
                        by: "cleared".to_owned(),
                        at: time(at),
                        actor: None,
                        reason: None,
                    },
                    Resolution::Operator { actor, reason } => ResolutionBody {
                        by: "operator".to_owned(),
                        at: time(at),
                        actor: Some(actor.as_str().to_owned()),
                        reason: Some(reason),
                    },
                }),
            ),
        };
        IncidentBody {
            id: i.id.get(),
            fingerprint: i.fingerprint.to_string(),
            severity: i.severity.as_str().to_owned(),
            status: status.to_owned(),
            resolution,
            occurrences: i.occurrences,
            first_seen: time(i.first_seen),
            last_seen: time(i.last_seen),
            opened_at: time(i.opened_at),
            reopened: i.reopened,
            detail: i.detail,
            ticket: i.ticket.map(|t| t.to_string()),
        }
    }
}

/// One occurrence of an incident's condition, with what the check saw.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct OccurrenceBody {
    /// 1 for the occurrence that opened the incident.
    pub number: u64,
    pub at: Time,
    pub detail: String,
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
}

/// An incident with its latest occurrences, oldest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct IncidentDetail {
    pub incident: IncidentBody,
    pub occurrences: Vec<OccurrenceBody>,
}

impl From<IncidentView> for IncidentDetail {
    fn from(view: IncidentView) -> Self {
        IncidentDetail {
            incident: view.incident.into(),
            occurrences: view
                .occurrence_list
                .into_iter()
                .map(|o| OccurrenceBody {
                    number: o.number,
                    at: time(o.at),
                    detail: o.detail,
                    evidence: o.evidence,
                })
                .collect(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IncidentQuery {
    /// Resolved incidents too; default only open ones.
    pub all: Option<bool>,
    /// Only `warning` or only `critical` incidents.
    #[param(pattern = "^(warning|critical)$")]
    pub severity: Option<String>,
    /// At most this many, newest first: 1..=500, default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// An operator's resolution: a statement, not a suppression (a condition that persists
/// reopens the incident).
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveIncident {
    #[schema(pattern = "\\S")]
    pub reason: String,
}

/// A piece of a run's log (`data/runs/KEY-N/ATTEMPT/output.log`), secrets redacted.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RunLogBody {
    pub ticket: String,
    pub attempt: i64,
    /// The byte offset where `text` starts.
    pub start: u64,
    /// Where the next read starts: `?from=END`.
    pub end: u64,
    /// The log's size when read.
    pub size: u64,
    pub text: String,
    /// The run has ended: the log will not grow (read on while `end < size`).
    pub ended: bool,
    /// `submitted`, `asked` or `failed` once the run has ended.
    pub outcome: Option<String>,
}

impl From<LogChunk> for RunLogBody {
    fn from(chunk: LogChunk) -> Self {
        RunLogBody {
            ticket: chunk.run.ticket.to_string(),
            attempt: chunk.run.attempt.get(),
            start: chunk.start,
            end: chunk.end,
            size: chunk.size,
            text: chunk.text,
            ended: chunk.ended,
            outcome: chunk.run.outcome.map(|o| outcome_str(o).to_owned()),
        }
    }
}

#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunLogQuery {
    /// Read from this byte offset on (a previous read's `end`); default: the tail.
    pub from: Option<u64>,
    /// At most this many bytes: 1..=262144, default 65536.
    #[param(minimum = 1, maximum = 262144)]
    pub bytes: Option<u64>,
}

#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunLogStreamParams {
    /// Start at this byte offset (a `Last-Event-ID` header takes precedence); default: the
    /// tail's start.
    pub from: Option<u64>,
}
