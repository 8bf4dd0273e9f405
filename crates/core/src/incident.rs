//! Incidents: persistent bad conditions, keyed by a fingerprint (`check:subject`, such as
//! `stuck_run:MC-12`), with every occurrence counted and its evidence kept.
//!
//! A finding of the operator audit either opens an incident, updates the open one with its
//! fingerprint, or REOPENS the resolved one: a condition that comes back is never suppressed —
//! not because the incident was resolved, not because a ticket about it was closed (nothing
//! here reads a ticket's state). An incident resolves when an operator says so, or, where its
//! check is configured to, when an audit pass that ran the check no longer finds it.

use crate::event::{Actor, EventKind};
use crate::id::{TicketId, store_id};
use crate::task::{Outcome, TaskResult};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

store_id!(
    /// An incident's id, assigned by the store.
    IncidentId
);

/// Longest subject of a fingerprint, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncidentError {
    #[error(
        "invalid check name {0:?}: expected 1-64 lowercase letters, digits, '_', '.' or '-', starting with a letter"
    )]
    Check(String),
    #[error(
        "invalid fingerprint {0:?}: expected CHECK:SUBJECT, the subject without spaces or control characters"
    )]
    Fingerprint(String),
    #[error("unknown {0} {1:?}")]
    Unknown(&'static str, String),
    #[error("incident {id} is {fingerprint}, not {finding}")]
    WrongIncident {
        id: IncidentId,
        fingerprint: Fingerprint,
        finding: Fingerprint,
    },
    #[error("incident {0} is already resolved")]
    AlreadyResolved(IncidentId),
    #[error("a resolution needs a reason")]
    NoReason,
}

/// The name of a check of the operator audit: `stuck_run`, `evidence_invalid`, `probe.disk`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CheckName(String);

impl CheckName {
    pub fn parse(text: &str) -> Result<Self, IncidentError> {
        let ok = (1..=64).contains(&text.len())
            && text.starts_with(|c: char| c.is_ascii_lowercase())
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
        if ok {
            Ok(CheckName(text.to_owned()))
        } else {
            Err(IncidentError::Check(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for CheckName {
    type Error = IncidentError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        CheckName::parse(&text)
    }
}

impl From<CheckName> for String {
    fn from(value: CheckName) -> String {
        value.0
    }
}

/// What an incident is about: the check that found it and its subject. Two findings with the
/// same fingerprint are the same condition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint {
    check: CheckName,
    subject: String,
}

impl Fingerprint {
    pub fn new(check: CheckName, subject: &str) -> Result<Self, IncidentError> {
        let ok = !subject.is_empty()
            && subject.len() <= MAX_SUBJECT_BYTES
            && !subject.chars().any(|c| c.is_control() || c.is_whitespace());
        if ok {
            Ok(Fingerprint {
                check,
                subject: subject.to_owned(),
            })
        } else {
            Err(IncidentError::Fingerprint(format!("{check}:{subject}")))
        }
    }

    /// Parses `check:subject` (the subject may itself contain `:`).
    pub fn parse(text: &str) -> Result<Self, IncidentError> {
        let invalid = || IncidentError::Fingerprint(text.to_owned());
        let (check, subject) = text.split_once(':').ok_or_else(invalid)?;
        Fingerprint::new(CheckName::parse(check).map_err(|_| invalid())?, subject)
    }

    pub fn check(&self) -> &CheckName {
        &self.check
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.check, self.subject)
    }
}

impl FromStr for Fingerprint {
    type Err = IncidentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Fingerprint::parse(s)
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Fingerprint::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// How bad a condition is, and so what it does to the health verdict: a `warning` makes it
/// degraded, a `critical` one broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = IncidentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            _ => Err(IncidentError::Unknown("severity", s.to_owned())),
        }
    }
}

/// One thing a check found now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub fingerprint: Fingerprint,
    pub severity: Severity,
    /// One line a person can act on: "run 41 of MC-12 has had no heartbeat for 12m".
    pub detail: String,
    /// What the check saw, kept with the occurrence.
    pub evidence: serde_json::Value,
    /// The ticket the condition is about, if any.
    pub ticket: Option<TicketId>,
}

/// One occurrence of an incident's condition, with its evidence: a row of its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Occurrence {
    pub incident: IncidentId,
    /// 1 for the occurrence that opened the incident.
    pub number: u64,
    pub at: Timestamp,
    pub detail: String,
    pub evidence: serde_json::Value,
}

