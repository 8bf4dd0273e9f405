//! The health verdict: "is it working?" as one pure function over durable facts.
//!
//! The store (and the engine, for what only it knows) gathers a `HealthFacts` snapshot in one
//! read; `assess` turns it into `working`, `degraded` or `broken` with itemized reasons. A live
//! process or a task run that exited 0 is not health: only the facts below count, and each
//! reason names its code, component, severity, since when, and the ids to look at. A snapshot
//! with nothing wrong gives `working` and no reasons at all — no false alarms.
//!
//! Reason codes (stable; scripts match on them):
//!
//! | code | component | severity | meaning |
//! |---|---|---|---|
//! | `server_down` | server | critical | no server heartbeat, or the newest is older than `server_dead_after_beats` × its interval |
//! | `dispatcher_stalled` | dispatcher | critical | a server is alive but its dispatcher has not passed for `dispatcher_stall` (at least 10 reconcile intervals) |
//! | `capacity_unknown` | capacity | warning | active runs could not be counted, so nothing is dispatched |
//! | `starvation` | dispatcher | warning | tickets the policy says may run (capacity free) waited longer than `starvation_after` |
//! | `task_churn` | scheduler | warning | a task's last `churn_runs` runs were all `skipped`, or all `noop`, for the same reason, while its kind of work waits |
//! | `stuck_run` | runner | warning | a live run's lease expired more than `stuck_grace` ago (no heartbeat, not recovered) |
//! | `incident_open` | incidents | the incidents' | open incidents, one reason per severity |
//! | `task_degraded` | scheduler | warning | a task's latest run, within `task_window`, was `degraded` |
//! | `task_failed` | scheduler | warning | a task's latest run, within `task_window`, `failed` |
//! | `task_file_broken` | scheduler | warning | a `tasks/*.md` file does not parse; the other tasks run |
//! | `config_problem` | config | warning | the configuration has a problem the server runs despite |
//! | `sandbox_off` | sandbox | warning | runs are not sandboxed, and why |
//! | `inbox_aging` | inbox | warning | pending or delivered items older than `inbox_age_limit` |
//! | `inbox_failed` | inbox | warning | items failed (never acted on) within `task_window` |
//! | `evidence_invalid` | evidence | warning | done tickets whose evidence no longer verifies |
//! | `worker_rate_limited` | workers | warning | workers parked by a rate or usage limit, until when |
//! | `breaker_open` | workers | warning | workers whose circuit breaker is open (failed runs in a row) |
//! | `task_breaker_open` | scheduler | warning | tasks whose circuit breaker is open (failed or degraded runs in a row): their scheduled firings are skipped |
//! | `budget_exhausted` | budgets | warning | budgets at their hard limit: nothing is dispatched under them until they reset |
//!
//! A warning makes the verdict `degraded`, a critical reason `broken`. There is one reason per
//! code (per severity for incidents), listing every id.

use crate::id::{Name, TicketId};
use crate::inbox::{InboxId, InboxKind};
use crate::incident::{Fingerprint, IncidentId, Severity};
use crate::run::RunId;
use crate::task::{Outcome, TaskFileError, TaskKind};
use crate::time::{Timestamp, deserialize_duration};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The answer to "is it working?". Ordered from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Working,
    Degraded,
    Broken,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Working => "working",
            Verdict::Degraded => "degraded",
            Verdict::Broken => "broken",
        }
    }

    /// The verdict a reason of this severity leads to.
    pub fn of(severity: Severity) -> Verdict {
        match severity {
            Severity::Warning => Verdict::Degraded,
            Severity::Critical => Verdict::Broken,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verdict {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "working" => Ok(Verdict::Working),
            "degraded" => Ok(Verdict::Degraded),
            "broken" => Ok(Verdict::Broken),
            _ => Err(format!(
                "unknown verdict {s:?}: expected working, degraded or broken"
            )),
        }
    }
}

