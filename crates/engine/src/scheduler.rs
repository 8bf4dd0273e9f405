//! The scheduler: fires each task's slots once, by its schedule, overlap and catch-up policies,
//! and ends every run with exactly one outcome.
//!
//! `tick(now)` fires whatever is due at `now` and `next_deadline()` says when to call it again —
//! step functions, so tests drive the scheduler through virtual time. `run` is the loop the
//! server uses: it sleeps until the next deadline (no polling), wakes early when a task file
//! changes, and reloads the tasks folder then. A manual `mission task run` goes through the same
//! `fire` as a scheduled slot.

use crate::leader::Leadership;
use crate::recovery;
use crate::tasks::{self, TaskContext, TaskSet};
use mission_core::Actor;
use mission_core::Timestamp;
use mission_core::task::{Outcome, Overlap, TaskResult, TaskSpec, Trigger, plan};
use mission_store::{Change, StoreError, TaskRun, TaskRunStart};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};

/// How a firing went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fired {
    /// Started as run `id`.
    Started { run: i64 },
    /// Recorded as skipped (overlap).
    Skipped { reason: String },
    /// The slot had already fired (another scheduler, or before a restart).
    AlreadyFired,
}

#[derive(Clone, Copy, Debug)]
struct TaskState {
    /// The newest slot fired or skipped.
    last: Timestamp,
}

/// A run executing in this process.
struct Running {
    task: String,
    abort: AbortHandle,
}

pub struct Scheduler {
    context: TaskContext,
    tasks: TaskSet,
    state: HashMap<String, TaskState>,
    running: HashMap<i64, Running>,
    executions: JoinSet<(i64, TaskResult)>,
    /// Caught-up slots waiting for the task's previous run to finish, per task.
    queued: HashMap<String, VecDeque<(Timestamp, Trigger)>>,
}

fn trigger_for(spec: &TaskSpec, slot: Timestamp, now: Timestamp) -> Trigger {
    let late = now.as_millis() - spec.fire_time(slot).as_millis();
    if late > mission_core::task::ON_TIME.as_millis() as i64 {
        Trigger::CatchUp
    } else {
        Trigger::Schedule
    }
}

impl Scheduler {
    pub fn new(context: TaskContext) -> Scheduler {
        Scheduler {
            context,
            tasks: TaskSet::default(),
            state: HashMap::new(),
            running: HashMap::new(),
            executions: JoinSet::new(),
            queued: HashMap::new(),
        }
    }

    pub fn tasks(&self) -> &TaskSet {
        &self.tasks
    }

    fn change(&self, task: &str) -> Change {
        Change::new(
            Actor::new(format!("scheduler:{task}")),
            self.context.clock.now(),
        )
    }

    /// Closes runs left open by a scheduler that is gone (crash, kill): they end `failed`.
    pub async fn close_interrupted(&self) -> Result<u32, StoreError> {
        let mut closed = 0;
        for run in self.context.store.open_task_runs(None).await? {
            if recovery::supervisor_dead(
                self.context.store.as_ref(),
                &self.context.settings,
                &run.node,
                self.context.clock.now(),
            )
            .await?
            {
                let result = TaskResult::new(
                    Outcome::Failed,
                    format!("interrupted: its scheduler {} stopped", run.node),
                );
                if self
                    .context
                    .store
                    .finish_task_run(run.id, &result, &self.change(&run.task))
                    .await?
                {
                    closed += 1;
                }
            }
        }
        Ok(closed)
    }

    /// (Re)reads the tasks folder. Known tasks keep their place; new ones start at `now`.
    pub async fn reload(&mut self, now: Timestamp) -> Result<(), StoreError> {
        let loaded = tasks::load(&self.context.settings.tasks_dir).await;
        let previous = std::mem::replace(&mut self.tasks, loaded);
        for error in &self.tasks.errors {
            tracing::error!(%error, "task file not loaded");
        }
        self.state
            .retain(|name, _| self.tasks.specs.contains_key(name));
        self.queued
            .retain(|name, _| self.tasks.specs.contains_key(name));
        for (name, spec) in &self.tasks.specs {
            let was_enabled = previous.specs.get(name).map(|s| s.enabled);
            let state = match self.state.get_mut(name) {
                Some(state) => state,
                None => {
                    let last = self
                        .context
                        .store
                        .last_task_slot(name)
                        .await?
                        .unwrap_or(now);
                    self.state.entry(name.clone()).or_insert(TaskState { last })
                }
            };
            // A disabled task, or one just enabled again, missed nothing: it goes on from now.
            if !spec.enabled || was_enabled == Some(false) {
                state.last = state.last.max(now);
            }
        }
        Ok(())
    }

