//! The operator audit: deterministic checks over durable facts and configured probes, no LLM.
//! Each check that runs names what it found as `Finding`s; the store applies the pass to the
//! incidents on record (`IncidentStore::record_audit`, planned by the core's `plan_audit`): a
//! new condition opens an incident, a known one updates it, a resolved one REOPENS — never
//! suppressed — and an open incident whose check ran and found nothing resolves where its check
//! auto-resolves.
//!
//! The checks over the board read the same facts, through the same thresholds, as the health
//! verdict (`health::assess_now`): the audit turns each reason of those codes into one finding
//! per subject, so that the audit and `mission status` never disagree about a condition.

use crate::health::{self, Assessment};
use crate::process;
use crate::settings::Settings;
use crate::tasks::TaskSet;
use mission_core::audit::{Probe, ProbeKind};
use mission_core::health::ReasonCode;
use mission_core::incident::{AuditTally, CheckName, Finding, IncidentChange, Severity};
use mission_core::task::TaskResult;
use mission_core::{
    Actor, EvidenceKind, Fingerprint, State, TicketId, Timestamp, deciding_records,
};
use mission_store::{AuditPass, CapacityFact, Change, Store, StoreError, TicketFilter};
use serde_json::json;
use std::collections::BTreeSet;
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The check of the capacity fact, and the subject of its one incident.
pub const CAPACITY_CHECK: &str = "capacity_unknown";
const CAPACITY_SUBJECT: &str = "dispatcher";

/// Done tickets whose deciding commits are checked again per pass (a git process each).
const DONE_PER_PASS: u32 = 100;

fn check(name: &str) -> CheckName {
    CheckName::parse(name).expect("a valid check name")
}

fn finding(
    check_name: &str,
    subject: &str,
    severity: Severity,
    detail: String,
    evidence: serde_json::Value,
    ticket: Option<TicketId>,
) -> Option<Finding> {
    // A subject that cannot be a fingerprint (spaces in a task file's path) is made one.
    let subject: String = subject
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .take(mission_core::incident::MAX_SUBJECT_BYTES / 4)
        .collect();
    Some(Finding {
        fingerprint: Fingerprint::new(check(check_name), &subject).ok()?,
        severity,
        detail,
        evidence,
        ticket,
    })
}

/// The finding of a capacity count that failed.
fn capacity_finding(error: &str) -> Finding {
    finding(
        CAPACITY_CHECK,
        CAPACITY_SUBJECT,
        Severity::Warning,
        format!("active runs could not be counted ({error}); nothing is dispatched"),
        json!({ "error": error }),
        None,
    )
    .expect("a valid fingerprint")
}

/// The dispatcher's part of the capacity check: when the capacity fact CHANGES, the incident
/// opens (unknown) or clears (counted; resolved where `capacity_unknown` auto-resolves).
/// Called only on a change, so a failing count does not write an occurrence per pass.
pub async fn capacity_changed(
    store: &dyn Store,
    settings: &Settings,
    fact: &CapacityFact,
    change: &Change,
) -> Result<(), StoreError> {
    let findings = match fact {
        CapacityFact::Unknown { error } => vec![capacity_finding(error)],
        CapacityFact::Counted => vec![],
    };
    let pass = AuditPass {
        findings,
        checked: [check(CAPACITY_CHECK)].into(),
        auto_resolve: settings.audit.auto_resolve.clone(),
    };
    store.record_audit(&pass, change).await?;
    Ok(())
}

/// The runner's part of the breaker check: a run's end opened its worker's circuit breaker —
/// an incident at once (the operator audit observes it while the breaker stays open).
pub async fn breaker_opened(
    store: &dyn Store,
    settings: &Settings,
    worker: &mission_core::Name,
    failures: u32,
    change: &Change,
) -> Result<(), StoreError> {
    let findings = finding(
        "breaker_open",
        worker.as_str(),
        Severity::Warning,
        format!(
            "worker {worker}'s circuit breaker opened after {failures} failed runs in a row; a probe run may start after {}",
            humantime::format_duration(settings.workforce.breaker().cooldown)
        ),
        json!({ "worker": worker, "failures": failures }),
        None,
    )
    .into_iter()
    .collect();
    let pass = AuditPass {
        findings,
        checked: BTreeSet::new(),
        auto_resolve: settings.audit.auto_resolve.clone(),
    };
    store.record_audit(&pass, change).await?;
    Ok(())
}

/// The finding of a task whose circuit breaker is open.
fn task_breaker_finding(task: &str, failures: u32, opened_at: Timestamp) -> Option<Finding> {
    finding(
        "breaker_open",
        &mission_store::task_subject(task),
        Severity::Warning,
        format!(
            "task {task}'s circuit breaker is open after {failures} failed or degraded runs in a row: its scheduled firings are skipped until a probe after the cool-down (dispatch.breaker_cooldown) succeeds"
        ),
        json!({ "task": task, "failures": failures, "opened_at": opened_at }),
        None,
    )
}

