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
        DISPATCH_PASSES.record(self.0.elapsed());
    }
}
