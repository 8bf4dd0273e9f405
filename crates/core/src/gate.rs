//! The gate: the one decision whether a ticket in review may reach `done`.
//!
//! It reads only structured facts — the ticket's evidence records with verifications refreshed
//! for this decision, and its review outcomes — never ticket text, so prose such as "fixed,
//! verified" has no way in. It opens when every requirement of the evidence policy holds and,
//! where review is required, a reviewer other than the authors approved; otherwise it says
//! exactly what is missing, one line per gap (`test:unit: last run exited 1`).

use crate::evidence::{EvidenceKind, EvidencePolicy, EvidenceRecord, Requirement};
use crate::id::{Name, TicketId};
use crate::review::{ReviewMode, ReviewOutcome, ReviewRecord, ReviewerKind};
use crate::time::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// Everything the gate reads about one ticket, gathered by the store in the deciding
/// transaction.
#[derive(Clone, Copy, Debug)]
pub struct GateInput<'a> {
    pub ticket: &'a TicketId,
    pub policy: &'a EvidencePolicy,
    /// The ticket's branch (`mission/MC-7`), named in what is missing.
    pub branch: &'a str,
    /// The ticket's evidence records, with verifications refreshed for this decision. Records
    /// of another ticket are ignored.
    pub evidence: &'a [EvidenceRecord],
    /// A verification older than this does not count: the gate decides on evidence re-verified
    /// now, so a commit that has since vanished from the branch cannot pass on an old check.
    pub verified_since: Timestamp,
    pub review: ReviewMode,
    /// The workers that ran the ticket. None of them may approve it.
    pub authors: &'a [Name],
    /// The review outcomes since the ticket last entered review.
    pub reviews: &'a [ReviewRecord],
}

/// One thing the ticket lacks: `requirement` is a policy requirement (`commit`, `test:unit`) or
/// `review`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub requirement: String,
    pub detail: String,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.requirement, self.detail)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GateDecision {
    Open,
    Refused(Vec<Missing>),
}

impl GateDecision {
    pub fn is_open(&self) -> bool {
        matches!(self, GateDecision::Open)
    }

    pub fn missing(&self) -> &[Missing] {
        match self {
            GateDecision::Open => &[],
            GateDecision::Refused(missing) => missing,
        }
    }
}

/// Whether the ticket may reach `done`: every requirement of its policy holds on evidence
/// verified since `verified_since`, and the review it needs was given. Gaps are listed in the
/// policy's order, review last.
pub fn gate(input: &GateInput<'_>) -> GateDecision {
    let mut missing: Vec<Missing> = input
        .policy
        .requirements()
        .iter()
        .flat_map(|requirement| check_requirement(requirement, input))
        .collect();
    missing.extend(check_review(input));
    if missing.is_empty() {
        GateDecision::Open
    } else {
        GateDecision::Refused(missing)
    }
}

/// The records the gate decides on — the latest of each subject that a requirement of `policy`
/// matches — in id order. These, and only these, need re-verifying before the gate is asked.
pub fn deciding_records<'a>(
    ticket: &TicketId,
    policy: &EvidencePolicy,
    evidence: &'a [EvidenceRecord],
) -> Vec<&'a EvidenceRecord> {
    let mut records: Vec<&EvidenceRecord> = policy
        .requirements()
        .iter()
        .flat_map(|requirement| latest_matching(requirement, ticket, evidence).into_values())
        .collect();
    records.sort_by_key(|r| r.id);
    records.dedup_by_key(|r| r.id);
    records
}

/// The latest record (by time, then id) of each subject that `requirement` matches among the
/// ticket's records.
fn latest_matching<'a>(
    requirement: &Requirement,
    ticket: &TicketId,
    evidence: &'a [EvidenceRecord],
) -> BTreeMap<Option<&'a str>, &'a EvidenceRecord> {
    let mut latest: BTreeMap<Option<&str>, &EvidenceRecord> = BTreeMap::new();
    for record in evidence {
        let matches = record.ticket == *ticket
            && record.evidence.kind() == requirement.kind()
            && requirement
                .subject()
                .is_none_or(|s| record.evidence.subject() == Some(s));
        if !matches {
            continue;
        }
        let slot = latest.entry(record.evidence.subject()).or_insert(record);
        if (record.recorded_at, record.id) > (slot.recorded_at, slot.id) {
            *slot = record;
        }
    }
    latest
}

