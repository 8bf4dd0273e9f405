//! The server loop: recovery at start, then dispatch passes woken by events (the `WakeSignal` it
//! is given — woken by use cases in this process, and by the wake socket's listener for other
//! processes — and a run ending here) with a periodic reconcile as the fallback; claimed
//! runs are supervised concurrently. The scheduler runs beside it in its own task (firing while
//! this server leads it), and so does the node heartbeat by which servers sharing the store tell
//! this one alive from dead. On shutdown,
//! runs are stopped and closed as orphaned, so their tickets are requeued; task runs end
//! `failed` ("the server shut down").
//!
//! Beside them, the heartbeat loop records the server's heartbeat every reconcile interval (at
//! least a second apart) with the time of the dispatcher's last pass — the durable basis of
//! "the server is alive" and of "its dispatcher passes" — and records the health verdict when
//! it changed (`health.changed`, once per change).

use crate::clock::Clock;
use crate::dispatcher::Dispatcher;
use crate::foreground::Foreground;
use crate::recovery;
use crate::runner::{RunReport, Runner};
use crate::scheduler::Scheduler;
use crate::settings::Settings;
use crate::tasks::TaskContext;
use crate::wake::WakeSignal;
use mission_core::{Actor, Lane, Timestamp};
use mission_store::prelude::*;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] mission_store::StoreError),
    #[error("{0}")]
    Start(String),
}

/// Runs the server until `shutdown` resolves: recovery, then `ready` (the caller opens its
/// doors: the wake socket, the HTTP listener — so that "ready" means "recovered"), then the
/// dispatcher woken by `wake`, the runners and the scheduler.
pub async fn serve(
    store: Arc<dyn Store>,
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
    wake: WakeSignal,
    ready: impl FnOnce() -> Result<(), String>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    tokio::pin!(shutdown);
    // A shutdown during recovery stops here: each orphan is closed in a transaction of its own,
    // and what is left stays orphaned for the next start.
    let recovered = tokio::select! {
        recovered = recovery::recover(&store, &settings, &clock) => recovered?,
        _ = &mut shutdown => {
            tracing::info!("shut down during start-up recovery");
            return Ok(());
        }
    };
    if !recovered.is_empty() {
        tracing::warn!(count = recovered.len(), "closed orphaned runs at start");
    }
    ready().map_err(ServeError::Start)?;
    // What retired workspaces a stopped process left in the trash.
    let workspaces =
        crate::workspace::Workspaces::new(&settings.workspaces_dir, &settings.instance_dir);
    tokio::spawn(async move { workspaces.sweep_trash().await });

    let dispatcher = Dispatcher::new(store.clone(), settings.clone(), clock.clone());
    let runner = Runner::new(store.clone(), settings.clone(), clock.clone());
    let (stop, stopped) = watch::channel(false);
    let mut runs = JoinSet::new();
    // The scheduler runs beside the dispatcher; runs its dispatch tasks claim come back here.
    let (sink, mut task_claims) = tokio::sync::mpsc::unbounded_channel();
    let context = TaskContext {
        store: store.clone(),
        settings: settings.clone(),
        clock: clock.clone(),
        runs: sink,
        waker: Arc::new(wake.clone()),
    };
    let scheduler = tokio::spawn(Scheduler::new(context).run(stopped.clone()));
    // The dispatcher's last pass, in milliseconds (0: none yet), for the heartbeat.
    let last_pass = Arc::new(AtomicI64::new(0));
    let beats = tokio::spawn(heartbeat_loop(
        store.clone(),
        settings.clone(),
        clock.clone(),
        last_pass.clone(),
        stopped.clone(),
    ));
    // Other servers sharing the store tell this one alive from dead by its heartbeat.
    let heartbeat = tokio::spawn(recovery::beat(
        store.clone(),
        settings.clone(),
        clock.clone(),
        stopped.clone(),
    ));
    tracing::info!(node = %settings.node, "serving");
    // One timer across iterations: wake-ups must not keep postponing recovery.
    let mut reconcile = tokio::time::interval(settings.dispatch.reconcile_interval);
    reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    reconcile.tick().await;
    loop {
        // Each lane's claims start at once; the decisions' bookkeeping follows. The pass and
        // each claimed run's start are foreground work (`foreground.rs`).
        let pass = Foreground::enter();
        let mut passes = Vec::new();
        let lanes = [Lane::NeedsInput, Lane::Normal];
        match dispatcher.claim_runnable_lanes(&lanes).await {
            Ok(reports) => {
                for (lane, report) in lanes.iter().zip(reports) {
                    match report {
                        Ok(mut report) => {
                            for (run, token) in std::mem::take(&mut report.claimed) {
                                supervise(&mut runs, &runner, &stopped, run, token);
                            }
                            passes.push(report);
                        }
                        Err(error) => tracing::error!(%lane, %error, "dispatch pass failed"),
                    }
                }
            }
            Err(error) => tracing::error!(%error, "dispatch pass failed"),
        }
        drop(pass);
        let mut passed = !passes.is_empty();
        for mut report in passes {
            if let Err(error) = dispatcher.record_decisions(&mut report).await {
                tracing::error!(lane = ?report.lane, %error, "recording dispatch decisions failed");
                passed = false;
            }
        }
        if passed {
            last_pass.store(clock.now().as_millis(), Ordering::Relaxed);
        }
        tokio::select! {
            _ = wake.notified() => tracing::debug!("woken"),
            Some((run, token)) = task_claims.recv() => {
                supervise(&mut runs, &runner, &stopped, run, token);
            }
            Some(_) = runs.join_next(), if !runs.is_empty() => {}
            _ = reconcile.tick() => {
                if let Err(error) = recovery::recover(&store, &settings, &clock).await {
                    tracing::error!(%error, "recovery failed");
                }
            }
            _ = &mut shutdown => break,
        }
    }
    tracing::info!(active = runs.len(), "shutting down: stopping runs");
    let _ = stop.send(true);
    let _ = scheduler.await;
    let _ = beats.await;
    while runs.join_next().await.is_some() {}
    let _ = heartbeat.await;
    // Everything this server ran is closed: nothing of it is left for the others to wait for.
    let node = recovery::supervisor_id(&settings);
    if let Err(error) = store.node_stopped(&node, clock.now()).await {
        tracing::warn!(%error, "recording this server's stop failed");
    }
    Ok(())
}

