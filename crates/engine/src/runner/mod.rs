//! The runner: supervises one run from workspace to recorded end.
//!
//! The worker's runtime is spawned in the ticket's workspace as the leader of a new process
//! group, through the launcher that sandboxes it (`crate::sandbox`), with an allow-listed
//! environment plus the worker's own variables and the run's token and identity. The ticket text
//! reaches it through a file (and, for the shell runtime, standard input) — never through argv or
//! a shell; agents read their prompt (`crate::prompt`) on stdin. The run talks back through its
//! callback socket (`crate::callback`), served here while it runs. Output goes to a capped log
//! file and through the runtime's parser. A heartbeat renews the lease (and learns of
//! cancellation); silence past the stall timeout, the run timeout (both measured on the injected
//! clock), a cancellation, a lost lease or server shutdown terminate the whole group (TERM,
//! grace, KILL). What is left of the run after the leader exits — its group, and whatever carries
//! its environment outside the group — is killed. The end is classified and recorded through the
//! store, which requeues with backoff or fails the ticket.
//!
//! - `prepare` — the workspace, the run folder (ticket, answer and prompt files, temp folder,
//!   log, callback socket), the worker's home, the command and the launcher's sandbox spec; then
//!   the process, started through the launcher and recorded.
//! - `supervise` — the state of a watched run and what each event does to it: output lines, the
//!   exit, the periodic check (heartbeat, stall, timeout), shutdown; then the end, classified.
//! - `log` — output lines (capped, cancel-safe) and the capped log file.

mod log;
mod prepare;
mod supervise;

use crate::clock::Clock;
use crate::foreground::Foreground;
use crate::process;
use crate::settings::Settings;
use crate::workspace;
use crate::workspace::Workspaces;
use mission_agents::RunSummary;
use mission_core::config::WorkerConfig;
use mission_core::{Actor, Attempt, FailureClass, Run, RunId, State, Ticket, TicketId};
use mission_store::{Change, RunEnd, Store, StoreError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

/// Environment variables every command task gets from the server's environment, when set.
const BASE_ENV: &[&str] = &[
    "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TERM",
];

/// Environment variables every run gets from the server's environment, when set. (`HOME` and
/// `TMPDIR` are the run's own.)
const RUN_ENV: &[&str] = &[
    "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM",
];

/// How one run ended, as reported to the caller.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub run: RunId,
    pub ticket: TicketId,
    pub attempt: Attempt,
    pub failure_class: Option<FailureClass>,
    pub detail: Option<String>,
    pub exit_code: Option<i64>,
    pub ticket_state: Option<State>,
    /// Whether the end is on record in the store (false: recovery will close the run).
    pub recorded: bool,
}

#[derive(Clone)]
pub struct Runner {
    store: Arc<dyn Store>,
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
    workspaces: Workspaces,
    /// The holds' facts the supervisors last read (for budgets that stop runs in progress).
    holds_cache: Arc<crate::holds::HoldsCache>,
}

/// Why the runner stopped the process itself.
#[derive(Clone, Debug)]
struct Stop {
    class: FailureClass,
    detail: String,
}

impl Runner {
    pub fn new(store: Arc<dyn Store>, settings: Arc<Settings>, clock: Arc<dyn Clock>) -> Self {
        let workspaces = Workspaces::new(&settings.workspaces_dir, &settings.instance_dir);
        Runner {
            store,
            settings,
            clock,
            workspaces,
            holds_cache: Arc::default(),
        }
    }

    fn change(&self, run: &Run) -> Change {
        Change::new(
            Actor::new(format!("runner:{}#{}", run.ticket, run.attempt)),
            self.clock.now(),
        )
    }

    /// Runs `run` to its end. `shutdown` turning true stops it as orphaned (it is requeued).
    pub async fn run(&self, run: Run, token: String, shutdown: watch::Receiver<bool>) -> RunReport {
        self.run_started_as(run, token, shutdown, Foreground::enter())
            .await
    }