/// How an incident was resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Resolution {
    /// An audit pass ran its check and no longer found the condition (auto-resolve).
    Cleared,
    /// An operator resolved it.
    Operator { actor: Actor, reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum IncidentState {
    Open,
    Resolved {
        at: Timestamp,
        resolution: Resolution,
    },
}

/// What happened to an incident; each is one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentChange {
    Opened,
    Updated,
    Reopened,
    Resolved,
}

impl IncidentChange {
    pub fn event_kind(self) -> EventKind {
        match self {
            IncidentChange::Opened => EventKind::IncidentOpened,
            IncidentChange::Updated => EventKind::IncidentUpdated,
            IncidentChange::Reopened => EventKind::IncidentReopened,
            IncidentChange::Resolved => EventKind::IncidentResolved,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: IncidentId,
    pub fingerprint: Fingerprint,
    /// The severity of the latest occurrence.
    pub severity: Severity,
    pub state: IncidentState,
    /// Every occurrence, from the one that opened it, through resolutions and reopenings.
    pub occurrences: u64,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// When it was last opened or reopened.
    pub opened_at: Timestamp,
    /// How many times it came back after being resolved.
    pub reopened: u64,
    /// The latest occurrence's detail.
    pub detail: String,
    pub ticket: Option<TicketId>,
}

impl Incident {
    /// A new incident from its first finding, with the id the store allocated.
    pub fn open(id: IncidentId, finding: &Finding, now: Timestamp) -> (Incident, Occurrence) {
        let incident = Incident {
            id,
            fingerprint: finding.fingerprint.clone(),
            severity: finding.severity,
            state: IncidentState::Open,
            occurrences: 1,
            first_seen: now,
            last_seen: now,
            opened_at: now,
            reopened: 0,
            detail: finding.detail.clone(),
            ticket: finding.ticket.clone(),
        };
        let occurrence = incident.occurrence(finding, now);
        (incident, occurrence)
    }

    pub fn is_open(&self) -> bool {
        self.state == IncidentState::Open
    }

    /// The condition was found again: one more occurrence, with its evidence. An open incident
    /// is updated; a resolved one is reopened.
    pub fn observe(
        &mut self,
        finding: &Finding,
        now: Timestamp,
    ) -> Result<(IncidentChange, Occurrence), IncidentError> {
        if finding.fingerprint != self.fingerprint {
            return Err(IncidentError::WrongIncident {
                id: self.id,
                fingerprint: self.fingerprint.clone(),
                finding: finding.fingerprint.clone(),
            });
        }
        let change = if self.is_open() {
            IncidentChange::Updated
        } else {
            self.state = IncidentState::Open;
            self.opened_at = now;
            self.reopened += 1;
            IncidentChange::Reopened
        };
        self.occurrences += 1;
        self.last_seen = self.last_seen.max(now);
        self.severity = finding.severity;
        self.detail = finding.detail.clone();
        if finding.ticket.is_some() {
            self.ticket = finding.ticket.clone();
        }
        Ok((change, self.occurrence(finding, now)))
    }

    /// An audit pass ran the check and did not find the condition. Resolves an open incident
    /// when its check auto-resolves; otherwise nothing changes (`None`).
    pub fn clear(&mut self, now: Timestamp, auto_resolve: bool) -> Option<IncidentChange> {
        if !self.is_open() || !auto_resolve {
            return None;
        }
        self.state = IncidentState::Resolved {
            at: now,
            resolution: Resolution::Cleared,
        };
        Some(IncidentChange::Resolved)
    }

    /// An operator resolves an open incident, with a reason.
    pub fn resolve(
        &mut self,
        actor: Actor,
        reason: &str,
        now: Timestamp,
    ) -> Result<IncidentChange, IncidentError> {
        if !self.is_open() {
            return Err(IncidentError::AlreadyResolved(self.id));
        }
        if reason.trim().is_empty() {
            return Err(IncidentError::NoReason);
        }
        self.state = IncidentState::Resolved {
            at: now,
            resolution: Resolution::Operator {
                actor,
                reason: reason.trim().to_owned(),
            },
        };
        Ok(IncidentChange::Resolved)
    }

    fn occurrence(&self, finding: &Finding, now: Timestamp) -> Occurrence {
        Occurrence {
            incident: self.id,
            number: self.occurrences,
            at: now,
            detail: finding.detail.clone(),
            evidence: finding.evidence.clone(),
        }
    }
}

/// Which checks resolve their incidents by themselves when the condition clears.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoResolve {
    /// For checks not listed.
    #[serde(default)]
    pub default: bool,
    #[serde(default)]
    pub checks: BTreeMap<CheckName, bool>,
}

impl AutoResolve {
    pub fn for_check(&self, check: &CheckName) -> bool {
        self.checks.get(check).copied().unwrap_or(self.default)
    }
}

/// What one audit pass does to the incidents on record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditPlan {
    /// Findings with no incident yet: open one each.
    pub open: Vec<Finding>,
    /// Findings of a known incident: observe each (an update, or a reopening).
    pub observe: Vec<(IncidentId, Finding)>,
    /// Open incidents whose check ran and found nothing: clear each (resolves where the check
    /// auto-resolves).
    pub clear: Vec<IncidentId>,
}

