//! Evidence and the gate in SQLite: observations recorded with one event each, and the gate
//! decided by `mission_core::gate` on the records, authors and reviews read in the deciding
//! transaction.

use super::SqliteStore;
use super::events::append_event;
use super::review::{authors, round_reviews};
use super::runs::fenced_run;
use super::tickets::{apply_transition, load_ticket};
use crate::error::corrupt;
use crate::{
    Change, EvidenceStore, Fence, GateContext, GateOutcome, GateRequest, Observation,
    RecordEvidence, Result, StoreError,
};
use async_trait::async_trait;
use mission_core::transition::Via;
use mission_core::{
    Actor, EventKind, Evidence, EvidenceId, EvidenceRecord, GateInput, State, TicketId, Timestamp,
    TransitionError, Verification, deciding_records, gate,
};
use serde_json::json;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

const COLUMNS: &str =
    "id, ticket, evidence, recorded_at, recorded_by, status, verified_at, failure";

fn decode(row: &SqliteRow) -> Result<EvidenceRecord> {
    let ticket: String = row.try_get("ticket")?;
    let evidence: String = row.try_get("evidence")?;
    let status: String = row.try_get("status")?;
    let at = Timestamp::from_millis(row.try_get("verified_at")?);
    let verification = match (
        status.as_str(),
        row.try_get::<Option<String>, _>("failure")?,
    ) {
        ("verified", None) => Verification::Verified { at },
        ("failed", Some(reason)) => Verification::Failed { at, reason },
        _ => return Err(corrupt("verification", &status)),
    };
    Ok(EvidenceRecord {
        id: EvidenceId::new(row.try_get("id")?),
        ticket: TicketId::parse(&ticket).map_err(|_| corrupt("ticket id", &ticket))?,
        evidence: serde_json::from_str(&evidence).map_err(|_| corrupt("evidence", &evidence))?,
        recorded_at: Timestamp::from_millis(row.try_get("recorded_at")?),
        recorded_by: Actor::new(row.try_get::<String, _>("recorded_by")?),
        verification,
    })
}

async fn load_evidence(
    conn: &mut SqliteConnection,
    ticket: &TicketId,
) -> Result<Vec<EvidenceRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM evidence WHERE ticket = ? ORDER BY id");
    let rows = sqlx::query(&sql)
        .bind(ticket.to_string())
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(decode).collect()
}

fn verification_data(verification: &Verification) -> serde_json::Value {
    json!({
        "status": verification.status(),
        "verified_at": verification.at(),
        "failure": verification.failure(),
    })
}

/// Inserts one observation (`evidence.recorded`) in the caller's transaction.
async fn insert(
    conn: &mut SqliteConnection,
    ticket: &TicketId,
    observation: &Observation,
    change: &Change,
) -> Result<EvidenceRecord> {
    let evidence = &observation.evidence;
    evidence.check()?;
    let verification = &observation.verification;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO evidence (ticket, kind, subject, evidence, recorded_at, recorded_by, status, \
         verified_at, failure) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(ticket.to_string())
    .bind(evidence.kind().as_str())
    .bind(evidence.subject())
    .bind(serde_json::to_string(evidence).expect("evidence serializes"))
    .bind(change.at.as_millis())
    .bind(change.actor.as_str())
    .bind(verification.status())
    .bind(verification.at().as_millis())
    .bind(verification.failure())
    .fetch_one(&mut *conn)
    .await?;
    let mut data = verification_data(verification);
    data["evidence"] = json!(id);
    data["kind"] = json!(evidence.kind());
    data["subject"] = json!(evidence.subject());
    data["summary"] = json!(evidence.summary());
    append_event(
        conn,
        EventKind::EvidenceRecorded,
        Some(ticket),
        change,
        &data,
    )
    .await?;
    Ok(EvidenceRecord {
        id: EvidenceId::new(id),
        ticket: ticket.clone(),
        evidence: evidence.clone(),
        recorded_at: change.at,
        recorded_by: change.actor.clone(),
        verification: verification.clone(),
    })
}

/// Stores a fresh verification of one of the ticket's records (`evidence.verified` or
/// `evidence.failed`) in the caller's transaction. With `only_changes`, a record whose status
/// holds is left as it is; returns whether the record was written.
async fn reverify(
    conn: &mut SqliteConnection,
    ticket: &TicketId,
    id: EvidenceId,
    verification: &Verification,
    change: &Change,
    only_changes: bool,
) -> Result<bool> {
    // One statement in the common case: the record updated (unless unchanged and only changes
    // are asked for) and its evidence returned.
    let updated: Option<String> = sqlx::query_scalar(
        "UPDATE evidence SET status = ?, verified_at = ?, failure = ? \
         WHERE id = ? AND ticket = ? AND (? = 0 OR status <> ?) RETURNING evidence",
    )
    .bind(verification.status())
    .bind(verification.at().as_millis())
    .bind(verification.failure())
    .bind(id.get())
    .bind(ticket.to_string())
    .bind(only_changes)
    .bind(verification.status())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(evidence) = updated else {
        let owned: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM evidence WHERE id = ? AND ticket = ?")
                .bind(id.get())
                .bind(ticket.to_string())
                .fetch_optional(&mut *conn)
                .await?;
        if owned.is_some() && only_changes {
            return Ok(false);
        }
        return Err(StoreError::backend(format!(
            "evidence {id} is not a record of {ticket}"
        )));
    };
    let evidence: Evidence = serde_json::from_str(&evidence)
        .map_err(|_| StoreError::Corrupt(format!("invalid evidence {evidence:?}")))?;
    let mut data = verification_data(verification);
    data["evidence"] = json!(id);
    data["kind"] = json!(evidence.kind());
    data["subject"] = json!(evidence.subject());
    let kind = if verification.is_verified() {
        EventKind::EvidenceVerified
    } else {
        EventKind::EvidenceFailed
    };
    append_event(conn, kind, Some(ticket), change, &data).await?;
    Ok(true)
}

