//! Review: whether a ticket's work needs a reviewer, who may review it, what a verdict does, and
//! the size cap of auto-review.
//!
//! A reviewer is never one of the ticket's authors (the workers that ran it). A diff over the
//! auto-review cap is not reviewed and is not a success: it is recorded as `skipped_oversized`,
//! the ticket stays in review and only a human's approval can then open the gate. A rejection
//! sends the ticket back to its author with the reason, and counts against its attempts.

use crate::event::EventKind;
use crate::id::Name;
use crate::run::{Attempt, TicketEffect};
use crate::task::{Outcome, TaskResult};
use crate::ticket::{MAX_MESSAGE_BYTES, State, ValidationError, check_message};
use crate::time::Timestamp;
use crate::transition::Via;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The default auto-review cap: diffs with more changed lines (added plus removed) are not
/// reviewed by a worker.
pub const DEFAULT_MAX_CHANGED_LINES: u64 = 5_000;

/// Whether a ticket's work is reviewed before the gate, and by whom. Ordered by strictness.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ReviewMode {
    /// No review: the gate checks evidence only.
    #[default]
    None,
    /// A reviewer worker (or a human) must approve.
    Auto,
    /// A human must approve.
    Human,
}

impl ReviewMode {
    pub const ALL: [ReviewMode; 3] = [ReviewMode::None, ReviewMode::Auto, ReviewMode::Human];

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewMode::None => "none",
            ReviewMode::Auto => "auto",
            ReviewMode::Human => "human",
        }
    }
}

impl fmt::Display for ReviewMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReviewMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReviewMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown review mode {s:?}: expected none, auto or human"))
    }
}

/// The review rules of an instance: the mode per label and per worker, a default, and the
/// auto-review cap. Shaped to be read from a `[review]` section of `mission.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewRules {
    /// The mode of a ticket that no label or worker rule matches.
    #[serde(default)]
    pub default: ReviewMode,
    #[serde(default)]
    pub labels: BTreeMap<String, ReviewMode>,
    #[serde(default)]
    pub workers: BTreeMap<Name, ReviewMode>,
    /// Diffs with more changed lines are not auto-reviewed.
    #[serde(default = "default_max_changed_lines")]
    pub max_changed_lines: u64,
}

fn default_max_changed_lines() -> u64 {
    DEFAULT_MAX_CHANGED_LINES
}

impl Default for ReviewRules {
    fn default() -> Self {
        ReviewRules {
            default: ReviewMode::None,
            labels: BTreeMap::new(),
            workers: BTreeMap::new(),
            max_changed_lines: DEFAULT_MAX_CHANGED_LINES,
        }
    }
}

impl ReviewRules {
    /// The mode of a ticket with these labels, run by this worker: the strictest of the rules
    /// that match (so a label asking for a human cannot be weakened by its worker's rule), or
    /// the default when none matches.
    pub fn mode_for(&self, labels: &[String], worker: Option<&Name>) -> ReviewMode {
        labels
            .iter()
            .filter_map(|label| self.labels.get(label))
            .chain(worker.and_then(|w| self.workers.get(w)))
            .copied()
            .max()
            .unwrap_or(self.default)
    }
}

/// Whether a reviewer is a person or a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewerKind {
    Human,
    Worker,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reviewer {
    pub name: Name,
    pub kind: ReviewerKind,
}

/// What a reviewer decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    Approve,
    Reject,
}

impl FromStr for ReviewDecision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "approve" => Ok(ReviewDecision::Approve),
            "reject" => Ok(ReviewDecision::Reject),
            _ => Err(format!(
                "unknown review decision {s:?}: expected approve or reject"
            )),
        }
    }
}

/// A review's result, as recorded. Only `approved` is a success; `skipped_oversized` is never one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReviewOutcome {
    Approved {
        by: Reviewer,
        reason: String,
    },
    Rejected {
        by: Reviewer,
        reason: String,
    },
    /// The diff was over the auto-review cap: nobody looked at it.
    SkippedOversized {
        changed_lines: u64,
        cap: u64,
    },
}

