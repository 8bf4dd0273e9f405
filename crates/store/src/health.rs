//! What the health verdict reads from the store, and what it writes: the servers' heartbeats,
//! one snapshot of the durable facts (`health_snapshot`, one read transaction), and the verdict
//! recorded once per change (`health.changed`). The verdict itself is
//! `mission_core::health::assess`; the engine adds what only it knows (task files, the
//! configuration) and asks the runnability policy about the waiting tickets.

use crate::Change;
use crate::Result;
use async_trait::async_trait;
use mission_core::health::{
    CapacityUncounted, FailedItem, HealthChange, InvalidEvidence, LiveRun, OpenIncident,
    ServerBeat, TaskRunFact, UnsettledItem,
};
use mission_core::policy::DependencyState;
use mission_core::{ActiveCounts, HealthReport, Ticket, Timestamp, Verdict, Workforce};
use std::time::Duration;

#[async_trait]
pub trait HealthStore: Send + Sync {
    /// Records a server's heartbeat (one row per node, replaced at every beat). Writes no event:
    /// a heartbeat is a fact, not a change.
    async fn record_heartbeat(&self, beat: &ServerHeartbeat) -> Result<()>;

    /// Every durable fact the verdict reads, from one snapshot (a read transaction).
    async fn health_snapshot(&self, query: &HealthQuery<'_>) -> Result<HealthSnapshot>;

    /// Records `report`'s verdict when it differs from the last one recorded, with one
    /// `health.changed` event, deciding in the write transaction (compare-and-set), so that a
    /// change is written once however many processes assess it at once. Returns the change
    /// written, `None` when the verdict was already recorded.
    async fn record_verdict(
        &self,
        report: &HealthReport,
        change: &Change,
    ) -> Result<Option<HealthChange>>;
}

/// A server's heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerHeartbeat {
    /// The server's node name (`dispatch.node`, the host name by default).
    pub node: String,
    pub pid: u32,
    pub started_at: Timestamp,
    pub at: Timestamp,
    /// How often it beats: its reconcile interval.
    pub interval: Duration,
    /// When its dispatcher last finished a pass.
    pub dispatcher_pass_at: Option<Timestamp>,
}

/// What to gather.
#[derive(Clone, Copy, Debug)]
pub struct HealthQuery<'a> {
    pub now: Timestamp,
    /// The workers, to narrow the waiting tickets to those of an enabled worker with a free
    /// slot (the core's capacity check against the active runs counted in the snapshot).
    pub workforce: &'a Workforce,
    /// The tasks whose recent runs to read (those of the task files).
    pub tasks: &'a [String],
    /// Ended runs read per task, newest first.
    pub runs_per_task: u32,
    /// Most waiting tickets read, oldest first.
    pub waiting_limit: u32,
}

/// A todo ticket the narrowing found: assigned to an enabled worker with a free slot, out of
/// backoff, no open dependency, no live run. The engine asks the policy about it.
#[derive(Clone, Debug, PartialEq)]
pub struct WaitingTicket {
    pub ticket: Ticket,
    pub dependencies: Vec<DependencyState>,
    /// Since when it waits: entering todo, or its backoff's end.
    pub since: Timestamp,
}

impl WaitingTicket {
    /// The waiting tickets of a narrowing's rows — (id, entered todo, backoff's end) — and
    /// their batch load, in the rows' order: a ticket waits since the later of the two.
    pub(crate) fn of_rows(
        rows: Vec<(mission_core::TicketId, i64, Option<i64>)>,
        loaded: Vec<(Ticket, Vec<DependencyState>)>,
    ) -> Vec<WaitingTicket> {
        let since: std::collections::HashMap<_, _> = rows
            .into_iter()
            .map(|(id, state_since, not_before)| {
                let at = state_since.max(not_before.unwrap_or(i64::MIN));
                (id, Timestamp::from_millis(at))
            })
            .collect();
        loaded
            .into_iter()
            .filter_map(|(ticket, dependencies)| {
                Some(WaitingTicket {
                    since: *since.get(&ticket.id)?,
                    ticket,
                    dependencies,
                })
            })
            .collect()
    }
}

/// The inbox's facts in a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InboxFacts {
    pub unsettled: Vec<UnsettledItem>,
    pub failed: Vec<FailedItem>,
}

/// The verdict last recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedVerdict {
    pub verdict: Verdict,
    pub at: Timestamp,
}

/// The durable facts of one snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HealthSnapshot {
    pub servers: Vec<ServerBeat>,
    /// The newest dispatcher pass of any server.
    pub dispatcher_last_pass: Option<Timestamp>,
    pub capacity_unknown: Option<CapacityUncounted>,
    /// Active runs, counted in the snapshot.
    pub active: ActiveCounts,
    pub waiting: Vec<WaitingTicket>,
    pub tickets_in_triage: u64,
    /// Runs with no end recorded.
    pub live_runs: Vec<LiveRun>,
    /// Per task asked for, its newest ended runs, newest first.
    pub task_runs: Vec<(String, Vec<TaskRunFact>)>,
    pub open_incidents: Vec<OpenIncident>,
    pub last_verdict: Option<RecordedVerdict>,
    /// Pending and delivered inbox items (oldest first) and the newest failed ones, at most
    /// `waiting_limit` of each. `None` from a backend without the inbox's tables.
    pub inbox: Option<InboxFacts>,
    /// Done tickets with a record that failed its re-verification after done, with the first
    /// such failure; at most `waiting_limit`. `None` from a backend without evidence.
    pub invalid_evidence: Option<Vec<InvalidEvidence>>,
}
