//! Runs: one attempt of one worker on one ticket. The attempt number is the fencing token: every
//! report from a run carries it, and a report from an attempt that is no longer current is refused.

use crate::id::{Name, TicketId};
use crate::ticket::State;
use crate::time::Timestamp;
use crate::transition::Via;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A run's id, assigned by the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(i64);

impl RunId {
    pub const fn new(id: i64) -> Self {
        RunId(id)
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The number of a ticket's attempt: 1 for its first run, one more for each claim. The fencing
/// token every report from a run carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Attempt(i64);

impl Attempt {
    pub const fn new(number: i64) -> Self {
        Attempt(number)
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    /// The attempt after this one.
    pub const fn next(self) -> Self {
        Attempt(self.0 + 1)
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for Attempt {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Attempt)
    }
}

/// Dispatcher lanes. `normal` takes plain todo tickets; `needs-input` takes only answered tickets
/// waiting to resume their agent session. A ticket is in exactly one lane at a time (its
/// `resume` flag), so the two lanes never race for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Lane {
    #[serde(rename = "normal")]
    Normal,
    #[serde(rename = "needs-input")]
    NeedsInput,
}

impl Lane {
    pub const ALL: [Lane; 2] = [Lane::Normal, Lane::NeedsInput];

    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Normal => "normal",
            Lane::NeedsInput => "needs-input",
        }
    }

    /// The lane of a todo ticket with this resume flag.
    pub fn of(resume: bool) -> Lane {
        if resume {
            Lane::NeedsInput
        } else {
            Lane::Normal
        }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Lane {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "normal" => Ok(Lane::Normal),
            "needs-input" | "needs_input" => Ok(Lane::NeedsInput),
            _ => Err(format!(
                "unknown lane {s:?}: expected normal or needs-input"
            )),
        }
    }
}

/// Why a run ended badly. Stable strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The agent exited non-zero or reported an error.
    AgentError,
    /// The run exceeded its time limit.
    Timeout,
    /// No output and no progress for the stall timeout.
    Stalled,
    /// The runtime's program could not be started.
    RuntimeMissing,
    /// The agent's provider refused for rate limits.
    RateLimited,
    /// Stopped by the runner: a budget covering the run was spent while it ran, and the budget
    /// says `on_exhaust = "stop"`. Not charged; the budget holds the ticket back.
    BudgetStopped,
    /// An operator cancelled the ticket while it ran.
    Cancelled,
    /// The process vanished with its supervisor (crash, lease expiry).
    Orphaned,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::AgentError => "agent_error",
            FailureClass::Timeout => "timeout",
            FailureClass::Stalled => "stalled",
            FailureClass::RuntimeMissing => "runtime_missing",
            FailureClass::RateLimited => "rate_limited",
            FailureClass::BudgetStopped => "budget_stopped",
            FailureClass::Cancelled => "cancelled",
            FailureClass::Orphaned => "orphaned",
        }
    }

    /// Whether another attempt can help. A missing runtime stays missing; a cancellation is an
    /// operator's decision.
    pub fn is_retryable(self) -> bool {
        !matches!(self, FailureClass::RuntimeMissing | FailureClass::Cancelled)
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FailureClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .map_err(|_| format!("unknown failure class {s:?}"))
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Submitted for review (explicitly, or by finishing cleanly).
    Submitted,
    /// Asked a question; the ticket waits in needs_input.
    Asked,
    /// Failed; see the failure class.
    Failed,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Submitted => "submitted",
            RunOutcome::Asked => "asked",
            RunOutcome::Failed => "failed",
        }
    }
}

impl FromStr for RunOutcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "submitted" => Ok(RunOutcome::Submitted),
            "asked" => Ok(RunOutcome::Asked),
            "failed" => Ok(RunOutcome::Failed),
            _ => Err(format!("unknown run outcome {s:?}")),
        }
    }
}

/// A stored run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Run {
    pub id: RunId,
    pub ticket: TicketId,
    pub attempt: Attempt,
    pub worker: Name,
    pub pool: String,
    pub lane: Lane,
    pub node: String,
    pub started_at: Timestamp,
    pub heartbeat_at: Timestamp,
    pub lease_expires_at: Timestamp,
    pub pid: Option<i64>,
    pub workspace: Option<String>,
    pub session_id: Option<String>,
    pub head_before: Option<String>,
    pub head_after: Option<String>,
    pub log_path: Option<String>,
    pub ended_at: Option<Timestamp>,
    pub outcome: Option<RunOutcome>,
    pub failure_class: Option<FailureClass>,
    pub detail: Option<String>,
    pub exit_code: Option<i64>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
}

