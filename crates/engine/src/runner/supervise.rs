//! Watching a started run to its end: its output, its exit, the periodic check (heartbeat,
//! cancellation, stall, timeout) and server shutdown — then its end, classified.

use super::log::{Line, LineReader, Log};
use super::prepare::Prepared;
use super::{Runner, Stop, classify};
use crate::process;
use crate::workspace;
use mission_agents::{AgentEvent, OutputParser, RunSummary};
use mission_core::usage::OnExhaust;
use mission_core::{FailureClass, Run, State, Timestamp};
use mission_store::{RunEnd, StoreError};
use std::process::ExitStatus;
use std::time::{Duration, Instant};
use tokio::process::Child;
use tokio::sync::watch;

/// The result of the periodic check.
enum Check {
    Continue,
    Stop(Stop),
    /// The run ended by its own report (it asked or submitted); the process should exit now.
    Reported,
}

/// Whether `limit` has passed from `since` to `now` (a clock that went back passes nothing).
fn reached(since: Timestamp, now: Timestamp, limit: Duration) -> bool {
    let limit = i64::try_from(limit.as_millis()).unwrap_or(i64::MAX);
    now.as_millis().saturating_sub(since.as_millis()) >= limit
}

/// The state of one run while it is watched: what the supervision loop changes as its events
/// (output lines, the exit, ticks, shutdown) arrive.
struct Supervision<'a> {
    runner: &'a Runner,
    run: &'a Run,
    /// The process group (its leader's pid).
    pid: i64,
    log: Log,
    parser: Box<dyn OutputParser>,
    summary: RunSummary,
    /// When the process started, on the runner's clock.
    started: Timestamp,
    /// The last output line or progress report, on the runner's clock.
    last_activity: Timestamp,
    /// The last progress report the heartbeat saw.
    last_progress_at: Option<Timestamp>,
    /// Why the runner stopped the process, if it did.
    stop: Option<Stop>,
    /// The leader's exit, once seen.
    status: Option<std::io::Result<ExitStatus>>,
    out_open: bool,
    err_open: bool,
    session_recorded: bool,
    /// When the run was seen ended by its own report. The grace it then gets to exit is real
    /// time, as are the grace periods of termination; the stall and run timeouts are measured
    /// on the runner's clock.
    reported_at: Option<Instant>,
    /// After the leader exits, its output is drained until then at the latest: a process that
    /// left the group may hold the pipes open forever.
    drain_until: Option<tokio::time::Instant>,
    /// The ticket's labels, read at the first budget check (which budgets cover the run).
    labels: Option<Vec<String>>,
}

impl Runner {
    /// Watches the started process of `run` to its end and returns that end.
    pub(super) async fn watch(
        &self,
        run: &Run,
        prepared: Prepared,
        mut child: Child,
        pid: i64,
        mut shutdown: watch::Receiver<bool>,
    ) -> RunEnd {
        let mut stdout = LineReader::new(child.stdout.take().expect("piped"));
        let mut stderr = LineReader::new(child.stderr.take().expect("piped"));
        // Often enough to notice a report or a cancellation soon; the lease allows three misses.
        let mut ticker = tokio::time::interval(
            (self.settings.dispatch.lease / 3)
                .clamp(Duration::from_millis(50), Duration::from_secs(2)),
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut state = Supervision::new(self, run, pid, prepared.log, prepared.runtime);
        while state.running() {
            tokio::select! {
                line = stdout.next(), if state.out_open => state.on_stdout_line(line).await,
                line = stderr.next(), if state.err_open => state.on_stderr_line(line).await,
                exit = child.wait(), if state.status.is_none() => state.on_exit(exit),
                _ = tokio::time::sleep_until(state.drain_until.unwrap_or_else(tokio::time::Instant::now)), if state.drain_until.is_some() => {
                    state.on_drain_deadline();
                }
                _ = ticker.tick(), if state.watching() => state.on_tick().await,
                changed = shutdown.changed(), if state.watching() => {
                    if changed.is_err() || *shutdown.borrow() {
                        state.on_shutdown().await;
                    }
                }
            }
        }
        state.finish(&prepared.workspace).await
    }
}

impl<'a> Supervision<'a> {
    fn new(
        runner: &'a Runner,
        run: &'a Run,
        pid: i64,
        log: Log,
        runtime: mission_core::config::RuntimeKind,
    ) -> Self {
        let now = runner.clock.now();
        Supervision {
            runner,
            run,
            pid,
            log,
            parser: mission_agents::parser(runtime),
            summary: RunSummary::default(),
            started: now,
            last_activity: now,
            last_progress_at: None,
            stop: None,
            status: None,
            out_open: true,
            err_open: true,
            session_recorded: false,
            reported_at: None,
            drain_until: None,
            labels: None,
        }
    }

