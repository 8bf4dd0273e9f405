//! Events: the one append-only audit trail. Each is written in the same transaction as the change
//! it records, exactly once.

use crate::id::TicketId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Declares `EventKind` from one list of variants and their strings, so that `ALL` and
/// `as_str` cannot miss a variant.
macro_rules! event_kinds {
    ($($(#[$doc:meta])* $variant:ident => $text:literal,)*) => {
        /// What happened. The string forms are stable: consumers of `mission events` match on
        /// them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $($(#[$doc])* $variant,)*
        }

        impl EventKind {
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $text,)*
                }
            }
        }
    };
}

event_kinds! {
    TicketCreated => "ticket.created",
    TicketMoved => "ticket.moved",
    TicketEdited => "ticket.edited",
    /// The dispatcher's decision about a ticket changed.
    DispatchDecision => "dispatch.decision",
    /// Active runs could not be counted: the dispatcher dispatches nothing until they can.
    DispatchCapacityUnknown => "dispatch.capacity_unknown",
    /// Active runs can be counted again.
    DispatchCapacityCounted => "dispatch.capacity_counted",
    RunEnded => "run.ended",
    RunProgress => "run.progress",
    /// A task run ended, with its one outcome.
    TaskFinished => "task.finished",
    /// A piece of evidence was attached to a ticket (by a run or by the harness).
    EvidenceRecorded => "evidence.recorded",
    /// A check of a piece of evidence passed.
    EvidenceVerified => "evidence.verified",
    /// A check of a piece of evidence failed; the data says why.
    EvidenceFailed => "evidence.failed",
    /// A ticket's review was asked for (a reviewer worker started, or a human was asked).
    ReviewRequested => "review.requested",
    ReviewApproved => "review.approved",
    ReviewRejected => "review.rejected",
    /// Auto-review did not look at a diff over the size cap; never a success.
    ReviewSkippedOversized => "review.skipped_oversized",
    InboxCreated => "inbox.created",
    InboxDelivered => "inbox.delivered",
    /// An inbox item was acted on; written with the action it caused.
    InboxActed => "inbox.acted",
    /// A delivered item's lease ran out without an action: back to pending, to be delivered
    /// again.
    InboxExpired => "inbox.expired",
    InboxFailed => "inbox.failed",
    IncidentOpened => "incident.opened",
    /// An open incident's condition was seen again.
    IncidentUpdated => "incident.updated",
    /// A resolved incident's condition came back.
    IncidentReopened => "incident.reopened",
    IncidentResolved => "incident.resolved",
    /// The health verdict changed.
    HealthChanged => "health.changed",
}

impl std::str::FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown event kind {s:?}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for &kind in EventKind::ALL {
            assert!(seen.insert(kind.as_str()), "{kind} twice");
            assert_eq!(kind.as_str().parse::<EventKind>().unwrap(), kind);
            let (noun, verb) = kind.as_str().split_once('.').unwrap();
            assert!(!noun.is_empty() && !verb.is_empty());
            assert!(
                kind.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_')
            );
        }
    }
}