/// Stable reason codes; see the module's table. Never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    ServerDown,
    DispatcherStalled,
    CapacityUnknown,
    Starvation,
    TaskChurn,
    StuckRun,
    IncidentOpen,
    TaskDegraded,
    TaskFailed,
    TaskFileBroken,
    ConfigProblem,
    SandboxOff,
    InboxAging,
    InboxFailed,
    EvidenceInvalid,
    WorkerRateLimited,
    BreakerOpen,
    TaskBreakerOpen,
    BudgetExhausted,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 19] = [
        ReasonCode::ServerDown,
        ReasonCode::DispatcherStalled,
        ReasonCode::CapacityUnknown,
        ReasonCode::Starvation,
        ReasonCode::TaskChurn,
        ReasonCode::StuckRun,
        ReasonCode::IncidentOpen,
        ReasonCode::TaskDegraded,
        ReasonCode::TaskFailed,
        ReasonCode::TaskFileBroken,
        ReasonCode::ConfigProblem,
        ReasonCode::SandboxOff,
        ReasonCode::InboxAging,
        ReasonCode::InboxFailed,
        ReasonCode::EvidenceInvalid,
        ReasonCode::WorkerRateLimited,
        ReasonCode::BreakerOpen,
        ReasonCode::TaskBreakerOpen,
        ReasonCode::BudgetExhausted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::ServerDown => "server_down",
            ReasonCode::DispatcherStalled => "dispatcher_stalled",
            ReasonCode::CapacityUnknown => "capacity_unknown",
            ReasonCode::Starvation => "starvation",
            ReasonCode::TaskChurn => "task_churn",
            ReasonCode::StuckRun => "stuck_run",
            ReasonCode::IncidentOpen => "incident_open",
            ReasonCode::TaskDegraded => "task_degraded",
            ReasonCode::TaskFailed => "task_failed",
            ReasonCode::TaskFileBroken => "task_file_broken",
            ReasonCode::ConfigProblem => "config_problem",
            ReasonCode::SandboxOff => "sandbox_off",
            ReasonCode::InboxAging => "inbox_aging",
            ReasonCode::InboxFailed => "inbox_failed",
            ReasonCode::EvidenceInvalid => "evidence_invalid",
            ReasonCode::WorkerRateLimited => "worker_rate_limited",
            ReasonCode::BreakerOpen => "breaker_open",
            ReasonCode::TaskBreakerOpen => "task_breaker_open",
            ReasonCode::BudgetExhausted => "budget_exhausted",
        }
    }

    /// The part of the system a reason is about.
    pub fn component(self) -> Component {
        match self {
            ReasonCode::ServerDown => Component::Server,
            ReasonCode::DispatcherStalled | ReasonCode::Starvation => Component::Dispatcher,
            ReasonCode::CapacityUnknown => Component::Capacity,
            ReasonCode::StuckRun => Component::Runner,
            ReasonCode::IncidentOpen => Component::Incidents,
            ReasonCode::TaskChurn
            | ReasonCode::TaskDegraded
            | ReasonCode::TaskFailed
            | ReasonCode::TaskFileBroken
            | ReasonCode::TaskBreakerOpen => Component::Scheduler,
            ReasonCode::ConfigProblem => Component::Config,
            ReasonCode::SandboxOff => Component::Sandbox,
            ReasonCode::InboxAging | ReasonCode::InboxFailed => Component::Inbox,
            ReasonCode::EvidenceInvalid => Component::Evidence,
            ReasonCode::WorkerRateLimited | ReasonCode::BreakerOpen => Component::Workers,
            ReasonCode::BudgetExhausted => Component::Budgets,
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parts of the system a reason can be about. Stable strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    Server,
    Dispatcher,
    Capacity,
    Runner,
    Scheduler,
    Incidents,
    Inbox,
    Evidence,
    Config,
    Sandbox,
    Workers,
    Budgets,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Server => "server",
            Component::Dispatcher => "dispatcher",
            Component::Capacity => "capacity",
            Component::Runner => "runner",
            Component::Scheduler => "scheduler",
            Component::Incidents => "incidents",
            Component::Inbox => "inbox",
            Component::Evidence => "evidence",
            Component::Config => "config",
            Component::Sandbox => "sandbox",
            Component::Workers => "workers",
            Component::Budgets => "budgets",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason the verdict is not `working`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReason {
    pub code: ReasonCode,
    pub component: Component,
    pub severity: Severity,
    pub detail: String,
    /// Since when the condition holds, when known.
    pub since: Option<Timestamp>,
    /// What to look at: ticket ids, run ids, task names, inbox item ids, incident ids, files.
    pub ids: Vec<String>,
}

/// The verdict and every reason for it, worst first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub verdict: Verdict,
    pub reasons: Vec<HealthReason>,
}

impl HealthReport {
    pub fn codes(&self) -> Vec<ReasonCode> {
        self.reasons.iter().map(|r| r.code).collect()
    }
}

/// When the facts turn into reasons. Shaped to be read from a `[health]` section of
/// `mission.toml`; every field has a default.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthThresholds {
    /// A server is dead when its newest heartbeat is older than this many intervals.
    pub server_dead_after_beats: u32,
    /// A live server whose dispatcher has not passed for this long (and for at least 10
    /// reconcile intervals) has a stalled dispatcher.
    #[serde(deserialize_with = "deserialize_duration")]
    pub dispatcher_stall: Duration,
    /// A ticket that may run but waited this long is starving.
    #[serde(deserialize_with = "deserialize_duration")]
    pub starvation_after: Duration,
    /// This many consecutive `noop` or `skipped` runs with the same reason are churn.
    pub churn_runs: u32,
    /// Degraded or failed task runs, and failed inbox items, count this long.
    #[serde(deserialize_with = "deserialize_duration")]
    pub task_window: Duration,
    /// A run whose lease expired this long ago is stuck (recovery had its chance).
    #[serde(deserialize_with = "deserialize_duration")]
    pub stuck_grace: Duration,
    /// An inbox item pending or delivered this long is aging.
    #[serde(deserialize_with = "deserialize_duration")]
    pub inbox_age_limit: Duration,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        HealthThresholds {
            server_dead_after_beats: 3,
            dispatcher_stall: Duration::from_secs(60),
            starvation_after: Duration::from_secs(5 * 60),
            churn_runs: 5,
            task_window: Duration::from_secs(3600),
            stuck_grace: Duration::from_secs(30),
            inbox_age_limit: Duration::from_secs(3600),
        }
    }
}

/// A server's heartbeat row: written by `serve` every `interval`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerBeat {
    pub node: String,
    pub started_at: Timestamp,
    pub last_beat: Timestamp,
    pub interval: Duration,
}

/// A ticket the runnability policy says may be dispatched now — so a slot is free for it — and
/// since when it has been waiting (its `state_since` in todo, or its backoff's end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub ticket: TicketId,
    pub since: Timestamp,
}

/// A live run (no end recorded) and its lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveRun {
    pub run: RunId,
    pub ticket: TicketId,
    pub heartbeat_at: Timestamp,
    pub lease_expires_at: Timestamp,
}

/// One ended task run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRunFact {
    pub run: i64,
    pub outcome: Outcome,
    pub reason: String,
    pub ended_at: Timestamp,
}

/// A task and its latest runs, newest first (at least `churn_runs` of them when it has that
/// many).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskFacts {
    pub name: Name,
    pub kind: TaskKind,
    pub recent: Vec<TaskRunFact>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenIncident {
    pub id: IncidentId,
    pub fingerprint: Fingerprint,
    pub severity: Severity,
    pub opened_at: Timestamp,
}

/// An inbox item not yet acted on or failed, and since when it waits (its creation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsettledItem {
    pub id: InboxId,
    pub kind: InboxKind,
    pub ticket: Option<TicketId>,
    pub since: Timestamp,
}

/// An inbox item that failed, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedItem {
    pub id: InboxId,
    pub at: Timestamp,
}

/// A done ticket whose evidence no longer verifies, why, and since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidEvidence {
    pub ticket: TicketId,
    pub reason: String,
    pub since: Timestamp,
}

/// Active runs could not be counted, since when and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapacityUncounted {
    pub since: Timestamp,
    pub error: String,
}