    /// Until the leader has exited and its output is read (or given up on).
    fn running(&self) -> bool {
        self.status.is_none() || self.out_open || self.err_open
    }

    /// While the leader runs and the runner has not stopped it: the ticks and shutdown matter.
    fn watching(&self) -> bool {
        self.status.is_none() && self.stop.is_none()
    }

    async fn on_stdout_line(&mut self, line: Option<Line>) {
        let Some(line) = line else {
            self.out_open = false;
            return;
        };
        self.last_activity = self.runner.clock.now();
        self.log.write(&line.bytes).await;
        self.log.note_dropped(line.dropped).await;
        for event in self.parser.line(&line.bytes) {
            self.summary.apply(&event);
            if let AgentEvent::Warning { message } = &event {
                tracing::info!(ticket.id = %self.run.ticket, run.id = %self.run.id, %message, "a warning from the agent's output");
                let note = format!("[mission: warning: {message}]");
                self.log.write(note.as_bytes()).await;
            }
            if let AgentEvent::Session { id } = &event
                && self.summary.session_id.as_ref() != Some(id)
            {
                tracing::warn!(ticket.id = %self.run.ticket, run.id = %self.run.id, "ignoring a session id that is malformed or not the run's first");
            }
            if let Some(id) = &self.summary.session_id
                && !self.session_recorded
            {
                self.session_recorded = true;
                let _ = self
                    .runner
                    .store
                    .run_session(self.run.id, self.run.attempt, id)
                    .await;
            }
        }
    }

    async fn on_stderr_line(&mut self, line: Option<Line>) {
        let Some(line) = line else {
            self.err_open = false;
            return;
        };
        self.last_activity = self.runner.clock.now();
        self.log.write_prefixed(b"stderr| ", &line.bytes).await;
        self.log.note_dropped(line.dropped).await;
    }

    fn on_exit(&mut self, exit: std::io::Result<ExitStatus>) {
        self.status = Some(exit);
        // Whatever the leader left behind in its group goes with it.
        process::kill_leftovers(self.pid);
        self.drain_until =
            Some(tokio::time::Instant::now() + self.runner.settings.dispatch.kill_grace);
    }

    fn on_drain_deadline(&mut self) {
        if self.out_open || self.err_open {
            tracing::warn!(ticket.id = %self.run.ticket, run.id = %self.run.id, "output still open after the process exited; no longer reading it");
        }
        self.out_open = false;
        self.err_open = false;
    }

    async fn on_tick(&mut self) {
        let grace = self.runner.settings.dispatch.kill_grace;
        if let Some(at) = self.reported_at {
            // It reported its end; give it the grace period to exit on its own.
            if at.elapsed() >= grace {
                process::terminate_group(self.pid, grace).await;
            }
            return;
        }
        match self.check().await {
            Check::Continue => {}
            Check::Reported => self.reported_at = Some(Instant::now()),
            Check::Stop(reason) => {
                tracing::warn!(ticket.id = %self.run.ticket, run.id = %self.run.id, class = %reason.class, detail = %reason.detail, "stopping the run");
                self.stop = Some(reason);
                process::terminate_group(self.pid, grace).await;
            }
        }
    }

    async fn on_shutdown(&mut self) {
        self.stop = Some(Stop {
            class: FailureClass::Orphaned,
            detail: "the server shut down".to_owned(),
        });
        process::terminate_group(self.pid, self.runner.settings.dispatch.kill_grace).await;
    }

