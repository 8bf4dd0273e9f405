//! Events: the one append-only audit trail. Each is written in the same transaction as the change
//! it records, exactly once.

use crate::id::TicketId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What happened. The string forms are stable: consumers of `mission events` match on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    TicketCreated,
    TicketMoved,
    TicketEdited,
    /// The dispatcher's decision about a ticket changed.
    DispatchDecision,
    /// Active runs could not be counted: the dispatcher dispatches nothing until they can.
    DispatchCapacityUnknown,
    /// Active runs can be counted again.
    DispatchCapacityCounted,
    RunEnded,
    RunProgress,
    /// A task run ended, with its one outcome.
    TaskFinished,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::TicketCreated => "ticket.created",
            EventKind::TicketMoved => "ticket.moved",
            EventKind::TicketEdited => "ticket.edited",
            EventKind::DispatchDecision => "dispatch.decision",
            EventKind::DispatchCapacityUnknown => "dispatch.capacity_unknown",
            EventKind::DispatchCapacityCounted => "dispatch.capacity_counted",
            EventKind::RunEnded => "run.ended",
            EventKind::RunProgress => "run.progress",
            EventKind::TaskFinished => "task.finished",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who caused a change: `cli`, `api:TOKEN-ID`, `dispatcher`, `run:MC-12#3`, …
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Actor(String);

impl Actor {
    pub fn new(text: impl Into<String>) -> Self {
        Actor(text.into())
    }

    pub fn cli() -> Self {
        Actor("cli".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stored event, as read back. `kind` stays a string so that a reader can show events written
/// by a newer version.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub seq: i64,
    pub at: Timestamp,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<TicketId>,
    pub actor: String,
    pub data: serde_json::Value,
}