    /// `run`, with the foreground work of its start (`starting`, entered when it was claimed)
    /// ending once its process is spawned and known.
    pub async fn run_started_as(
        &self,
        run: Run,
        token: String,
        shutdown: watch::Receiver<bool>,
        starting: Foreground,
    ) -> RunReport {
        let mut report = RunReport {
            run: run.id,
            ticket: run.ticket.clone(),
            attempt: run.attempt,
            failure_class: None,
            detail: None,
            exit_code: None,
            ticket_state: None,
            recorded: false,
        };
        let _supervised = Supervised::register(run.id);
        let end = self.supervise(&run, &token, shutdown, starting).await;
        // The harness's own evidence: the commit the run left at HEAD, before the end is
        // recorded, so that a ticket reaching review has it.
        if end.head_after.is_some() {
            let head_before = match self.store.run(run.id).await {
                Ok(stored) => stored.head_before,
                Err(_) => None,
            };
            if let Err(error) = crate::gatekeeper::record_run_commit(
                &self.store,
                &self.settings,
                &self.clock,
                &run,
                head_before.as_deref(),
                end.head_after.as_deref(),
            )
            .await
            {
                tracing::warn!(ticket.id = %run.ticket, run.id = %run.id, %error, "recording the run's commit as evidence failed");
            }
        }
        report.failure_class = end.failure;
        report.detail = end.detail.clone();
        report.exit_code = end.exit_code;
        match self
            .store
            .end_run(
                run.id,
                run.attempt,
                &end,
                &self.settings.retry(),
                &self.settings.gate.routes,
                &self.change(&run),
            )
            .await
        {
            Ok(ended) => {
                // What the store recorded is the truth: a run that ended by its own report (ask,
                // submit) keeps that outcome whatever happened to the process afterwards.
                report.failure_class = ended.run.failure_class;
                report.detail = ended.run.detail.clone();
                report.ticket_state = Some(ended.ticket_state);
                report.recorded = true;
                if let Some((breaker, true)) = ended.accounting.breaker
                    && let Err(error) = crate::audit::breaker_opened(
                        self.store.as_ref(),
                        &self.settings,
                        &run.worker,
                        breaker.failures,
                        &self.change(&run),
                    )
                    .await
                {
                    tracing::error!(worker = %run.worker, %error, "recording the breaker's incident failed");
                }
                if let Some(park) = &ended.accounting.park {
                    tracing::warn!(worker = %run.worker, until = %park.until, "worker parked by a rate limit");
                }
                tracing::info!(ticket.id = %run.ticket, run.id = %run.id, attempt = %run.attempt,
                    failure = ?end.failure, state = %ended.ticket_state, "run ended");
            }
            Err(StoreError::Fenced { .. }) => {
                // Someone else (recovery) closed it: its end is on record, just not this one.
                report.recorded = true;
                tracing::warn!(ticket.id = %run.ticket, run.id = %run.id, "run was superseded; its end is not recorded");
            }
            Err(error) => {
                tracing::error!(ticket.id = %run.ticket, run.id = %run.id, %error, "recording the end of the run failed; recovery will close it");
            }
        }
        report
    }

    /// Everything up to the end record: prepare, start (serving the run's callbacks), watch;
    /// then the check that the run left the repository's protected branch alone.
    async fn supervise(
        &self,
        run: &Run,
        token: &str,
        shutdown: watch::Receiver<bool>,
        starting: Foreground,
    ) -> RunEnd {
        // Crash points between the claim and a watched process (`FAILPOINTS=NAME=return`
        // aborts the whole process there, as a kill -9 would; a test build only).
        crash_point("run-claimed");
        let mut prepared = match self.prepare(run).await {
            Ok(prepared) => prepared,
            Err(end) => return end,
        };
        crash_point("run-prepared");
        let app = crate::App::new(
            self.store.clone(),
            self.settings.clone(),
            self.clock.clone(),
            Arc::new(crate::wake::SocketWaker::new(&self.settings.wake_socket)),
        );
        let _callbacks = prepared.callbacks.take().map(|listener| {
            crate::callback::serve_while(listener, app, crate::callback::Scope::Run(run.id))
        });
        let (child, pid) = match self.start(run, token, &prepared).await {
            Ok(started) => started,
            Err(end) => return end,
        };
        drop(starting);
        // The pickup: from the claim's commit (the run's start time) to the agent's start.
        crate::stats::PICKUPS.record(self.clock.now().since(run.started_at));
        let _leader = process::register_leader(pid);
        crash_point("run-started");
        let protected = prepared.protected.clone();
        let repo = prepared.workspace.repo.clone();
        let mut end = self.watch(run, prepared, child, pid, shutdown).await;
        if let (Some(repo), Some((branch, before))) = (repo, protected)
            && let Some(moved) = workspace::restore_protected(&repo, &branch, &before).await
        {
            tracing::warn!(ticket.id = %run.ticket, run.id = %run.id, %branch, "the run moved the protected branch; it was restored");
            end.failure = Some(FailureClass::AgentError);
            end.detail = Some(moved);
        }
        end
    }