/// The scheduler's part of the breaker check: a task run's end opened the task's circuit
/// breaker — an incident at once (the operator audit observes it while the breaker stays open).
pub async fn task_breaker_opened(
    store: &dyn Store,
    settings: &Settings,
    task: &str,
    failures: u32,
    change: &Change,
) -> Result<(), StoreError> {
    let pass = AuditPass {
        findings: task_breaker_finding(task, failures, change.at)
            .into_iter()
            .collect(),
        checked: BTreeSet::new(),
        auto_resolve: settings.audit.auto_resolve.clone(),
    };
    store.record_audit(&pass, change).await?;
    Ok(())
}

/// What one audit pass did.
#[derive(Clone, Debug)]
pub struct AuditReport {
    pub result: TaskResult,
    pub changes: Vec<(mission_core::IncidentId, IncidentChange)>,
}

/// One audit pass at `now`: every check, then the incidents changed in one transaction.
pub async fn run(
    store: &dyn Store,
    settings: &Settings,
    tasks: &TaskSet,
    now: Timestamp,
    actor: Actor,
) -> Result<AuditReport, StoreError> {
    // Done tickets' evidence is checked again first, so that the facts assessed below (and
    // `mission status`) carry what it found.
    reverify_done(store, settings, &Change::new(actor.clone(), now)).await?;
    let assessment = health::assess_now(store, settings, tasks, now).await?;
    let mut findings = board_findings(&assessment);
    findings.extend(crash_loops(store).await?);
    let mut checked: BTreeSet<CheckName> = [
        CAPACITY_CHECK,
        "stuck_run",
        "starvation",
        "task_churn",
        "task_file_broken",
        "evidence_invalid",
        "inbox_aging",
        "crash_loop",
        "breaker_open",
    ]
    .into_iter()
    .map(check)
    .collect();

    for (state, limit) in &settings.audit.state_limits {
        let before = Timestamp::from_millis(
            now.as_millis() - i64::try_from(limit.as_millis()).unwrap_or(i64::MAX),
        );
        let stale = store.stale_tickets(*state, before, 100).await?;
        for ticket in stale {
            findings.extend(finding(
                "state_limit",
                &ticket.id.to_string(),
                Severity::Warning,
                format!(
                    "{} has been {state} longer than {}",
                    ticket.id,
                    humantime::format_duration(*limit)
                ),
                json!({ "state": state, "limit_ms": limit.as_millis() as u64 }),
                Some(ticket.id.clone()),
            ));
        }
    }
    if !settings.audit.state_limits.is_empty() {
        checked.insert(check("state_limit"));
    }

    for probe in &settings.audit.probes {
        let outcome = run_probe(probe, settings).await;
        if let Err(detail) = outcome {
            findings.extend(finding(
                probe.check().as_str(),
                &probe.name,
                probe.severity,
                format!("probe {}: {detail}", probe.name),
                json!({ "probe": probe.name, "detail": detail }),
                None,
            ));
        }
        checked.insert(probe.check());
    }

    let pass = AuditPass {
        findings,
        checked: checked.clone(),
        auto_resolve: settings.audit.auto_resolve.clone(),
    };
    let changed = store.record_audit(&pass, &Change::new(actor, now)).await?;
    let mut tally = AuditTally {
        checks: checked.len() as u32,
        ..AuditTally::default()
    };
    for (_, what) in &changed {
        tally.add(*what);
    }
    let result = tally.result();
    Ok(AuditReport {
        result,
        changes: changed.iter().map(|(i, c)| (i.id, *c)).collect(),
    })
}

/// Checks the deciding commit records of up to [`DONE_PER_PASS`] done tickets again (exists,
/// reachable from the ticket's branch) and stores what changed. Tests are not run again and
/// artifacts are gone with the worktree: a commit is what a done ticket keeps.
async fn reverify_done(
    store: &dyn Store,
    settings: &Settings,
    change: &Change,
) -> Result<(), StoreError> {
    let done = store
        .list_tickets(&TicketFilter {
            state: Some(State::Done),
            limit: Some(DONE_PER_PASS),
            ..TicketFilter::default()
        })
        .await?;
    for summary in done {
        let ticket = store.ticket(&summary.id).await?;
        let evidence = store.evidence_of(&ticket.id).await?;
        let place = crate::gatekeeper::place(settings, &ticket);
        let mut checks = Vec::new();
        for record in deciding_records(&ticket.id, &ticket.evidence_policy, &evidence) {
            if record.evidence.kind() != EvidenceKind::Commit {
                continue;
            }
            let verification = crate::evidence::verify(
                &record.evidence,
                place.repo.as_deref(),
                &place.branch,
                None,
                &place.workspace,
                change.at,
            )
            .await;
            checks.push((record.id, verification));
        }
        if !checks.is_empty() {
            store.reverify_evidence(&ticket.id, &checks, change).await?;
        }
    }
    Ok(())
}

