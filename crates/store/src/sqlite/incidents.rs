//! Incidents in SQLite: one row per fingerprint (unique), one row per occurrence. An audit pass
//! reads the incidents it concerns and writes what the core planned in one write transaction;
//! ids come from the `incident_id` counter taken in that transaction.

use super::SqliteStore;
use super::events::append_event;
use super::rows::ticket_id;
use crate::error::corrupt;
use crate::{AuditPass, Change, IncidentFilter, IncidentStore, Result, StoreError};
use async_trait::async_trait;
use mission_core::incident::{IncidentChange, IncidentState, Resolution, plan_audit};
use mission_core::{Fingerprint, Incident, IncidentId, Occurrence, Timestamp};
use serde_json::{Value, json};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, SqliteConnection};

const COLUMNS: &str = "id, fingerprint, severity, status, resolved_at, resolution, occurrences, \
    first_seen, last_seen, opened_at, reopened, detail, ticket";

/// The counter incident ids are taken from (migration 7).
const INCIDENT_ID_COUNTER: &str = "incident_id";

pub(super) fn decode_incident(row: &SqliteRow) -> Result<Incident> {
    let fingerprint: String = row.try_get("fingerprint")?;
    let severity: String = row.try_get("severity")?;
    let status: String = row.try_get("status")?;
    let state = match status.as_str() {
        "open" => IncidentState::Open,
        "resolved" => {
            let resolution: String = row
                .try_get::<Option<String>, _>("resolution")?
                .unwrap_or_default();
            IncidentState::Resolved {
                at: Timestamp::from_millis(
                    row.try_get::<Option<i64>, _>("resolved_at")?
                        .ok_or_else(|| corrupt("incident resolution time", ""))?,
                ),
                resolution: serde_json::from_str::<Resolution>(&resolution)
                    .map_err(|_| corrupt("incident resolution", &resolution))?,
            }
        }
        _ => return Err(corrupt("incident status", &status)),
    };
    let count = |name: &str| -> Result<u64> {
        let value: i64 = row.try_get(name)?;
        u64::try_from(value).map_err(|_| corrupt(&format!("incident {name}"), value))
    };
    Ok(Incident {
        id: IncidentId::new(row.try_get("id")?),
        fingerprint: Fingerprint::parse(&fingerprint)
            .map_err(|_| corrupt("incident fingerprint", &fingerprint))?,
        severity: severity
            .parse()
            .map_err(|_| corrupt("incident severity", &severity))?,
        state,
        occurrences: count("occurrences")?,
        first_seen: Timestamp::from_millis(row.try_get("first_seen")?),
        last_seen: Timestamp::from_millis(row.try_get("last_seen")?),
        opened_at: Timestamp::from_millis(row.try_get("opened_at")?),
        reopened: count("reopened")?,
        detail: row.try_get("detail")?,
        ticket: row
            .try_get::<Option<String>, _>("ticket")?
            .map(|t| ticket_id(&t))
            .transpose()?,
    })
}

fn decode_occurrence(row: &SqliteRow) -> Result<Occurrence> {
    let evidence: String = row.try_get("evidence")?;
    Ok(Occurrence {
        incident: IncidentId::new(row.try_get("incident")?),
        number: u64::try_from(row.try_get::<i64, _>("number")?).unwrap_or(0),
        at: Timestamp::from_millis(row.try_get("at")?),
        detail: row.try_get("detail")?,
        evidence: serde_json::from_str(&evidence)
            .map_err(|_| corrupt("incident evidence", &evidence))?,
    })
}

async fn load_incident(conn: &mut SqliteConnection, id: IncidentId) -> Result<Incident> {
    let sql = format!("SELECT {COLUMNS} FROM incidents WHERE id = ?");
    let row = sqlx::query(&sql)
        .bind(id.get())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::IncidentNotFound(id))?;
    decode_incident(&row)
}