    /// A relative program path with a slash is relative to the instance folder; a bare name is
    /// looked up on PATH.
    fn resolve_program(&self, program: &str) -> PathBuf {
        let path = Path::new(program);
        if path.is_relative() && program.contains('/') {
            self.settings.instance_dir.join(path)
        } else {
            path.to_owned()
        }
    }

    /// A run's environment (its token is added at start): the built-in allow-list, then the
    /// deprecated global `dispatch.env_allow`, then the worker's own `env_pass` and `env` — one
    /// worker's secrets never reach another worker's runs — then the run's `HOME`, `TMPDIR`,
    /// `PATH` and identity. Nothing else of the server's environment.
    fn environment(
        &self,
        run: &Run,
        worker: &WorkerConfig,
        home: &Path,
        tmp_dir: &Path,
        ticket_file: &Path,
        run_dir: &Path,
    ) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = RUN_ENV
            .iter()
            .map(|s| s.to_string())
            .chain(self.settings.dispatch.env_allow.iter().cloned())
            .chain(worker.env_pass.iter().cloned())
            .filter_map(|name| std::env::var(&name).ok().map(|value| (name, value)))
            .collect();
        for (name, value) in &worker.env {
            env.retain(|(n, _)| n != name);
            env.push((name.clone(), value.expose().to_owned()));
        }
        // What the runner sets itself wins over anything passed through.
        env.retain(|(name, _)| !name.starts_with("MISSION_") && name != "PATH");
        let author = format!("{}@mission.local", run.worker);
        let path = |p: &Path| p.to_string_lossy().into_owned();
        env.extend([
            ("HOME".to_owned(), path(home)),
            ("TMPDIR".to_owned(), path(tmp_dir)),
            ("PATH".to_owned(), run_path(&self.settings)),
            (
                "MISSION_CONFIG".to_owned(),
                path(&self.settings.config_file),
            ),
            ("MISSION_BIN".to_owned(), path(&self.settings.mission_bin)),
            ("MISSION_RUN".to_owned(), run.id.to_string()),
            ("MISSION_TICKET".to_owned(), run.ticket.to_string()),
            ("MISSION_ATTEMPT".to_owned(), run.attempt.to_string()),
            ("MISSION_TICKET_FILE".to_owned(), path(ticket_file)),
            (
                "MISSION_PROMPT_FILE".to_owned(),
                path(&run_dir.join("prompt.md")),
            ),
            ("MISSION_RUN_DIR".to_owned(), path(run_dir)),
            (
                "MISSION_RUN_SOCKET".to_owned(),
                path(&run_dir.join(crate::callback::SOCKET_FILE)),
            ),
            ("GIT_AUTHOR_NAME".to_owned(), run.worker.to_string()),
            ("GIT_AUTHOR_EMAIL".to_owned(), author.clone()),
            ("GIT_COMMITTER_NAME".to_owned(), run.worker.to_string()),
            ("GIT_COMMITTER_EMAIL".to_owned(), author),
        ]);
        if worker.run_as.is_some() {
            // The worktree's repository belongs to the server's user; let the run's user use it.
            env.extend([
                ("GIT_CONFIG_COUNT".to_owned(), "1".to_owned()),
                ("GIT_CONFIG_KEY_0".to_owned(), "safe.directory".to_owned()),
                ("GIT_CONFIG_VALUE_0".to_owned(), "*".to_owned()),
            ]);
        }
        env
    }
}

/// Runs supervised by a runner of this process, while it supervises them: recovery leaves them
/// alone (a lease that lapsed because this busy process renewed it late is not an orphan — its
/// runner is alive, watches the process and records its end).
static SUPERVISED: std::sync::Mutex<Vec<RunId>> = std::sync::Mutex::new(Vec::new());

struct Supervised(RunId);

impl Supervised {
    fn register(run: RunId) -> Supervised {
        if let Ok(mut runs) = SUPERVISED.lock() {
            runs.push(run);
        }
        Supervised(run)
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if let Ok(mut runs) = SUPERVISED.lock() {
            runs.retain(|run| *run != self.0);
        }
    }
}

/// Whether a runner of this process supervises `run` now.
pub fn supervised_here(run: RunId) -> bool {
    SUPERVISED.lock().is_ok_and(|runs| runs.contains(&run))
}

