//! Runs: one attempt of one worker on one ticket. The attempt number is the fencing token: every
//! report from a run carries it, and a report from an attempt that is no longer current is refused.

use crate::id::{Name, TicketId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

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
    pub id: i64,
    pub ticket: TicketId,
    pub attempt: i64,
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

/// Active runs, counted from the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActiveCounts {
    pub total: u32,
    pub by_worker: BTreeMap<String, u32>,
    pub by_pool: BTreeMap<String, u32>,
}

impl ActiveCounts {
    pub fn worker(&self, name: &str) -> u32 {
        self.by_worker.get(name).copied().unwrap_or(0)
    }

    pub fn pool(&self, name: &str) -> u32 {
        self.by_pool.get(name).copied().unwrap_or(0)
    }

    pub fn add(&mut self, worker: &str, pool: &str) {
        self.total += 1;
        *self.by_worker.entry(worker.to_owned()).or_default() += 1;
        *self.by_pool.entry(pool.to_owned()).or_default() += 1;
    }
}

/// Retry with capped exponential backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
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
    /// The backoff before attempt `attempt + 1`: base × 2^(attempt-1), capped.
    pub fn backoff(&self, attempt: i64) -> Duration {
        let exponent = attempt.clamp(1, 32) as u32 - 1;
        let factor = 2u32.saturating_pow(exponent);
        self.backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max)
    }

    pub fn after_failure(&self, class: FailureClass, attempt: i64, now: Timestamp) -> AfterFailure {
        if class == FailureClass::Cancelled {
            return AfterFailure::StayCancelled;
        }
        if !class.is_retryable() || attempt >= i64::from(self.max_attempts) {
            return AfterFailure::Fail;
        }
        let delay = self.backoff(attempt).as_millis() as i64;
        AfterFailure::Retry {
            not_before: Timestamp::from_millis(now.as_millis() + delay),
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
        };
        let got: Vec<u64> = (1..=6).map(|a| policy.backoff(a).as_secs()).collect();
        assert_eq!(got, vec![10, 20, 40, 60, 60, 60]);
    }

    #[test]
    fn after_failure() {
        let policy = RetryPolicy {
            max_attempts: 3,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
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
                policy.after_failure(class, attempt, now),
                expect,
                "{class} #{attempt}"
            );
        }
    }

    #[test]
    fn failure_classes_round_trip() {
        for class in [
            FailureClass::AgentError,
            FailureClass::RateLimited,
            FailureClass::Orphaned,
        ] {
            assert_eq!(class.as_str().parse::<FailureClass>().unwrap(), class);
        }
    }
}