/// Everything the verdict reads: durable facts, gathered in one read. Lists may be capped by
/// the gatherer (the oldest first); the verdict only needs one to report a condition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthFacts {
    /// Every server's heartbeat row.
    pub servers: Vec<ServerBeat>,
    /// The dispatcher's newest pass, by any server.
    pub dispatcher_last_pass: Option<Timestamp>,
    pub reconcile_interval: Duration,
    /// The capacity fact: `Some` while active runs cannot be counted.
    pub capacity_unknown: Option<CapacityUncounted>,
    pub runnable_waiting: Vec<Waiting>,
    /// Tickets in triage (the work a triage task exists for).
    pub tickets_in_triage: u64,
    pub live_runs: Vec<LiveRun>,
    pub tasks: Vec<TaskFacts>,
    pub broken_task_files: Vec<TaskFileError>,
    pub config_problems: Vec<String>,
    /// `Some(why)` when runs are not sandboxed.
    pub sandbox_off: Option<String>,
    pub open_incidents: Vec<OpenIncident>,
    /// Pending and delivered inbox items, oldest first.
    pub unsettled_inbox: Vec<UnsettledItem>,
    pub failed_inbox: Vec<FailedItem>,
    pub invalid_evidence: Vec<InvalidEvidence>,
    /// Workers parked by a rate limit now (until later than now).
    pub parked_workers: Vec<ParkedWorker>,
    /// Workers whose breaker is open or half-open.
    pub open_breakers: Vec<OpenBreaker>,
    /// Tasks whose breaker is open or half-open.
    pub open_task_breakers: Vec<OpenTaskBreaker>,
    /// Budgets at their hard limit.
    pub exhausted_budgets: Vec<ExhaustedBudget>,
}

/// A worker parked by a rate limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkedWorker {
    pub worker: Name,
    pub since: Timestamp,
    pub until: Timestamp,
}

/// A worker whose breaker is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenBreaker {
    pub worker: Name,
    pub failures: u32,
    pub opened_at: Timestamp,
}

/// A task whose breaker is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenTaskBreaker {
    pub task: Name,
    pub failures: u32,
    pub opened_at: Timestamp,
}

/// A budget at its hard limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExhaustedBudget {
    pub budget: String,
    /// `tokens 1200 tokens of 1000 tokens`.
    pub detail: String,
    pub resets: Option<String>,
}