/// A requirement holds when the ticket has at least one matching record and the latest record
/// of each matching subject is verified, freshly.
fn check_requirement(requirement: &Requirement, input: &GateInput<'_>) -> Vec<Missing> {
    let gap = |detail: String| Missing {
        requirement: requirement.to_string(),
        detail,
    };
    let latest = latest_matching(requirement, input.ticket, input.evidence);
    if latest.is_empty() {
        return vec![gap(nothing_recorded(requirement, input.branch))];
    }
    let mut gaps = Vec::new();
    for (subject, record) in latest {
        // Under a bare requirement (`test`), each failing subject is named.
        let prefix = match (requirement.subject(), subject) {
            (None, Some(subject)) => format!("{subject}: "),
            _ => String::new(),
        };
        let verification = &record.verification;
        if verification.at() < input.verified_since {
            gaps.push(gap(format!(
                "{prefix}{} was last verified at {}, not re-verified for this decision",
                record.evidence.summary(),
                verification.at()
            )));
        } else if let Some(reason) = verification.failure() {
            gaps.push(gap(format!("{prefix}{reason}")));
        }
    }
    gaps
}

fn nothing_recorded(requirement: &Requirement, branch: &str) -> String {
    match (requirement.kind(), requirement.subject()) {
        (EvidenceKind::Commit, _) => format!("no commit reachable from {branch} (none recorded)"),
        (EvidenceKind::Test, None) => "no test has been run by the harness".to_owned(),
        (EvidenceKind::Test, Some(_)) => "never run by the harness".to_owned(),
        (EvidenceKind::Route, None) => "no route has been checked by the harness".to_owned(),
        (EvidenceKind::Route, Some(_)) => "never checked by the harness".to_owned(),
        (EvidenceKind::Artifact, None) => "no artifact has been recorded".to_owned(),
        (EvidenceKind::Artifact, Some(_)) => "not recorded".to_owned(),
    }
}

/// Where review is required: no rejection in this round, and an approval by a reviewer who is
/// not an author — a human when the mode says so or when auto-review skipped the diff as
/// oversized (a worker never approves a diff nobody could review).
fn check_review(input: &GateInput<'_>) -> Option<Missing> {
    if input.review == ReviewMode::None {
        return None;
    }
    let gap = |detail: String| Missing {
        requirement: "review".to_owned(),
        detail,
    };
    if let Some((by, reason)) = input.reviews.iter().find_map(|r| match &r.outcome {
        ReviewOutcome::Rejected { by, reason } => Some((by, reason)),
        _ => None,
    }) {
        return Some(gap(format!("rejected by {}: {reason}", by.name)));
    }
    let oversized = input.reviews.iter().rev().find_map(|r| match r.outcome {
        ReviewOutcome::SkippedOversized { changed_lines, cap } => Some((changed_lines, cap)),
        _ => None,
    });
    let needs_human = input.review == ReviewMode::Human || oversized.is_some();
    let approvers: Vec<_> = input
        .reviews
        .iter()
        .filter_map(|r| match &r.outcome {
            ReviewOutcome::Approved { by, .. } => Some(by),
            _ => None,
        })
        .collect();
    let counts = approvers.iter().any(|by| {
        !input.authors.contains(&by.name) && (!needs_human || by.kind == ReviewerKind::Human)
    });
    if counts {
        return None;
    }
    let who = if needs_human {
        "a human reviewer"
    } else {
        "a reviewer"
    };
    let mut detail = format!("needs approval by {who}{}", other_than(input.authors));
    if let Some((changed_lines, cap)) = oversized {
        detail = format!(
            "the diff has {changed_lines} changed lines, over the auto-review cap of {cap}; {detail}"
        );
    }
    let ignored: Vec<String> = approvers
        .iter()
        .map(|by| {
            if input.authors.contains(&by.name) {
                format!("{}'s own approval does not count", by.name)
            } else {
                format!("{} is not a human", by.name)
            }
        })
        .collect();
    if !ignored.is_empty() {
        detail = format!("{detail} ({})", ignored.join("; "));
    }
    Some(gap(detail))
}