/// A crash point: with `FAILPOINTS=NAME=return` (a build with the `failpoints` feature), the
/// process ends here at once, nothing cleaned up — as a kill -9 would end it.
pub(crate) fn crash_point(name: &str) {
    #[cfg(feature = "failpoints")]
    if fail::eval(name, |_| ()).is_some() {
        eprintln!("mission: crashing at failpoint {name}");
        std::process::abort();
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// `PATH` for runs and tasks: the `mission` binary's folder first, then the server's `PATH`.
fn run_path(settings: &Settings) -> String {
    let bin_dir = settings
        .mission_bin
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    match std::env::var("PATH") {
        Ok(path) if !path.is_empty() => format!("{bin_dir}:{path}"),
        _ => format!("{bin_dir}:/usr/local/bin:/usr/bin:/bin"),
    }
}

/// The environment of command tasks (trusted configuration, not sandboxed): the allow-list (built
/// in and `dispatch.env_allow`) from this process's environment, `PATH` with the `mission`
/// binary's folder first, and `MISSION_CONFIG` naming the instance.
pub fn base_environment(settings: &Settings) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = BASE_ENV
        .iter()
        .map(|s| s.to_string())
        .chain(settings.dispatch.env_allow.iter().cloned())
        .filter_map(|name| std::env::var(&name).ok().map(|value| (name, value)))
        .collect();
    env.push(("PATH".to_owned(), run_path(settings)));
    env.push((
        "MISSION_CONFIG".to_owned(),
        settings.config_file.to_string_lossy().into_owned(),
    ));
    env
}

/// The text handed to the agent: the title, a blank line, the body — byte for byte.
pub fn ticket_text(ticket: &Ticket) -> Vec<u8> {
    let mut text = Vec::with_capacity(ticket.title.len() + ticket.body.len() + 2);
    text.extend_from_slice(ticket.title.as_bytes());
    text.extend_from_slice(b"\n\n");
    text.extend_from_slice(ticket.body.as_bytes());
    text
}

fn classify(
    stop: Option<Stop>,
    exit_code: Option<i64>,
    signal: Option<i32>,
    summary: &RunSummary,
) -> (Option<FailureClass>, Option<String>) {
    if let Some(stop) = stop {
        return (Some(stop.class), Some(stop.detail));
    }
    let reported = summary.result;
    match (exit_code, signal) {
        (Some(0), _) => match reported {
            Some((true, true)) => (
                Some(FailureClass::RateLimited),
                Some("the agent reported a rate limit".to_owned()),
            ),
            Some((true, false)) => (
                Some(FailureClass::AgentError),
                Some("the agent reported an error".to_owned()),
            ),
            _ => (None, None),
        },
        (Some(code), _) => {
            let class = if matches!(reported, Some((_, true))) {
                FailureClass::RateLimited
            } else {
                FailureClass::AgentError
            };
            (Some(class), Some(format!("exit code {code}")))
        }
        (None, Some(signal)) => (
            Some(FailureClass::AgentError),
            Some(format!("killed by signal {signal}")),
        ),
        (None, None) => (
            Some(FailureClass::AgentError),
            Some("the exit status could not be read".to_owned()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let stop = |class| {
            Some(Stop {
                class,
                detail: "d".into(),
            })
        };
        let clean = RunSummary::default();
        let errored = RunSummary {
            result: Some((true, false)),
            ..RunSummary::default()
        };
        let limited = RunSummary {
            result: Some((true, true)),
            ..RunSummary::default()
        };
        // (stopped by the runner, exit code, signal, what the agent reported, expected class)
        type Case<'a> = (
            Option<Stop>,
            Option<i64>,
            Option<i32>,
            &'a RunSummary,
            Option<FailureClass>,
        );
        let cases: Vec<Case> = vec![
            (None, Some(0), None, &clean, None),
            (
                None,
                Some(0),
                None,
                &errored,
                Some(FailureClass::AgentError),
            ),
            (
                None,
                Some(1),
                None,
                &limited,
                Some(FailureClass::RateLimited),
            ),
            (None, Some(3), None, &clean, Some(FailureClass::AgentError)),
            (None, None, Some(11), &clean, Some(FailureClass::AgentError)),
            (
                stop(FailureClass::Stalled),
                None,
                Some(15),
                &clean,
                Some(FailureClass::Stalled),
            ),
            (
                stop(FailureClass::Timeout),
                Some(0),
                None,
                &clean,
                Some(FailureClass::Timeout),
            ),
        ];
        for (stop, code, signal, summary, expect) in cases {
            assert_eq!(
                classify(stop, code, signal, summary).0,
                expect,
                "{code:?} {signal:?}"
            );
        }
    }
}