impl Run {
    pub fn is_active(&self) -> bool {
        self.ended_at.is_none()
    }
}

/// Retry with capped exponential backoff. An attempt orphaned by the death of its supervisor (a
/// server crash) is not the ticket's fault: it is not charged against `max_attempts`, only
/// against `max_orphaned`, so that a ticket that crashes the server every time still stops.
///
/// An attempt that ended `rate_limited` (or `budget_stopped`) is not the ticket's fault either: it
/// is not charged at all, the ticket goes back to todo without a backoff, and its WORKER is
/// parked instead (a budget's stop: the spent budget holds it)
/// ([`RetryPolicy::park_until`]) — until the reset time the runtime gave, else for a backoff that
/// doubles with each rate limit in a row, capped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub max_orphaned: u32,
    /// A worker's park after a rate limit without a reset time; doubles per limit in a row.
    pub rate_limit_backoff: Duration,
    pub rate_limit_backoff_max: Duration,
    /// The worker's circuit breaker, moved by each run's end.
    pub breaker: crate::breaker::BreakerPolicy,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(600),
            max_orphaned: 10,
            rate_limit_backoff: Duration::from_secs(60),
            rate_limit_backoff_max: Duration::from_secs(3600),
            breaker: crate::breaker::BreakerPolicy::default(),
        }
    }
}

/// The longest a worker is parked for a reset time its runtime reported (a garbled time must not
/// park a worker for a year).
pub const MAX_PARK: Duration = Duration::from_secs(7 * 24 * 3600);

/// A ticket's earlier attempts that are not charged against `max_attempts`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Uncharged {
    /// Orphaned by a server crash (bounded apart by `max_orphaned`).
    pub orphaned: u32,
    /// Ended by a limit: a runtime's rate or usage limit, or a budget's stop.
    pub limited: u32,
}

impl Uncharged {
    pub fn orphaned(orphaned: u32) -> Self {
        Uncharged {
            orphaned,
            limited: 0,
        }
    }
}

/// What happens to a ticket after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Back to todo, not to be dispatched before this time.
    Retry { not_before: Timestamp },
    /// Attempts exhausted, or retrying cannot help.
    Fail,
    /// The operator cancelled it; it stays cancelled.
    StayCancelled,
}

impl RetryPolicy {
    /// The backoff before the attempt after `attempt`: base × 2^(attempt-1), capped.
    pub fn backoff(&self, attempt: Attempt) -> Duration {
        let exponent = attempt.get().clamp(1, 32) as u32 - 1;
        let factor = 2u32.saturating_pow(exponent);
        self.backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max)
    }

    /// When a worker whose run hit a rate limit may run again: at the reset time the runtime
    /// reported (at most [`MAX_PARK`] away; a time already past parks for the base backoff), else
    /// after the base backoff doubled for each earlier limit in a row (`strikes_before`), capped.
    pub fn park_until(
        &self,
        reset: Option<Timestamp>,
        strikes_before: u32,
        now: Timestamp,
    ) -> Timestamp {
        match reset {
            Some(reset) if reset > now => reset.min(now.plus(MAX_PARK)),
            Some(_) => now.plus(self.rate_limit_backoff),
            None => {
                let factor = 2u32.saturating_pow(strikes_before.min(31));
                now.plus(
                    self.rate_limit_backoff
                        .saturating_mul(factor)
                        .min(self.rate_limit_backoff_max),
                )
            }
        }
    }

    /// What follows a failed attempt `attempt`, of whose earlier attempts `uncharged` are not
    /// charged (orphaned, rate-limited).
    pub fn after_failure(
        &self,
        class: FailureClass,
        attempt: Attempt,
        uncharged: Uncharged,
        now: Timestamp,
    ) -> AfterFailure {
        if class == FailureClass::Cancelled {
            return AfterFailure::StayCancelled;
        }
        if matches!(
            class,
            FailureClass::RateLimited | FailureClass::BudgetStopped
        ) {
            // Not the ticket's fault and not charged: back to todo at once; the worker's park
            // or the spent budget decides when it runs again.
            return AfterFailure::Retry { not_before: now };
        }
        let orphaned_before = uncharged.orphaned;
        let charged = Attempt::new(
            (attempt.get() - i64::from(orphaned_before) - i64::from(uncharged.limited)).max(1),
        );
        let exhausted = if class == FailureClass::Orphaned {
            orphaned_before + 1 >= self.max_orphaned
        } else {
            charged.get() >= i64::from(self.max_attempts)
        };
        if !class.is_retryable() || exhausted {
            return AfterFailure::Fail;
        }
        let delay = self.backoff(charged).as_millis() as i64;
        AfterFailure::Retry {
            not_before: Timestamp::from_millis(now.as_millis() + delay),
        }
    }
}

