//! Closing a ticket through the gate, the one path of `mission ticket done` and of the
//! automatic paths (an approval, auto-review's pass).
//!
//! 1. Observe now what the ticket's evidence policy needs: each required test command is run
//!    again in the workspace, each required route requested again, the deciding commit and
//!    artifact records checked again (a commit that vanished from the branch fails).
//! 2. The store decides in one transaction (`decide_gate`): the fresh observations and
//!    verifications recorded, `mission_core::gate` asked with the reviews read there, the
//!    ticket moved to done when it opens.
//! 3. When the repository merges on done, the merge happens between deciding and closing; a
//!    conflict leaves the ticket in review with an inbox alert.
//! 4. On done the worktree is removed (the branch and its commits stay).

use crate::clock::Clock;
use crate::evidence as observe;
use crate::git::{self, Merged};
use crate::settings::Settings;
use mission_core::proof::{MergeMode, repo_config};
use mission_core::{
    Actor, EvidenceKind, EvidenceRecord, InboxKind, NewInboxItem, State, Ticket, TicketId,
    TransitionError, deciding_records,
};
use mission_store::{Change, GateRequest, InboxFilter, Observation, Store, StoreError};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

/// What a closing did.
#[derive(Clone, Debug, Serialize)]
pub struct Closing {
    pub ticket: Ticket,
    pub done: bool,
    /// What stands between the ticket and done, one line each (`test:unit: last run exited
    /// 1`); empty when it is done.
    pub missing: Vec<String>,
    /// The merge into the base branch, when the repository merges on done.
    pub merged: Option<String>,
    /// What went wrong after done that changes nothing of it (the worktree could not be
    /// removed).
    pub notes: Vec<String>,
    /// How long the observations took that are not the gate's own work: the test commands run
    /// and the routes requested, in milliseconds.
    pub checks_ms: u64,
    /// Where the rest of the time went, in microseconds.
    pub timings: Timings,
}

/// The parts of a closing, in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Timings {
    /// Reading the ticket and checking the commits and artifacts again (git, hashing).
    pub verify_us: u64,
    /// The test commands and route requests.
    pub checks_us: u64,
    /// The deciding write transaction(s).
    pub decide_us: u64,
    /// The merge, when the repository merges on done.
    pub merge_us: u64,
    /// Taking the worktree out of use (its files are deleted afterwards, off this path).
    pub cleanup_us: u64,
}

