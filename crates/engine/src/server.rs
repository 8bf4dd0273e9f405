//! The server loop: recovery at start, then dispatch passes woken by events (a wake datagram
//! from another process, a run ending here) with a periodic reconcile as the fallback; claimed
//! runs are supervised concurrently. The scheduler runs beside it in its own task. On shutdown,
//! runs are stopped and closed as orphaned, so their tickets are requeued; task runs end
//! `failed` ("the server shut down").

use crate::clock::Clock;
use crate::dispatcher::Dispatcher;
use crate::recovery;
use crate::runner::{RunReport, Runner};
use crate::scheduler::Scheduler;
use crate::settings::Settings;
use crate::tasks::TaskContext;
use crate::wake;
use mission_core::Lane;
use mission_store::prelude::*;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] mission_store::StoreError),
    #[error("wake socket {path}: {source}")]
    Wake {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub async fn serve(
    store: Arc<dyn Store>,
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let recovered = recovery::recover(&store, &settings, &clock).await?;
    if !recovered.is_empty() {
        tracing::warn!(count = recovered.len(), "closed orphaned runs at start");
    }
    let socket = wake::bind(&settings.wake_socket).map_err(|source| ServeError::Wake {
        path: settings.wake_socket.display().to_string(),
        source,
    })?;
    let notify = Arc::new(Notify::new());
    let listener = {
        let notify = notify.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while socket.recv(&mut buf).await.is_ok() {
                notify.notify_one();
            }
        })
    };

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
    };
    let scheduler = tokio::spawn(Scheduler::new(context).run(stopped.clone()));
    tokio::pin!(shutdown);
    tracing::info!(node = %settings.node, "serving");
    // One timer across iterations: wake-ups must not keep postponing recovery.
    let mut reconcile = tokio::time::interval(settings.dispatch.reconcile_interval);
    reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    reconcile.tick().await;
    loop {
        for lane in [Lane::NeedsInput, Lane::Normal] {
            match dispatcher.dispatch_once(lane).await {
                Ok(report) => {
                    for (run, token) in report.claimed {
                        supervise(&mut runs, &runner, &stopped, &notify, run, token);
                    }
                }
                Err(error) => tracing::error!(%lane, %error, "dispatch pass failed"),
            }
        }
        tokio::select! {
            _ = notify.notified() => {}
            Some((run, token)) = task_claims.recv() => {
                supervise(&mut runs, &runner, &stopped, &notify, run, token);
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
    while runs.join_next().await.is_some() {}
    listener.abort();
    let _ = std::fs::remove_file(&settings.wake_socket);
    Ok(())
}

/// Supervises a claimed run in the server's set; when it ends, a slot is free: the dispatcher
/// looks for work at once.
fn supervise(
    runs: &mut JoinSet<RunReport>,
    runner: &Runner,
    stopped: &watch::Receiver<bool>,
    notify: &Arc<Notify>,
    run: mission_core::Run,
    token: String,
) {
    let (runner, stopped, notify) = (runner.clone(), stopped.clone(), notify.clone());
    runs.spawn(async move {
        let report = runner.run(run, token, stopped).await;
        notify.notify_one();
        report
    });
}