/// Plans an audit pass: `incidents` are those on record with the findings' fingerprints and
/// the open ones (at most one per fingerprint), `checked` the checks that ran to completion.
/// A check that did not run clears nothing; findings with the same fingerprint count once.
pub fn plan_audit(
    incidents: &[Incident],
    findings: &[Finding],
    checked: &BTreeSet<CheckName>,
) -> AuditPlan {
    let by_fingerprint: BTreeMap<&Fingerprint, &Incident> =
        incidents.iter().map(|i| (&i.fingerprint, i)).collect();
    let mut plan = AuditPlan::default();
    let mut seen: BTreeSet<&Fingerprint> = BTreeSet::new();
    for finding in findings {
        if !seen.insert(&finding.fingerprint) {
            continue;
        }
        match by_fingerprint.get(&finding.fingerprint) {
            Some(incident) => plan.observe.push((incident.id, finding.clone())),
            None => plan.open.push(finding.clone()),
        }
    }
    plan.clear = incidents
        .iter()
        .filter(|i| i.is_open() && checked.contains(i.fingerprint.check()))
        .filter(|i| !seen.contains(&i.fingerprint))
        .map(|i| i.id)
        .collect();
    plan
}

/// What an audit pass changed, counted for its task outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditTally {
    pub opened: u32,
    pub updated: u32,
    pub reopened: u32,
    pub resolved: u32,
    pub checks: u32,
}

impl AuditTally {
    pub fn add(&mut self, change: IncidentChange) {
        match change {
            IncidentChange::Opened => self.opened += 1,
            IncidentChange::Updated => self.updated += 1,
            IncidentChange::Reopened => self.reopened += 1,
            IncidentChange::Resolved => self.resolved += 1,
        }
    }