fn micros(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

#[derive(Clone)]
pub struct Gatekeeper {
    store: Arc<dyn Store>,
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
}

/// Where a ticket's work is: its repository (resolved) and workspace.
pub struct Place {
    pub repo: Option<PathBuf>,
    pub workspace: PathBuf,
    pub branch: String,
}

/// The repository and workspace of `ticket`.
pub fn place(settings: &Settings, ticket: &Ticket) -> Place {
    let repo = ticket.repo.as_deref().map(|repo| {
        let path = std::path::Path::new(repo);
        if path.is_absolute() {
            path.to_owned()
        } else {
            settings.instance_dir.join(path)
        }
    });
    Place {
        repo,
        workspace: settings.workspaces_dir.join(ticket.id.to_string()),
        branch: git::branch_of(&ticket.id),
    }
}

impl Gatekeeper {
    pub fn new(store: Arc<dyn Store>, settings: Arc<Settings>, clock: Arc<dyn Clock>) -> Self {
        Gatekeeper {
            store,
            settings,
            clock,
        }
    }

    /// Asks the gate about `id` now, and closes the ticket when it opens. A ticket not in
    /// review is a transition error; a refusal is an `Ok` with what is missing.
    pub async fn close(&self, id: &TicketId, actor: &Actor) -> Result<Closing, StoreError> {
        let since = self.clock.now();
        let mut timings = Timings::default();
        let started = std::time::Instant::now();
        let context = self.store.gate_context(id).await?;
        let ticket = context.ticket;
        if ticket.state != State::Review {
            return Err(StoreError::Transition {
                id: ticket.id.clone(),
                source: TransitionError {
                    from: ticket.state,
                    to: State::Done,
                    via: mission_core::transition::Via::Gate,
                },
            });
        }
        let place = place(&self.settings, &ticket);
        // The branch's head (for the tests) and the deciding commit and artifact records,
        // checked again: independent, so asked at once (each git call is a process).
        let head = async {
            match &place.repo {
                Some(repo) => git::branch_head(repo, &place.branch).await.ok().flatten(),
                None => None,
            }
        };
        let reverify = async {
            let mut reverified = Vec::new();
            for record in deciding_records(&ticket.id, &ticket.evidence_policy, &context.evidence) {
                if matches!(
                    record.evidence.kind(),
                    EvidenceKind::Commit | EvidenceKind::Artifact
                ) {
                    let verification = observe::verify(
                        &record.evidence,
                        place.repo.as_deref(),
                        &place.branch,
                        None,
                        &place.workspace,
                        self.clock.now(),
                    )
                    .await;
                    reverified.push((record.id, verification));
                }
            }
            reverified
        };
        let (head, reverified) = tokio::join!(head, reverify);
        let workspace_exists = tokio::fs::try_exists(&place.workspace)
            .await
            .unwrap_or(false);
        let mut missing = Vec::new();
        let mut new = Vec::new();
        let mut checks_ms = 0u64;
        timings.verify_us = micros(started);
        // Tests are run and routes requested again.
        for requirement in ticket.evidence_policy.requirements() {
            let kind = requirement.kind();
            if !matches!(kind, EvidenceKind::Test | EvidenceKind::Route) {
                continue;
            }
            let names = match requirement.subject() {
                Some(name) => vec![name.to_owned()],
                None => recorded_subjects(&context.evidence, kind),
            };
            for name in names {
                let started = std::time::Instant::now();
                let observed = self
                    .observe(
                        &ticket,
                        &place,
                        kind,
                        &name,
                        workspace_exists,
                        head.as_ref(),
                    )
                    .await;
                checks_ms += u64::try_from(started.elapsed().as_millis()).unwrap_or(0);
                timings.checks_us += micros(started);
                match observed {
                    Ok(observation) => new.push(observation),
                    Err(why) => missing.push(format!("{kind}:{name}: {why}")),
                }
            }
        }
        let merge = ticket
            .repo
            .as_deref()
            .and_then(|repo| repo_config(&self.settings.gate.repos, repo))
            .filter(|config| config.merge != MergeMode::None)
            .cloned();
        let change = Change::new(actor.clone(), self.clock.now());
        let request = GateRequest {
            ticket: ticket.id.clone(),
            new,
            reverified,
            verified_since: since,
            review: &self.settings.gate.review,
            close: merge.is_none() && missing.is_empty(),
        };
        let deciding = std::time::Instant::now();
        let outcome = self.store.decide_gate(&request, &change).await?;
        timings.decide_us = micros(deciding);
        let mut gaps: Vec<String> = outcome
            .decision
            .missing()
            .iter()
            .map(|m| m.to_string())
            .collect();
        gaps.extend(missing);
        if !gaps.is_empty() {
            return Ok(Closing {
                ticket: outcome.ticket,
                done: false,
                missing: gaps,
                merged: None,
                notes: Vec::new(),
                checks_ms,
                timings,
            });
        }
        let mut merged = None;
        let mut ticket = outcome.ticket;
        if let (Some(config), Some(repo)) = (merge, &place.repo) {
            let merging = std::time::Instant::now();
            let result = self
                .merge(
                    &ticket,
                    repo,
                    &place.branch,
                    config.base.as_deref(),
                    config.merge,
                )
                .await;
            match result {
                Ok(Merged::Merged { base, head }) => {
                    merged = Some(format!(
                        "{} merged into {base} at {}",
                        place.branch,
                        head.short()
                    ));
                }
                Ok(Merged::UpToDate { base }) => {
                    merged = Some(format!("{base} already contains {}", place.branch));
                }
                Ok(Merged::Conflict { base, reason }) => {
                    let gap = format!("merge: {} into {base}: {reason}", place.branch);
                    self.alert(&ticket, &gap, actor).await?;
                    return Ok(Closing {
                        ticket,
                        done: false,
                        missing: vec![gap],
                        merged: None,
                        notes: Vec::new(),
                        checks_ms,
                        timings,
                    });
                }
                Err(error) => {
                    let gap = format!("merge: {error}");
                    self.alert(&ticket, &gap, actor).await?;
                    return Ok(Closing {
                        ticket,
                        done: false,
                        missing: vec![gap],
                        merged: None,
                        notes: Vec::new(),
                        checks_ms,
                        timings,
                    });
                }
            }
            timings.merge_us = micros(merging);
            // Merged: the same fresh evidence closes the ticket now.
            let close = GateRequest {
                ticket: ticket.id.clone(),
                new: Vec::new(),
                reverified: Vec::new(),
                verified_since: since,
                review: &self.settings.gate.review,
                close: true,
            };
            let change = Change::new(actor.clone(), self.clock.now());
            let outcome = self.store.decide_gate(&close, &change).await?;
            ticket = outcome.ticket;
            if !outcome.decision.is_open() {
                let gaps = outcome
                    .decision
                    .missing()
                    .iter()
                    .map(|m| format!("{m} (after the merge)"))
                    .collect();
                return Ok(Closing {
                    ticket,
                    done: false,
                    missing: gaps,
                    merged,
                    notes: Vec::new(),
                    checks_ms,
                    timings,
                });
            }
        }
        let cleaning = std::time::Instant::now();
        let notes = self.remove_workspace(&place).await;
        timings.cleanup_us = micros(cleaning);
        Ok(Closing {
            ticket,
            done: true,
            missing: Vec::new(),
            merged,
            notes,
            checks_ms,
            timings,
        })
    }

    /// A fresh observation of a test or route named `name`, verified now; `Err` says why none
    /// could be made.
    async fn observe(
        &self,
        ticket: &Ticket,
        place: &Place,
        kind: EvidenceKind,
        name: &str,
        workspace_exists: bool,
        head: Option<&mission_core::CommitSha>,
    ) -> Result<Observation, String> {
        let evidence = &self.settings.gate.evidence;
        let repo = ticket.repo.as_deref();
        let observed = match kind {
            EvidenceKind::Test => {
                let test = evidence.test(name, repo, &ticket.labels).ok_or_else(|| {
                    format!("no test command {name:?} is configured for {}", ticket.id)
                })?;
                if !workspace_exists {
                    return Err(format!(
                        "cannot run: the workspace {} is gone",
                        place.workspace.display()
                    ));
                }
                // The worktree has the branch checked out: its head is the workspace's HEAD.
                mission_core::Evidence::Test(
                    observe::run_test(
                        &self.settings,
                        ticket,
                        test,
                        &place.workspace,
                        head.cloned(),
                    )
                    .await,
                )
            }
            _ => {
                let route = evidence
                    .route(name, repo, &ticket.labels)
                    .ok_or_else(|| format!("no route {name:?} is configured for {}", ticket.id))?;
                mission_core::Evidence::Route(observe::request_route(route).await)
            }
        };
        let verification = observe::verify(
            &observed,
            place.repo.as_deref(),
            &place.branch,
            head,
            &place.workspace,
            self.clock.now(),
        )
        .await;
        Ok(Observation {
            evidence: observed,
            verification,
        })
    }

    async fn merge(
        &self,
        ticket: &Ticket,
        repo: &std::path::Path,
        branch: &str,
        base: Option<&str>,
        mode: MergeMode,
    ) -> Result<Merged, git::GitError> {
        let base = git::base_branch(repo, base).await?;
        let message = format!("Merge {branch}: {}", ticket.id);
        git::merge(repo, &base, branch, mode == MergeMode::Ff, &message).await
    }

    /// An alert about the ticket, unless one is already waiting.
    async fn alert(&self, ticket: &Ticket, text: &str, actor: &Actor) -> Result<(), StoreError> {
        let waiting = self
            .store
            .inbox_items(&InboxFilter {
                ticket: Some(ticket.id.clone()),
                ..InboxFilter::default()
            })
            .await?
            .iter()
            .any(|item| {
                item.kind == InboxKind::Alert
                    && !item.status().is_settled()
                    && item.text.contains("merge")
            });
        if waiting {
            return Ok(());
        }
        let text = format!("{}: {text}; it stays in review", ticket.id);
        let item = NewInboxItem::new(
            InboxKind::Alert,
            Some(ticket.id.clone()),
            self.settings.gate.routes.alerts.clone(),
            &text,
        )?;
        self.store
            .create_inbox_item(&item, &Change::new(actor.clone(), self.clock.now()))
            .await?;
        Ok(())
    }

    /// Takes a done ticket's worktree (its branch stays) or plain folder out of use; its files
    /// are deleted in the background ([`crate::workspace::Trash::empty_later`]). What failed is
    /// noted, not fatal.
    async fn remove_workspace(&self, place: &Place) -> Vec<String> {
        if !tokio::fs::try_exists(&place.workspace)
            .await
            .unwrap_or(false)
        {
            return Vec::new();
        }
        let workspace = crate::workspace::Workspace {
            path: place.workspace.clone(),
            repo: place.repo.clone(),
        };
        let retired = crate::workspace::Workspaces::new(
            &self.settings.workspaces_dir,
            &self.settings.instance_dir,
        )
        .retire(&workspace)
        .await
        .map_err(|e| e.to_string());
        match retired {
            Ok(trash) => {
                trash.empty_later();
                Vec::new()
            }
            Err(error) => {
                tracing::warn!(workspace = %place.workspace.display(), %error, "removing a done ticket's workspace failed");
                vec![format!(
                    "the workspace {} was not removed: {error}",
                    place.workspace.display()
                )]
            }
        }
    }
}

/// The subjects (test or route names) of `kind` recorded for a ticket, in order of first record.
fn recorded_subjects(evidence: &[EvidenceRecord], kind: EvidenceKind) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for record in evidence {
        if record.evidence.kind() == kind
            && let Some(subject) = record.evidence.subject()
            && !names.iter().any(|n| n == subject)
        {
            names.push(subject.to_owned());
        }
    }
    names
}

