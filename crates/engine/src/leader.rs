//! Leadership among servers sharing one store: the scheduler fires on one server at a time, the
//! holder of the store's `scheduler` lease.
//!
//! The holder renews the lease every third of its ttl and stops trusting it two thirds of the ttl
//! after it last asked for a renewal that succeeded, measured on its own monotonic clock from the
//! moment it asked. Another server can take the lease only once the ttl has passed since then, so
//! a holder that was paused, partitioned or slow stops acting as the leader a third of the ttl
//! before anyone else may start (a margin for the time between the check and what it allows, and
//! for clocks that disagree by less). Should two ever act at once anyway, each (task, slot) still
//! fires once: the store's unique index decides.
//!
//! On a store with one server (SQLite), the lease is always granted.

use crate::clock::Clock;
use mission_store::{SCHEDULER_LEASE, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub struct Leadership {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    holder: String,
    ttl: Duration,
    held: Option<Held>,
    last_attempt: Option<Instant>,
}

#[derive(Clone, Copy, Debug)]
struct Held {
    fencing: i64,
    /// When the last successful renewal was asked for.
    asked_at: Instant,
}

impl Leadership {
    /// Leadership of `holder` (`HOST:PID`) by a lease of `ttl`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        holder: String,
        ttl: Duration,
    ) -> Leadership {
        Leadership {
            store,
            clock,
            holder,
            ttl,
            held: None,
            last_attempt: None,
        }
    }

    /// Renews the lease (or tries to take it) when a third of the ttl has passed since the last
    /// attempt, then says whether this server may act as the leader now: the fencing number of
    /// the lease it holds and trusts, `None` otherwise.
    pub async fn check(&mut self) -> Option<i64> {
        let now = Instant::now();
        if self
            .last_attempt
            .is_none_or(|last| now >= last + self.ttl / 3)
        {
            self.last_attempt = Some(now);
            let asked = self
                .store
                .acquire_lease(SCHEDULER_LEASE, &self.holder, self.clock.now(), self.ttl)
                .await;
            match asked {
                Ok(Some(lease)) => {
                    if self.held.map(|h| h.fencing) != Some(lease.fencing) {
                        tracing::info!(fencing = lease.fencing, "this server leads the scheduler");
                    }
                    self.held = Some(Held {
                        fencing: lease.fencing,
                        asked_at: now,
                    });
                }
                Ok(None) => {
                    if self.held.take().is_some() {
                        tracing::warn!("another server took the scheduler's lease");
                    }
                }
                // Not renewed: the lease is trusted less with every moment, until it is not.
                Err(error) => tracing::warn!(%error, "renewing the scheduler's lease failed"),
            }
        }
        self.trusted(Instant::now())
    }

    /// The fencing number of the lease held, if it is still trusted now; renews nothing.
    pub fn trusted_now(&self) -> Option<i64> {
        self.trusted(Instant::now())
    }

    /// The fencing number of the lease held, if it is still trusted at `now`.
    fn trusted(&self, now: Instant) -> Option<i64> {
        self.held
            .filter(|held| now < held.asked_at + self.ttl * 2 / 3)
            .map(|held| held.fencing)
    }

    /// When `check` has something to do next: the next renewal (or attempt to take the lease).
    pub fn next_check(&self) -> Instant {
        self.last_attempt
            .map_or_else(Instant::now, |last| last + self.ttl / 3)
    }

    /// Gives the lease up (shutdown), so that another server can lead at once.
    pub async fn release(&mut self) {
        if let Some(held) = self.held.take() {
            let released = self
                .store
                .release_lease(
                    SCHEDULER_LEASE,
                    &self.holder,
                    held.fencing,
                    self.clock.now(),
                )
                .await;
            if let Err(error) = released {
                tracing::warn!(%error, "releasing the scheduler's lease failed");
            }
        }
    }
}
