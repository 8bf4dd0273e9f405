//! Capacity: how many runs are active, and whether one more fits. The ONE check of a worker's,
//! its pool's and the instance's limits, used by the policy (`explain`), the dispatcher (which
//! workers have a free slot) and the store's claim (re-counted inside the claiming transaction).

use crate::config::Workforce;
use crate::id::Name;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Active runs, counted from the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActiveCounts {
    pub total: u32,
    pub by_worker: BTreeMap<String, u32>,
    pub by_pool: BTreeMap<String, u32>,
}

impl ActiveCounts {
    pub fn worker(&self, name: &str) -> u32 {
        self.by_worker.get(name).copied().unwrap_or(0)
    }

    pub fn pool(&self, name: &str) -> u32 {
        self.by_pool.get(name).copied().unwrap_or(0)
    }

    pub fn add(&mut self, worker: &str, pool: &str) {
        self.add_many(worker, pool, 1);
    }

    pub fn add_many(&mut self, worker: &str, pool: &str, runs: u32) {
        self.total += runs;
        *self.by_worker.entry(worker.to_owned()).or_default() += runs;
        *self.by_pool.entry(pool.to_owned()).or_default() += runs;
    }
}

/// The limits one more run of a worker must fit under: the worker's own, its pool's (when the
/// pool has one) and the instance's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotLimits {
    pub worker: Name,
    pub worker_max: u32,
    pub pool: String,
    pub pool_max: Option<u32>,
    pub global_max: u32,
}

/// Why one more run does not fit; `detail` names the binding limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapacityFull {
    pub detail: String,
}

impl SlotLimits {
    /// The limits of `worker` in `workforce`; `None` when it is not a configured worker.
    pub fn of(workforce: &Workforce, worker: &Name) -> Option<SlotLimits> {
        let config = workforce.worker(worker)?;
        Some(SlotLimits {
            worker: worker.clone(),
            worker_max: config.max_concurrent,
            pool: config.pool.clone(),
            pool_max: workforce.pool_limit(&config.pool),
            global_max: workforce.max_workers(),
        })
    }

    /// Whether one more run fits next to `counts`. The worker's limit is checked first, then the
    /// pool's, then the instance's: the detail names the first that binds.
    pub fn check(&self, counts: &ActiveCounts) -> Result<(), CapacityFull> {
        let of_worker = counts.worker(self.worker.as_str());
        if of_worker >= self.worker_max {
            return Err(CapacityFull {
                detail: format!(
                    "worker {} runs {of_worker} of its {} at once",
                    self.worker, self.worker_max
                ),
            });
        }
        if let Some(max) = self.pool_max {
            let of_pool = counts.pool(&self.pool);
            if of_pool >= max {
                return Err(CapacityFull {
                    detail: format!("pool {} runs {of_pool} of its {max} at once", self.pool),
                });
            }
        }
        if counts.total >= self.global_max {
            return Err(CapacityFull {
                detail: format!(
                    "{} runs of at most {} are active",
                    counts.total, self.global_max
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(worker_max: u32, pool_max: Option<u32>, global_max: u32) -> SlotLimits {
        SlotLimits {
            worker: Name::parse("luci").unwrap(),
            worker_max,
            pool: "claude".into(),
            pool_max,
            global_max,
        }
    }

    fn counts(runs: &[(&str, &str, u32)]) -> ActiveCounts {
        let mut counts = ActiveCounts::default();
        for (worker, pool, n) in runs {
            counts.add_many(worker, pool, *n);
        }
        counts
    }

    #[test]
    fn the_first_binding_limit_is_named() {
        // (limits, active runs, expected detail or None when one more fits)
        let cases: Vec<(SlotLimits, ActiveCounts, Option<&str>)> = vec![
            (limits(1, None, 4), counts(&[]), None),
            (
                limits(1, None, 4),
                counts(&[("luci", "claude", 1)]),
                Some("worker luci runs 1 of its 1 at once"),
            ),
            (
                limits(3, Some(2), 4),
                counts(&[("luci", "claude", 1), ("larry", "claude", 1)]),
                Some("pool claude runs 2 of its 2 at once"),
            ),
            (
                limits(3, Some(2), 4),
                counts(&[("luci", "claude", 1), ("larry", "codex", 5)]),
                Some("6 runs of at most 4 are active"),
            ),
            (
                limits(3, Some(3), 4),
                counts(&[("luci", "claude", 1), ("tessa", "codex", 2)]),
                None,
            ),
            // Another pool's runs do not count against this pool.
            (
                limits(2, Some(1), 9),
                counts(&[("larry", "codex", 3)]),
                None,
            ),
        ];
        for (limits, counts, expect) in cases {
            let got = limits.check(&counts).err().map(|full| full.detail);
            assert_eq!(got.as_deref(), expect, "{limits:?} {counts:?}");
        }
    }
}