    /// When the next slot of any enabled task fires.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.tasks
            .specs
            .values()
            .filter(|spec| spec.enabled)
            .filter_map(|spec| {
                let last = self.state.get(spec.name.as_str())?.last;
                spec.schedule
                    .next_after(last)
                    .map(|slot| spec.fire_time(slot))
            })
            .min()
    }

    /// Fires whatever is due at `now`; returns the firings.
    pub async fn tick(
        &mut self,
        now: Timestamp,
    ) -> Result<Vec<(String, Timestamp, Fired)>, StoreError> {
        self.reap();
        self.fire_ready_queues().await;
        for spec in self.tasks.specs.values().filter(|s| !s.enabled) {
            if let Some(state) = self.state.get_mut(spec.name.as_str()) {
                state.last = state.last.max(now);
            }
        }
        let mut fired = Vec::new();
        let specs: Vec<TaskSpec> = self
            .tasks
            .specs
            .values()
            .filter(|s| s.enabled)
            .cloned()
            .collect();
        for spec in specs {
            let name = spec.name.to_string();
            let Some(state) = self.state.get(&name).copied() else {
                continue;
            };
            let due = plan(&spec, Some(state.last), now);
            let mut last = state.last;
            if let Some((slot, missed)) = due.skipped {
                let result = TaskResult::new(
                    Outcome::Skipped,
                    format!(
                        "{missed} slots missed while the scheduler was down (catch_up = {:?})",
                        spec.catch_up
                    )
                    .to_lowercase(),
                )
                .count("missed", i64::from(missed));
                let start = self.start(&name, Some(slot), Trigger::CatchUp);
                self.context
                    .store
                    .record_task_skip(&start, &result, &self.change(&name))
                    .await?;
                last = last.max(slot);
            }
            // Caught-up slots run one after another, not as overlaps of each other: the first
            // fires now, the others wait in the queue until the one before has finished.
            let mut slots: VecDeque<Timestamp> = due.fire.into();
            // Behind queued slots, new ones wait their turn too.
            let waiting = self.queued.get(&name).is_some_and(|q| !q.is_empty());
            if !waiting && let Some(slot) = slots.pop_front() {
                let trigger = trigger_for(&spec, slot, now);
                let outcome = self.fire(&spec, Some(slot), trigger).await?;
                fired.push((name.clone(), slot, outcome));
                last = last.max(slot);
            }
            for slot in slots {
                let trigger = trigger_for(&spec, slot, now);
                self.queued
                    .entry(name.clone())
                    .or_default()
                    .push_back((slot, trigger));
                last = last.max(slot);
            }
            if let Some(state) = self.state.get_mut(&name) {
                state.last = last;
            }
        }
        Ok(fired)
    }

    fn start(&self, task: &str, slot: Option<Timestamp>, trigger: Trigger) -> TaskRunStart {
        TaskRunStart {
            task: task.to_owned(),
            slot,
            trigger,
            node: recovery::supervisor_id(&self.context.settings),
        }
    }

    /// Fires one run of `spec`: the same path for a scheduled slot and a manual run.
    pub async fn fire(
        &mut self,
        spec: &TaskSpec,
        slot: Option<Timestamp>,
        trigger: Trigger,
    ) -> Result<Fired, StoreError> {
        let name = spec.name.to_string();
        let live = self.live_runs(&name).await?;
        // What still runs once this firing starts (a replaced run is stopped first).
        let still_live = match spec.overlap {
            Overlap::Replace => 0,
            _ => live.len(),
        };
        if trigger != Trigger::Manual
            && let Some(reason) = self.breaker_holds(&name, still_live).await?
        {
            return self.skip(&name, slot, trigger, reason).await;
        }
        if !live.is_empty() {
            match spec.overlap {
                Overlap::Allow => {}
                Overlap::Forbid => {
                    let reason = format!("overlap: run {} is still running", live[0].id);
                    return self.skip(&name, slot, trigger, reason).await;
                }
                Overlap::Replace => {
                    for old in live {
                        self.cancel(&old, &format!("replaced by a new run ({trigger})"))
                            .await?;
                    }
                }
            }
        }
        let Some(run) = self
            .context
            .store
            .begin_task_run(&self.start(&name, slot, trigger), &self.change(&name))
            .await?
        else {
            return Ok(Fired::AlreadyFired);
        };
        let context = self.context.clone();
        let spec = spec.clone();
        let abort = self.executions.spawn(async move {
            let result = match tokio::time::timeout(spec.timeout, tasks::execute(&context, &spec, run)).await {
                Ok(result) => result,
                Err(_) => TaskResult::new(
                    Outcome::Failed,
                    format!("timed out after {}", humantime::format_duration(spec.timeout)),
                ),
            };
            let change = Change::new(Actor::new(format!("scheduler:{}", spec.name)), context.clock.now());
            match context.store.finish_task_run(run, &result, &change).await {
                Ok(_) => tracing::info!(task = %spec.name, run, outcome = %result.outcome, reason = %result.reason, "task finished"),
                Err(error) => tracing::error!(task = %spec.name, run, %error, "recording the task's outcome failed"),
            }
            record_breaker(&context, spec.name.as_str(), result.outcome, &change).await;
            (run, result)
        });
        self.running.insert(run, Running { task: name, abort });
        Ok(Fired::Started { run })
    }

    /// Records a firing that does not run, once per slot.
    async fn skip(
        &self,
        task: &str,
        slot: Option<Timestamp>,
        trigger: Trigger,
        reason: String,
    ) -> Result<Fired, StoreError> {
        let start = self.start(task, slot, trigger);
        let result = TaskResult::new(Outcome::Skipped, reason.clone());
        Ok(
            if self
                .context
                .store
                .record_task_skip(&start, &result, &self.change(task))
                .await?
            {
                Fired::Skipped { reason }
            } else {
                Fired::AlreadyFired
            },
        )
    }

    /// Why the task's circuit breaker holds a scheduled firing back (open: failed or degraded
    /// runs in a row, until its cool-down ends; half-open with its probe still running), or
    /// `None` when it may fire. A manual run is never held: it is a person's probe.
    async fn breaker_holds(&self, task: &str, live: usize) -> Result<Option<String>, StoreError> {
        use mission_core::breaker::Admission;
        let policy = self.context.settings.workforce.breaker();
        if policy.failures == 0 {
            return Ok(None);
        }
        let subject = mission_store::task_subject(task);
        let breakers = self.context.store.holds(&[]).await?.breakers;
        let Some((_, breaker)) = breakers.iter().find(|(s, _)| *s == subject) else {
            return Ok(None);
        };
        let now = self.context.clock.now();
        let live = u32::try_from(live).unwrap_or(u32::MAX);
        Ok(match breaker.admits(now, live, policy) {
            Admission::Admit => None,
            Admission::Open(until) => Some(format!(
                "breaker_open: task {task}'s circuit breaker is open after {} failed or degraded runs in a row; a probe may run after {}",
                breaker.failures,
                self.context.settings.workforce.zone().show(until)
            )),
            Admission::ProbeRunning => Some(format!(
                "breaker_open: task {task}'s circuit breaker is half-open and its probe is still running"
            )),
        })
    }

    /// Open runs of a task whose process is alive: this one's, or another live process's.
    async fn live_runs(&mut self, task: &str) -> Result<Vec<TaskRun>, StoreError> {
        self.reap();
        let me = recovery::supervisor_id(&self.context.settings);
        let mut live = Vec::new();
        for run in self.context.store.open_task_runs(Some(task)).await? {
            if self.running.contains_key(&run.id) {
                live.push(run);
            } else if run.node == me
                || recovery::supervisor_dead(
                    self.context.store.as_ref(),
                    &self.context.settings,
                    &run.node,
                    self.context.clock.now(),
                )
                .await?
            {
                // Ours but no longer executing (its outcome could not be written), or its
                // scheduler is gone: it is over, and says so.
                let result =
                    TaskResult::new(Outcome::Failed, "its run ended without a recorded outcome");
                self.context
                    .store
                    .finish_task_run(run.id, &result, &self.change(&run.task))
                    .await?;
            } else {
                live.push(run);
            }
        }
        Ok(live)
    }

    /// Stops a run (here: abort, which kills its process group; elsewhere: its process group)
    /// and records it `failed` with `why`.
    async fn cancel(&mut self, run: &TaskRun, why: &str) -> Result<(), StoreError> {
        match self.running.remove(&run.id) {
            Some(running) => running.abort.abort(),
            None => {
                // Another process's run: signal its group only if it is provably that run's.
                let pairs = vec![
                    ("MISSION_TASK_RUN", run.id.to_string()),
                    (
                        "MISSION_CONFIG",
                        self.context.settings.config_file.display().to_string(),
                    ),
                ];
                if let Some(pid) = run.pid
                    && crate::process::group_has_environment(pid, pairs).await
                {
                    crate::process::terminate_group(pid, self.context.settings.dispatch.kill_grace)
                        .await;
                }
            }
        }
        let result = TaskResult::new(Outcome::Failed, format!("cancelled: {why}"));
        self.context
            .store
            .finish_task_run(run.id, &result, &self.change(&run.task))
            .await?;
        Ok(())
    }

    /// Forgets executions that have finished.
    fn reap(&mut self) {
        while let Some(done) = self.executions.try_join_next() {
            if let Ok((run, _)) = done {
                self.running.remove(&run);
            }
        }
        self.running.retain(|_, r| !r.abort.is_finished());
    }

    /// Waits for one execution to finish, then fires the next queued slot of its task; `None`
    /// when nothing runs.
    pub async fn next_finished(&mut self) -> Option<(i64, TaskResult)> {
        loop {
            match self.executions.join_next().await? {
                Ok((run, result)) => {
                    self.running.remove(&run);
                    self.fire_ready_queues().await;
                    return Some((run, result));
                }
                Err(_) => continue,
            }
        }
    }

    /// Fires the next queued slot of every task that has one and no run executing here.
    async fn fire_ready_queues(&mut self) {
        loop {
            self.reap();
            let ready = self.queued.iter().find_map(|(task, queue)| {
                (!queue.is_empty() && !self.running.values().any(|r| &r.task == task))
                    .then(|| task.clone())
            });
            let Some(task) = ready else { return };
            self.fire_queued(&task).await;
        }
    }

    /// Fires the next queued slot of `task`, if any.
    async fn fire_queued(&mut self, task: &str) {
        let Some((slot, trigger)) = self.queued.get_mut(task).and_then(VecDeque::pop_front) else {
            return;
        };
        let Some(spec) = self.tasks.specs.get(task).cloned() else {
            return;
        };
        if let Err(error) = self.fire(&spec, Some(slot), trigger).await {
            tracing::error!(%task, %error, "firing a queued slot failed");
        }
    }

    /// Stops every run of this process (shutdown): each is recorded `failed`.
    pub async fn stop_all(&mut self, why: &str) {
        let ids: Vec<i64> = self.running.keys().copied().collect();
        for id in ids {
            if let Some(running) = self.running.remove(&id) {
                running.abort.abort();
                let result = TaskResult::new(Outcome::Failed, format!("cancelled: {why}"));
                let _ = self
                    .context
                    .store
                    .finish_task_run(id, &result, &self.change(&running.task))
                    .await;
            }
        }
        while self.executions.join_next().await.is_some() {}
    }

    /// The scheduler loop of the server: sleep until the next deadline or a change of the tasks
    /// folder, fire what is due; on shutdown, stop what runs. Slots fire only while this server
    /// leads (`Leadership`: always, on a store with one server); when it becomes the leader, it
    /// closes what a gone scheduler left open and takes each task's last slot from the store, so
    /// that what was missed meanwhile is caught up by the task's policy.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let clock = self.context.clock.clone();
        let mut leadership = Leadership::new(
            self.context.store.clone(),
            clock.clone(),
            recovery::supervisor_id(&self.context.settings),
            self.context.settings.dispatch.lease,
        );
        let mut leading: Option<i64> = None;
        let (changed_tx, mut changed) = mpsc::unbounded_channel::<()>();
        let dir = &self.context.settings.tasks_dir;
        let _ = tokio::fs::create_dir_all(dir).await;
        let _watcher = watch_folder(dir, changed_tx);
        if let Err(error) = self.reload(clock.now()).await {
            tracing::error!(%error, "loading tasks failed");
        }
        loop {
            let fencing = leadership.check().await;
            if fencing != leading {
                leading = fencing;
                match fencing {
                    Some(_) => self.take_over(clock.now()).await,
                    // What was queued is the next leader's to fire, by its catch-up policy.
                    None => self.queued.clear(),
                }
            }
            if leading.is_some()
                && let Err(error) = self.tick(clock.now()).await
            {
                tracing::error!(%error, "scheduler tick failed");
            }
            let mut wake_at = leadership.next_check();
            if leading.is_some()
                && let Some(deadline) = self.next_deadline()
            {
                let wait = (deadline.as_millis() - clock.now().as_millis()).max(0) as u64;
                wake_at = wake_at.min(tokio::time::Instant::now() + Duration::from_millis(wait));
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake_at) => {}
                Some(()) = changed.recv() => {
                    // Let a burst of file events settle, then read the folder once.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    while changed.try_recv().is_ok() {}
                    if let Err(error) = self.reload(clock.now()).await {
                        tracing::error!(%error, "reloading tasks failed");
                    }
                }
                Some(_) = self.next_finished(), if !self.running.is_empty() => {}
                _ = shutdown.changed() => break,
            }
        }
        self.stop_all("the server shut down").await;
        leadership.release().await;
    }

    /// Becoming the leader: closes the runs of schedulers that are gone, and starts every task
    /// from its last slot in the store (another leader may have fired since this one looked).
    async fn take_over(&mut self, now: Timestamp) {
        match self.close_interrupted().await {
            Ok(0) => {}
            Ok(closed) => tracing::warn!(closed, "closed task runs of a scheduler that is gone"),
            Err(error) => tracing::error!(%error, "closing interrupted task runs failed"),
        }
        self.state.clear();
        self.queued.clear();
        if let Err(error) = self.reload(now).await {
            tracing::error!(%error, "loading tasks failed");
        }
    }
}

