//! Incidents: persistent bad conditions keyed by fingerprint, with every occurrence and its
//! evidence. What a finding does to an incident (open, update, reopen, clear, resolve) is the
//! core's (`mission_core::incident`); the store applies it in one write transaction, with one
//! event per incident that changed.

use crate::{Change, Result};
use async_trait::async_trait;
use mission_core::incident::{AutoResolve, CheckName, Finding, IncidentChange, Severity};
use mission_core::{Incident, IncidentId, Occurrence};
use std::collections::BTreeSet;

#[async_trait]
pub trait IncidentStore: Send + Sync {
    /// Applies one audit pass: the incidents on record with the findings' fingerprints, and the
    /// open ones, are planned against with `mission_core::incident::plan_audit` and changed in
    /// the same write transaction (`incident.opened`, `.updated`, `.reopened`, `.resolved`, one
    /// event each). Returns every incident that changed, as it is now, with the change.
    async fn record_audit(
        &self,
        pass: &AuditPass,
        change: &Change,
    ) -> Result<Vec<(Incident, IncidentChange)>>;

    /// Incidents, newest opened first: open ones only unless `all`.
    async fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>>;

    /// One incident and its occurrences, oldest first (at most `occurrences`, the newest).
    async fn incident(
        &self,
        id: IncidentId,
        occurrences: u32,
    ) -> Result<(Incident, Vec<Occurrence>)>;

    /// An operator resolves an open incident with a reason (`incident.resolved`). Refused
    /// (`Invalid`) when it is already resolved or the reason is empty.
    async fn resolve_incident(
        &self,
        id: IncidentId,
        reason: &str,
        change: &Change,
    ) -> Result<Incident>;
}

/// What one audit pass found: its findings, the checks that ran to completion (a check that did
/// not run clears nothing), and which checks resolve their incidents when the condition clears.
#[derive(Clone, Debug, Default)]
pub struct AuditPass {
    pub findings: Vec<Finding>,
    pub checked: BTreeSet<CheckName>,
    pub auto_resolve: AutoResolve,
}

/// Which incidents to list.
#[derive(Clone, Debug, Default)]
pub struct IncidentFilter {
    /// Resolved ones too.
    pub all: bool,
    pub severity: Option<Severity>,
    pub limit: u32,
}
