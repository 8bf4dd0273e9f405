//! Several servers sharing one store: the lease that makes one of them the scheduler's leader, and
//! the heartbeats by which the others tell a node that died from one that is only quiet.
//!
//! A backend with one server by construction (SQLite: one file, one host) grants every lease and
//! knows no dead nodes; on it, recovery judges supervisors by their process on this host and runs
//! by their lease, as before.

use crate::Result;
use async_trait::async_trait;
use mission_core::Timestamp;
use std::time::Duration;

/// The lease of the scheduler's leader.
pub const SCHEDULER_LEASE: &str = "scheduler";

#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// Takes or renews the lease `name` for `holder` until `now + ttl`. `Some` when `holder` holds
    /// it now: renewed (same fencing number), or taken because it was free, released or expired
    /// (the next fencing number). `None` while another holder's lease runs.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Option<Lease>>;

    /// Gives the lease up at `now` if `holder` still holds it with `fencing` (a clean shutdown),
    /// so that another server can take it at once.
    async fn release_lease(
        &self,
        name: &str,
        holder: &str,
        fencing: i64,
        now: Timestamp,
    ) -> Result<()>;

    /// Records that the supervisor `node` (`HOST:PID`, as runs name it) is alive at `now`, and
    /// should be taken for dead if it says nothing more by `now + ttl`.
    async fn node_heartbeat(&self, node: &str, now: Timestamp, ttl: Duration) -> Result<()>;

    /// Records that `node` stopped (a clean shutdown): what it left behind is anybody's to settle.
    async fn node_stopped(&self, node: &str, now: Timestamp) -> Result<()>;

    /// Supervisors known to be gone at `now`: stopped, or silent past their heartbeat's ttl. A
    /// supervisor that never sent a heartbeat (a one-shot command) is not in it.
    async fn dead_nodes(&self, now: Timestamp) -> Result<Vec<String>>;
}

/// A lease as its holder got it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    /// Increases each time the lease changes hands (or lapses and is taken again): what a
    /// holder did under an older number was done by a deposed holder.
    pub fencing: i64,
    pub expires_at: Timestamp,
}
