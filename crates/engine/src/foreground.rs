//! Foreground work and the background work that yields to it. The foreground is the path from a
//! commit to an agent's start: a dispatch pass and the start of each run it claimed (up to the
//! process spawned and its pid stored). The background — the notification sender draining a
//! backlog — waits while any foreground work is in flight, between two deliveries, so that on a
//! machine with few cores a pickup never queues behind it for the CPU or the store's write turn.
//! It waits at most `limit` at a time: a foreground that never ends cannot starve it.
//!
//! One count per process, like the dispatch statistics (`stats.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static QUIET: Notify = Notify::const_new();

/// Foreground work in flight while this lives.
#[derive(Debug)]
pub struct Foreground(());

impl Foreground {
    pub fn enter() -> Foreground {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        Foreground(())
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        if IN_FLIGHT.fetch_sub(1, Ordering::SeqCst) == 1 {
            QUIET.notify_waiters();
        }
    }
}

/// How much foreground work is in flight.
pub fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::SeqCst)
}

/// Waits until no foreground work is in flight, or `limit` has passed. Returns whether it
/// waited at all.
pub async fn yield_to_foreground(limit: Duration) -> bool {
    if in_flight() == 0 {
        return false;
    }
    let _ = tokio::time::timeout(limit, async {
        loop {
            let quiet = QUIET.notified();
            tokio::pin!(quiet);
            // Registered before the check, so a drop between the two is not missed.
            quiet.as_mut().enable();
            if in_flight() == 0 {
                return;
            }
            quiet.await;
        }
    })
    .await;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn background_waits_for_the_foreground_and_no_longer() {
        assert!(!yield_to_foreground(Duration::from_secs(5)).await);
        let pass = Foreground::enter();
        let start = Foreground::enter();
        let waiter = tokio::spawn(yield_to_foreground(Duration::from_secs(30)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "it waits while work is in flight");
        drop(pass);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one start is still in flight");
        drop(start);
        let waited = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the last drop wakes it")
            .unwrap();
        assert!(waited);
        // A foreground that never ends does not starve it.
        let _stuck = Foreground::enter();
        let waited = tokio::time::timeout(
            Duration::from_secs(5),
            yield_to_foreground(Duration::from_millis(50)),
        )
        .await
        .expect("bounded by its limit");
        assert!(waited);
    }
}
