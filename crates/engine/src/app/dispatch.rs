//! `dispatch --once` as a use case: one pass of each lane by the server's own dispatcher, then
//! the runs it claimed supervised to their end by the server's own runner.

use super::{App, AppError, AppResult};
use crate::dispatcher::{Dispatcher, PassReport};
use crate::runner::{RunReport, Runner};
use mission_core::{Lane, Run};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct DispatchOutcome {
    pub passes: Vec<PassReport>,
    pub runs: Vec<RunReport>,
}

impl DispatchOutcome {
    /// Why a pass dispatched nothing because active runs could not be counted.
    pub fn capacity_unknown(&self) -> Option<&str> {
        self.passes
            .iter()
            .find_map(|p| p.capacity_unknown.as_deref())
    }

    /// Whether the end of some run could not be recorded (recovery will close it).
    pub fn unrecorded(&self) -> bool {
        self.runs.iter().any(|r| !r.recorded)
    }
}

impl App {
    /// One pass of each lane, in order; what the passes claimed is supervised to its end, also
    /// when a later lane's pass fails (that failure is returned after).
    pub async fn dispatch_once(&self, lanes: &[Lane]) -> AppResult<DispatchOutcome> {
        let dispatcher = Dispatcher::new(
            self.store.clone(),
            self.settings.clone(),
            self.clock.clone(),
        );
        let mut passes = Vec::new();
        let mut failure = None;
        for lane in lanes {
            match dispatcher.dispatch_once(*lane).await {
                Ok(pass) => passes.push(pass),
                Err(error) => {
                    failure = Some(AppError::from(error));
                    break;
                }
            }
        }
        let claimed: Vec<(Run, String)> = passes
            .iter_mut()
            .flat_map(|pass| std::mem::take(&mut pass.claimed))
            .collect();
        let runs = self.supervise(claimed).await?;
        match failure {
            Some(error) => Err(error),
            None => Ok(DispatchOutcome { passes, runs }),
        }
    }

    /// Supervises claimed runs concurrently to their ends; reports sorted by run.
    pub(super) async fn supervise(&self, claimed: Vec<(Run, String)>) -> AppResult<Vec<RunReport>> {
        let runner = Runner::new(
            self.store.clone(),
            self.settings.clone(),
            self.clock.clone(),
        );
        let (_keep, stopped) = tokio::sync::watch::channel(false);
        let mut supervised = tokio::task::JoinSet::new();
        for (run, token) in claimed {
            let (runner, stopped) = (runner.clone(), stopped.clone());
            supervised.spawn(async move { runner.run(run, token, stopped).await });
        }
        let mut runs = Vec::new();
        while let Some(report) = supervised.join_next().await {
            runs.push(
                report
                    .map_err(|e| AppError::internal(format!("a run's supervisor failed: {e}")))?,
            );
        }
        runs.sort_by_key(|r| r.run);
        Ok(runs)
    }
}
