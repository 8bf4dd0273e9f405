//! The runnability policy: the ONE function that says whether a ticket may be dispatched now, and
//! if not, every reason why. The dispatcher, triage, the operator audit, `mission explain` and the
//! dashboard all ask this function; none keeps its own list of runnable assignees.

use crate::breaker::{Admission, Breaker};
use crate::capacity::{ActiveCounts, SlotLimits};
use crate::config::Workforce;
use crate::id::Name;
use crate::id::TicketId;
use crate::ticket::{State, Ticket};
use crate::time::Timestamp;
use crate::usage::{BudgetScope, Exhausted, WorkerPark};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// Stable reason codes. Scripts match on these strings; never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    StateNotTodo,
    Unassigned,
    AssigneeNotAWorker,
    WorkerDisabled,
    ControllerParked,
    DependencyOpen,
    CapacityFull,
    CapacityUnknown,
    Backoff,
    BudgetExhausted,
    WorkerRateLimited,
    BreakerOpen,
}

impl ReasonCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::StateNotTodo => "state_not_todo",
            ReasonCode::Unassigned => "unassigned",
            ReasonCode::AssigneeNotAWorker => "assignee_not_a_worker",
            ReasonCode::WorkerDisabled => "worker_disabled",
            ReasonCode::ControllerParked => "controller_parked",
            ReasonCode::DependencyOpen => "dependency_open",
            ReasonCode::CapacityFull => "capacity_full",
            ReasonCode::CapacityUnknown => "capacity_unknown",
            ReasonCode::Backoff => "backoff",
            ReasonCode::BudgetExhausted => "budget_exhausted",
            ReasonCode::WorkerRateLimited => "worker_rate_limited",
            ReasonCode::BreakerOpen => "breaker_open",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub code: ReasonCode,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Runnability {
    Runnable,
    NotRunnable(Vec<Reason>),
}

impl Runnability {
    pub fn is_runnable(&self) -> bool {
        matches!(self, Runnability::Runnable)
    }

    pub fn reasons(&self) -> &[Reason] {
        match self {
            Runnability::Runnable => &[],
            Runnability::NotRunnable(reasons) => reasons,
        }
    }

    pub fn codes(&self) -> Vec<ReasonCode> {
        self.reasons().iter().map(|r| r.code).collect()
    }
}

/// A dependency of the ticket and its current state (`None`: the store has no such ticket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DependencyState {
    pub id: TicketId,
    pub state: Option<State>,
}

/// The active runs as counted from the store, or why they could not be counted. Counting that
/// fails never reads as "nothing running": it makes every ticket `capacity_unknown`.
#[derive(Clone, Copy, Debug)]
pub enum Capacity<'a> {
    Counted(&'a ActiveCounts),
    Unknown(&'a str),
}

/// What holds workers back besides capacity, read from the store for a pass: budgets whose
/// hard limit is reached, workers parked by a rate limit, workers' circuit breakers.
#[derive(Clone, Debug, Default)]
pub struct Holds {
    pub exhausted: Vec<Exhausted>,
    pub parks: BTreeMap<Name, WorkerPark>,
    pub breakers: BTreeMap<Name, Breaker>,
}

impl Holds {
    /// No holds at all.
    pub fn none() -> &'static Holds {
        static NONE: std::sync::OnceLock<Holds> = std::sync::OnceLock::new();
        NONE.get_or_init(Holds::default)
    }

    /// The park of `worker` in force at `now`.
    pub fn park(&self, worker: &Name, now: Timestamp) -> Option<&WorkerPark> {
        self.parks.get(worker).filter(|p| p.until > now)
    }

    /// Whether a run of `worker` may start as far as holds go, with `live` runs of it running:
    /// no park, breaker admits, no exhausted budget over the worker or its pool. (Label budgets
    /// depend on the ticket: see [`runnability`].)
    pub fn worker_held(
        &self,
        workforce: &Workforce,
        worker: &Name,
        live: u32,
        now: Timestamp,
    ) -> bool {
        let Some(config) = workforce.worker(worker) else {
            return true;
        };
        self.park(worker, now).is_some()
            || self
                .breakers
                .get(worker)
                .is_some_and(|b| b.admits(now, live, workforce.breaker()) != Admission::Admit)
            || self.exhausted.iter().any(|e| {
                !matches!(e.scope, BudgetScope::Label(_))
                    && e.scope.covers(worker.as_str(), &config.pool, &[])
            })
    }
}