impl ReviewOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            ReviewOutcome::Approved { .. } => "approved",
            ReviewOutcome::Rejected { .. } => "rejected",
            ReviewOutcome::SkippedOversized { .. } => "skipped_oversized",
        }
    }

    /// The event that records this outcome.
    pub fn event_kind(&self) -> EventKind {
        match self {
            ReviewOutcome::Approved { .. } => EventKind::ReviewApproved,
            ReviewOutcome::Rejected { .. } => EventKind::ReviewRejected,
            ReviewOutcome::SkippedOversized { .. } => EventKind::ReviewSkippedOversized,
        }
    }
}

/// A stored review outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRecord {
    pub at: Timestamp,
    #[serde(flatten)]
    pub outcome: ReviewOutcome,
}

/// Why a verdict is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewRefusal {
    #[error("the ticket is {0}; only a ticket in review can be reviewed")]
    NotInReview(State),
    #[error("{0} worked on this ticket and cannot review it")]
    OwnWork(Name),
    #[error("this ticket needs a human reviewer; {0} is a worker")]
    HumanRequired(Name),
    #[error(transparent)]
    Reason(#[from] ValidationError),
}

/// Whether `reviewer` may review a ticket whose authors (the workers that ran it) are `authors`,
/// in `mode`: never an author, and only a human where a human is required.
pub fn may_review(
    reviewer: &Reviewer,
    authors: &[Name],
    mode: ReviewMode,
) -> Result<(), ReviewRefusal> {
    if authors.contains(&reviewer.name) {
        return Err(ReviewRefusal::OwnWork(reviewer.name.clone()));
    }
    if mode == ReviewMode::Human && reviewer.kind == ReviewerKind::Worker {
        return Err(ReviewRefusal::HumanRequired(reviewer.name.clone()));
    }
    Ok(())
}

/// A reviewer's verdict on a ticket in `state`, checked: the ticket is in review, the reviewer
/// may review it, a rejection gives its reason. Returns the outcome to record.
pub fn review(
    decision: ReviewDecision,
    reason: &str,
    reviewer: Reviewer,
    authors: &[Name],
    mode: ReviewMode,
    state: State,
) -> Result<ReviewOutcome, ReviewRefusal> {
    if state != State::Review {
        return Err(ReviewRefusal::NotInReview(state));
    }
    may_review(&reviewer, authors, mode)?;
    let reason = reason.trim().to_owned();
    match decision {
        ReviewDecision::Approve => {
            if reason.len() > MAX_MESSAGE_BYTES {
                let too_large = ValidationError::MessageTooLarge("review reason", reason.len());
                return Err(too_large.into());
            }
            Ok(ReviewOutcome::Approved {
                by: reviewer,
                reason,
            })
        }
        ReviewDecision::Reject => {
            check_message("rejection reason", &reason)?;
            Ok(ReviewOutcome::Rejected {
                by: reviewer,
                reason,
            })
        }
    }
}

/// The first configured reviewer that is not one of the ticket's authors.
pub fn choose_reviewer<'a>(reviewers: &'a [Name], authors: &[Name]) -> Option<&'a Name> {
    reviewers.iter().find(|r| !authors.contains(r))
}

/// What auto-review does with a diff of `changed_lines` (added plus removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AutoReview {
    /// Within the cap: a reviewer worker reviews it.
    Review,
    /// Over the cap: nobody reviews it; this outcome is recorded.
    Skip(ReviewOutcome),
}

/// A diff over `cap` changed lines is not reviewed by a worker: it is `skipped_oversized`.
pub fn plan_auto_review(changed_lines: u64, cap: u64) -> AutoReview {
    if changed_lines > cap {
        AutoReview::Skip(ReviewOutcome::SkippedOversized { changed_lines, cap })
    } else {
        AutoReview::Review
    }
}

/// What a review outcome does to its ticket; carried out in the transaction that records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReviewEffect {
    /// Approved: the gate is asked now. The ticket reaches `done` only through it.
    AskGate,
    /// Rejected: the ticket moves (back to todo for its author, or to failed when the attempt
    /// just reviewed was its last), and `note` is added to its text for the author's next run.
    SendBack {
        ticket: TicketEffect,
        note: String,
        /// The ticket failed: raise a `failed_ticket` inbox item.
        attempts_exhausted: bool,
    },
    /// Skipped as oversized: the ticket stays in review, a human is asked (a `review_request`
    /// inbox item) and the auto-review run is `degraded`.
    AskHuman { detail: String },
}