    /// `acted` with the counts when any incident changed, else `noop`.
    pub fn result(&self) -> TaskResult {
        let changed = self.opened + self.updated + self.reopened + self.resolved;
        let result = if changed > 0 {
            TaskResult::new(
                Outcome::Acted,
                format!(
                    "{} opened, {} updated, {} reopened, {} resolved",
                    self.opened, self.updated, self.reopened, self.resolved
                ),
            )
        } else {
            TaskResult::new(
                Outcome::Noop,
                format!("{} checks found nothing", self.checks),
            )
        };
        result
            .count("opened", self.opened.into())
            .count("updated", self.updated.into())
            .count("reopened", self.reopened.into())
            .count("resolved", self.resolved.into())
            .count("checks", self.checks.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::TicketKey;

    fn fp(text: &str) -> Fingerprint {
        Fingerprint::parse(text).unwrap()
    }

    fn finding(text: &str, severity: Severity) -> Finding {
        Finding {
            fingerprint: fp(text),
            severity,
            detail: format!("{text} seen"),
            evidence: serde_json::json!({ "seen": text }),
            ticket: Some(TicketId::new(&TicketKey::default(), 12)),
        }
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn fingerprints() {
        for ok in [
            "stuck_run:MC-12",
            "probe.disk:/var/lib",
            "probe.http:http://x:80/health",
        ] {
            let parsed = fp(ok);
            assert_eq!(parsed.to_string(), ok);
            assert_eq!(serde_json::to_value(&parsed).unwrap(), ok);
        }
        assert_eq!(fp("stuck_run:MC-12").check().as_str(), "stuck_run");
        assert_eq!(fp("probe.http:http://x:80/").subject(), "http://x:80/");
        for bad in [
            "",
            "stuck_run",
            "stuck_run:",
            ":MC-1",
            "Stuck:MC-1",
            "stuck run:MC-1",
            "a:b c",
            "a:b\n",
        ] {
            assert!(Fingerprint::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Fingerprint::parse(&format!("a:{}", "x".repeat(MAX_SUBJECT_BYTES + 1))).is_err());
        for severity in [Severity::Warning, Severity::Critical] {
            assert_eq!(severity.as_str().parse::<Severity>().unwrap(), severity);
        }
    }

    #[test]
    fn open_observe_resolve_reopen() {
        let f = finding("stuck_run:MC-12", Severity::Warning);
        let (mut incident, first) = Incident::open(IncidentId::new(3), &f, at(10));
        assert_eq!((first.number, first.incident), (1, IncidentId::new(3)));
        assert_eq!(incident.occurrences, 1);

        let (change, second) = incident.observe(&f, at(20)).unwrap();
        assert_eq!(change, IncidentChange::Updated);
        assert_eq!(change.event_kind().as_str(), "incident.updated");
        assert_eq!((second.number, incident.last_seen), (2, at(20)));
        assert_eq!(second.evidence, f.evidence);

        assert_eq!(
            incident.clear(at(25), false),
            None,
            "no auto-resolve: stays open"
        );
        assert!(incident.is_open());
        assert_eq!(
            incident.resolve(Actor::cli(), " ", at(30)).unwrap_err(),
            IncidentError::NoReason
        );
        incident.resolve(Actor::cli(), "restarted", at(30)).unwrap();
        assert!(!incident.is_open());
        assert_eq!(
            incident.resolve(Actor::cli(), "again", at(31)).unwrap_err(),
            IncidentError::AlreadyResolved(IncidentId::new(3))
        );

        // The condition is back: the incident reopens, counting the occurrence.
        let worse = finding("stuck_run:MC-12", Severity::Critical);
        let (change, third) = incident.observe(&worse, at(40)).unwrap();
        assert_eq!(change, IncidentChange::Reopened);
        assert_eq!(change.event_kind().as_str(), "incident.reopened");
        assert_eq!(third.number, 3);
        assert_eq!(
            (incident.occurrences, incident.reopened, incident.opened_at),
            (3, 1, at(40))
        );
        assert_eq!(incident.severity, Severity::Critical);
        assert_eq!(incident.first_seen, at(10));

        assert_eq!(incident.clear(at(50), true), Some(IncidentChange::Resolved));
        assert_eq!(
            incident.state,
            IncidentState::Resolved {
                at: at(50),
                resolution: Resolution::Cleared
            }
        );
        assert_eq!(incident.clear(at(60), true), None, "already resolved");

        let other = finding("stuck_run:MC-13", Severity::Warning);
        assert!(matches!(
            incident.observe(&other, at(70)),
            Err(IncidentError::WrongIncident { .. })
        ));
    }

    #[test]
    fn a_closed_ticket_never_suppresses_a_recurrence() {
        // The incident is linked to MC-12; whatever became of MC-12 (done, cancelled), the
        // recurrence reopens the incident: `observe` takes no ticket state to be swayed by.
        let f = finding("evidence_invalid:MC-12", Severity::Warning);
        let (mut incident, _) = Incident::open(IncidentId::new(1), &f, at(0));
        incident
            .resolve(Actor::cli(), "ticket closed", at(1))
            .unwrap();
        let (change, _) = incident.observe(&f, at(2)).unwrap();
        assert_eq!(change, IncidentChange::Reopened);
        assert!(incident.is_open());
    }

    #[test]
    fn audit_plans() {
        let stuck = finding("stuck_run:MC-12", Severity::Warning);
        let (open, _) = Incident::open(IncidentId::new(1), &stuck, at(0));
        let churn = finding("task_churn:dispatch", Severity::Warning);
        let (mut resolved, _) = Incident::open(IncidentId::new(2), &churn, at(0));
        resolved.resolve(Actor::cli(), "fixed", at(1)).unwrap();
        let starving = finding("starvation:MC-3", Severity::Warning);
        let (gone, _) = Incident::open(IncidentId::new(3), &starving, at(0));
        let incidents = [open, resolved, gone];
        let checks = |names: &[&str]| -> BTreeSet<CheckName> {
            names.iter().map(|n| CheckName::parse(n).unwrap()).collect()
        };
        let disk = finding("probe.disk:/", Severity::Critical);

        let plan = plan_audit(
            &incidents,
            &[stuck.clone(), churn.clone(), disk.clone(), stuck.clone()],
            &checks(&["stuck_run", "task_churn", "starvation", "probe.disk"]),
        );
        assert_eq!(plan.open, vec![disk.clone()]);
        assert_eq!(
            plan.observe,
            vec![
                (IncidentId::new(1), stuck.clone()),
                (IncidentId::new(2), churn)
            ]
        );
        assert_eq!(plan.clear, vec![IncidentId::new(3)]);

        // The starvation check did not run this pass: its incident is not cleared.
        let plan = plan_audit(&incidents, &[stuck], &checks(&["stuck_run"]));
        assert!(plan.clear.is_empty());
        assert!(plan.open.is_empty());
    }

    #[test]
    fn audit_outcomes() {
        let mut tally = AuditTally {
            checks: 6,
            ..AuditTally::default()
        };
        let result = tally.result();
        assert_eq!(
            (result.outcome, result.reason.as_str()),
            (Outcome::Noop, "6 checks found nothing")
        );
        tally.add(IncidentChange::Opened);
        tally.add(IncidentChange::Reopened);
        let result = tally.result();
        assert_eq!(result.outcome, Outcome::Acted);
        assert_eq!(result.counts["reopened"], 1);
        assert_eq!(result.reason, "1 opened, 0 updated, 1 reopened, 0 resolved");
    }

    #[test]
    fn auto_resolve_per_check() {
        let rules: AutoResolve =
            toml::from_str("default = true\nchecks = { stuck_run = false }").unwrap();
        assert!(!rules.for_check(&CheckName::parse("stuck_run").unwrap()));
        assert!(rules.for_check(&CheckName::parse("starvation").unwrap()));
        assert!(!AutoResolve::default().for_check(&CheckName::parse("x").unwrap()));
        assert!(toml::from_str::<AutoResolve>("checks = { \"Bad Name\" = true }").is_err());
    }
}

/// Recurrence as a property: open → resolve → recur → reopen, in any order, with every
/// occurrence counted.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Copy, Debug)]
    enum Op {
        /// The audit found the condition.
        Observe,
        /// The audit ran the check and did not find it.
        Clear { auto_resolve: bool },
        /// An operator resolved it.
        Resolve,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Observe),
            2 => any::<bool>().prop_map(|auto_resolve| Op::Clear { auto_resolve }),
            2 => Just(Op::Resolve),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_occurrence_counts_and_every_recurrence_reopens(
            ops in prop::collection::vec(op(), 0..80),
        ) {
            let finding = Finding {
                fingerprint: Fingerprint::parse("stuck_run:MC-12").unwrap(),
                severity: Severity::Warning,
                detail: "no heartbeat".into(),
                evidence: serde_json::json!({}),
                ticket: None,
            };
            let (mut incident, first) =
                Incident::open(IncidentId::new(1), &finding, Timestamp::from_millis(0));
            prop_assert_eq!(first.number, 1);
            // The model: occurrences seen, whether it is open, reopenings.
            let (mut occurrences, mut open, mut reopened) = (1u64, true, 0u64);
            for (step, op) in ops.into_iter().enumerate() {
                let now = Timestamp::from_millis(step as i64 + 1);
                match op {
                    Op::Observe => {
                        let (change, occurrence) = incident.observe(&finding, now).unwrap();
                        occurrences += 1;
                        let expect = if open { IncidentChange::Updated } else { IncidentChange::Reopened };
                        if !open {
                            reopened += 1;
                        }
                        open = true;
                        prop_assert_eq!(change, expect);
                        prop_assert_eq!(occurrence.number, occurrences);
                        prop_assert_eq!(occurrence.at, now);
                    }
                    Op::Clear { auto_resolve } => {
                        let change = incident.clear(now, auto_resolve);
                        let resolves = open && auto_resolve;
                        prop_assert_eq!(change.is_some(), resolves);
                        if resolves {
                            open = false;
                        }
                    }
                    Op::Resolve => {
                        let got = incident.resolve(Actor::cli(), "handled", now);
                        prop_assert_eq!(got.is_ok(), open);
                        open = false;
                    }
                }
                prop_assert_eq!(incident.occurrences, occurrences);
                prop_assert_eq!(incident.is_open(), open);
                prop_assert_eq!(incident.reopened, reopened);
                prop_assert!(incident.first_seen <= incident.last_seen);
            }
        }
    }
}