/// Supervises a claimed run in the server's set. When it ends, a slot is free: the server's loop
/// sees the run join and passes again at once — once; a wake-up besides would cost a second,
/// empty pass that a ticket committed meanwhile waits behind.
fn supervise(
    runs: &mut JoinSet<RunReport>,
    runner: &Runner,
    stopped: &watch::Receiver<bool>,
    run: mission_core::Run,
    token: String,
) {
    let (runner, stopped) = (runner.clone(), stopped.clone());
    let starting = Foreground::enter();
    runs.spawn(async move { runner.run_started_as(run, token, stopped, starting).await });
}

/// Records the heartbeat, then the verdict if it changed, every beat until `stopped`. A failure
/// is logged and tried again at the next beat: a server that cannot write its heartbeat is
/// soon called dead, which is the truth.
async fn heartbeat_loop(
    store: Arc<dyn Store>,
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
    last_pass: Arc<AtomicI64>,
    mut stopped: watch::Receiver<bool>,
) {
    let started_at = clock.now();
    let actor = Actor::new("server");
    loop {
        let now = clock.now();
        let pass = last_pass.load(Ordering::Relaxed);
        let pass = (pass > 0).then(|| Timestamp::from_millis(pass));
        let beat = crate::health::heartbeat(&settings, started_at, now, pass);
        if let Err(error) = store.record_heartbeat(&beat).await {
            tracing::error!(%error, "recording the server heartbeat failed");
        }
        let tasks = crate::tasks::load(&settings.tasks_dir).await;
        match crate::health::assess_now(store.as_ref(), &settings, &tasks, clock.now()).await {
            Ok(assessment) => {
                match crate::health::record(store.as_ref(), &assessment, actor.clone()).await {
                    Ok(Some(change)) => {
                        tracing::info!(from = ?change.from, to = %change.to, codes = ?change.codes, "health verdict changed");
                    }
                    Ok(None) => {}
                    Err(error) => tracing::error!(%error, "recording the verdict failed"),
                }
            }
            Err(error) => tracing::error!(%error, "assessing health failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(crate::health::beat_interval(&settings)) => {}
            _ = stopped.changed() => return,
        }
        if *stopped.borrow() {
            return;
        }
    }
}