fn i64_of(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Writes an incident's row as the core left it (insert or replace by id).
async fn save_incident(conn: &mut SqliteConnection, incident: &Incident) -> Result<()> {
    let (status, resolved_at, resolution) = match &incident.state {
        IncidentState::Open => ("open", None, None),
        IncidentState::Resolved { at, resolution } => (
            "resolved",
            Some(at.as_millis()),
            Some(serde_json::to_string(resolution).expect("a resolution serializes")),
        ),
    };
    sqlx::query(
        "INSERT INTO incidents (id, fingerprint, check_name, severity, status, resolved_at, \
         resolution, occurrences, first_seen, last_seen, opened_at, reopened, detail, ticket) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET \
         severity = excluded.severity, status = excluded.status, \
         resolved_at = excluded.resolved_at, resolution = excluded.resolution, \
         occurrences = excluded.occurrences, last_seen = excluded.last_seen, \
         opened_at = excluded.opened_at, reopened = excluded.reopened, \
         detail = excluded.detail, ticket = excluded.ticket",
    )
    .bind(incident.id.get())
    .bind(incident.fingerprint.to_string())
    .bind(incident.fingerprint.check().as_str())
    .bind(incident.severity.as_str())
    .bind(status)
    .bind(resolved_at)
    .bind(resolution)
    .bind(i64_of(incident.occurrences))
    .bind(incident.first_seen.as_millis())
    .bind(incident.last_seen.as_millis())
    .bind(incident.opened_at.as_millis())
    .bind(i64_of(incident.reopened))
    .bind(&incident.detail)
    .bind(incident.ticket.as_ref().map(|t| t.to_string()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_occurrence(conn: &mut SqliteConnection, occurrence: &Occurrence) -> Result<()> {
    sqlx::query(
        "INSERT INTO incident_occurrences (incident, number, at, detail, evidence) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(occurrence.incident.get())
    .bind(i64_of(occurrence.number))
    .bind(occurrence.at.as_millis())
    .bind(&occurrence.detail)
    .bind(occurrence.evidence.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The one event of an incident's change, in the changing transaction.
async fn incident_event(
    conn: &mut SqliteConnection,
    incident: &Incident,
    what: IncidentChange,
    extra: Value,
    change: &Change,
) -> Result<()> {
    let mut data = json!({
        "incident": incident.id,
        "fingerprint": incident.fingerprint,
        "severity": incident.severity,
        "occurrences": incident.occurrences,
        "detail": incident.detail,
    });
    if let (Value::Object(data), Value::Object(extra)) = (&mut data, extra) {
        data.extend(extra);
    }
    append_event(
        conn,
        what.event_kind(),
        incident.ticket.as_ref(),
        change,
        &data,
    )
    .await?;
    Ok(())
}

async fn take_incident_id(conn: &mut SqliteConnection) -> Result<IncidentId> {
    let id: i64 =
        sqlx::query_scalar("UPDATE counters SET value = value + 1 WHERE name = ? RETURNING value")
            .bind(INCIDENT_ID_COUNTER)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| StoreError::Corrupt("the incident id counter is missing".to_owned()))?;
    Ok(IncidentId::new(id))
}

/// Applies an audit pass inside the caller's write transaction (also used by the outbox, for
/// a dead notification's incident).
pub(super) async fn record_audit_in(
    conn: &mut SqliteConnection,
    pass: &AuditPass,
    change: &Change,
) -> Result<Vec<(Incident, IncidentChange)>> {
    // The incidents this pass concerns: those of its findings' fingerprints, and the open
    // ones (which a check that ran and found nothing may clear).
    let fingerprints: Vec<String> = pass
        .findings
        .iter()
        .map(|f| f.fingerprint.to_string())
        .collect();
    let sql = format!(
        "SELECT {COLUMNS} FROM incidents WHERE status = 'open' \
             OR fingerprint IN (SELECT value FROM json_each(?))"
    );
    let rows = sqlx::query(&sql)
        .bind(Value::from(fingerprints).to_string())
        .fetch_all(&mut *conn)
        .await?;
    let mut incidents = rows
        .iter()
        .map(decode_incident)
        .collect::<Result<Vec<_>>>()?;
    let plan = plan_audit(&incidents, &pass.findings, &pass.checked);
    let now = change.at;
    let mut changed = Vec::new();
    for finding in &plan.open {
        let id = take_incident_id(&mut *conn).await?;
        let (incident, occurrence) = Incident::open(id, finding, now);
        save_incident(&mut *conn, &incident).await?;
        insert_occurrence(&mut *conn, &occurrence).await?;
        incident_event(
            &mut *conn,
            &incident,
            IncidentChange::Opened,
            json!({}),
            change,
        )
        .await?;
        changed.push((incident, IncidentChange::Opened));
    }
    for (id, finding) in &plan.observe {
        let Some(incident) = incidents.iter_mut().find(|i| i.id == *id) else {
            continue;
        };
        let (what, occurrence) =
            incident
                .observe(finding, now)
                .map_err(|source| StoreError::Incident {
                    id: incident.id,
                    source,
                })?;
        save_incident(&mut *conn, incident).await?;
        insert_occurrence(&mut *conn, &occurrence).await?;
        incident_event(&mut *conn, incident, what, json!({}), change).await?;
        changed.push((incident.clone(), what));
    }
    for id in &plan.clear {
        let Some(incident) = incidents.iter_mut().find(|i| i.id == *id) else {
            continue;
        };
        let auto = pass.auto_resolve.for_check(incident.fingerprint.check());
        if let Some(what) = incident.clear(now, auto) {
            save_incident(&mut *conn, incident).await?;
            let extra = json!({ "resolution": { "by": "cleared" } });
            incident_event(&mut *conn, incident, what, extra, change).await?;
            changed.push((incident.clone(), what));
        }
    }
    Ok(changed)
}

#[async_trait]
impl IncidentStore for SqliteStore {
    async fn record_audit(
        &self,
        pass: &AuditPass,
        change: &Change,
    ) -> Result<Vec<(Incident, IncidentChange)>> {
        let mut tx = self.write_tx().await?;
        let changed = record_audit_in(&mut tx, pass, change).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(format!(
            "SELECT {COLUMNS} FROM incidents WHERE 1 = 1"
        ));
        if !filter.all {
            query.push(" AND status = 'open'");
        }
        if let Some(severity) = filter.severity {
            query.push(" AND severity = ").push_bind(severity.as_str());
        }
        query
            .push(" ORDER BY opened_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(filter.limit.max(1)));
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(decode_incident).collect()
    }

    async fn incident(
        &self,
        id: IncidentId,
        occurrences: u32,
    ) -> Result<(Incident, Vec<Occurrence>)> {
        let mut tx = self.read_tx().await?;
        let incident = load_incident(&mut tx, id).await?;
        let rows = sqlx::query(
            "SELECT incident, number, at, detail, evidence FROM incident_occurrences \
             WHERE incident = ? ORDER BY number DESC LIMIT ?",
        )
        .bind(id.get())
        .bind(i64::from(occurrences))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut list = rows
            .iter()
            .map(decode_occurrence)
            .collect::<Result<Vec<_>>>()?;
        list.reverse();
        Ok((incident, list))
    }

    async fn resolve_incident(
        &self,
        id: IncidentId,
        reason: &str,
        change: &Change,
    ) -> Result<Incident> {
        let mut tx = self.write_tx().await?;
        let mut incident = load_incident(&mut tx, id).await?;
        let what = incident
            .resolve(change.actor.clone(), reason, change.at)
            .map_err(|source| StoreError::Incident { id, source })?;
        save_incident(&mut tx, &incident).await?;
        let extra = json!({ "resolution": { "by": "operator", "reason": reason.trim() } });
        incident_event(&mut tx, &incident, what, extra, change).await?;
        tx.commit().await?;
        Ok(incident)
    }
}