/// ` other than luci`, ` other than luci or larry`, ` other than a, b or c`; empty for none.
fn other_than(authors: &[Name]) -> String {
    match authors {
        [] => String::new(),
        [one] => format!(" other than {one}"),
        [rest @ .., last] => {
            let rest: Vec<&str> = rest.iter().map(Name::as_str).collect();
            format!(" other than {} or {last}", rest.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Actor;
    use crate::evidence::*;
    use crate::id::TicketKey;
    use crate::review::Reviewer;

    const NOW: i64 = 1_000_000;

    fn ticket(n: i64) -> TicketId {
        TicketId::new(&TicketKey::default(), n)
    }

    fn name(n: &str) -> Name {
        Name::parse(n).unwrap()
    }

    fn ok(at: i64) -> Verification {
        Verification::Verified {
            at: Timestamp::from_millis(at),
        }
    }

    fn failed(reason: &str) -> Verification {
        Verification::Failed {
            at: Timestamp::from_millis(NOW),
            reason: reason.to_owned(),
        }
    }

    /// A record of MC-7: (id, recorded at, evidence, verification).
    fn record(id: i64, at: i64, evidence: Evidence, verification: Verification) -> EvidenceRecord {
        EvidenceRecord {
            id: EvidenceId::new(id),
            ticket: ticket(7),
            evidence,
            recorded_at: Timestamp::from_millis(at),
            recorded_by: Actor::new("harness"),
            verification,
        }
    }

    fn commit() -> Evidence {
        Evidence::Commit(CommitEvidence {
            sha: CommitSha::parse(&"a".repeat(40)).unwrap(),
        })
    }

    fn test(name: &str, exit_code: i32) -> Evidence {
        Evidence::Test(TestEvidence {
            name: Name::parse(name).unwrap(),
            at_commit: None,
            exit_code: Some(exit_code),
            duration_ms: 10,
            output_tail: OutputTail::of(b""),
            output_sha256: Sha256Hex::parse(&"0".repeat(64)).unwrap(),
        })
    }

    fn route() -> Evidence {
        Evidence::Route(RouteEvidence {
            name: Name::parse("health").unwrap(),
            target: RouteTarget::new("http://127.0.0.1:9", "/health").unwrap(),
            expected_status: 200,
            body_contains: None,
            status: Some(500),
            body_matched: None,
            latency_ms: 2,
            error: None,
        })
    }

    fn artifact() -> Evidence {
        Evidence::Artifact(ArtifactEvidence {
            path: WorkspacePath::parse("shots/home.png").unwrap(),
            size_bytes: 1,
            sha256: Sha256Hex::parse(&"0".repeat(64)).unwrap(),
            media_type: MediaType::parse("image/png").unwrap(),
        })
    }

    fn approved(reviewer: &str, kind: ReviewerKind) -> ReviewRecord {
        ReviewRecord {
            at: Timestamp::from_millis(NOW),
            outcome: ReviewOutcome::Approved {
                by: Reviewer {
                    name: name(reviewer),
                    kind,
                },
                reason: String::new(),
            },
        }
    }

    fn rejected(reviewer: &str) -> ReviewRecord {
        ReviewRecord {
            at: Timestamp::from_millis(NOW),
            outcome: ReviewOutcome::Rejected {
                by: Reviewer {
                    name: name(reviewer),
                    kind: ReviewerKind::Worker,
                },
                reason: "no tests".into(),
            },
        }
    }

    fn oversized() -> ReviewRecord {
        ReviewRecord {
            at: Timestamp::from_millis(NOW),
            outcome: ReviewOutcome::SkippedOversized {
                changed_lines: 6_000,
                cap: 5_000,
            },
        }
    }

    struct Case {
        policy: &'static str,
        evidence: Vec<EvidenceRecord>,
        review: ReviewMode,
        authors: Vec<&'static str>,
        reviews: Vec<ReviewRecord>,
        /// Each missing line, or nothing when the gate opens.
        expect: Vec<&'static str>,
    }

    fn case(
        policy: &'static str,
        evidence: Vec<EvidenceRecord>,
        expect: Vec<&'static str>,
    ) -> Case {
        Case {
            policy,
            evidence,
            review: ReviewMode::None,
            authors: vec!["luci"],
            reviews: vec![],
            expect,
        }
    }

    fn reviewed(
        review: ReviewMode,
        authors: Vec<&'static str>,
        reviews: Vec<ReviewRecord>,
        expect: Vec<&'static str>,
    ) -> Case {
        Case {
            policy: "commit",
            evidence: vec![record(1, 1, commit(), ok(NOW))],
            review,
            authors,
            reviews,
            expect,
        }
    }

    fn check(case: Case) {
        let policy = EvidencePolicy::parse(case.policy).unwrap();
        let authors: Vec<Name> = case.authors.iter().map(|a| name(a)).collect();
        let id = ticket(7);
        let input = GateInput {
            ticket: &id,
            policy: &policy,
            branch: "mission/MC-7",
            evidence: &case.evidence,
            verified_since: Timestamp::from_millis(NOW),
            review: case.review,
            authors: &authors,
            reviews: &case.reviews,
        };
        let decision = gate(&input);
        let got: Vec<String> = decision.missing().iter().map(Missing::to_string).collect();
        assert_eq!(got, case.expect, "policy {}", case.policy);
        assert_eq!(decision.is_open(), case.expect.is_empty());
    }

    #[test]
    fn evidence_requirements() {
        let cases = vec![
            case("none", vec![], vec![]),
            case("commit", vec![record(1, 1, commit(), ok(NOW))], vec![]),
            // Nothing recorded: prose in the body or a comment has no way to count.
            case(
                "commit",
                vec![],
                vec!["commit: no commit reachable from mission/MC-7 (none recorded)"],
            ),
            // A commit that vanished from the branch, found by the re-verification.
            case(
                "commit",
                vec![record(
                    1,
                    1,
                    commit(),
                    failed("aaaaaaaaaaaa is not reachable from mission/MC-7"),
                )],
                vec!["commit: aaaaaaaaaaaa is not reachable from mission/MC-7"],
            ),
            // The latest commit decides, not an older one that still verifies.
            case(
                "commit",
                vec![
                    record(1, 1, commit(), ok(NOW)),
                    record(
                        2,
                        2,
                        commit(),
                        failed("aaaaaaaaaaaa does not exist in the repository"),
                    ),
                ],
                vec!["commit: aaaaaaaaaaaa does not exist in the repository"],
            ),
            // A verification from before this decision does not count.
            case(
                "commit",
                vec![record(1, 1, commit(), ok(NOW - 1))],
                vec![
                    "commit: commit aaaaaaaaaaaa was last verified at 1970-01-01T00:16:39.999Z, not re-verified for this decision",
                ],
            ),
            case(
                "commit+test:unit",
                vec![
                    record(1, 1, commit(), ok(NOW)),
                    record(2, 2, test("unit", 1), failed("last run exited 1")),
                ],
                vec!["test:unit: last run exited 1"],
            ),
            // The latest run of the named test counts: a later pass fixes an earlier failure...
            case(
                "test:unit",
                vec![
                    record(1, 1, test("unit", 1), failed("last run exited 1")),
                    record(2, 2, test("unit", 0), ok(NOW)),
                ],
                vec![],
            ),
            // ...and a later failure undoes an earlier pass.
            case(
                "test:unit",
                vec![
                    record(1, 1, test("unit", 0), ok(NOW)),
                    record(2, 2, test("unit", 1), failed("last run exited 1")),
                ],
                vec!["test:unit: last run exited 1"],
            ),
            // Equal times: the higher id is the later record.
            case(
                "test:unit",
                vec![
                    record(3, 5, test("unit", 1), failed("last run exited 1")),
                    record(2, 5, test("unit", 0), ok(NOW)),
                ],
                vec!["test:unit: last run exited 1"],
            ),
            case(
                "test:unit",
                vec![record(1, 1, test("lint", 0), ok(NOW))],
                vec!["test:unit: never run by the harness"],
            ),
            // A bare `test` needs one test, and a failing one cannot hide behind a passing one.
            case(
                "test",
                vec![],
                vec!["test: no test has been run by the harness"],
            ),
            case("test", vec![record(1, 1, test("lint", 0), ok(NOW))], vec![]),
            case(
                "test",
                vec![
                    record(1, 1, test("lint", 0), ok(NOW)),
                    record(2, 2, test("unit", 2), failed("last run exited 2")),
                ],
                vec!["test: unit: last run exited 2"],
            ),
            case(
                "route:health",
                vec![record(
                    1,
                    1,
                    route(),
                    failed("GET http://127.0.0.1:9/health answered 500; expected 200"),
                )],
                vec!["route:health: GET http://127.0.0.1:9/health answered 500; expected 200"],
            ),
            case(
                "route",
                vec![],
                vec!["route: no route has been checked by the harness"],
            ),
            case(
                "artifact:shots/home.png",
                vec![record(1, 1, artifact(), ok(NOW))],
                vec![],
            ),
            case(
                "artifact:shots/other.png",
                vec![record(1, 1, artifact(), ok(NOW))],
                vec!["artifact:shots/other.png: not recorded"],
            ),
            // Every gap is listed, in the policy's order.
            case(
                "commit+test:unit+route:health",
                vec![],
                vec![
                    "commit: no commit reachable from mission/MC-7 (none recorded)",
                    "test:unit: never run by the harness",
                    "route:health: never checked by the harness",
                ],
            ),
        ];
        for case in cases {
            check(case);
        }
    }

    #[test]
    fn only_the_deciding_records_need_reverifying() {
        let evidence = vec![
            record(1, 1, commit(), ok(0)),
            record(2, 2, commit(), ok(0)),
            record(3, 3, test("unit", 1), ok(0)),
            record(4, 4, test("unit", 0), ok(0)),
            record(5, 5, test("lint", 0), ok(0)),
            record(6, 6, artifact(), ok(0)),
        ];
        let ids = |policy: &str| -> Vec<i64> {
            let policy = EvidencePolicy::parse(policy).unwrap();
            deciding_records(&ticket(7), &policy, &evidence)
                .iter()
                .map(|r| r.id.get())
                .collect()
        };
        assert_eq!(ids("none"), Vec::<i64>::new());
        assert_eq!(ids("commit"), vec![2]);
        assert_eq!(ids("commit+test:unit"), vec![2, 4]);
        assert_eq!(ids("test+test:unit"), vec![4, 5]);
        assert_eq!(ids("route"), Vec::<i64>::new());
        assert_eq!(ids("commit+test+artifact"), vec![2, 4, 5, 6]);
    }

    #[test]
    fn another_tickets_evidence_never_counts() {
        let mut foreign = record(1, 1, commit(), ok(NOW));
        foreign.ticket = ticket(8);
        check(case(
            "commit",
            vec![foreign],
            vec!["commit: no commit reachable from mission/MC-7 (none recorded)"],
        ));
    }

    #[test]
    fn review_requirements() {
        use ReviewMode::{Auto, Human};
        use ReviewerKind::{Human as Person, Worker};
        let cases = vec![
            reviewed(ReviewMode::None, vec!["luci"], vec![], vec![]),
            reviewed(
                Auto,
                vec!["luci"],
                vec![],
                vec!["review: needs approval by a reviewer other than luci"],
            ),
            reviewed(Auto, vec!["luci"], vec![approved("larry", Worker)], vec![]),
            reviewed(Auto, vec!["luci"], vec![approved("ana", Person)], vec![]),
            // The author cannot approve its own ticket.
            reviewed(
                Auto,
                vec!["luci"],
                vec![approved("luci", Worker)],
                vec![
                    "review: needs approval by a reviewer other than luci (luci's own approval does not count)",
                ],
            ),
            reviewed(
                Auto,
                vec!["luci", "larry", "tessa"],
                vec![approved("larry", Worker)],
                vec![
                    "review: needs approval by a reviewer other than luci, larry or tessa (larry's own approval does not count)",
                ],
            ),
            reviewed(
                Human,
                vec!["luci"],
                vec![approved("larry", Worker)],
                vec![
                    "review: needs approval by a human reviewer other than luci (larry is not a human)",
                ],
            ),
            reviewed(Human, vec!["luci"], vec![approved("ana", Person)], vec![]),
            // An oversized diff was reviewed by nobody: only a human's approval opens the gate.
            reviewed(
                Auto,
                vec!["luci"],
                vec![oversized()],
                vec![
                    "review: the diff has 6000 changed lines, over the auto-review cap of 5000; needs approval by a human reviewer other than luci",
                ],
            ),
            reviewed(
                Auto,
                vec!["luci"],
                vec![oversized(), approved("larry", Worker)],
                vec![
                    "review: the diff has 6000 changed lines, over the auto-review cap of 5000; needs approval by a human reviewer other than luci (larry is not a human)",
                ],
            ),
            reviewed(
                Auto,
                vec!["luci"],
                vec![oversized(), approved("ana", Person)],
                vec![],
            ),
            reviewed(
                Auto,
                vec!["luci"],
                vec![approved("ana", Person), rejected("larry")],
                vec!["review: rejected by larry: no tests"],
            ),
            reviewed(
                Auto,
                vec![],
                vec![],
                vec!["review: needs approval by a reviewer"],
            ),
        ];
        for case in cases {
            check(case);
        }
    }

    #[test]
    fn evidence_and_review_gaps_are_listed_together() {
        let mut both = reviewed(
            ReviewMode::Auto,
            vec!["luci"],
            vec![],
            vec![
                "commit: no commit reachable from mission/MC-7 (none recorded)",
                "review: needs approval by a reviewer other than luci",
            ],
        );
        both.evidence.clear();
        check(both);
    }
}