/// The verdict over `facts` at `now`.
pub fn assess(facts: &HealthFacts, now: Timestamp, limits: &HealthThresholds) -> HealthReport {
    let mut reasons = Vec::new();
    let mut add = |code: ReasonCode,
                   severity: Severity,
                   detail: String,
                   since: Option<Timestamp>,
                   ids: Vec<String>| {
        reasons.push(HealthReason {
            code,
            component: code.component(),
            severity,
            detail,
            since,
            ids,
        })
    };
    let older_than = |since: Timestamp, limit: Duration| now.since(since) > limit;

    // The server: alive while one of its heartbeats is recent.
    let alive = facts.servers.iter().filter(|s| {
        let limit = s.interval.saturating_mul(limits.server_dead_after_beats);
        !older_than(s.last_beat, limit)
    });
    let alive_since = alive.map(|s| s.started_at).min();
    match (
        alive_since,
        facts.servers.iter().max_by_key(|s| s.last_beat),
    ) {
        (Some(_), _) => {}
        (None, None) => add(
            ReasonCode::ServerDown,
            Severity::Critical,
            "no server has recorded a heartbeat: start `mission serve`".to_owned(),
            None,
            vec![],
        ),
        (None, Some(newest)) => add(
            ReasonCode::ServerDown,
            Severity::Critical,
            format!(
                "the newest server heartbeat ({}) is {} old; servers beat every {}",
                newest.node,
                human(now.since(newest.last_beat)),
                human(newest.interval)
            ),
            Some(newest.last_beat),
            vec![newest.node.clone()],
        ),
    }

    // The dispatcher: only a live server's dispatcher can stall.
    if let Some(started_at) = alive_since {
        let limit = limits
            .dispatcher_stall
            .max(facts.reconcile_interval.saturating_mul(10));
        let last = facts
            .dispatcher_last_pass
            .unwrap_or(started_at)
            .max(started_at);
        if older_than(last, limit) {
            add(
                ReasonCode::DispatcherStalled,
                Severity::Critical,
                format!(
                    "the server is alive but its dispatcher has not passed for {}",
                    human(now.since(last))
                ),
                Some(last),
                vec![],
            );
        }
    }

    if let Some(unknown) = &facts.capacity_unknown {
        add(
            ReasonCode::CapacityUnknown,
            Severity::Warning,
            format!(
                "active runs could not be counted ({}); nothing is dispatched until they can",
                unknown.error
            ),
            Some(unknown.since),
            vec![],
        );
    }

    let mut starving: Vec<&Waiting> = facts
        .runnable_waiting
        .iter()
        .filter(|w| older_than(w.since, limits.starvation_after))
        .collect();
    starving.sort_by_key(|w| w.since);
    if let Some(oldest) = starving.first() {
        add(
            ReasonCode::Starvation,
            Severity::Warning,
            format!(
                "{} runnable ticket(s) waited longer than {} with capacity free, the oldest {} ({})",
                starving.len(),
                human(limits.starvation_after),
                human(now.since(oldest.since)),
                oldest.ticket
            ),
            Some(oldest.since),
            starving.iter().map(|w| w.ticket.to_string()).collect(),
        );
    }

    // Task runs: churn, and the outcome of the latest run that ran (a skipped firing — overlap,
    // an open circuit breaker — says nothing of whether the task works) within the window.
    let mut churning = Vec::new();
    let mut degraded = Vec::new();
    let mut failed = Vec::new();
    for task in &facts.tasks {
        if let Some(churn) = churn(task, facts, limits) {
            churning.push(churn);
        }
        if let Some(latest) = task.recent.iter().find(|r| r.outcome != Outcome::Skipped)
            && !older_than(latest.ended_at, limits.task_window)
        {
            let item = (task.name.to_string(), latest);
            match latest.outcome {
                Outcome::Degraded => degraded.push(item),
                Outcome::Failed => failed.push(item),
                _ => {}
            }
        }
    }
    if !churning.is_empty() {
        add(
            ReasonCode::TaskChurn,
            Severity::Warning,
            listing(churning.iter().map(|c| c.detail.clone()).collect()),
            churning.iter().map(|c| c.since).min(),
            churning.iter().map(|c| c.task.clone()).collect(),
        );
    }
    for (code, runs) in [
        (ReasonCode::TaskDegraded, degraded),
        (ReasonCode::TaskFailed, failed),
    ] {
        if runs.is_empty() {
            continue;
        }
        add(
            code,
            Severity::Warning,
            listing(
                runs.iter()
                    .map(|(task, run)| {
                        format!(
                            "task {task} run {} {}: {}",
                            run.run, run.outcome, run.reason
                        )
                    })
                    .collect(),
            ),
            runs.iter().map(|(_, run)| run.ended_at).min(),
            runs.iter().map(|(task, _)| task.clone()).collect(),
        );
    }

    let stuck: Vec<&LiveRun> = facts
        .live_runs
        .iter()
        .filter(|r| older_than(r.lease_expires_at, limits.stuck_grace))
        .collect();
    if !stuck.is_empty() {
        add(
            ReasonCode::StuckRun,
            Severity::Warning,
            listing(
                stuck
                    .iter()
                    .map(|r| {
                        format!(
                            "run {} of {} has had no heartbeat for {} (its lease expired {} ago)",
                            r.run,
                            r.ticket,
                            human(now.since(r.heartbeat_at)),
                            human(now.since(r.lease_expires_at))
                        )
                    })
                    .collect(),
            ),
            stuck.iter().map(|r| r.lease_expires_at).min(),
            stuck.iter().map(|r| r.run.to_string()).collect(),
        );
    }

    for severity in [Severity::Critical, Severity::Warning] {
        let open: Vec<&OpenIncident> = facts
            .open_incidents
            .iter()
            .filter(|i| i.severity == severity)
            .collect();
        if open.is_empty() {
            continue;
        }
        add(
            ReasonCode::IncidentOpen,
            severity,
            format!(
                "{} open {severity} incident(s): {}",
                open.len(),
                listing(
                    open.iter()
                        .map(|i| format!("{} {}", i.id, i.fingerprint))
                        .collect()
                )
            ),
            open.iter().map(|i| i.opened_at).min(),
            open.iter().map(|i| i.id.to_string()).collect(),
        );
    }

    if !facts.broken_task_files.is_empty() {
        add(
            ReasonCode::TaskFileBroken,
            Severity::Warning,
            listing(
                facts
                    .broken_task_files
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
            None,
            facts
                .broken_task_files
                .iter()
                .map(|e| e.file.clone())
                .collect(),
        );
    }

    if !facts.config_problems.is_empty() {
        add(
            ReasonCode::ConfigProblem,
            Severity::Warning,
            listing(facts.config_problems.clone()),
            None,
            vec![],
        );
    }

    if let Some(why) = &facts.sandbox_off {
        add(
            ReasonCode::SandboxOff,
            Severity::Warning,
            format!("runs are not sandboxed: {why}"),
            None,
            vec![],
        );
    }

    if !facts.parked_workers.is_empty() {
        add(
            ReasonCode::WorkerRateLimited,
            Severity::Warning,
            listing(
                facts
                    .parked_workers
                    .iter()
                    .map(|p| format!("worker {} is rate limited until {}", p.worker, p.until))
                    .collect(),
            ),
            facts.parked_workers.iter().map(|p| p.since).min(),
            facts
                .parked_workers
                .iter()
                .map(|p| p.worker.to_string())
                .collect(),
        );
    }

    if !facts.open_breakers.is_empty() {
        add(
            ReasonCode::BreakerOpen,
            Severity::Warning,
            listing(
                facts
                    .open_breakers
                    .iter()
                    .map(|b| {
                        format!(
                            "worker {}'s circuit breaker is open after {} failed runs in a row",
                            b.worker, b.failures
                        )
                    })
                    .collect(),
            ),
            facts.open_breakers.iter().map(|b| b.opened_at).min(),
            facts
                .open_breakers
                .iter()
                .map(|b| b.worker.to_string())
                .collect(),
        );
    }

    if !facts.open_task_breakers.is_empty() {
        add(
            ReasonCode::TaskBreakerOpen,
            Severity::Warning,
            listing(
                facts
                    .open_task_breakers
                    .iter()
                    .map(|b| {
                        format!(
                            "task {}'s circuit breaker is open after {} failed or degraded runs in a row",
                            b.task, b.failures
                        )
                    })
                    .collect(),
            ),
            facts.open_task_breakers.iter().map(|b| b.opened_at).min(),
            facts
                .open_task_breakers
                .iter()
                .map(|b| b.task.to_string())
                .collect(),
        );
    }

    if !facts.exhausted_budgets.is_empty() {
        add(
            ReasonCode::BudgetExhausted,
            Severity::Warning,
            listing(
                facts
                    .exhausted_budgets
                    .iter()
                    .map(|b| match &b.resets {
                        Some(at) => format!(
                            "budget {} is exhausted ({}); it resets at {at}",
                            b.budget, b.detail
                        ),
                        None => format!(
                            "budget {} is exhausted ({}); it frees as its usage ages out",
                            b.budget, b.detail
                        ),
                    })
                    .collect(),
            ),
            None,
            facts
                .exhausted_budgets
                .iter()
                .map(|b| b.budget.clone())
                .collect(),
        );
    }

    let aging: Vec<&UnsettledItem> = facts
        .unsettled_inbox
        .iter()
        .filter(|i| older_than(i.since, limits.inbox_age_limit))
        .collect();
    if let Some(oldest) = aging.iter().min_by_key(|i| i.since) {
        add(
            ReasonCode::InboxAging,
            Severity::Warning,
            format!(
                "{} inbox item(s) waited longer than {}, the oldest {} ({} {}{})",
                aging.len(),
                human(limits.inbox_age_limit),
                human(now.since(oldest.since)),
                oldest.kind,
                oldest.id,
                oldest
                    .ticket
                    .as_ref()
                    .map(|t| format!(" about {t}"))
                    .unwrap_or_default()
            ),
            Some(oldest.since),
            aging.iter().map(|i| i.id.to_string()).collect(),
        );
    }

    let failed_items: Vec<&FailedItem> = facts
        .failed_inbox
        .iter()
        .filter(|i| !older_than(i.at, limits.task_window))
        .collect();
    if !failed_items.is_empty() {
        add(
            ReasonCode::InboxFailed,
            Severity::Warning,
            format!(
                "{} inbox item(s) failed without being acted on in the last {}",
                failed_items.len(),
                human(limits.task_window)
            ),
            failed_items.iter().map(|i| i.at).min(),
            failed_items.iter().map(|i| i.id.to_string()).collect(),
        );
    }

    if !facts.invalid_evidence.is_empty() {
        add(
            ReasonCode::EvidenceInvalid,
            Severity::Warning,
            listing(
                facts
                    .invalid_evidence
                    .iter()
                    .map(|e| format!("{} is done but {}", e.ticket, e.reason))
                    .collect(),
            ),
            facts.invalid_evidence.iter().map(|e| e.since).min(),
            facts
                .invalid_evidence
                .iter()
                .map(|e| e.ticket.to_string())
                .collect(),
        );
    }

    reasons.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.code.cmp(&b.code)));
    let verdict = reasons
        .iter()
        .map(|r| Verdict::of(r.severity))
        .max()
        .unwrap_or(Verdict::Working);
    HealthReport { verdict, reasons }
}

