//! The health verdict's I/O: gathering `HealthFacts` (the store's one-snapshot read, the task
//! files, the configuration, and the runnability policy asked about each waiting ticket),
//! assessing them with the core's `assess`, and recording a change of verdict. `mission status`
//! (through `App::status`), the server's heartbeat loop and the operator audit all use this.

use crate::settings::Settings;
use crate::tasks::TaskSet;
use mission_core::health::{HealthFacts, HealthReport, ReasonCode, TaskFacts, Waiting, assess};
use mission_core::policy::{Capacity, PolicyContext, runnability};
use mission_core::task::TaskKind;
use mission_core::{Actor, Timestamp};
use mission_store::{Change, HealthQuery, HealthSnapshot, ServerHeartbeat, Store, StoreError};
use serde::Serialize;
use std::time::Duration;

/// Most waiting tickets the verdict reads (oldest first): one is enough to report starvation.
const WAITING_READ: u32 = 50;

/// How often a server records its heartbeat: every reconcile interval, at least this far apart
/// (a server beating every 100 ms would be called dead after a 300 ms hiccup).
pub const MIN_BEAT: Duration = Duration::from_secs(1);

/// The heartbeat interval of a server with these settings.
pub fn beat_interval(settings: &Settings) -> Duration {
    settings.dispatch.reconcile_interval.max(MIN_BEAT)
}

/// Whether a server is alive, and its newest heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerLiveness {
    pub alive: bool,
    pub node: Option<String>,
    pub last_heartbeat: Option<Timestamp>,
}

/// One assessment: the facts it read, the report, and what it says about the server.
#[derive(Clone, Debug)]
pub struct Assessment {
    pub at: Timestamp,
    pub facts: HealthFacts,
    pub report: HealthReport,
    pub server: ServerLiveness,
}

/// Gathers the facts and assesses them at `now`. `tasks` are the task files as loaded now.
pub async fn assess_now(
    store: &dyn Store,
    settings: &Settings,
    tasks: &TaskSet,
    now: Timestamp,
) -> Result<Assessment, StoreError> {
    let facts = gather(store, settings, tasks, now).await?;
    let report = assess(&facts, now, &settings.health);
    let newest = facts.servers.iter().max_by_key(|s| s.last_beat);
    let server = ServerLiveness {
        alive: !report.codes().contains(&ReasonCode::ServerDown),
        node: newest.map(|s| s.node.clone()),
        last_heartbeat: newest.map(|s| s.last_beat),
    };
    Ok(Assessment {
        at: now,
        facts,
        report,
        server,
    })
}

/// Records the assessment's verdict when it changed (`health.changed`, once per change).
pub async fn record(
    store: &dyn Store,
    assessment: &Assessment,
    actor: Actor,
) -> Result<Option<mission_core::health::HealthChange>, StoreError> {
    store
        .record_verdict(&assessment.report, &Change::new(actor, assessment.at))
        .await
}

/// The facts of one snapshot, plus what only the engine knows.
pub async fn gather(
    store: &dyn Store,
    settings: &Settings,
    tasks: &TaskSet,
    now: Timestamp,
) -> Result<HealthFacts, StoreError> {
    let names: Vec<String> = tasks.specs.keys().cloned().collect();
    let snapshot = store
        .health_snapshot(&HealthQuery {
            now,
            workforce: &settings.workforce,
            tasks: &names,
            runs_per_task: settings.health.churn_runs.max(1),
            waiting_limit: WAITING_READ,
        })
        .await?;
    let holds = crate::holds::gather(store, &settings.workforce, now).await?;
    Ok(facts(snapshot, &holds, settings, tasks, now))
}

