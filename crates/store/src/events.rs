//! The event log, as read back. Events are written only by the store's writes, each in the
//! transaction of the change it records.

use crate::Result;
use async_trait::async_trait;
use mission_core::{Event, TicketId};

#[async_trait]
pub trait EventLog: Send + Sync {
    /// Events after `query.since`, oldest first: a reader that resumes from the last sequence
    /// number it saw misses no committed event.
    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>>;

    /// The sequence number of the newest event, 0 when there is none.
    async fn last_event_seq(&self) -> Result<i64>;
}

/// Events to read: those after `since`, at most `limit`, optionally of one ticket.
#[derive(Clone, Debug)]
pub struct EventQuery {
    pub since: i64,
    pub limit: u32,
    pub ticket: Option<TicketId>,
}
