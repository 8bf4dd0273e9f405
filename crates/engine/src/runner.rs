//! The runner: supervises one run from workspace to recorded end.
//!
//! The worker's runtime is spawned in the ticket's workspace as the leader of a new process
//! group, with an allow-listed environment plus the run's token and identity. The ticket text
//! reaches it through a file (and, for the shell runtime, standard input) — never through argv or
//! a shell. Output goes to a capped log file and through the runtime's parser. A heartbeat renews
//! the lease (and learns of cancellation); silence past the stall timeout, the run timeout, a
//! cancellation, a lost lease or server shutdown terminate the whole group (TERM, grace, KILL).
//! What is left of the group after the leader exits is killed. The end is classified and
//! recorded through the store, which requeues with backoff or fails the ticket.

use crate::clock::Clock;
use crate::process;
use crate::settings::Settings;
use crate::workspace::{self, Workspaces};
use mission_agents::{AgentEvent, LaunchSpec, Resume, RunSummary, Stdin};
use mission_core::config::RuntimeKind;
use mission_core::{Actor, Attempt, FailureClass, Lane, Run, RunId, State, Ticket, TicketId};
use mission_store::prelude::*;
use mission_store::{Change, RunEnd, RunStart, StoreError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::sync::watch;

/// Environment variables every run gets from the server's environment, when set.
const BASE_ENV: &[&str] = &[
    "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TERM",
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
}

/// Why the runner stopped the process itself.
#[derive(Clone, Debug)]
struct Stop {
    class: FailureClass,
    detail: String,
}

/// The result of the periodic check.
enum Check {
    Continue,
    Stop(Stop),
    /// The run ended by its own report (it asked or submitted); the process should exit now.
    Reported,
}

impl Runner {
    pub fn new(store: Arc<dyn Store>, settings: Arc<Settings>, clock: Arc<dyn Clock>) -> Self {
        let workspaces = Workspaces::new(&settings.workspaces_dir, &settings.instance_dir);
        Runner {
            store,
            settings,
            clock,
            workspaces,
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
        let end = match self.supervise(&run, &token, shutdown).await {
            Ok(end) => end,
            Err(end) => end,
        };
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

    /// Everything up to the end record. `Err` carries an end that needs no process (it could not
    /// be started).
    async fn supervise(
        &self,
        run: &Run,
        token: &str,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<RunEnd, RunEnd> {
        let failed = |class, detail: String| RunEnd {
            failure: Some(class),
            detail: Some(detail),
            ..RunEnd::default()
        };
        let ticket =
            self.store.ticket(&run.ticket).await.map_err(|e| {
                failed(FailureClass::AgentError, format!("reading the ticket: {e}"))
            })?;
        let worker = self
            .settings
            .workforce
            .worker(&run.worker)
            .cloned()
            .ok_or_else(|| {
                failed(
                    FailureClass::RuntimeMissing,
                    format!("worker {} is no longer configured", run.worker),
                )
            })?;
        let workspace = self
            .workspaces
            .prepare(&run.ticket, ticket.repo.as_deref())
            .await
            .map_err(|e| failed(FailureClass::AgentError, format!("workspace: {e}")))?;
        let run_dir = self
            .settings
            .runs_dir
            .join(run.ticket.to_string())
            .join(run.attempt.to_string());
        std::fs::create_dir_all(&run_dir).map_err(|e| {
            failed(
                FailureClass::AgentError,
                format!("{}: {e}", run_dir.display()),
            )
        })?;
        let ticket_file = run_dir.join("ticket.md");
        std::fs::write(&ticket_file, ticket_text(&ticket)).map_err(|e| {
            failed(
                FailureClass::AgentError,
                format!("{}: {e}", ticket_file.display()),
            )
        })?;

        let answer_file = run_dir.join("answer.md");
        let resume_context = if run.lane == Lane::NeedsInput {
            let context = self.store.resume_context(&run.ticket).await.map_err(|e| {
                failed(
                    FailureClass::AgentError,
                    format!("reading the answer to resume with: {e}"),
                )
            })?;
            if let Some(context) = &context {
                let text = format!(
                    "Question: {}\n\nAnswer: {}\n",
                    context.question, context.answer
                );
                std::fs::write(&answer_file, &text).map_err(|e| {
                    failed(
                        FailureClass::AgentError,
                        format!("{}: {e}", answer_file.display()),
                    )
                })?;
                // An agent whose session cannot be resumed starts afresh: its ticket text then
                // carries the question and the answer.
                if context.session_id.is_none() && worker.runtime != RuntimeKind::Shell {
                    let mut with_answer = ticket_text(&ticket);
                    with_answer.extend_from_slice(b"\n\n---\n");
                    with_answer.extend_from_slice(text.as_bytes());
                    std::fs::write(&ticket_file, with_answer).map_err(|e| {
                        failed(
                            FailureClass::AgentError,
                            format!("{}: {e}", ticket_file.display()),
                        )
                    })?;
                }
            }
            context
        } else {
            None
        };
        let session = resume_context.as_ref().and_then(|c| c.session_id.clone());
        let spec = LaunchSpec {
            runtime: worker.runtime,
            command: &worker.command,
            args: &worker.args,
            model: worker.model.as_deref(),
            ticket_file: &ticket_file,
            resume: match (&resume_context, &session) {
                (Some(_), Some(session_id)) => Some(Resume {
                    session_id,
                    answer_file: &answer_file,
                }),
                (Some(_), None) if worker.runtime == RuntimeKind::Shell => Some(Resume {
                    session_id: "",
                    answer_file: &answer_file,
                }),
                _ => None,
            },
        };
        let command = mission_agents::command(&spec);
        let program = self.resolve_program(&command.program);

        let log_path = run_dir.join("output.log");
        let mut log = Log::create(&log_path, self.settings.dispatch.log_cap_bytes)
            .await
            .map_err(|e| {
                failed(
                    FailureClass::AgentError,
                    format!("{}: {e}", log_path.display()),
                )
            })?;

        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&command.args)
            .current_dir(&workspace.path)
            .env_clear()
            .envs(self.environment(run, token, &ticket_file, &run_dir))
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        match &command.stdin {
            Stdin::Null => {
                cmd.stdin(Stdio::null());
            }
            Stdin::File(path) => {
                let file = std::fs::File::open(path).map_err(|e| {
                    failed(FailureClass::AgentError, format!("{}: {e}", path.display()))
                })?;
                cmd.stdin(file);
            }
        }
        let head_before = match &workspace.repo {
            Some(_) => workspace::head(&workspace.path).await,
            None => None,
        };
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                return Err(failed(
                    FailureClass::RuntimeMissing,
                    format!("cannot start {}: {e}", program.display()),
                ));
            }
            Err(e) => {
                return Err(failed(
                    FailureClass::AgentError,
                    format!("cannot start {}: {e}", program.display()),
                ));
            }
        };
        let pid = i64::from(child.id().unwrap_or_default());
        let start = RunStart {
            pid: Some(pid),
            workspace: Some(workspace.path.to_string_lossy().into_owned()),
            head_before,
            log_path: Some(log_path.to_string_lossy().into_owned()),
        };
        if let Err(error) = self.store.run_started(run.id, run.attempt, &start).await {
            tracing::error!(ticket.id = %run.ticket, run.id = %run.id, %error, "recording the start failed; stopping the run");
            process::terminate_group(pid, self.settings.dispatch.kill_grace).await;
            let _ = child.wait().await;
            return Err(failed(
                FailureClass::Orphaned,
                format!("recording the start failed: {error}"),
            ));
        }

        let mut stdout = LineReader::new(child.stdout.take().expect("piped"));
        let mut stderr = LineReader::new(child.stderr.take().expect("piped"));
        let mut parser = mission_agents::parser(worker.runtime);
        let mut summary = RunSummary::default();
        let dispatch = &self.settings.dispatch;
        // Often enough to notice a report or a cancellation soon; the lease allows three misses.
        let mut ticker = tokio::time::interval(
            (dispatch.lease / 3).clamp(Duration::from_millis(50), Duration::from_secs(2)),
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let started = Instant::now();
        let mut last_activity = Instant::now();
        let mut last_progress_at = None;
        let mut stop: Option<Stop> = None;
        let mut status = None;
        let (mut out_open, mut err_open) = (true, true);
        let mut session_recorded = false;
        let mut reported_at: Option<Instant> = None;
        // After the leader exits, its output is drained for at most the grace period: a process
        // that left the group may hold the pipes open forever.
        let mut drain_until: Option<tokio::time::Instant> = None;

        while status.is_none() || out_open || err_open {
            tokio::select! {
                line = stdout.next(), if out_open => match line {
                    Some(line) => {
                        last_activity = Instant::now();
                        log.write(&line).await;
                        for event in parser.line(&line) {
                            summary.apply(&event);
                            if let AgentEvent::Session { id } = &event
                                && !session_recorded
                            {
                                session_recorded = true;
                                let _ = self.store.run_session(run.id, run.attempt, id).await;
                            }
                        }
                    }
                    None => out_open = false,
                },
                line = stderr.next(), if err_open => match line {
                    Some(line) => {
                        last_activity = Instant::now();
                        log.write_prefixed(b"stderr| ", &line).await;
                    }
                    None => err_open = false,
                },
                exit = child.wait(), if status.is_none() => {
                    status = Some(exit);
                    // Whatever the leader left behind in its group goes with it.
                    process::kill_leftovers(pid);
                    drain_until = Some(tokio::time::Instant::now() + dispatch.kill_grace);
                }
                _ = tokio::time::sleep_until(drain_until.unwrap_or_else(tokio::time::Instant::now)), if drain_until.is_some() => {
                    if out_open || err_open {
                        tracing::warn!(ticket.id = %run.ticket, run.id = %run.id, "output still open after the process exited; no longer reading it");
                    }
                    out_open = false;
                    err_open = false;
                }
                _ = ticker.tick(), if status.is_none() && stop.is_none() => {
                    if let Some(at) = reported_at {
                        // It reported its end; give it the grace period to exit on its own.
                        if at.elapsed() >= dispatch.kill_grace {
                            process::terminate_group(pid, dispatch.kill_grace).await;
                        }
                        continue;
                    }
                    match self.check(run, started, &mut last_activity, &mut last_progress_at).await {
                        Check::Continue => {}
                        Check::Reported => reported_at = Some(Instant::now()),
                        Check::Stop(reason) => {
                            tracing::warn!(ticket.id = %run.ticket, run.id = %run.id, class = %reason.class, detail = %reason.detail, "stopping the run");
                            stop = Some(reason);
                            process::terminate_group(pid, dispatch.kill_grace).await;
                        }
                    }
                }
                changed = shutdown.changed(), if status.is_none() && stop.is_none() => {
                    if changed.is_err() || *shutdown.borrow() {
                        stop = Some(Stop { class: FailureClass::Orphaned, detail: "the server shut down".to_owned() });
                        process::terminate_group(pid, dispatch.kill_grace).await;
                    }
                }
            }
        }
        log.finish().await;
        let head_after = match &workspace.repo {
            Some(_) => workspace::head(&workspace.path).await,
            None => None,
        };
        let status = status.expect("loop ends after exit");
        let (exit_code, signal) = match status {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt;
                (status.code().map(i64::from), status.signal())
            }
            Err(_) => (None, None),
        };
        let (failure, detail) = classify(stop, exit_code, signal, &summary);
        Ok(RunEnd {
            failure,
            detail,
            exit_code,
            head_after,
            session_id: summary.session_id.clone(),
            input_tokens: i64::try_from(summary.input_tokens).ok().filter(|n| *n > 0),
            output_tokens: i64::try_from(summary.output_tokens).ok().filter(|n| *n > 0),
            cost_usd: summary.cost_usd,
        })
    }

    /// The periodic check: heartbeat (lease, cancellation), stall, timeout.
    async fn check(
        &self,
        run: &Run,
        started: Instant,
        last_activity: &mut Instant,
        last_progress_at: &mut Option<mission_core::Timestamp>,
    ) -> Check {
        let dispatch = &self.settings.dispatch;
        match self
            .store
            .heartbeat(run.id, run.attempt, self.clock.now(), dispatch.lease)
            .await
        {
            Ok(beat) => {
                if beat.ticket_state != State::Running {
                    return Check::Stop(Stop {
                        class: FailureClass::Cancelled,
                        detail: format!(
                            "the ticket was moved to {} while running",
                            beat.ticket_state
                        ),
                    });
                }
                if beat.progress_at.is_some() && beat.progress_at != *last_progress_at {
                    *last_progress_at = beat.progress_at;
                    *last_activity = Instant::now();
                }
            }
            Err(StoreError::Fenced { .. }) => {
                let ended_by_report = matches!(
                    self.store.run(run.id).await,
                    Ok(stored) if stored.failure_class.is_none() && stored.ended_at.is_some()
                );
                if ended_by_report {
                    return Check::Reported;
                }
                return Check::Stop(Stop {
                    class: FailureClass::Orphaned,
                    detail: "the run lost its lease to recovery".to_owned(),
                });
            }
            Err(error) => {
                tracing::warn!(ticket.id = %run.ticket, run.id = %run.id, %error, "heartbeat failed");
            }
        }
        if last_activity.elapsed() >= dispatch.stall_timeout {
            return Check::Stop(Stop {
                class: FailureClass::Stalled,
                detail: format!(
                    "no output and no progress for {}s",
                    dispatch.stall_timeout.as_secs_f64()
                ),
            });
        }
        if started.elapsed() >= dispatch.run_timeout {
            return Check::Stop(Stop {
                class: FailureClass::Timeout,
                detail: format!("ran longer than {}s", dispatch.run_timeout.as_secs_f64()),
            });
        }
        Check::Continue
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

    fn environment(
        &self,
        run: &Run,
        token: &str,
        ticket_file: &Path,
        run_dir: &Path,
    ) -> Vec<(String, String)> {
        let mut env = base_environment(&self.settings);
        let author = format!("{}@mission.local", run.worker);
        env.extend([
            ("MISSION_RUN_TOKEN".to_owned(), token.to_owned()),
            ("MISSION_RUN".to_owned(), run.id.to_string()),
            ("MISSION_TICKET".to_owned(), run.ticket.to_string()),
            ("MISSION_ATTEMPT".to_owned(), run.attempt.to_string()),
            (
                "MISSION_TICKET_FILE".to_owned(),
                ticket_file.to_string_lossy().into_owned(),
            ),
            (
                "MISSION_RUN_DIR".to_owned(),
                run_dir.to_string_lossy().into_owned(),
            ),
            ("GIT_AUTHOR_NAME".to_owned(), run.worker.to_string()),
            ("GIT_AUTHOR_EMAIL".to_owned(), author.clone()),
            ("GIT_COMMITTER_NAME".to_owned(), run.worker.to_string()),
            ("GIT_COMMITTER_EMAIL".to_owned(), author),
        ]);
        env
    }
}

/// The environment every child process gets: the allow-list (built in and `dispatch.env_allow`)
/// from this process's environment, `PATH` with the `mission` binary's folder first, and
/// `MISSION_CONFIG` naming the instance.
pub fn base_environment(settings: &Settings) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = BASE_ENV
        .iter()
        .map(|s| s.to_string())
        .chain(settings.dispatch.env_allow.iter().cloned())
        .filter_map(|name| std::env::var(&name).ok().map(|value| (name, value)))
        .collect();
    let bin_dir = settings
        .mission_bin
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = match std::env::var("PATH") {
        Ok(path) if !path.is_empty() => format!("{bin_dir}:{path}"),
        _ => format!("{bin_dir}:/usr/local/bin:/usr/bin:/bin"),
    };
    env.push(("PATH".to_owned(), path));
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

/// Reads lines (bytes, not necessarily UTF-8) from a pipe.
struct LineReader<R> {
    reader: BufReader<R>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(inner: R) -> Self {
        LineReader {
            reader: BufReader::new(inner),
        }
    }

    async fn next(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                Some(line)
            }
        }
    }
}

/// A run's log file, which stops growing at its cap.
struct Log {
    file: tokio::fs::File,
    written: u64,
    cap: u64,
    truncated: bool,
}

impl Log {
    async fn create(path: &Path, cap: u64) -> std::io::Result<Log> {
        let file = tokio::fs::File::create(path).await?;
        Ok(Log {
            file,
            written: 0,
            cap,
            truncated: false,
        })
    }

    async fn write(&mut self, line: &[u8]) {
        self.write_prefixed(b"", line).await;
    }

    async fn write_prefixed(&mut self, prefix: &[u8], line: &[u8]) {
        if self.truncated {
            return;
        }
        let size = (prefix.len() + line.len() + 1) as u64;
        if self.written + size > self.cap {
            if !self.truncated {
                self.truncated = true;
                let _ = self
                    .file
                    .write_all(b"[mission: log truncated at its size cap]\n")
                    .await;
            }
            return;
        }
        self.written += size;
        let _ = self.file.write_all(prefix).await;
        let _ = self.file.write_all(line).await;
        let _ = self.file.write_all(b"\n").await;
    }

    async fn finish(&mut self) {
        let _ = self.file.flush().await;
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