/// After a run: the harness records the workspace's new HEAD as commit evidence of the run's
/// attempt, verified against the ticket's branch. Nothing when the run made no commit.
pub async fn record_run_commit(
    store: &Arc<dyn Store>,
    settings: &Settings,
    clock: &Arc<dyn Clock>,
    run: &mission_core::Run,
    head_before: Option<&str>,
    head_after: Option<&str>,
) -> Result<(), StoreError> {
    let Some(after) = head_after.filter(|after| Some(*after) != head_before) else {
        return Ok(());
    };
    let Ok(sha) = mission_core::CommitSha::parse(after) else {
        return Ok(());
    };
    let ticket = store.ticket(&run.ticket).await?;
    let place = place(settings, &ticket);
    let evidence = observe::commit(sha);
    let verification = observe::verify(
        &evidence,
        place.repo.as_deref(),
        &place.branch,
        None,
        &place.workspace,
        clock.now(),
    )
    .await;
    let request = mission_store::RecordEvidence {
        ticket: run.ticket.clone(),
        fence: mission_store::Fence::Attempt(run.attempt),
        observations: vec![Observation {
            evidence,
            verification,
        }],
    };
    store
        .record_evidence(&request, &Change::new(Actor::new("harness"), clock.now()))
        .await?;
    Ok(())
}
