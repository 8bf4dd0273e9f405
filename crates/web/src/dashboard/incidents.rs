//! Incidents: the open ones (or all), and one with its occurrences and the resolve form.

use super::view::{Shell, clip, when};
use super::{PageResult, Visitor, forms, page};
use crate::Web;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use mission_core::Incident;
use mission_core::incident::{IncidentState, Resolution};
use serde::Deserialize;

const LIMIT: u32 = 200;

pub struct IncidentRow {
    pub id: i64,
    pub fingerprint: String,
    pub severity: String,
    pub open: bool,
    pub status: String,
    pub occurrences: u64,
    pub reopened: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub detail: String,
    pub ticket: Option<String>,
}

fn row(incident: &Incident) -> IncidentRow {
    let (open, status) = match &incident.state {
        IncidentState::Open => (true, "open".to_owned()),
        IncidentState::Resolved { at, resolution } => (
            false,
            match resolution {
                Resolution::Cleared => format!("resolved {} (cleared)", when(*at)),
                Resolution::Operator { actor, reason } => {
                    format!("resolved {} by {}: {reason}", when(*at), actor.as_str())
                }
            },
        ),
    };
    IncidentRow {
        id: incident.id.get(),
        fingerprint: incident.fingerprint.to_string(),
        severity: incident.severity.as_str().to_owned(),
        open,
        status,
        occurrences: incident.occurrences,
        reopened: incident.reopened,
        first_seen: when(incident.first_seen),
        last_seen: when(incident.last_seen),
        detail: incident.detail.clone(),
        ticket: incident.ticket.as_ref().map(|t| t.to_string()),
    }
}

#[derive(Debug, Deserialize)]
pub struct IncidentsQuery {
    pub all: Option<bool>,
}

#[derive(Template)]
#[template(path = "incidents.html")]
pub struct IncidentsPage {
    pub shell: Shell,
    pub all: bool,
    pub incidents: Vec<IncidentRow>,
}

pub async fn incidents(
    State(web): State<Web>,
    visitor: Visitor,
    headers: HeaderMap,
    Query(query): Query<IncidentsQuery>,
) -> PageResult {
    let all = query.all.unwrap_or(false);
    let incidents = web.app.list_incidents(all, None, LIMIT).await?;
    let shell = Shell::new(&web, &visitor, "Incidents".to_owned(), "incidents")
        .await
        .with_notice(forms::notice(&headers));
    let page_ = IncidentsPage {
        shell,
        all,
        incidents: incidents.iter().map(row).collect(),
    };
    forms::with_notice_cleared(page(&page_)?, &headers)
}

pub struct OccurrenceRow {
    pub number: u64,
    pub at: String,
    pub detail: String,
    pub evidence: String,
}

#[derive(Template)]
#[template(path = "incident.html")]
pub struct IncidentPage {
    pub shell: Shell,
    pub incident: IncidentRow,
    pub occurrences: Vec<OccurrenceRow>,
}

pub async fn incident(
    State(web): State<Web>,
    visitor: Visitor,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    let id = web.app.incident_id(&id)?;
    let view = web.app.show_incident(id).await?;
    let shell = Shell::new(&web, &visitor, format!("Incident {id}"), "incidents")
        .await
        .with_notice(forms::notice(&headers));
    let page_ = IncidentPage {
        shell,
        incident: row(&view.incident),
        occurrences: view
            .occurrence_list
            .iter()
            .rev()
            .map(|o| OccurrenceRow {
                number: o.number,
                at: when(o.at),
                detail: o.detail.clone(),
                evidence: clip(&o.evidence.to_string(), 600),
            })
            .collect(),
    };
    forms::with_notice_cleared(page(&page_)?, &headers)
}