/// Turns a snapshot into the verdict's facts: the policy decides which waiting tickets may run.
pub fn facts(
    snapshot: HealthSnapshot,
    holds: &crate::holds::HoldsView,
    settings: &Settings,
    tasks: &TaskSet,
    now: Timestamp,
) -> HealthFacts {
    let capacity = match &snapshot.capacity_unknown {
        Some(unknown) => Capacity::Unknown(&unknown.error),
        None => Capacity::Counted(&snapshot.active),
    };
    let context = PolicyContext {
        workforce: &settings.workforce,
        capacity,
        holds: &holds.holds,
        now,
    };
    let runnable_waiting = snapshot
        .waiting
        .iter()
        .filter(|w| runnability(&w.ticket, &w.dependencies, context).is_runnable())
        .map(|w| Waiting {
            ticket: w.ticket.id.clone(),
            since: w.since,
        })
        .collect();
    let task_facts = snapshot
        .task_runs
        .into_iter()
        .filter_map(|(name, recent)| {
            let spec = tasks.specs.get(&name)?;
            Some(TaskFacts {
                name: spec.name.clone(),
                kind: spec.kind,
                recent,
            })
        })
        .collect();
    let inbox = snapshot.inbox.unwrap_or_default();
    HealthFacts {
        servers: snapshot.servers,
        dispatcher_last_pass: snapshot.dispatcher_last_pass,
        reconcile_interval: settings.dispatch.reconcile_interval,
        capacity_unknown: snapshot.capacity_unknown,
        runnable_waiting,
        tickets_in_triage: snapshot.tickets_in_triage,
        live_runs: snapshot.live_runs,
        tasks: task_facts,
        broken_task_files: tasks.errors.clone(),
        config_problems: config_problems(settings, tasks),
        sandbox_off: sandbox_off(settings),
        open_incidents: snapshot.open_incidents,
        unsettled_inbox: inbox.unsettled,
        failed_inbox: inbox.failed,
        invalid_evidence: snapshot.invalid_evidence.unwrap_or_default(),
        parked_workers: holds
            .holds
            .parks
            .values()
            .filter(|p| p.until > now && settings.workforce.worker(&p.worker).is_some())
            .map(|p| mission_core::health::ParkedWorker {
                worker: p.worker.clone(),
                since: p.since,
                until: p.until,
            })
            .collect(),
        open_breakers: holds
            .holds
            .breakers
            .iter()
            .filter(|(name, _)| settings.workforce.worker(name).is_some())
            .filter(|_| settings.workforce.breaker().failures > 0)
            .filter_map(|(name, b)| {
                Some(mission_core::health::OpenBreaker {
                    worker: name.clone(),
                    failures: b.failures,
                    opened_at: b.opened_at?,
                })
            })
            .collect(),
        open_task_breakers: holds
            .task_breakers
            .iter()
            .filter(|_| settings.workforce.breaker().failures > 0)
            .filter_map(|(task, b)| {
                Some(mission_core::health::OpenTaskBreaker {
                    task: tasks.specs.get(task)?.name.clone(),
                    failures: b.failures,
                    opened_at: b.opened_at?,
                })
            })
            .collect(),
        exhausted_budgets: holds
            .holds
            .exhausted
            .iter()
            .map(|e| mission_core::health::ExhaustedBudget {
                budget: e.budget.clone(),
                detail: e.detail.clone(),
                resets: e.resets_shown.clone(),
            })
            .collect(),
    }
}

/// Why runs of enabled workers are not sandboxed, if they are not: the kernel has no Landlock,
/// or a worker opted out (`sandbox = "off"`). `None` when every enabled worker's runs are.
fn sandbox_off(settings: &Settings) -> Option<String> {
    use crate::sandbox::Landlock;
    use mission_core::config::SandboxMode;
    let enabled: Vec<_> = settings
        .workforce
        .workers()
        .filter(|(_, w)| w.enabled)
        .collect();
    if enabled.is_empty() {
        return None;
    }
    if let Landlock::Unavailable { reason } = &settings.sandbox.landlock {
        return Some(format!("the kernel offers no Landlock ({reason})"));
    }
    if settings.sandbox.launcher.is_none() {
        return Some("runs start without the sandboxing launcher".to_owned());
    }
    let off: Vec<String> = enabled
        .iter()
        .filter(|(_, w)| w.sandbox == SandboxMode::Off)
        .map(|(name, _)| name.to_string())
        .collect();
    (!off.is_empty()).then(|| format!("sandbox = \"off\" for {}", off.join(", ")))
}

/// Problems of the configuration the server runs despite.
fn config_problems(settings: &Settings, tasks: &TaskSet) -> Vec<String> {
    let mut problems = Vec::new();
    if !settings.workforce.workers().any(|(_, w)| w.enabled) {
        problems.push("no worker is enabled: no ticket can ever run".to_owned());
    }
    for spec in tasks.specs.values() {
        if spec.kind == TaskKind::Agent
            && let Some(worker) = &spec.worker
            && settings.workforce.worker(worker).is_none()
        {
            problems.push(format!(
                "task {} names worker {worker}, which is not configured",
                spec.name
            ));
        }
    }
    problems
}

/// What the server records at each beat.
pub fn heartbeat(
    settings: &Settings,
    started_at: Timestamp,
    now: Timestamp,
    dispatcher_pass_at: Option<Timestamp>,
) -> ServerHeartbeat {
    ServerHeartbeat {
        node: settings.node.clone(),
        pid: std::process::id(),
        started_at,
        at: now,
        interval: beat_interval(settings),
        dispatcher_pass_at,
    }
}