struct Churn {
    task: String,
    detail: String,
    since: Timestamp,
}

/// A task churns when its last `churn_runs` runs all ended with the same `skipped` reason, or
/// the same `noop` reason while the work its kind exists for waits (a `noop` is otherwise an
/// honest "nothing to do").
fn churn(task: &TaskFacts, facts: &HealthFacts, limits: &HealthThresholds) -> Option<Churn> {
    let runs = usize::try_from(limits.churn_runs.max(1)).unwrap_or(usize::MAX);
    let streak = task.recent.get(..runs)?;
    let first = streak.first()?;
    let same = streak
        .iter()
        .all(|r| r.outcome == first.outcome && r.reason == first.reason);
    if !same {
        return None;
    }
    let waiting = match task.kind {
        TaskKind::Dispatch if !facts.runnable_waiting.is_empty() => Some(format!(
            "{} runnable ticket(s) wait",
            facts.runnable_waiting.len()
        )),
        TaskKind::Triage if facts.tickets_in_triage > 0 => Some(format!(
            "{} ticket(s) wait in triage",
            facts.tickets_in_triage
        )),
        _ => None,
    };
    let detail = match (first.outcome, waiting) {
        (Outcome::Skipped, _) => format!(
            "task {} was skipped {runs} times running: {}",
            task.name, first.reason
        ),
        (Outcome::Noop, Some(waiting)) => format!(
            "task {} did nothing {runs} times running ({}) while {waiting}",
            task.name, first.reason
        ),
        _ => return None,
    };
    Some(Churn {
        task: task.name.to_string(),
        detail,
        since: streak.last()?.ended_at,
    })
}

/// Up to three items joined by `; `, then how many more.
fn listing(items: Vec<String>) -> String {
    const SHOWN: usize = 3;
    let more = items.len().saturating_sub(SHOWN);
    let mut text = items.into_iter().take(SHOWN).collect::<Vec<_>>().join("; ");
    if more > 0 {
        text.push_str(&format!("; and {more} more"));
    }
    text
}

/// A duration in whole seconds, e.g. `5m 3s`.
fn human(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}

/// A change of verdict: the `health.changed` event, written once per change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HealthChange {
    pub from: Option<Verdict>,
    pub to: Verdict,
    pub codes: Vec<ReasonCode>,
}

