//! What holds workers back besides capacity, read once per dispatch pass (and by `explain` and
//! the verdict): the budgets judged against the ledger, the workers parked by a rate limit, the
//! workers' circuit breakers. The policy (`mission_core::policy`) turns them into reasons; this
//! module only reads and judges.

use mission_core::policy::Holds;
use mission_core::usage::{
    Budget, BudgetUse, Exhausted, LimitKind, Standing, Window, bucket_of, bucket_start,
};
use mission_core::{Name, Timestamp, Workforce};
use mission_store::{HoldFacts, Store, StoreError, WindowQuery};

/// A budget as judged now.
#[derive(Clone, Debug)]
pub struct BudgetStanding {
    pub budget: Budget,
    /// The window's first instant.
    pub window_start: Timestamp,
    /// When the window resets (calendar windows: its end; rolling: when its oldest usage leaves).
    pub resets: Option<Timestamp>,
    pub usage: BudgetUse,
    pub standing: Standing,
}

/// The holds of a pass, and the budgets' standings behind them.
#[derive(Clone, Debug, Default)]
pub struct HoldsView {
    pub holds: Holds,
    pub standings: Vec<BudgetStanding>,
    /// The tasks' breakers (the scheduler's, not the policy's), by task name.
    pub task_breakers: std::collections::BTreeMap<String, mission_core::breaker::Breaker>,
}

/// The facts a dispatcher read last, kept between its passes: a pass whose store reports the
/// same holds' version (`UsageStore::holds_version`, moved by every write the facts depend on;
/// the pass reads it with its capacity count, `DispatchStore::active_counts_versioned`) and
/// asks the same windows judges by them again instead of reading them. Where the backend keeps
/// no version, every pass reads.
#[derive(Debug, Default)]
pub struct HoldsCache(std::sync::Mutex<Option<(Vec<WindowQuery>, HoldFacts)>>);

impl HoldsCache {
    /// The facts for `queries`: the kept ones when they were read at `version` (the store's
    /// holds' version read by the caller just now), else read from the store.
    async fn facts(
        &self,
        store: &dyn Store,
        queries: Vec<WindowQuery>,
        version: Option<i64>,
    ) -> Result<HoldFacts, StoreError> {
        if let Some(version) = version {
            let kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((asked, facts)) = kept.as_ref()
                && *asked == queries
                && facts.version == Some(version)
            {
                return Ok(facts.clone());
            }
        }
        let facts = store.holds(&queries).await?;
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *kept = facts.version.map(|_| (queries, facts.clone()));
        Ok(facts)
    }
}

/// Reads the holds at `now`: one read transaction of the store (two running totals per budget,
/// the parks, the breakers).
pub async fn gather(
    store: &dyn Store,
    workforce: &Workforce,
    now: Timestamp,
) -> Result<HoldsView, StoreError> {
    gather_with(store, workforce, now, None).await
}

/// [`gather`], judging by the cache's facts when they were read at the given holds' version
/// (read by the caller from the store just now; `None`: the backend keeps none, so read).
pub async fn gather_with(
    store: &dyn Store,
    workforce: &Workforce,
    now: Timestamp,
    cache: Option<(&HoldsCache, Option<i64>)>,
) -> Result<HoldsView, StoreError> {
    let zone = workforce.zone();
    let budgets = workforce.budgets();
    let bounds: Vec<_> = budgets.iter().map(|b| b.window.bounds(now, zone)).collect();
    let queries: Vec<WindowQuery> = budgets
        .iter()
        .zip(&bounds)
        .map(|(budget, (start, _))| WindowQuery {
            key: budget.scope.ledger_key(),
            since: bucket_of(*start),
            first_bucket: matches!(budget.window, Window::Rolling(_)),
        })
        .collect();
    let facts = match cache {
        Some((cache, version)) => cache.facts(store, queries, version).await?,
        None => store.holds(&queries).await?,
    };
    let mut view = HoldsView::default();
    for ((budget, (start, end)), window) in budgets.iter().zip(bounds).zip(facts.windows) {
        let usage = BudgetUse {
            used: window.used,
            live_runs: window.live_runs,
        };
        let resets = match budget.window {
            Window::Rolling(duration) => window
                .first_bucket
                .map(|first| bucket_start(first + 1).plus(duration)),
            _ => end,
        };
        let standing = budget.standing(&usage);
        if standing.is_exhausted() {
            view.holds
                .exhausted
                .push(exhausted(budget, &standing, resets, workforce));
        }
        view.standings.push(BudgetStanding {
            budget: budget.clone(),
            window_start: start,
            resets,
            usage,
            standing,
        });
    }
    for park in facts.parks {
        view.holds.parks.insert(park.worker.clone(), park);
    }
    for (subject, breaker) in facts.breakers {
        if let Some(name) = subject
            .strip_prefix("worker:")
            .and_then(|n| Name::parse(n).ok())
        {
            view.holds.breakers.insert(name, breaker);
        } else if let Some(task) = subject.strip_prefix("task:") {
            view.task_breakers.insert(task.to_owned(), breaker);
        }
    }
    Ok(view)
}

fn exhausted(
    budget: &Budget,
    standing: &Standing,
    resets: Option<Timestamp>,
    workforce: &Workforce,
) -> Exhausted {
    Exhausted {
        budget: budget.name.clone(),
        scope: budget.scope.clone(),
        window: budget.window.to_string(),
        detail: standing.describe().unwrap_or_default(),
        resets,
        resets_shown: resets.map(|at| workforce.zone().show(at)),
    }
}

impl HoldsView {
    /// Counts a run the pass is about to claim: a budget with a runs limit that this run fills is
    /// exhausted for the rest of the pass, so a pass never claims past a runs limit.
    pub fn count_claim(
        &mut self,
        workforce: &Workforce,
        worker: &str,
        pool: &str,
        labels: &[String],
    ) {
        for standing in &mut self.standings {
            if !standing.budget.scope.covers(worker, pool, labels)
                || standing.standing.is_exhausted()
            {
                continue;
            }
            if !standing
                .budget
                .limits
                .iter()
                .any(|(k, _)| *k == LimitKind::Runs)
            {
                continue;
            }
            standing.usage.live_runs += 1;
            standing.standing = standing.budget.standing(&standing.usage);
            if standing.standing.is_exhausted() {
                let exhausted = exhausted(
                    &standing.budget,
                    &standing.standing,
                    standing.resets,
                    workforce,
                );
                self.holds.exhausted.push(exhausted);
            }
        }
    }
}