/// Watches the tasks folder; each change sends a unit. `None` when watching is not possible (the
/// folder is then read at start only, and the failure is logged).
/// Records what a finished run says about its task's circuit breaker (acted or noop: it works;
/// failed or degraded: one more in a row; skipped: nothing), and opens the `breaker_open`
/// incident when this run opened it. A failure is logged: the breaker misses one run's verdict.
async fn record_breaker(context: &TaskContext, task: &str, outcome: Outcome, change: &Change) {
    use mission_core::breaker::Verdict;
    let policy = context.settings.workforce.breaker();
    if policy.failures == 0 {
        return;
    }
    let verdict = match outcome {
        Outcome::Acted | Outcome::Noop => Verdict::Success,
        Outcome::Failed | Outcome::Degraded => Verdict::Failure,
        Outcome::Skipped => Verdict::Neutral,
    };
    let subject = mission_store::task_subject(task);
    match context
        .store
        .record_breaker(&subject, verdict, policy, change.at)
        .await
    {
        Ok((breaker, true)) => {
            tracing::warn!(
                task,
                failures = breaker.failures,
                "the task's circuit breaker opened"
            );
            if let Err(error) = crate::audit::task_breaker_opened(
                context.store.as_ref(),
                &context.settings,
                task,
                breaker.failures,
                change,
            )
            .await
            {
                tracing::error!(task, %error, "recording the breaker's incident failed");
            }
        }
        Ok(_) => {}
        Err(error) => tracing::error!(task, %error, "recording the task's breaker failed"),
    }
}

fn watch_folder(
    dir: &std::path::Path,
    changed: mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading the folder opens its files: access events must not trigger another read.
        let relevant = event.is_ok_and(|e| {
            matches!(
                e.kind,
                notify::EventKind::Create(_)
                    | notify::EventKind::Modify(_)
                    | notify::EventKind::Remove(_)
            )
        });
        if relevant {
            let _ = changed.send(());
        }
    })
    .map_err(|error| tracing::error!(%error, "cannot watch the tasks folder"))
    .ok()?;
    watcher
        .watch(dir, notify::RecursiveMode::NonRecursive)
        .map_err(|error| tracing::error!(%error, folder = %dir.display(), "cannot watch the tasks folder"))
        .ok()?;
    Some(watcher)
}
