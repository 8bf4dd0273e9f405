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
    /// One pass over the lanes, in order; what it claimed is supervised to its end, also when a
    /// lane's part of the pass fails (the first failure is returned after).
    pub async fn dispatch_once(&self, lanes: &[Lane]) -> AppResult<DispatchOutcome> {
        let dispatcher = Dispatcher::new(
            self.store.clone(),
            self.settings.clone(),
            self.clock.clone(),
        );
        // The server's pass: every lane's claims (capacity counted once), then each lane's
        // decisions.
        let mut passes = Vec::new();
        let mut failure = None;
        match dispatcher.claim_runnable_lanes(lanes).await {
            Ok(reports) => {
                for report in reports {
                    match report {
                        Ok(mut pass) => {
                            if let Err(error) = dispatcher.record_decisions(&mut pass).await {
                                failure.get_or_insert(AppError::from(error));
                            }
                            passes.push(pass);
                        }
                        Err(error) => {
                            failure.get_or_insert(AppError::from(error));
                        }
                    }
                }
            }
            Err(error) => failure = Some(AppError::from(error)),
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