#[async_trait]
impl EvidenceStore for SqliteStore {
    async fn record_evidence(
        &self,
        request: &RecordEvidence,
        change: &Change,
    ) -> Result<Vec<EvidenceRecord>> {
        let mut tx = self.write_tx().await?;
        match request.fence {
            Fence::LiveRun { run, attempt } => {
                let (run, _) = fenced_run(&mut tx, run, attempt).await?;
                if run.ticket != request.ticket {
                    return Err(StoreError::Fenced {
                        run: run.id,
                        attempt,
                    });
                }
            }
            Fence::Attempt(attempt) => {
                let ticket = load_ticket(&mut tx, &request.ticket).await?;
                if ticket.current_attempt() != attempt {
                    return Err(StoreError::StaleReview {
                        ticket: ticket.id,
                        attempt,
                    });
                }
            }
        }
        let mut records = Vec::with_capacity(request.observations.len());
        for observation in &request.observations {
            records.push(insert(&mut tx, &request.ticket, observation, change).await?);
        }
        tx.commit().await?;
        Ok(records)
    }

    async fn evidence_of(&self, ticket: &TicketId) -> Result<Vec<EvidenceRecord>> {
        let mut conn = self.pool.acquire().await?;
        load_evidence(&mut conn, ticket).await
    }

    async fn gate_context(&self, ticket: &TicketId) -> Result<GateContext> {
        let mut tx = self.read_tx().await?;
        let loaded = load_ticket(&mut tx, ticket).await?;
        let evidence = load_evidence(&mut tx, ticket).await?;
        let authors = authors(&mut tx, ticket).await?;
        let reviews = round_reviews(&mut tx, ticket, loaded.current_attempt()).await?;
        tx.commit().await?;
        Ok(GateContext {
            ticket: loaded,
            evidence,
            authors,
            reviews,
        })
    }

    async fn decide_gate(&self, request: &GateRequest<'_>, change: &Change) -> Result<GateOutcome> {
        let mut tx = self.write_tx().await?;
        let ticket = load_ticket(&mut tx, &request.ticket).await?;
        if ticket.state != State::Review {
            return Err(StoreError::Transition {
                id: ticket.id.clone(),
                source: TransitionError {
                    from: ticket.state,
                    to: State::Done,
                    via: Via::Gate,
                },
            });
        }
        let mut recorded = Vec::with_capacity(request.new.len());
        for observation in &request.new {
            recorded.push(insert(&mut tx, &ticket.id, observation, change).await?);
        }
        for (id, verification) in &request.reverified {
            reverify(&mut tx, &ticket.id, *id, verification, change, false).await?;
        }
        let evidence = load_evidence(&mut tx, &ticket.id).await?;
        let authors = authors(&mut tx, &ticket.id).await?;
        let reviews = round_reviews(&mut tx, &ticket.id, ticket.current_attempt()).await?;
        let mode = request
            .review
            .mode_for(&ticket.labels, ticket.assignee.as_ref());
        let branch = format!("mission/{}", ticket.id);
        let decision = gate(&GateInput {
            ticket: &ticket.id,
            policy: &ticket.evidence_policy,
            branch: &branch,
            evidence: &evidence,
            verified_since: request.verified_since,
            review: mode,
            authors: &authors,
            reviews: &reviews,
        });
        let ticket = if decision.is_open() && request.close {
            let deciding: Vec<EvidenceId> =
                deciding_records(&ticket.id, &ticket.evidence_policy, &evidence)
                    .iter()
                    .map(|r| r.id)
                    .collect();
            let data = json!({ "evidence": deciding, "review": mode });
            apply_transition(
                &mut tx,
                ticket,
                State::Done,
                Via::Gate,
                data,
                change,
                |_| {},
            )
            .await?
        } else {
            ticket
        };
        tx.commit().await?;
        Ok(GateOutcome {
            decision,
            ticket,
            review: mode,
            recorded,
        })
    }

    async fn reverify_evidence(
        &self,
        ticket: &TicketId,
        checks: &[(EvidenceId, Verification)],
        change: &Change,
    ) -> Result<u32> {
        let mut tx = self.write_tx().await?;
        let mut changed = 0;
        for (id, verification) in checks {
            if reverify(&mut tx, ticket, *id, verification, change, true).await? {
                changed += 1;
            }
        }
        tx.commit().await?;
        Ok(changed)
    }
}