/// Everything beyond the ticket itself that the policy reads.
#[derive(Clone, Copy, Debug)]
pub struct PolicyContext<'a> {
    pub workforce: &'a Workforce,
    pub capacity: Capacity<'a>,
    pub holds: &'a Holds,
    pub now: Timestamp,
}

/// Whether `ticket` may be dispatched now. Reasons are listed in a fixed order, all that apply.
pub fn runnability(
    ticket: &Ticket,
    dependencies: &[DependencyState],
    context: PolicyContext<'_>,
) -> Runnability {
    let mut reasons = Vec::new();
    let mut reason = |code, detail: String| reasons.push(Reason { code, detail });

    if ticket.state != State::Todo {
        reason(
            ReasonCode::StateNotTodo,
            format!(
                "the ticket is {}; only todo tickets are dispatched",
                ticket.state
            ),
        );
    }

    let workforce = context.workforce;
    match &ticket.assignee {
        None => match ticket.owner.as_ref().filter(|o| workforce.is_controller(o)) {
            Some(owner) => reason(
                ReasonCode::ControllerParked,
                format!(
                    "unassigned and owned by controller {owner}; a controller's tickets are never dispatched"
                ),
            ),
            None => reason(ReasonCode::Unassigned, "no assignee".to_owned()),
        },
        Some(assignee) if workforce.is_controller(assignee) => reason(
            ReasonCode::ControllerParked,
            format!(
                "assigned to controller {assignee}; a controller's tickets are never dispatched"
            ),
        ),
        Some(assignee) => match workforce.worker(assignee) {
            None => reason(
                ReasonCode::AssigneeNotAWorker,
                format!("{assignee} is not a configured worker (see [workers] in mission.toml)"),
            ),
            Some(worker) if !worker.enabled => reason(
                ReasonCode::WorkerDisabled,
                format!("worker {assignee} is disabled"),
            ),
            Some(worker) => {
                let mut live = 0;
                match context.capacity {
                    Capacity::Unknown(error) => reason(
                        ReasonCode::CapacityUnknown,
                        format!(
                            "active runs could not be counted ({error}); nothing is dispatched until they can"
                        ),
                    ),
                    Capacity::Counted(counts) => {
                        live = counts.worker(assignee.as_str());
                        // A configured worker always has limits.
                        let limits = SlotLimits::of(workforce, assignee);
                        if let Some(Err(full)) = limits.map(|l| l.check(counts)) {
                            reason(ReasonCode::CapacityFull, full.detail);
                        }
                    }
                }
                let holds = context.holds;
                if let Some(park) = holds.park(assignee, context.now) {
                    reason(
                        ReasonCode::WorkerRateLimited,
                        format!(
                            "worker {assignee} is rate limited until {} ({})",
                            park.until, park.reason
                        ),
                    );
                }
                if let Some(breaker) = holds.breakers.get(assignee) {
                    match breaker.admits(context.now, live, workforce.breaker()) {
                        Admission::Admit => {}
                        Admission::Open(until) => reason(
                            ReasonCode::BreakerOpen,
                            format!(
                                "worker {assignee}'s circuit breaker is open after {} failed runs in a row; a probe run may start at {until}",
                                breaker.failures
                            ),
                        ),
                        Admission::ProbeRunning => reason(
                            ReasonCode::BreakerOpen,
                            format!(
                                "worker {assignee}'s circuit breaker is half-open and its probe run is running"
                            ),
                        ),
                    }
                }
                for exhausted in &holds.exhausted {
                    if exhausted
                        .scope
                        .covers(assignee.as_str(), &worker.pool, &ticket.labels)
                    {
                        let resets = match &exhausted.resets_shown {
                            Some(at) => format!("resets at {at}"),
                            None => "resets as its usage ages out".to_owned(),
                        };
                        reason(
                            ReasonCode::BudgetExhausted,
                            format!(
                                "budget {} ({}, {}) is exhausted: {}; {resets}",
                                exhausted.budget,
                                exhausted.scope,
                                exhausted.window,
                                exhausted.detail
                            ),
                        );
                    }
                }
            }
        },
    }

    if let Some(not_before) = ticket.not_before.filter(|t| *t > context.now) {
        reason(
            ReasonCode::Backoff,
            format!(
                "attempt {} failed; retry not before {not_before}",
                ticket.attempts
            ),
        );
    }

    for dep in dependencies {
        match dep.state {
            Some(state) if state.satisfies_dependency() => {}
            Some(state) => reason(
                ReasonCode::DependencyOpen,
                format!("depends on {}, which is {state}", dep.id),
            ),
            None => reason(
                ReasonCode::DependencyOpen,
                format!("depends on {}, which does not exist", dep.id),
            ),
        }
    }

    if reasons.is_empty() {
        Runnability::Runnable
    } else {
        Runnability::NotRunnable(reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PolicyConfig, WorkerConfig};
    use crate::id::{Name, TicketKey};
    use crate::ticket::EvidencePolicy;
    use crate::time::Timestamp;
    use std::collections::BTreeMap;

    fn workforce() -> Workforce {
        let worker = |enabled| WorkerConfig {
            enabled,
            ..serde_json::from_value::<WorkerConfig>(serde_json::json!({
                "runtime": "shell",
                "command": ["true"],
            }))
            .unwrap()
        };
        let workers: BTreeMap<String, WorkerConfig> = [
            ("luci".to_string(), worker(true)),
            ("larry".to_string(), worker(false)),
        ]
        .into();
        let policy = PolicyConfig {
            controllers: vec!["lucienne".into()],
        };
        Workforce::from_parts(&workers, &policy).unwrap()
    }

    fn ticket(state: State, assignee: Option<&str>, owner: Option<&str>) -> Ticket {
        Ticket {
            id: TicketId::new(&TicketKey::default(), 4122),
            title: "t".into(),
            body: String::new(),
            state,
            assignee: assignee.map(|a| Name::parse(a).unwrap()),
            owner: owner.map(|o| Name::parse(o).unwrap()),
            labels: vec![],
            priority: 0,
            depends_on: vec![],
            evidence_policy: EvidencePolicy::default(),
            repo: None,
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
            version: 1,
            attempts: 0,
            resume: false,
            not_before: None,
        }
    }

    fn dep(n: i64, state: Option<State>) -> DependencyState {
        DependencyState {
            id: TicketId::new(&TicketKey::default(), n),
            state,
        }
    }

    fn check(ticket: Ticket, deps: &[DependencyState], expect: &[ReasonCode]) {
        check_with(
            ticket,
            deps,
            Capacity::Counted(&ActiveCounts::default()),
            expect,
        );
    }

    fn check_with(
        ticket: Ticket,
        deps: &[DependencyState],
        capacity: Capacity<'_>,
        expect: &[ReasonCode],
    ) {
        let wf = workforce();
        let context = PolicyContext {
            workforce: &wf,
            capacity,
            holds: Holds::none(),
            now: Timestamp::from_millis(10_000),
        };
        let got = runnability(&ticket, deps, context);
        assert_eq!(got.codes(), expect, "{ticket:?} {deps:?}");
        assert_eq!(got.is_runnable(), expect.is_empty());
    }

    #[test]
    fn cases() {
        use ReasonCode::*;
        use State::*;
        check(ticket(Todo, Some("luci"), None), &[], &[]);
        // MC-4122: owner = assignee = controller.
        check(
            ticket(Todo, Some("lucienne"), Some("lucienne")),
            &[],
            &[ControllerParked],
        );
        check(
            ticket(Todo, None, Some("lucienne")),
            &[],
            &[ControllerParked],
        );
        // A controller may own a campaign whose tickets its workers run.
        check(ticket(Todo, Some("luci"), Some("lucienne")), &[], &[]);
        check(ticket(Todo, None, None), &[], &[Unassigned]);
        check(
            ticket(Todo, Some("ghost"), None),
            &[],
            &[AssigneeNotAWorker],
        );
        check(ticket(Todo, Some("larry"), None), &[], &[WorkerDisabled]);
        check(ticket(Triage, None, None), &[], &[StateNotTodo, Unassigned]);
        check(ticket(Running, Some("luci"), None), &[], &[StateNotTodo]);
        check(ticket(Todo, Some("luci"), None), &[dep(1, Some(Done))], &[]);
        check(
            ticket(Todo, Some("luci"), None),
            &[dep(1, Some(Review)), dep(2, None), dep(3, Some(Done))],
            &[DependencyOpen, DependencyOpen],
        );
        check(
            ticket(Blocked, Some("larry"), None),
            &[dep(1, Some(Cancelled))],
            &[StateNotTodo, WorkerDisabled, DependencyOpen],
        );
    }

    /// Parks, breakers and budgets hold a ticket back with their own reasons; a label budget
    /// holds only tickets with the label; a park past its time holds nothing.
    #[test]
    fn holds() {
        use crate::breaker::Breaker;
        use crate::usage::{BudgetScope, Exhausted, WorkerPark};
        use ReasonCode::*;
        let wf = workforce();
        let luci = Name::parse("luci").unwrap();
        let now = Timestamp::from_millis(10_000);
        let exhausted = |scope| Exhausted {
            budget: "b".into(),
            scope,
            window: "day".into(),
            detail: "runs 3 runs of 3 runs".into(),
            resets: None,
            resets_shown: Some("2026-01-02T00:00:00+00:00".into()),
        };
        let park = |until| WorkerPark {
            worker: luci.clone(),
            until: Timestamp::from_millis(until),
            reason: "429".into(),
            strikes: 1,
            since: Timestamp::from_millis(0),
            run: None,
        };
        let open = Breaker {
            failures: 5,
            opened_at: Some(Timestamp::from_millis(9_000)),
        };
        let mut labelled = ticket(State::Todo, Some("luci"), None);
        labelled.labels = vec!["docs".into()];
        // (holds, ticket, expected)
        let cases: Vec<(Holds, Ticket, Vec<ReasonCode>)> = vec![
            (
                Holds::default(),
                ticket(State::Todo, Some("luci"), None),
                vec![],
            ),
            (
                Holds {
                    parks: [(luci.clone(), park(20_000))].into(),
                    ..Holds::default()
                },
                ticket(State::Todo, Some("luci"), None),
                vec![WorkerRateLimited],
            ),
            (
                Holds {
                    parks: [(luci.clone(), park(10_000))].into(),
                    ..Holds::default()
                },
                ticket(State::Todo, Some("luci"), None),
                vec![],
            ),
            (
                Holds {
                    breakers: [(luci.clone(), open)].into(),
                    ..Holds::default()
                },
                ticket(State::Todo, Some("luci"), None),
                vec![BreakerOpen],
            ),
            (
                Holds {
                    exhausted: vec![exhausted(BudgetScope::Instance)],
                    ..Holds::default()
                },
                ticket(State::Todo, Some("luci"), None),
                vec![BudgetExhausted],
            ),
            (
                Holds {
                    exhausted: vec![exhausted(BudgetScope::Worker(luci.clone()))],
                    ..Holds::default()
                },
                ticket(State::Todo, Some("luci"), None),
                vec![BudgetExhausted],
            ),
            (
                Holds {
                    exhausted: vec![exhausted(BudgetScope::Pool("default".into()))],
                    ..Holds::default()
                },
                ticket(State::Todo, Some("luci"), None),
                vec![BudgetExhausted],
            ),
            (
                Holds {
                    exhausted: vec![exhausted(BudgetScope::Pool("other".into()))],
                    ..Holds::default()
                },
                ticket(State::Todo, Some("luci"), None),
                vec![],
            ),
            (
                Holds {
                    exhausted: vec![exhausted(BudgetScope::Label("docs".into()))],
                    ..Holds::default()
                },
                ticket(State::Todo, Some("luci"), None),
                vec![],
            ),
            (
                Holds {
                    exhausted: vec![exhausted(BudgetScope::Label("docs".into()))],
                    ..Holds::default()
                },
                labelled,
                vec![BudgetExhausted],
            ),
        ];
        for (holds, ticket, expect) in cases {
            let context = PolicyContext {
                workforce: &wf,
                capacity: Capacity::Counted(&ActiveCounts::default()),
                holds: &holds,
                now,
            };
            let got = runnability(&ticket, &[], context);
            assert_eq!(got.codes(), expect, "{holds:?}");
            if expect == [BudgetExhausted] {
                let detail = &got.reasons()[0].detail;
                assert!(
                    detail.contains("budget b")
                        && detail.contains("day")
                        && detail.contains("resets at 2026-01-02"),
                    "{detail}"
                );
            }
        }
    }
}