/// What `outcome` does to a ticket whose current attempt is `attempt`, with at most
/// `max_attempts` attempts. A rejection counts against the attempts: after the last one the
/// ticket fails instead of going back.
pub fn after_review(outcome: &ReviewOutcome, attempt: Attempt, max_attempts: u32) -> ReviewEffect {
    match outcome {
        ReviewOutcome::Approved { .. } => ReviewEffect::AskGate,
        ReviewOutcome::Rejected { by, reason } => {
            let exhausted = attempt.get() >= i64::from(max_attempts);
            let to = if exhausted {
                State::Failed
            } else {
                State::Todo
            };
            ReviewEffect::SendBack {
                ticket: TicketEffect::Move {
                    to,
                    via: Via::Review,
                    not_before: None,
                },
                note: format!(
                    "Review of attempt {attempt} rejected by {}: {reason}",
                    by.name
                ),
                attempts_exhausted: exhausted,
            }
        }
        ReviewOutcome::SkippedOversized { changed_lines, cap } => ReviewEffect::AskHuman {
            detail: format!(
                "the diff has {changed_lines} changed lines, over the auto-review cap of {cap}; a human must review it"
            ),
        },
    }
}

/// What one auto-review pass did, ticket by ticket; its task outcome follows from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AutoReviewTally {
    pub approved: u32,
    pub rejected: u32,
    pub skipped_oversized: u32,
    /// A reviewer run ended without a verdict (failed, timed out, said nothing).
    pub no_verdict: u32,
    /// No configured reviewer other than the authors.
    pub no_reviewer: u32,
}