/// How a run came to its end: by its own report, or by its process ending (cleanly, or with a
/// failure the runner classified).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnding {
    /// `mission run ask`: a question for a person.
    Asked,
    /// `mission run submit`: the work is ready for review.
    Submitted,
    /// The process ended; `None` is a clean exit, which submits the work.
    Exited(Option<FailureClass>),
}

/// What the end of a run does: decided here, stored by the backend in one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub outcome: RunOutcome,
    pub failure_class: Option<FailureClass>,
    pub ticket: TicketEffect,
}

/// What the end of a run does to its ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketEffect {
    /// The ticket moves (one `ticket.moved` event); `not_before` is the backoff of a requeue.
    Move {
        to: State,
        via: Via,
        not_before: Option<Timestamp>,
    },
    /// The ticket stays where it is (an operator moved it away while the run ran); the run's
    /// end is recorded on its own (`run.ended`).
    Stay,
}

impl TicketEffect {
    fn to(to: State, via: Via) -> Self {
        TicketEffect::Move {
            to,
            via,
            not_before: None,
        }
    }
}

/// How a live run's end settles its ticket: a submission goes to review, a question to
/// needs_input, a failure back to todo after its backoff while attempts are left (else to
/// failed; orphaned attempts are counted apart, see [`RetryPolicy`]), and a run whose ticket an operator moved away leaves the ticket where it is.
pub fn settle(
    ending: RunEnding,
    ticket_state: State,
    attempt: Attempt,
    uncharged: Uncharged,
    retry: &RetryPolicy,
    now: Timestamp,
) -> Settlement {
    let settled = |outcome, failure_class, ticket| Settlement {
        outcome,
        failure_class,
        ticket,
    };
    match ending {
        RunEnding::Asked => settled(
            RunOutcome::Asked,
            None,
            TicketEffect::to(State::NeedsInput, Via::RunAsk),
        ),
        RunEnding::Submitted => settled(
            RunOutcome::Submitted,
            None,
            TicketEffect::to(State::Review, Via::RunSubmit),
        ),
        RunEnding::Exited(failure) if ticket_state != State::Running => settled(
            RunOutcome::Failed,
            Some(failure.unwrap_or(FailureClass::Cancelled)),
            TicketEffect::Stay,
        ),
        RunEnding::Exited(None) => settled(
            RunOutcome::Submitted,
            None,
            TicketEffect::to(State::Review, Via::RunSubmit),
        ),
        RunEnding::Exited(Some(class)) => {
            let ticket = match retry.after_failure(class, attempt, uncharged, now) {
                AfterFailure::Retry { not_before } => TicketEffect::Move {
                    to: State::Todo,
                    via: Via::RunRequeue,
                    not_before: Some(not_before),
                },
                AfterFailure::Fail | AfterFailure::StayCancelled => {
                    TicketEffect::to(State::Failed, Via::RunFail)
                }
            };
            settled(RunOutcome::Failed, Some(class), ticket)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let policy = RetryPolicy {
            max_attempts: 10,
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(60),
            max_orphaned: 3,
            ..RetryPolicy::default()
        };
        let got: Vec<u64> = (1..=6)
            .map(|a| policy.backoff(Attempt::new(a)).as_secs())
            .collect();
        assert_eq!(got, vec![10, 20, 40, 60, 60, 60]);
    }

    #[test]
    fn after_failure() {
        let policy = RetryPolicy {
            max_attempts: 3,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_orphaned: 3,
            ..RetryPolicy::default()
        };
        let now = Timestamp::from_millis(1000);
        use AfterFailure::*;
        use FailureClass::*;
        let cases = [
            (
                AgentError,
                1,
                Retry {
                    not_before: Timestamp::from_millis(2000),
                },
            ),
            (
                Timeout,
                2,
                Retry {
                    not_before: Timestamp::from_millis(3000),
                },
            ),
            (AgentError, 3, Fail),
            (RuntimeMissing, 1, Fail),
            (Cancelled, 1, StayCancelled),
            (
                Orphaned,
                1,
                Retry {
                    not_before: Timestamp::from_millis(2000),
                },
            ),
        ];
        for (class, attempt, expect) in cases {
            assert_eq!(
                policy.after_failure(class, Attempt::new(attempt), Uncharged::default(), now),
                expect,
                "{class} #{attempt}"
            );
        }
    }

    /// A rate-limited or budget-stopped attempt is never charged: the ticket goes back at once
    /// (the worker is parked, or the budget holds it, instead), and later failures are charged
    /// as if it had not happened.
    #[test]
    fn rate_limited_attempts_are_not_charged() {
        let policy = RetryPolicy {
            max_attempts: 2,
            backoff_base: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        let now = Timestamp::from_millis(0);
        let limited = |n| Uncharged {
            orphaned: 0,
            limited: n,
        };
        use FailureClass::*;
        // However many limits came before, a limit requeues at once.
        for class in [RateLimited, BudgetStopped] {
            for (attempt, before) in [(1, 0), (2, 1), (9, 8)] {
                assert_eq!(
                    policy.after_failure(class, Attempt::new(attempt), limited(before), now),
                    AfterFailure::Retry { not_before: now },
                    "{class}"
                );
            }
        }
        // Attempt 5 after four limits is the ticket's first charged attempt; 6 its second.
        assert_eq!(
            policy.after_failure(AgentError, Attempt::new(5), limited(4), now),
            AfterFailure::Retry {
                not_before: Timestamp::from_millis(1000)
            }
        );
        assert_eq!(
            policy.after_failure(AgentError, Attempt::new(6), limited(4), now),
            AfterFailure::Fail
        );
        // Without the limits counted apart, attempt 5 would have failed the ticket.
        assert_eq!(
            policy.after_failure(AgentError, Attempt::new(5), Uncharged::default(), now),
            AfterFailure::Fail
        );
    }

    #[test]
    fn parks_follow_the_reset_time_or_a_capped_backoff() {
        let policy = RetryPolicy {
            rate_limit_backoff: Duration::from_secs(60),
            rate_limit_backoff_max: Duration::from_secs(300),
            ..RetryPolicy::default()
        };
        let t = Timestamp::from_millis;
        let now = t(1_000_000);
        // (reset reported, limits in a row before, parked until)
        let cases = [
            (Some(t(5_000_000)), 0, t(5_000_000)),
            (Some(t(5_000_000)), 7, t(5_000_000)),
            (Some(t(10)), 0, t(1_060_000)),
            (
                Some(t(1_000_000 + 30 * 24 * 3_600_000)),
                0,
                now.plus(MAX_PARK),
            ),
            (None, 0, t(1_060_000)),
            (None, 1, t(1_120_000)),
            (None, 2, t(1_240_000)),
            (None, 3, t(1_300_000)),
            (None, 40, t(1_300_000)),
        ];
        for (reset, strikes, until) in cases {
            assert_eq!(
                policy.park_until(reset, strikes, now),
                until,
                "{reset:?} {strikes}"
            );
        }
    }

    /// Orphaned attempts (server crashes) are not charged against `max_attempts`, only against
    /// `max_orphaned`; the backoff follows the charged attempts.
    #[test]
    fn orphaned_attempts_are_counted_apart() {
        let policy = RetryPolicy {
            max_attempts: 2,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_orphaned: 3,
            ..RetryPolicy::default()
        };
        let now = Timestamp::from_millis(0);
        let retry_after = |ms| AfterFailure::Retry {
            not_before: Timestamp::from_millis(ms),
        };
        use FailureClass::*;
        // (class, attempt number, orphaned before it, expected)
        let cases = [
            (Orphaned, 1, 0, retry_after(1000)),
            (Orphaned, 2, 1, retry_after(1000)),
            (Orphaned, 3, 2, AfterFailure::Fail),
            // Two crashes, then the ticket's own failures: charged as its first and second.
            (AgentError, 3, 2, retry_after(1000)),
            (AgentError, 4, 2, AfterFailure::Fail),
            (AgentError, 2, 0, AfterFailure::Fail),
        ];
        for (class, attempt, orphaned, expect) in cases {
            assert_eq!(
                policy.after_failure(
                    class,
                    Attempt::new(attempt),
                    Uncharged::orphaned(orphaned),
                    now
                ),
                expect,
                "{class} #{attempt} after {orphaned} orphaned"
            );
        }
    }

    #[test]
    fn failure_classes_round_trip() {
        for class in [
            FailureClass::AgentError,
            FailureClass::RateLimited,
            FailureClass::BudgetStopped,
            FailureClass::Orphaned,
        ] {
            assert_eq!(class.as_str().parse::<FailureClass>().unwrap(), class);
        }
    }

    #[test]
    fn settlement() {
        use FailureClass::{AgentError, Orphaned, RuntimeMissing, Stalled, Timeout};
        use RunEnding::*;
        use State::*;
        let retry = RetryPolicy {
            max_attempts: 3,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_orphaned: 3,
            ..RetryPolicy::default()
        };
        let now = Timestamp::from_millis(1000);
        let moved = |to, via, not_before: Option<i64>| TicketEffect::Move {
            to,
            via,
            not_before: not_before.map(Timestamp::from_millis),
        };
        // (how it ended, the ticket's state, attempt, outcome, class, effect on the ticket)
        let cases = [
            (
                Asked,
                Running,
                1,
                RunOutcome::Asked,
                None,
                moved(NeedsInput, Via::RunAsk, None),
            ),
            (
                Submitted,
                Running,
                1,
                RunOutcome::Submitted,
                None,
                moved(Review, Via::RunSubmit, None),
            ),
            (
                Exited(None),
                Running,
                1,
                RunOutcome::Submitted,
                None,
                moved(Review, Via::RunSubmit, None),
            ),
            (
                Exited(Some(AgentError)),
                Running,
                1,
                RunOutcome::Failed,
                Some(AgentError),
                moved(Todo, Via::RunRequeue, Some(2000)),
            ),
            (
                Exited(Some(Timeout)),
                Running,
                2,
                RunOutcome::Failed,
                Some(Timeout),
                moved(Todo, Via::RunRequeue, Some(3000)),
            ),
            (
                Exited(Some(Stalled)),
                Running,
                3,
                RunOutcome::Failed,
                Some(Stalled),
                moved(Failed, Via::RunFail, None),
            ),
            (
                Exited(Some(RuntimeMissing)),
                Running,
                1,
                RunOutcome::Failed,
                Some(RuntimeMissing),
                moved(Failed, Via::RunFail, None),
            ),
            (
                Exited(Some(Orphaned)),
                Running,
                1,
                RunOutcome::Failed,
                Some(Orphaned),
                moved(Todo, Via::RunRequeue, Some(2000)),
            ),
            (
                Exited(Some(FailureClass::Cancelled)),
                Running,
                1,
                RunOutcome::Failed,
                Some(FailureClass::Cancelled),
                moved(Failed, Via::RunFail, None),
            ),
            // An operator moved the ticket away while it ran: it stays there.
            (
                Exited(None),
                Cancelled,
                1,
                RunOutcome::Failed,
                Some(FailureClass::Cancelled),
                TicketEffect::Stay,
            ),
            (
                Exited(Some(AgentError)),
                Todo,
                1,
                RunOutcome::Failed,
                Some(AgentError),
                TicketEffect::Stay,
            ),
            (
                Exited(Some(Orphaned)),
                Blocked,
                2,
                RunOutcome::Failed,
                Some(Orphaned),
                TicketEffect::Stay,
            ),
        ];
        for (ending, state, attempt, outcome, class, effect) in cases {
            let got = settle(
                ending,
                state,
                Attempt::new(attempt),
                Uncharged::default(),
                &retry,
                now,
            );
            assert_eq!(
                got,
                Settlement {
                    outcome,
                    failure_class: class,
                    ticket: effect
                },
                "{ending:?} from {state} at attempt {attempt}"
            );
            if let TicketEffect::Move { to, via, .. } = got.ticket {
                assert!(
                    crate::transition::check_transition(state, to, via).is_ok(),
                    "{ending:?}: {state} -> {to} must be legal"
                );
            }
        }
    }
}
