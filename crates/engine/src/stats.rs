//! Figures about the engines' own work that `/metrics` exports: how many dispatch passes ran in
//! this process and how long they took. Process-wide counters (atomics), written by the engines
//! and read by whoever exports them; they record, they decide nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Dispatch passes of this process.
pub static DISPATCH_PASSES: PassStats = PassStats::new();

#[derive(Debug)]
pub struct PassStats {
    count: AtomicU64,
    total_micros: AtomicU64,
    last_micros: AtomicU64,
}

/// A snapshot of `PassStats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassFigures {
    pub count: u64,
    pub total: Duration,
    pub last: Duration,
}

impl PassStats {
    const fn new() -> Self {
        PassStats {
            count: AtomicU64::new(0),
            total_micros: AtomicU64::new(0),
            last_micros: AtomicU64::new(0),
        }
    }

    pub fn record(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.total_micros.fetch_add(micros, Ordering::Relaxed);
        self.last_micros.store(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn figures(&self) -> PassFigures {
        PassFigures {
            count: self.count.load(Ordering::Relaxed),
            total: Duration::from_micros(self.total_micros.load(Ordering::Relaxed)),
            last: Duration::from_micros(self.last_micros.load(Ordering::Relaxed)),
        }
    }
}

/// Records a pass's duration when dropped, whichever way the pass ends.
pub struct PassTimer(Instant);

impl PassTimer {
    pub fn start() -> Self {
        PassTimer(Instant::now())
    }
}

impl Drop for PassTimer {
    fn drop(&mut self) {
        let took = self.0.elapsed();
        DISPATCH_PASSES.record(took);
        PASS_DURATIONS.record(took);
    }
}

/// Pickups of this process: from the commit of a run's claim to its agent's start (the start
/// recorded), in a histogram.
pub static PICKUPS: LatencyHistogram = LatencyHistogram::new(&PICKUP_BOUNDS);

/// The upper bounds of `PICKUPS`' buckets, in seconds (the last bucket, `+Inf`, is implied).
pub const PICKUP_BOUNDS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Dispatch passes of this process by duration, in a histogram (beside `DISPATCH_PASSES`).
pub static PASS_DURATIONS: LatencyHistogram = LatencyHistogram::new(&PASS_BOUNDS);

/// The upper bounds of `PASS_DURATIONS`' buckets, in seconds.
pub const PASS_BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The most bounds a `LatencyHistogram` takes.
const MAX_BOUNDS: usize = 15;

/// A histogram of durations over fixed bounds, in atomics.
#[derive(Debug)]
pub struct LatencyHistogram {
    /// Upper bounds in seconds, increasing.
    bounds: &'static [f64],
    /// One count per bound, then `+Inf`; each observation counted in its own bucket only.
    buckets: [AtomicU64; MAX_BOUNDS + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// A snapshot of a `LatencyHistogram`.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramFigures {
    /// (upper bound in seconds, observations in that bucket alone), `f64::INFINITY` last.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: Duration,
}

impl LatencyHistogram {
    /// Over `bounds` (at most 15, increasing).
    pub const fn new(bounds: &'static [f64]) -> Self {
        assert!(bounds.len() <= MAX_BOUNDS);
        LatencyHistogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; MAX_BOUNDS + 1],
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn record(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn figures(&self) -> HistogramFigures {
        HistogramFigures {
            buckets: self
                .bounds
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(&self.buckets)
                .map(|(bound, n)| (bound, n.load(Ordering::Relaxed)))
                .collect(),
            count: self.count.load(Ordering::Relaxed),
            sum: Duration::from_micros(self.sum_micros.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_observation_lands_in_the_first_bucket_that_holds_it() {
        let histogram = LatencyHistogram::new(&PICKUP_BOUNDS);
        for ms in [1, 5, 6, 40_000] {
            histogram.record(Duration::from_millis(ms));
        }
        let figures = histogram.figures();
        assert_eq!(figures.count, 4);
        assert_eq!(figures.sum, Duration::from_millis(40_012));
        assert_eq!(figures.buckets.len(), PICKUP_BOUNDS.len() + 1);
        assert_eq!(figures.buckets[0], (0.005, 2), "1 ms and exactly 5 ms");
        assert_eq!(figures.buckets[1], (0.01, 1));
        assert_eq!(figures.buckets.last(), Some(&(f64::INFINITY, 1)));
        assert_eq!(figures.buckets.iter().map(|(_, n)| n).sum::<u64>(), 4);
    }
}