impl AutoReviewTally {
    /// The pass's one outcome: `degraded` when any ticket was left unreviewed (oversized, no
    /// verdict, no reviewer) — never `acted` — else `acted` when it reviewed something, else
    /// `noop`.
    pub fn result(&self) -> TaskResult {
        let unreviewed = self.skipped_oversized + self.no_verdict + self.no_reviewer;
        let reviewed = self.approved + self.rejected;
        let result = if unreviewed > 0 {
            let mut parts = Vec::new();
            if self.skipped_oversized > 0 {
                parts.push(format!(
                    "{} over the size cap (skipped_oversized)",
                    self.skipped_oversized
                ));
            }
            if self.no_verdict > 0 {
                parts.push(format!("{} without a verdict", self.no_verdict));
            }
            if self.no_reviewer > 0 {
                parts.push(format!("{} without a reviewer", self.no_reviewer));
            }
            TaskResult::new(
                Outcome::Degraded,
                format!("{unreviewed} ticket(s) not reviewed: {}", parts.join(", ")),
            )
        } else if reviewed > 0 {
            TaskResult::new(Outcome::Acted, format!("reviewed {reviewed} ticket(s)"))
        } else {
            TaskResult::new(Outcome::Noop, "no ticket waits for auto-review")
        };
        result
            .count("approved", self.approved.into())
            .count("rejected", self.rejected.into())
            .count("skipped_oversized", self.skipped_oversized.into())
            .count("no_verdict", self.no_verdict.into())
            .count("no_reviewer", self.no_reviewer.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> Name {
        Name::parse(n).unwrap()
    }

    fn worker(n: &str) -> Reviewer {
        Reviewer {
            name: name(n),
            kind: ReviewerKind::Worker,
        }
    }

    fn human(n: &str) -> Reviewer {
        Reviewer {
            name: name(n),
            kind: ReviewerKind::Human,
        }
    }

    #[test]
    fn modes_round_trip_and_order_by_strictness() {
        for mode in ReviewMode::ALL {
            assert_eq!(mode.as_str().parse::<ReviewMode>().unwrap(), mode);
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.as_str());
        }
        assert!(ReviewMode::None < ReviewMode::Auto && ReviewMode::Auto < ReviewMode::Human);
        assert!("maybe".parse::<ReviewMode>().is_err());
    }

    #[test]
    fn the_strictest_matching_rule_wins_else_the_default() {
        let rules: ReviewRules = toml::from_str(
            r#"
            default = "auto"
            labels = { docs = "none", security = "human" }
            workers = { scott = "none", tessa = "human" }
            "#,
        )
        .unwrap();
        assert_eq!(rules.max_changed_lines, DEFAULT_MAX_CHANGED_LINES);
        let labels = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // (labels, worker, mode)
        let cases = [
            (labels(&[]), None, ReviewMode::Auto),
            (labels(&["docs"]), None, ReviewMode::None),
            (labels(&["docs"]), Some("luci"), ReviewMode::None),
            (labels(&["docs", "security"]), None, ReviewMode::Human),
            (labels(&["security"]), Some("scott"), ReviewMode::Human),
            (labels(&[]), Some("scott"), ReviewMode::None),
            (labels(&["docs"]), Some("tessa"), ReviewMode::Human),
            (labels(&["other"]), Some("luci"), ReviewMode::Auto),
        ];
        for (labels, worker, expect) in cases {
            let worker = worker.map(name);
            assert_eq!(
                rules.mode_for(&labels, worker.as_ref()),
                expect,
                "{labels:?} {worker:?}"
            );
        }
        assert_eq!(ReviewRules::default().mode_for(&[], None), ReviewMode::None);
        assert!(toml::from_str::<ReviewRules>("defaults = \"auto\"").is_err());
    }

    #[test]
    fn verdicts() {
        let authors = [name("luci")];
        use ReviewDecision::*;
        use ReviewMode::{Auto, Human};
        // (decision, reason, reviewer, mode, ticket state, outcome or the refusal's message)
        type Case = (
            ReviewDecision,
            &'static str,
            Reviewer,
            ReviewMode,
            State,
            Result<&'static str, &'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                Approve,
                "looks right",
                worker("larry"),
                Auto,
                State::Review,
                Ok("approved"),
            ),
            (
                Approve,
                "",
                human("ana"),
                Human,
                State::Review,
                Ok("approved"),
            ),
            (
                Reject,
                "tests missing",
                worker("larry"),
                Auto,
                State::Review,
                Ok("rejected"),
            ),
            (
                Approve,
                "mine is great",
                worker("luci"),
                Auto,
                State::Review,
                Err("luci worked on this ticket and cannot review it"),
            ),
            (
                Reject,
                "mine is bad",
                human("luci"),
                Auto,
                State::Review,
                Err("luci worked on this ticket and cannot review it"),
            ),
            (
                Approve,
                "ok",
                worker("larry"),
                Human,
                State::Review,
                Err("this ticket needs a human reviewer; larry is a worker"),
            ),
            (
                Reject,
                "  ",
                worker("larry"),
                Auto,
                State::Review,
                Err("rejection reason is empty"),
            ),
            (
                Approve,
                "ok",
                worker("larry"),
                Auto,
                State::Running,
                Err("the ticket is running; only a ticket in review can be reviewed"),
            ),
        ];
        for (decision, reason, reviewer, mode, state, expect) in cases {
            let got = review(decision, reason, reviewer.clone(), &authors, mode, state);
            match (&got, expect) {
                (Ok(outcome), Ok(want)) => assert_eq!(outcome.as_str(), want),
                (Err(refusal), Err(want)) => assert_eq!(refusal.to_string(), want),
                _ => panic!("{decision:?} by {reviewer:?} in {mode}: got {got:?}, want {expect:?}"),
            }
        }
    }

    #[test]
    fn the_reviewer_is_never_an_author() {
        let reviewers = [name("luci"), name("larry"), name("tessa")];
        assert_eq!(
            choose_reviewer(&reviewers, &[name("luci")]),
            Some(&name("larry"))
        );
        assert_eq!(
            choose_reviewer(&reviewers, &[name("luci"), name("larry")]),
            Some(&name("tessa"))
        );
        assert_eq!(choose_reviewer(&reviewers[..1], &[name("luci")]), None);
    }