/// The change to record, if the verdict differs from the last one recorded (`None` before the
/// first).
pub fn change(previous: Option<Verdict>, report: &HealthReport) -> Option<HealthChange> {
    (previous != Some(report.verdict)).then(|| HealthChange {
        from: previous,
        to: report.verdict,
        codes: report.codes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::TicketKey;

    const MIN: i64 = 60_000;
    /// The time of every snapshot: a day after the epoch, so "long ago" fits before it.
    const NOW: i64 = 24 * 60 * MIN;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn ago(minutes: i64) -> Timestamp {
        at(NOW - minutes * MIN)
    }

    fn ticket(n: i64) -> TicketId {
        TicketId::new(&TicketKey::default(), n)
    }

    fn name(n: &str) -> Name {
        Name::parse(n).unwrap()
    }

    fn run(id: i64, outcome: Outcome, reason: &str, minutes_ago: i64) -> TaskRunFact {
        TaskRunFact {
            run: id,
            outcome,
            reason: reason.to_owned(),
            ended_at: ago(minutes_ago),
        }
    }

    /// A task with `n` runs of one outcome and reason, a minute apart, the newest a minute ago.
    fn task(name_: &str, kind: TaskKind, runs: Vec<TaskRunFact>) -> TaskFacts {
        TaskFacts {
            name: name(name_),
            kind,
            recent: runs,
        }
    }

    fn streak(outcome: Outcome, reason: &str, n: i64) -> Vec<TaskRunFact> {
        (1..=n).map(|i| run(100 - i, outcome, reason, i)).collect()
    }

    /// A healthy instance: a live server whose dispatcher just passed, work running with fresh
    /// leases, tasks doing their jobs or honestly finding nothing, an inbox item just created.
    fn healthy() -> HealthFacts {
        HealthFacts {
            servers: vec![ServerBeat {
                node: "host:1".into(),
                started_at: ago(600),
                last_beat: at(NOW - 1_000),
                interval: Duration::from_secs(5),
            }],
            dispatcher_last_pass: Some(at(NOW - 1_500)),
            reconcile_interval: Duration::from_secs(2),
            capacity_unknown: None,
            runnable_waiting: vec![Waiting {
                ticket: ticket(1),
                since: ago(1),
            }],
            tickets_in_triage: 0,
            live_runs: vec![LiveRun {
                run: RunId::new(7),
                ticket: ticket(2),
                heartbeat_at: at(NOW - 5_000),
                lease_expires_at: at(NOW + 25_000),
            }],
            tasks: vec![
                task(
                    "dispatch",
                    TaskKind::Dispatch,
                    streak(Outcome::Acted, "claimed 1", 6),
                ),
                task(
                    "triage",
                    TaskKind::Triage,
                    streak(Outcome::Noop, "nothing in triage", 8),
                ),
                task(
                    "nightly",
                    TaskKind::Command,
                    vec![run(1, Outcome::Failed, "exit 1", 120)],
                ),
                task(
                    "sweep",
                    TaskKind::BoardSweep,
                    streak(Outcome::Noop, "nothing past its limit", 8),
                ),
            ],
            broken_task_files: vec![],
            config_problems: vec![],
            sandbox_off: None,
            open_incidents: vec![],
            unsettled_inbox: vec![UnsettledItem {
                id: InboxId::new(3),
                kind: InboxKind::Question,
                ticket: Some(ticket(4)),
                since: ago(10),
            }],
            failed_inbox: vec![FailedItem {
                id: InboxId::new(2),
                at: ago(180),
            }],
            invalid_evidence: vec![],
            parked_workers: vec![],
            open_breakers: vec![],
            open_task_breakers: vec![],
            exhausted_budgets: vec![],
        }
    }

    #[test]
    fn a_healthy_instance_is_working_with_no_reasons() {
        let report = assess(&healthy(), at(NOW), &HealthThresholds::default());
        assert_eq!(
            report,
            HealthReport {
                verdict: Verdict::Working,
                reasons: vec![]
            }
        );
    }

    /// One fixture per reason code: a change to the healthy snapshot that produces it, and one
    /// close to it that does not.
    struct Fixture {
        code: ReasonCode,
        component: &'static str,
        verdict: Verdict,
        produce: fn(&mut HealthFacts),
        clear: fn(&mut HealthFacts),
        /// A part of the reason's detail.
        detail: &'static str,
        ids: &'static [&'static str],
    }

    fn fixtures() -> Vec<Fixture> {
        use ReasonCode::*;
        vec![
            Fixture {
                code: ServerDown,
                component: "server",
                verdict: Verdict::Broken,
                // Three intervals of 5s and a little more.
                produce: |f| f.servers[0].last_beat = at(NOW - 15_001),
                clear: |f| f.servers[0].last_beat = at(NOW - 15_000),
                detail: "the newest server heartbeat (host:1) is 15s old; servers beat every 5s",
                ids: &["host:1"],
            },
            Fixture {
                code: ServerDown,
                component: "server",
                verdict: Verdict::Broken,
                produce: |f| f.servers.clear(),
                clear: |f| {
                    // A dead server beside a live one: the instance is served.
                    let mut dead = f.servers[0].clone();
                    dead.node = "host:2".into();
                    dead.last_beat = ago(60);
                    f.servers.push(dead);
                },
                detail: "no server has recorded a heartbeat",
                ids: &[],
            },
            Fixture {
                code: DispatcherStalled,
                component: "dispatcher",
                verdict: Verdict::Broken,
                produce: |f| f.dispatcher_last_pass = Some(ago(2)),
                // No pass yet, by a server that started half a minute ago.
                clear: |f| {
                    f.dispatcher_last_pass = None;
                    f.servers[0].started_at = at(NOW - 30_000);
                },
                detail: "its dispatcher has not passed for 2m",
                ids: &[],
            },
            Fixture {
                code: DispatcherStalled,
                component: "dispatcher",
                verdict: Verdict::Broken,
                // A slow reconcile interval stretches the limit: 10 intervals of 30s.
                produce: |f| {
                    f.reconcile_interval = Duration::from_secs(30);
                    f.dispatcher_last_pass = Some(at(NOW - 301_000));
                },
                clear: |f| {
                    f.reconcile_interval = Duration::from_secs(30);
                    f.dispatcher_last_pass = Some(at(NOW - 299_000));
                },
                detail: "has not passed for 5m 1s",
                ids: &[],
            },
            Fixture {
                code: CapacityUnknown,
                component: "capacity",
                verdict: Verdict::Degraded,
                produce: |f| {
                    f.capacity_unknown = Some(CapacityUncounted {
                        since: ago(3),
                        error: "database is locked".into(),
                    })
                },
                clear: |f| f.capacity_unknown = None,
                detail: "active runs could not be counted (database is locked)",
                ids: &[],
            },
            Fixture {
                code: Starvation,
                component: "dispatcher",
                verdict: Verdict::Degraded,
                produce: |f| {
                    f.runnable_waiting.push(Waiting {
                        ticket: ticket(9),
                        since: ago(6),
                    })
                },
                clear: |f| {
                    f.runnable_waiting.push(Waiting {
                        ticket: ticket(9),
                        since: ago(5),
                    })
                },
                detail: "1 runnable ticket(s) waited longer than 5m with capacity free, the oldest 6m (MC-9)",
                ids: &["MC-9"],
            },
            Fixture {
                code: TaskChurn,
                component: "scheduler",
                verdict: Verdict::Degraded,
                // The dispatch task did nothing five times running while a ticket waits.
                produce: |f| f.tasks[0].recent = streak(Outcome::Noop, "nothing runnable", 5),
                // Four times is not yet churn.
                clear: |f| f.tasks[0].recent = streak(Outcome::Noop, "nothing runnable", 4),
                detail: "task dispatch did nothing 5 times running (nothing runnable) while 1 runnable ticket(s) wait",
                ids: &["dispatch"],
            },
            Fixture {
                code: TaskChurn,
                component: "scheduler",
                verdict: Verdict::Degraded,
                produce: |f| f.tickets_in_triage = 2,
                // Different reasons are not one streak.
                clear: |f| {
                    f.tickets_in_triage = 2;
                    f.tasks[1].recent[2].reason = "no rule matched MC-5".into();
                },
                detail: "task triage did nothing 5 times running (nothing in triage) while 2 ticket(s) wait in triage",
                ids: &["triage"],
            },
            Fixture {
                code: TaskChurn,
                component: "scheduler",
                verdict: Verdict::Degraded,
                // Skipped again and again: whatever waits, it is not doing its job.
                produce: |f| {
                    f.tasks[3].recent =
                        streak(Outcome::Skipped, "overlap: the previous run still runs", 5)
                },
                // A sweep finding nothing is an honest noop, however often.
                clear: |f| f.tasks[3].recent = streak(Outcome::Noop, "nothing past its limit", 50),
                detail: "task sweep was skipped 5 times running: overlap",
                ids: &["sweep"],
            },
            Fixture {
                code: StuckRun,
                component: "runner",
                verdict: Verdict::Degraded,
                produce: |f| {
                    f.live_runs.push(LiveRun {
                        run: RunId::new(8),
                        ticket: ticket(12),
                        heartbeat_at: ago(10),
                        lease_expires_at: at(NOW - 31_000),
                    })
                },
                clear: |f| {
                    f.live_runs.push(LiveRun {
                        run: RunId::new(8),
                        ticket: ticket(12),
                        heartbeat_at: ago(10),
                        lease_expires_at: at(NOW - 30_000),
                    })
                },
                detail: "run 8 of MC-12 has had no heartbeat for 10m (its lease expired 31s ago)",
                ids: &["8"],
            },
            Fixture {
                code: IncidentOpen,
                component: "incidents",
                verdict: Verdict::Degraded,
                produce: |f| {
                    f.open_incidents.push(OpenIncident {
                        id: IncidentId::new(4),
                        fingerprint: Fingerprint::parse("stuck_run:MC-12").unwrap(),
                        severity: Severity::Warning,
                        opened_at: ago(30),
                    })
                },
                clear: |f| f.open_incidents.clear(),
                detail: "1 open warning incident(s): 4 stuck_run:MC-12",
                ids: &["4"],
            },
            Fixture {
                code: IncidentOpen,
                component: "incidents",
                verdict: Verdict::Broken,
                produce: |f| {
                    f.open_incidents.push(OpenIncident {
                        id: IncidentId::new(5),
                        fingerprint: Fingerprint::parse("probe.disk:/").unwrap(),
                        severity: Severity::Critical,
                        opened_at: ago(30),
                    })
                },
                clear: |f| f.open_incidents.clear(),
                detail: "1 open critical incident(s): 5 probe.disk:/",
                ids: &["5"],
            },
            Fixture {
                code: TaskDegraded,
                component: "scheduler",
                verdict: Verdict::Degraded,
                produce: |f| {
                    f.tasks.push(task(
                        "auto-review",
                        TaskKind::Command,
                        vec![run(
                            9,
                            Outcome::Degraded,
                            "1 ticket(s) not reviewed: 1 over the size cap (skipped_oversized)",
                            10,
                        )],
                    ))
                },
                // A later run that did its job clears it.
                clear: |f| {
                    f.tasks.push(task(
                        "auto-review",
                        TaskKind::Command,
                        vec![
                            run(10, Outcome::Acted, "reviewed 1 ticket(s)", 5),
                            run(9, Outcome::Degraded, "skipped_oversized", 10),
                        ],
                    ))
                },
                detail: "task auto-review run 9 degraded: 1 ticket(s) not reviewed",
                ids: &["auto-review"],
            },
            Fixture {
                code: TaskFailed,
                component: "scheduler",
                verdict: Verdict::Degraded,
                produce: |f| f.tasks[2].recent = vec![run(2, Outcome::Failed, "exit 1", 59)],
                // Outside the window: `healthy` has it failing two hours ago.
                clear: |f| f.tasks[2].recent = vec![run(2, Outcome::Failed, "exit 1", 61)],
                detail: "task nightly run 2 failed: exit 1",
                ids: &["nightly"],
            },
            Fixture {
                code: TaskFileBroken,
                component: "scheduler",
                verdict: Verdict::Degraded,
                produce: |f| {
                    f.broken_task_files.push(TaskFileError {
                        file: "tasks/bad.md".into(),
                        line: Some(3),
                        message: "key `every`: invalid duration".into(),
                    })
                },
                clear: |f| f.broken_task_files.clear(),
                detail: "tasks/bad.md:3: key `every`: invalid duration",
                ids: &["tasks/bad.md"],
            },
            Fixture {
                code: ConfigProblem,
                component: "config",
                verdict: Verdict::Degraded,
                produce: |f| {
                    f.config_problems
                        .push("workers.larry: the runtime codex is not installed".into())
                },
                clear: |f| f.config_problems.clear(),
                detail: "workers.larry: the runtime codex is not installed",
                ids: &[],
            },
            Fixture {
                code: SandboxOff,
                component: "sandbox",
                verdict: Verdict::Degraded,
                produce: |f| f.sandbox_off = Some("the kernel has no Landlock".into()),
                clear: |f| f.sandbox_off = None,
                detail: "runs are not sandboxed: the kernel has no Landlock",
                ids: &[],
            },
            Fixture {
                code: InboxAging,
                component: "inbox",
                verdict: Verdict::Degraded,
                // An item delivered to a handler that died, waiting since 61 minutes.
                produce: |f| {
                    f.unsettled_inbox.push(UnsettledItem {
                        id: InboxId::new(6),
                        kind: InboxKind::Question,
                        ticket: Some(ticket(7)),
                        since: ago(61),
                    })
                },
                clear: |f| {
                    f.unsettled_inbox.push(UnsettledItem {
                        id: InboxId::new(6),
                        kind: InboxKind::Question,
                        ticket: Some(ticket(7)),
                        since: ago(60),
                    })
                },
                detail: "1 inbox item(s) waited longer than 1h, the oldest 1h 1m (question 6 about MC-7)",
                ids: &["6"],
            },
            Fixture {
                code: InboxFailed,
                component: "inbox",
                verdict: Verdict::Degraded,
                produce: |f| {
                    f.failed_inbox.push(FailedItem {
                        id: InboxId::new(8),
                        at: ago(59),
                    })
                },
                clear: |f| {
                    f.failed_inbox.push(FailedItem {
                        id: InboxId::new(8),
                        at: ago(61),
                    })
                },
                detail: "1 inbox item(s) failed without being acted on in the last 1h",
                ids: &["8"],
            },
            Fixture {
                code: EvidenceInvalid,
                component: "evidence",
                verdict: Verdict::Degraded,
                produce: |f| {
                    f.invalid_evidence.push(InvalidEvidence {
                        ticket: ticket(7),
                        reason: "aaaaaaaaaaaa is not reachable from mission/MC-7".into(),
                        since: ago(2),
                    })
                },
                clear: |f| f.invalid_evidence.clear(),
                detail: "MC-7 is done but aaaaaaaaaaaa is not reachable from mission/MC-7",
                ids: &["MC-7"],
            },
            Fixture {
                code: WorkerRateLimited,
                component: "workers",
                verdict: Verdict::Degraded,
                produce: |f| {
                    f.parked_workers.push(ParkedWorker {
                        worker: Name::parse("claude").unwrap(),
                        since: ago(2),
                        until: at(NOW + 60_000),
                    })
                },
                clear: |f| f.parked_workers.clear(),
                detail: "worker claude is rate limited until",
                ids: &["claude"],
            },
            Fixture {
                code: BreakerOpen,
                component: "workers",
                verdict: Verdict::Degraded,
                produce: |f| {
                    f.open_breakers.push(OpenBreaker {
                        worker: Name::parse("codex").unwrap(),
                        failures: 5,
                        opened_at: ago(1),
                    })
                },
                clear: |f| f.open_breakers.clear(),
                detail: "worker codex's circuit breaker is open after 5 failed runs in a row",
                ids: &["codex"],
            },
            Fixture {
                code: TaskBreakerOpen,
                component: "scheduler",
                verdict: Verdict::Degraded,
                produce: |f| {
                    f.open_task_breakers.push(OpenTaskBreaker {
                        task: Name::parse("nightly-review").unwrap(),
                        failures: 3,
                        opened_at: ago(1),
                    })
                },
                clear: |f| f.open_task_breakers.clear(),
                detail: "task nightly-review's circuit breaker is open after 3 failed or degraded runs in a row",
                ids: &["nightly-review"],
            },
            Fixture {
                code: BudgetExhausted,
                component: "budgets",
                verdict: Verdict::Degraded,
                produce: |f| {
                    f.exhausted_budgets.push(ExhaustedBudget {
                        budget: "daily".into(),
                        detail: "runs 3 runs of 3 runs".into(),
                        resets: Some("2026-01-02T00:00:00+00:00".into()),
                    })
                },
                clear: |f| f.exhausted_budgets.clear(),
                detail: "budget daily is exhausted (runs 3 runs of 3 runs); it resets at 2026-01-02T00:00:00+00:00",
                ids: &["daily"],
            },
        ]
    }

    #[test]
    fn each_reason_code_has_a_fixture_that_produces_it_and_one_that_clears_it() {
        let limits = HealthThresholds::default();
        let fixtures = fixtures();
        for code in ReasonCode::ALL {
            assert!(
                fixtures.iter().any(|f| f.code == code),
                "no fixture for {code}"
            );
        }
        for fixture in fixtures {
            let mut produced = healthy();
            (fixture.produce)(&mut produced);
            let report = assess(&produced, at(NOW), &limits);
            let code = fixture.code;
            assert_eq!(report.codes(), vec![code], "{code}: {report:#?}");
            let reason = &report.reasons[0];
            assert_eq!(reason.component.as_str(), fixture.component, "{code}");
            assert_eq!(report.verdict, fixture.verdict, "{code}");
            assert_eq!(Verdict::of(reason.severity), fixture.verdict, "{code}");
            assert!(
                reason.detail.contains(fixture.detail),
                "{code}: {:?} lacks {:?}",
                reason.detail,
                fixture.detail
            );
            assert_eq!(reason.ids, fixture.ids, "{code}");

            let mut cleared = healthy();
            (fixture.clear)(&mut cleared);
            let report = assess(&cleared, at(NOW), &limits);
            assert_eq!(
                report.verdict,
                Verdict::Working,
                "{code} cleared: {report:#?}"
            );
            assert!(report.reasons.is_empty(), "{code} cleared: {report:#?}");
        }
    }

    #[test]
    fn reasons_are_listed_worst_first_with_every_id() {
        let mut facts = healthy();
        facts.capacity_unknown = Some(CapacityUncounted {
            since: ago(1),
            error: "x".into(),
        });
        facts.servers.clear();
        for n in 10..15 {
            facts.invalid_evidence.push(InvalidEvidence {
                ticket: ticket(n),
                reason: "gone".into(),
                since: ago(n),
            });
        }
        let report = assess(&facts, at(NOW), &HealthThresholds::default());
        assert_eq!(report.verdict, Verdict::Broken);
        assert_eq!(
            report.codes(),
            vec![
                ReasonCode::ServerDown,
                ReasonCode::CapacityUnknown,
                ReasonCode::EvidenceInvalid
            ]
        );
        let evidence = &report.reasons[2];
        assert_eq!(evidence.ids.len(), 5);
        assert_eq!(evidence.since, Some(ago(14)));
        assert!(
            evidence.detail.ends_with("; and 2 more"),
            "{}",
            evidence.detail
        );
    }

    #[test]
    fn strings_are_stable() {
        let mut seen = std::collections::HashSet::new();
        for code in ReasonCode::ALL {
            assert!(seen.insert(code.as_str()));
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
            assert_eq!(
                serde_json::to_value(code.component()).unwrap(),
                code.component().as_str()
            );
        }
        for verdict in [Verdict::Working, Verdict::Degraded, Verdict::Broken] {
            assert_eq!(verdict.as_str().parse::<Verdict>().unwrap(), verdict);
        }
        let report = assess(
            &HealthFacts::default(),
            at(NOW),
            &HealthThresholds::default(),
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["verdict"], "broken");
        assert_eq!(json["reasons"][0]["code"], "server_down");
        assert_eq!(json["reasons"][0]["component"], "server");
        assert_eq!(json["reasons"][0]["severity"], "critical");
    }

    #[test]
    fn a_verdict_change_is_recorded_once() {
        let limits = HealthThresholds::default();
        let working = assess(&healthy(), at(NOW), &limits);
        let broken = assess(&HealthFacts::default(), at(NOW), &limits);
        assert_eq!(
            change(None, &working),
            Some(HealthChange {
                from: None,
                to: Verdict::Working,
                codes: vec![]
            })
        );
        assert_eq!(change(Some(Verdict::Working), &working), None);
        let changed = change(Some(Verdict::Working), &broken).unwrap();
        assert_eq!(
            (changed.from, changed.to, changed.codes),
            (
                Some(Verdict::Working),
                Verdict::Broken,
                vec![ReasonCode::ServerDown]
            )
        );
        assert_eq!(change(Some(Verdict::Broken), &broken), None);
    }

    #[test]
    fn thresholds_read_from_configuration() {
        let limits: HealthThresholds =
            toml::from_str("starvation_after = \"10m\"\nchurn_runs = 3").unwrap();
        assert_eq!(limits.starvation_after, Duration::from_secs(600));
        assert_eq!(limits.churn_runs, 3);
        assert_eq!(
            limits.inbox_age_limit,
            HealthThresholds::default().inbox_age_limit
        );
        assert!(toml::from_str::<HealthThresholds>("starvation = \"10m\"").is_err());
        assert!(toml::from_str::<HealthThresholds>("stuck_grace = \"soon\"").is_err());
    }
}
