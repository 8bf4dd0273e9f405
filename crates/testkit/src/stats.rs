//! Percentiles for the benchmarks: medians and tails, never a single timing.

use std::time::Duration;

pub struct Stats {
    samples: Vec<Duration>,
}

impl Stats {
    pub fn new(mut samples: Vec<Duration>) -> Stats {
        assert!(!samples.is_empty(), "no samples");
        samples.sort();
        Stats { samples }
    }

    pub fn percentile(&self, p: f64) -> Duration {
        let i = ((self.samples.len() as f64 - 1.0) * p).round() as usize;
        self.samples[i]
    }

    pub fn max(&self) -> Duration {
        *self.samples.last().expect("samples")
    }

    /// One line: `what  n=… p50=… p90=… p99=… max=…` in milliseconds.
    pub fn line(&self, what: &str) -> String {
        format!(
            "{what:<48} n={:<6} p50={:>9.3}ms p90={:>9.3}ms p99={:>9.3}ms max={:>9.3}ms",
            self.samples.len(),
            ms(self.percentile(0.5)),
            ms(self.percentile(0.9)),
            ms(self.percentile(0.99)),
            ms(self.max()),
        )
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
