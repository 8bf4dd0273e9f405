//! Incidents: the list, one with its occurrences, an operator's resolution, and an audit pass
//! run now.

use super::{App, AppError, AppResult};
use mission_core::incident::Severity;
use mission_core::{Actor, Incident, IncidentId, Occurrence};
use mission_store::IncidentFilter;
use serde::Serialize;

/// An incident with its latest occurrences, oldest first.
#[derive(Clone, Debug, Serialize)]
pub struct IncidentView {
    #[serde(flatten)]
    pub incident: Incident,
    pub occurrence_list: Vec<Occurrence>,
}

/// Occurrences shown with an incident.
const OCCURRENCES_SHOWN: u32 = 50;

impl App {
    /// Parses an incident id (`7`).
    pub fn incident_id(&self, text: &str) -> AppResult<IncidentId> {
        text.parse::<IncidentId>()
            .ok()
            .filter(|id| id.get() > 0)
            .ok_or_else(|| {
                AppError::invalid(format!("invalid incident id {text:?}: expected a number"))
                    .on_field("id")
            })
    }

    pub async fn list_incidents(
        &self,
        all: bool,
        severity: Option<Severity>,
        limit: u32,
    ) -> AppResult<Vec<Incident>> {
        Ok(self
            .store
            .incidents(&IncidentFilter {
                all,
                severity,
                limit,
            })
            .await?)
    }

    pub async fn show_incident(&self, id: IncidentId) -> AppResult<IncidentView> {
        let (incident, occurrence_list) = self.store.incident(id, OCCURRENCES_SHOWN).await?;
        Ok(IncidentView {
            incident,
            occurrence_list,
        })
    }

    /// Resolves an open incident with a reason. A condition that persists reopens it at the
    /// next audit pass: resolving is a statement, not a suppression.
    pub async fn resolve_incident(
        &self,
        id: IncidentId,
        reason: &str,
        actor: &Actor,
    ) -> AppResult<Incident> {
        if reason.trim().is_empty() {
            return Err(AppError::invalid("a resolution needs a reason").on_field("reason"));
        }
        Ok(self
            .store
            .resolve_incident(id, reason, &self.change(actor))
            .await?)
    }
}