    #[test]
    fn oversized_diffs_are_skipped_never_approved() {
        // (changed lines, cap, skipped)
        let cases = [
            (50, DEFAULT_MAX_CHANGED_LINES, false),
            (5_000, DEFAULT_MAX_CHANGED_LINES, false),
            (5_001, DEFAULT_MAX_CHANGED_LINES, true),
            (6_000, DEFAULT_MAX_CHANGED_LINES, true),
            (11, 10, true),
        ];
        for (changed_lines, cap, skipped) in cases {
            let plan = plan_auto_review(changed_lines, cap);
            match plan {
                AutoReview::Review => assert!(!skipped, "{changed_lines} > {cap}"),
                AutoReview::Skip(outcome) => {
                    assert!(skipped, "{changed_lines} <= {cap}");
                    assert_eq!(outcome.as_str(), "skipped_oversized");
                    assert_eq!(outcome.event_kind().as_str(), "review.skipped_oversized");
                    let effect = after_review(&outcome, Attempt::new(1), 3);
                    assert!(
                        matches!(effect, ReviewEffect::AskHuman { .. }),
                        "{effect:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_rejection_sends_the_ticket_back_and_counts_against_attempts() {
        let rejected = ReviewOutcome::Rejected {
            by: worker("larry"),
            reason: "no tests".into(),
        };
        // (attempt, max attempts, to, exhausted)
        let cases = [
            (1, 3, State::Todo, false),
            (2, 3, State::Todo, false),
            (3, 3, State::Failed, true),
            (1, 1, State::Failed, true),
        ];
        for (attempt, max, to, exhausted) in cases {
            let effect = after_review(&rejected, Attempt::new(attempt), max);
            let ReviewEffect::SendBack {
                ticket: TicketEffect::Move { to: got, via, .. },
                note,
                attempts_exhausted,
            } = effect
            else {
                panic!("{effect:?}");
            };
            assert_eq!(
                (got, attempts_exhausted),
                (to, exhausted),
                "attempt {attempt}/{max}"
            );
            assert_eq!(via, Via::Review);
            assert!(crate::transition::check_transition(State::Review, got, via).is_ok());
            assert_eq!(
                note,
                format!("Review of attempt {attempt} rejected by larry: no tests")
            );
        }
        let approved = ReviewOutcome::Approved {
            by: worker("larry"),
            reason: String::new(),
        };
        assert_eq!(
            after_review(&approved, Attempt::new(1), 3),
            ReviewEffect::AskGate
        );
    }

    #[test]
    fn outcomes_are_stored_tagged() {
        let record = ReviewRecord {
            at: Timestamp::from_millis(0),
            outcome: ReviewOutcome::SkippedOversized {
                changed_lines: 6_000,
                cap: 5_000,
            },
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["outcome"], "skipped_oversized");
        assert_eq!(json["changed_lines"], 6_000);
        assert_eq!(
            serde_json::from_value::<ReviewRecord>(json).unwrap(),
            record
        );
    }

    #[test]
    fn an_auto_review_pass_that_left_work_unreviewed_is_degraded() {
        let tally = |approved, rejected, skipped_oversized, no_verdict, no_reviewer| {
            AutoReviewTally {
                approved,
                rejected,
                skipped_oversized,
                no_verdict,
                no_reviewer,
            }
            .result()
        };
        // (tally, outcome)
        let cases = [
            (tally(0, 0, 0, 0, 0), Outcome::Noop),
            (tally(2, 1, 0, 0, 0), Outcome::Acted),
            (tally(0, 0, 1, 0, 0), Outcome::Degraded),
            (tally(5, 0, 1, 0, 0), Outcome::Degraded),
            (tally(1, 0, 0, 1, 0), Outcome::Degraded),
            (tally(0, 0, 0, 0, 1), Outcome::Degraded),
        ];
        for (result, outcome) in cases {
            assert_eq!(result.outcome, outcome, "{result:?}");
        }
        let degraded = tally(3, 0, 2, 0, 0);
        assert_eq!(degraded.counts["skipped_oversized"], 2);
        assert_eq!(
            degraded.reason,
            "2 ticket(s) not reviewed: 2 over the size cap (skipped_oversized)"
        );
    }
}
