//! Evidence and the gate: a run attaching evidence (checked by the harness, never taken on its
//! word), and `done` — the gate asked now.

use super::{App, AppError, AppResult};
use crate::evidence as observe;
use crate::gatekeeper::{Closing, Gatekeeper, place};
use mission_core::evidence::{MediaType, WorkspacePath};
use mission_core::{Actor, CommitSha, EvidenceRecord, Run, TicketId};
use mission_store::{Fence, Observation, RecordEvidence, StoreError};

/// What a run asks the harness to record.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "subject", rename_all = "snake_case")]
pub enum EvidenceRequest {
    /// A commit (default: the workspace's HEAD), checked against the ticket's branch.
    Commit(Option<String>),
    /// A configured test command, run by the harness now.
    Test(String),
    /// A configured route, requested by the harness now.
    Route(String),
    /// A file of the workspace, hashed by the harness now.
    Artifact {
        path: String,
        media_type: Option<String>,
    },
}

impl App {
    /// Records evidence for a run's ticket, observed and verified by the harness. The record is
    /// kept whether it verified or not; the caller tells the two apart.
    pub async fn run_evidence(
        &self,
        run: &Run,
        request: EvidenceRequest,
    ) -> AppResult<EvidenceRecord> {
        let ticket = self.store.ticket(&run.ticket).await?;
        let place = place(&self.settings, &ticket);
        let workspace = &place.workspace;
        let evidence = match request {
            EvidenceRequest::Commit(sha) => {
                let sha = match sha {
                    Some(text) => CommitSha::parse(text.trim())
                        .map_err(|e| AppError::invalid(e.to_string()).on_field("sha"))?,
                    None => crate::git::head(workspace).await.map_err(|e| {
                        AppError::invalid(format!("the workspace has no commit: {e}"))
                    })?,
                };
                observe::commit(sha)
            }
            EvidenceRequest::Test(name) => {
                let config = &self.settings.gate.evidence;
                let test = config
                    .test(&name, ticket.repo.as_deref(), &ticket.labels)
                    .ok_or_else(|| {
                        AppError::invalid(format!(
                            "no test command {name:?} is configured for {} ({})",
                            ticket.id,
                            configured(config.tests.iter().map(|t| t.name.as_str()))
                        ))
                        .on_field("name")
                    })?;
                let at_commit = crate::git::head(workspace).await.ok();
                mission_core::Evidence::Test(
                    observe::run_test(&self.settings, &ticket, test, workspace, at_commit).await,
                )
            }
            EvidenceRequest::Route(name) => {
                let config = &self.settings.gate.evidence;
                let route = config
                    .route(&name, ticket.repo.as_deref(), &ticket.labels)
                    .ok_or_else(|| {
                        AppError::invalid(format!(
                            "no route {name:?} is configured for {} ({})",
                            ticket.id,
                            configured(config.routes.iter().map(|r| r.name.as_str()))
                        ))
                        .on_field("name")
                    })?;
                mission_core::Evidence::Route(observe::request_route(route).await)
            }
            EvidenceRequest::Artifact { path, media_type } => {
                let path = WorkspacePath::parse(&path)
                    .map_err(|e| AppError::invalid(e.to_string()).on_field("path"))?;
                let media_type = media_type
                    .as_deref()
                    .map(MediaType::parse)
                    .transpose()
                    .map_err(|e| AppError::invalid(e.to_string()).on_field("media_type"))?;
                let artifact = observe::observe_artifact(workspace, &path, media_type)
                    .await
                    .map_err(|e| AppError::invalid(e).on_field("path"))?;
                mission_core::Evidence::Artifact(artifact)
            }
        };
        let head = crate::git::head(workspace).await.ok();
        let verification = observe::verify(
            &evidence,
            place.repo.as_deref(),
            &place.branch,
            head.as_ref(),
            workspace,
            self.clock.now(),
        )
        .await;
        let request = RecordEvidence {
            ticket: ticket.id.clone(),
            fence: Fence::LiveRun {
                run: run.id,
                attempt: run.attempt,
            },
            observations: vec![Observation {
                evidence,
                verification,
            }],
        };
        let actor = Actor::new(format!("run:{}#{}", run.ticket, run.attempt));
        let mut records = self
            .store
            .record_evidence(&request, &self.change(&actor))
            .await
            .map_err(|e| match e {
                StoreError::Fenced { .. } => AppError::refused(format!(
                    "refused: attempt {} of {} is no longer the current attempt, or has ended",
                    run.attempt, run.ticket
                )),
                other => other.into(),
            })?;
        records
            .pop()
            .ok_or_else(|| AppError::internal("the store recorded nothing"))
    }

    /// `done`: asks the gate now and closes the ticket when it opens. A refusal is an error of
    /// kind `refused` naming every gap, one per `; `.
    pub async fn close_ticket(&self, id: &TicketId, actor: &Actor) -> AppResult<Closing> {
        let closing = self.gatekeeper().close(id, actor).await?;
        self.waker.wake();
        if !closing.done {
            return Err(AppError::refused(format!(
                "{} stays in {}: {}",
                closing.ticket.id,
                closing.ticket.state,
                closing.missing.join("; ")
            )));
        }
        Ok(closing)
    }

    pub(super) fn gatekeeper(&self) -> Gatekeeper {
        Gatekeeper::new(
            self.store.clone(),
            self.settings.clone(),
            self.clock.clone(),
        )
    }
}

fn configured<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        "none is configured".to_owned()
    } else {
        format!("configured: {}", names.join(", "))
    }
}