    /// The periodic check: heartbeat (lease, cancellation), stall, timeout.
    async fn check(&mut self) -> Check {
        let (runner, run) = (self.runner, self.run);
        let dispatch = &runner.settings.dispatch;
        let now = runner.clock.now();
        match runner
            .store
            .heartbeat(run.id, run.attempt, now, dispatch.lease)
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
                if beat.progress_at.is_some() && beat.progress_at != self.last_progress_at {
                    self.last_progress_at = beat.progress_at;
                    self.last_activity = now;
                }
            }
            Err(StoreError::Fenced { .. }) => {
                let ended_by_report = matches!(
                    runner.store.run(run.id).await,
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
        if let Some(stop) = self.budget_stop(now).await {
            return Check::Stop(stop);
        }
        if reached(self.last_activity, now, dispatch.stall_timeout) {
            return Check::Stop(Stop {
                class: FailureClass::Stalled,
                detail: format!(
                    "no output and no progress for {}s",
                    dispatch.stall_timeout.as_secs_f64()
                ),
            });
        }
        if reached(self.started, now, dispatch.run_timeout) {
            return Check::Stop(Stop {
                class: FailureClass::Timeout,
                detail: format!("ran longer than {}s", dispatch.run_timeout.as_secs_f64()),
            });
        }
        Check::Continue
    }

    /// A budget that covers this run, says `on_exhaust = "stop"` and is spent
    /// (`Budget::stops_runs`): the run is stopped, uncharged. Checked only when some budget says
    /// so; the holds are read through the runner's cache (one version read while nothing
    /// changed). When they cannot be read, the run goes on: the dispatcher, which fails closed,
    /// starts nothing new meanwhile.
    async fn budget_stop(&mut self, now: Timestamp) -> Option<Stop> {
        let (runner, run) = (self.runner, self.run);
        let workforce = &runner.settings.workforce;
        if !workforce
            .budgets()
            .iter()
            .any(|b| b.on_exhaust == OnExhaust::Stop)
        {
            return None;
        }
        if self.labels.is_none() {
            match runner.store.ticket(&run.ticket).await {
                Ok(ticket) => self.labels = Some(ticket.labels),
                Err(error) => {
                    tracing::warn!(ticket.id = %run.ticket, %error, "the ticket's labels could not be read for the budget check");
                    return None;
                }
            }
        }
        let read = async {
            let version = runner.store.holds_version().await?;
            crate::holds::gather_with(
                runner.store.as_ref(),
                workforce,
                now,
                Some((&runner.holds_cache, version)),
            )
            .await
        };
        let view = match read.await {
            Ok(view) => view,
            Err(error) => {
                tracing::warn!(run.id = %run.id, %error, "the budgets could not be read for the budget check");
                return None;
            }
        };
        let labels = self.labels.as_deref().unwrap_or_default();
        view.standings
            .iter()
            .filter(|s| {
                s.budget
                    .scope
                    .covers(run.worker.as_str(), &run.pool, labels)
            })
            .find_map(|s| s.budget.stops_runs(&s.usage))
            .map(|detail| Stop {
                class: FailureClass::BudgetStopped,
                detail,
            })
    }

    /// The end of the run: whatever is left of it killed (also outside its group), the log
    /// flushed, the workspace's HEAD, the exit classified.
    async fn finish(mut self, workspace: &workspace::Workspace) -> RunEnd {
        process::kill_run_processes(self.run.id, self.runner.settings.config_file.clone()).await;
        self.log.finish().await;
        let head_after = match &workspace.repo {
            Some(_) => workspace::head(&workspace.path).await,
            None => None,
        };
        let status = self.status.expect("the loop ends after the exit");
        let (exit_code, signal) = match status {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt;
                (status.code().map(i64::from), status.signal())
            }
            Err(_) => (None, None),
        };
        let (failure, detail) = classify(self.stop, exit_code, signal, &self.summary);
        let now = self.runner.clock.now();
        let limit_reset = match failure {
            Some(FailureClass::RateLimited) => {
                self.summary.limit_reset.as_ref().map(|r| r.resolve(now))
            }
            _ => None,
        };
        RunEnd {
            failure,
            detail,
            exit_code,
            head_after,
            session_id: self.summary.session_id.clone(),
            input_tokens: i64::try_from(self.summary.input_tokens)
                .ok()
                .filter(|n| *n > 0),
            output_tokens: i64::try_from(self.summary.output_tokens)
                .ok()
                .filter(|n| *n > 0),
            cached_tokens: i64::try_from(self.summary.cached_input_tokens)
                .ok()
                .filter(|n| *n > 0),
            cost_usd: self.summary.cost_usd,
            limit_reset,
        }
    }
}