/// Failed tickets whose last attempt was orphaned: they failed because their runs kept dying
/// with the server (`dispatch.max_orphaned`) — a ticket that may be crashing it.
async fn crash_loops(store: &dyn Store) -> Result<Vec<Finding>, StoreError> {
    let failed = store
        .list_tickets(&TicketFilter {
            state: Some(State::Failed),
            limit: Some(DONE_PER_PASS),
            ..TicketFilter::default()
        })
        .await?;
    let mut findings = Vec::new();
    for ticket in failed {
        let runs = store.runs_of(&ticket.id).await?;
        let orphaned = runs
            .iter()
            .filter(|r| r.failure_class == Some(mission_core::FailureClass::Orphaned))
            .count();
        let last_orphaned = runs
            .iter()
            .max_by_key(|r| r.attempt)
            .is_some_and(|r| r.failure_class == Some(mission_core::FailureClass::Orphaned));
        if last_orphaned {
            findings.extend(finding(
                "crash_loop",
                &ticket.id.to_string(),
                Severity::Critical,
                format!(
                    "{} failed: {orphaned} of its attempts ended with their server's death",
                    ticket.id
                ),
                json!({ "orphaned": orphaned, "attempts": runs.len() }),
                Some(ticket.id.clone()),
            ));
        }
    }
    Ok(findings)
}

/// One finding per subject of each reason the audit turns into incidents.
fn board_findings(assessment: &Assessment) -> Vec<Finding> {
    let facts = &assessment.facts;
    let mut findings = Vec::new();
    if let Some(unknown) = &facts.capacity_unknown {
        findings.push(capacity_finding(&unknown.error));
    }
    for reason in &assessment.report.reasons {
        match reason.code {
            ReasonCode::StuckRun => {
                for run in &reason.ids {
                    let Some(live) = facts.live_runs.iter().find(|r| r.run.to_string() == *run)
                    else {
                        continue;
                    };
                    findings.extend(finding(
                        "stuck_run",
                        &live.ticket.to_string(),
                        Severity::Warning,
                        format!(
                            "run {} of {} has no heartbeat past its lease ({})",
                            live.run, live.ticket, live.lease_expires_at
                        ),
                        json!({ "run": live.run, "heartbeat_at": live.heartbeat_at, "lease_expires_at": live.lease_expires_at }),
                        Some(live.ticket.clone()),
                    ));
                }
            }
            ReasonCode::Starvation => {
                for ticket in &reason.ids {
                    let since = facts
                        .runnable_waiting
                        .iter()
                        .find(|w| w.ticket.to_string() == *ticket)
                        .map(|w| w.since);
                    findings.extend(finding(
                        "starvation",
                        ticket,
                        Severity::Warning,
                        format!(
                            "{ticket} may run and a slot is free, but it waits since {}",
                            since.map(|s| s.to_string()).unwrap_or_default()
                        ),
                        json!({ "since": since }),
                        TicketId::parse(ticket).ok(),
                    ));
                }
            }
            ReasonCode::TaskChurn => {
                for task in &reason.ids {
                    let recent = facts
                        .tasks
                        .iter()
                        .find(|t| t.name.as_str() == task)
                        .and_then(|t| t.recent.first());
                    findings.extend(finding(
                        "task_churn",
                        task,
                        Severity::Warning,
                        format!("task {task} repeats the same non-result while its work waits: {}", reason.detail),
                        json!({ "outcome": recent.map(|r| r.outcome), "reason": recent.map(|r| r.reason.clone()) }),
                        None,
                    ));
                }
            }
            ReasonCode::BreakerOpen => {
                for open in &facts.open_breakers {
                    findings.extend(finding(
                        "breaker_open",
                        open.worker.as_str(),
                        Severity::Warning,
                        format!(
                            "worker {}'s circuit breaker is open after {} failed runs in a row",
                            open.worker, open.failures
                        ),
                        json!({ "worker": open.worker, "failures": open.failures, "opened_at": open.opened_at }),
                        None,
                    ));
                }
            }
            ReasonCode::TaskBreakerOpen => {
                for open in &facts.open_task_breakers {
                    findings.extend(task_breaker_finding(
                        open.task.as_str(),
                        open.failures,
                        open.opened_at,
                    ));
                }
            }
            ReasonCode::EvidenceInvalid => {
                for invalid in &facts.invalid_evidence {
                    findings.extend(finding(
                        "evidence_invalid",
                        &invalid.ticket.to_string(),
                        Severity::Warning,
                        format!("{} is done but {}", invalid.ticket, invalid.reason),
                        json!({ "reason": invalid.reason, "since": invalid.since }),
                        Some(invalid.ticket.clone()),
                    ));
                }
            }
            ReasonCode::InboxAging => {
                for item in &facts.unsettled_inbox {
                    if !reason.ids.contains(&item.id.to_string()) {
                        continue;
                    }
                    findings.extend(finding(
                        "inbox_aging",
                        &item.id.to_string(),
                        Severity::Warning,
                        format!(
                            "inbox item {} ({}{}) waits since {}",
                            item.id,
                            item.kind,
                            item.ticket
                                .as_ref()
                                .map(|t| format!(" about {t}"))
                                .unwrap_or_default(),
                            item.since
                        ),
                        json!({ "item": item.id, "kind": item.kind, "since": item.since }),
                        item.ticket.clone(),
                    ));
                }
            }
            ReasonCode::TaskFileBroken => {
                for error in &facts.broken_task_files {
                    let stem = std::path::Path::new(&error.file)
                        .file_name()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| error.file.clone());
                    findings.extend(finding(
                        "task_file_broken",
                        &stem,
                        Severity::Warning,
                        error.to_string(),
                        json!({ "file": error.file, "line": error.line, "message": error.message }),
                        None,
                    ));
                }
            }
            _ => {}
        }
    }
    findings
}

