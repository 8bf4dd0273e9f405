//! Runaway protection: the circuit breaker of a worker (and of a task). `failures` failed or
//! degraded runs in a row open it; while open nothing new starts; after the cool-down it is
//! half-open and lets ONE probe run start; the probe's success closes it, its failure opens it
//! again for another cool-down. Runs that say nothing about the worker (rate-limited, cancelled,
//! orphaned by a crash) leave it as it is.

use crate::time::Timestamp;
use serde::Serialize;
use std::time::Duration;

/// `[dispatch] breaker_failures` and `breaker_cooldown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Failures in a row that open the breaker; 0 turns breakers off.
    pub failures: u32,
    pub cooldown: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failures: 5,
            cooldown: Duration::from_secs(600),
        }
    }
}

/// A breaker as stored: failures in a row, and since when it is open (`None`: closed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Breaker {
    pub failures: u32,
    pub opened_at: Option<Timestamp>,
}

/// What a run's end says about its worker (or a task run about its task).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Failure,
    /// Says nothing about the worker.
    Neutral,
}

/// The breaker's state at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    /// Nothing starts until `until`.
    Open {
        until: Timestamp,
    },
    /// One probe may start.
    HalfOpen,
}

/// Whether a new run may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// Open until the time.
    Open(Timestamp),
    /// Half-open with its probe running.
    ProbeRunning,
}

impl Breaker {
    pub fn state(&self, now: Timestamp, policy: &BreakerPolicy) -> BreakerState {
        match self.opened_at {
            None => BreakerState::Closed,
            Some(opened) => {
                let until = opened.plus(policy.cooldown);
                if now < until {
                    BreakerState::Open { until }
                } else {
                    BreakerState::HalfOpen
                }
            }
        }
    }

    /// Whether a run may start now, `live` runs of the subject running.
    pub fn admits(&self, now: Timestamp, live: u32, policy: &BreakerPolicy) -> Admission {
        if policy.failures == 0 {
            return Admission::Admit;
        }
        match self.state(now, policy) {
            BreakerState::Closed => Admission::Admit,
            BreakerState::Open { until } => Admission::Open(until),
            BreakerState::HalfOpen if live == 0 => Admission::Admit,
            BreakerState::HalfOpen => Admission::ProbeRunning,
        }
    }

    /// The breaker after a run ended with `verdict`. `opened` says whether this end opened it
    /// (an incident is due).
    pub fn after(
        self,
        verdict: Verdict,
        now: Timestamp,
        policy: &BreakerPolicy,
    ) -> (Breaker, bool) {
        if policy.failures == 0 {
            return (Breaker::default(), false);
        }
        match verdict {
            Verdict::Neutral => (self, false),
            Verdict::Success => (Breaker::default(), false),
            Verdict::Failure => {
                let failures = self.failures.saturating_add(1);
                match self.opened_at {
                    // A failed probe (or a run that started before it opened) opens it again.
                    Some(_) => (
                        Breaker {
                            failures,
                            opened_at: Some(now),
                        },
                        false,
                    ),
                    None if failures >= policy.failures => (
                        Breaker {
                            failures,
                            opened_at: Some(now),
                        },
                        true,
                    ),
                    None => (
                        Breaker {
                            failures,
                            opened_at: None,
                        },
                        false,
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const POLICY: BreakerPolicy = BreakerPolicy {
        failures: 3,
        cooldown: Duration::from_secs(60),
    };

    #[test]
    fn opens_half_opens_closes() {
        let t = Timestamp::from_millis;
        let mut b = Breaker::default();
        for i in 0..2 {
            let (next, opened) = b.after(Verdict::Failure, t(i), &POLICY);
            assert!(!opened);
            b = next;
        }
        assert_eq!(b.admits(t(2), 0, &POLICY), Admission::Admit);
        let (next, opened) = b.after(Verdict::Failure, t(1000), &POLICY);
        assert!(opened);
        b = next;
        assert_eq!(b.admits(t(1000), 0, &POLICY), Admission::Open(t(61_000)));
        assert_eq!(b.admits(t(60_999), 0, &POLICY), Admission::Open(t(61_000)));
        assert_eq!(b.state(t(61_000), &POLICY), BreakerState::HalfOpen);
        assert_eq!(b.admits(t(61_000), 0, &POLICY), Admission::Admit);
        assert_eq!(b.admits(t(61_000), 1, &POLICY), Admission::ProbeRunning);
        // The probe fails: open for another cool-down, no second incident.
        let (reopened, opened) = b.after(Verdict::Failure, t(70_000), &POLICY);
        assert!(!opened);
        assert_eq!(
            reopened.admits(t(70_000), 0, &POLICY),
            Admission::Open(t(130_000))
        );
        // The next probe succeeds: closed.
        let (closed, _) = reopened.after(Verdict::Success, t(131_000), &POLICY);
        assert_eq!(closed, Breaker::default());
        // Off: always admits.
        let off = BreakerPolicy {
            failures: 0,
            ..POLICY
        };
        assert_eq!(reopened.admits(t(70_000), 5, &off), Admission::Admit);
    }

    fn verdict() -> impl Strategy<Value = Verdict> {
        prop_oneof![
            Just(Verdict::Success),
            Just(Verdict::Failure),
            Just(Verdict::Neutral)
        ]
    }

    proptest! {
        /// Against a model: open exactly when the last `failures` non-neutral verdicts since the
        /// last success number at least the threshold; an opening is reported once per streak;
        /// while open before the cool-down nothing is admitted; half-open admits only without a
        /// live run.
        #[test]
        fn breaker_matches_its_model(steps in proptest::collection::vec((verdict(), 0i64..120_000, 0u32..3), 1..60)) {
            let mut b = Breaker::default();
            let mut now = 0i64;
            let mut streak = 0u32;
            let mut open_since: Option<i64> = None;
            for (v, gap, live) in steps {
                now += gap;
                let at = Timestamp::from_millis(now);
                // Admission first, as the dispatcher asks before a run starts.
                let admission = b.admits(at, live, &POLICY);
                let expected = match open_since {
                    None => Admission::Admit,
                    Some(since) if now < since + 60_000 => Admission::Open(Timestamp::from_millis(since + 60_000)),
                    Some(_) if live == 0 => Admission::Admit,
                    Some(_) => Admission::ProbeRunning,
                };
                prop_assert_eq!(admission, expected);
                let (next, opened) = b.after(v, at, &POLICY);
                let mut expect_opened = false;
                match v {
                    Verdict::Neutral => {}
                    Verdict::Success => { streak = 0; open_since = None; }
                    Verdict::Failure => {
                        streak += 1;
                        if open_since.is_some() {
                            open_since = Some(now);
                        } else if streak >= POLICY.failures {
                            open_since = Some(now);
                            expect_opened = true;
                        }
                    }
                }
                prop_assert_eq!(opened, expect_opened);
                prop_assert_eq!(next.opened_at.map(|t| t.as_millis()), open_since);
                prop_assert_eq!(next.failures, streak);
                b = next;
            }
        }
    }
}