/// Runs a probe: `Ok` when healthy, else what is wrong.
pub async fn run_probe(probe: &Probe, settings: &Settings) -> Result<(), String> {
    let work = async {
        match &probe.kind {
            ProbeKind::Command {
                program,
                args,
                expect_exit,
            } => command_probe(program, args, *expect_exit, settings).await,
            ProbeKind::Http {
                host,
                port,
                path,
                expect_status,
            } => http_probe(host, *port, path, *expect_status).await,
            ProbeKind::Disk { path, min_free_mib } => {
                disk_probe(&settings.instance_dir.join(path), *min_free_mib).await
            }
            ProbeKind::RepoDirty { path } => repo_probe(&settings.instance_dir.join(path)).await,
        }
    };
    match tokio::time::timeout(probe.timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(probe.timeout)
        )),
    }
}

/// Kills a probe's process group if the probe is dropped (its timeout) before it ended.
struct Group(Option<i64>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            process::signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Runs the program with its arguments — no shell — in the instance folder, in its own process
/// group, like a `command` task.
async fn command_probe(
    program: &str,
    args: &[String],
    expect: i32,
    settings: &Settings,
) -> Result<(), String> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(&settings.instance_dir)
        .env_clear()
        .envs(crate::runner::base_environment(settings))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let pid = i64::from(child.id().unwrap_or_default());
    let mut group = Group(Some(pid));
    let status = child.wait().await.map_err(|e| e.to_string())?;
    process::kill_leftovers(pid);
    group.0 = None;
    match status.code() {
        Some(code) if code == expect => Ok(()),
        Some(code) => Err(format!("{program} exited {code}, expected {expect}")),
        None => Err(format!("{program} was killed by a signal")),
    }
}

/// `GET path` over plain HTTP/1.1; healthy when the status is the expected one.
async fn http_probe(host: &str, port: u16, path: &str, expect: u16) -> Result<(), String> {
    let mut stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: mission-audit\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut chunk = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1."))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("http://{host}:{port}{path} gave no HTTP status line"))?;
    if status == expect {
        Ok(())
    } else {
        Err(format!(
            "http://{host}:{port}{path} answered {status}, expected {expect}"
        ))
    }
}

async fn disk_probe(path: &std::path::Path, min_free_mib: u64) -> Result<(), String> {
    let shown = path.display().to_string();
    let path = path.to_owned();
    let stat = tokio::task::spawn_blocking(move || nix::sys::statvfs::statvfs(&path))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{shown}: {e}"))?;
    let free_mib = stat.blocks_available().saturating_mul(stat.fragment_size()) / (1024 * 1024);
    if free_mib >= min_free_mib {
        Ok(())
    } else {
        Err(format!(
            "{shown} has {free_mib} MiB free, less than {min_free_mib} MiB"
        ))
    }
}

/// A repository with uncommitted changes (or that is not one) is a finding.
async fn repo_probe(path: &std::path::Path) -> Result<(), String> {
    let output = tokio::process::Command::new("git")
        .arg("-C")
        .arg(path)
        .args(["status", "--porcelain", "--untracked-files=normal"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !output.status.success() {
        return Err(format!("{} is not a git repository", path.display()));
    }
    let dirty = String::from_utf8_lossy(&output.stdout).lines().count();
    if dirty == 0 {
        Ok(())
    } else {
        Err(format!(
            "{} has {dirty} uncommitted change(s)",
            path.display()
        ))
    }
}
