//! Mission Control's domain model.
//!
//! Everything here is a pure function over plain data: no SQL, no HTTP, no processes, no clock
//! reads. The store, the engines and the binary call into this crate; it calls into none of them.

pub mod audit;
pub mod breaker;
pub mod capacity;
pub mod config;
pub mod deps;
pub mod event;
pub mod evidence;
pub mod gate;
pub mod health;
pub mod id;
pub mod inbox;
pub mod inbox_flow;
pub mod incident;
pub mod notify;
pub mod policy;
pub mod proof;
pub mod review;
pub mod run;
pub mod task;
pub mod ticket;
pub mod time;
pub mod transition;
pub mod usage;

pub use capacity::{ActiveCounts, CapacityFull, SlotLimits};
pub use config::{ConfigError, PolicyConfig, TriageRule, WorkerConfig, Workforce};
pub use event::{Actor, Event, EventKind};
pub use evidence::{
    CommitCheck, CommitSha, Evidence, EvidenceId, EvidenceKind, EvidenceRecord, FileCheck,
    Requirement, Verification,
};
pub use gate::{GateDecision, GateInput, Missing, deciding_records, gate};
pub use health::{HealthFacts, HealthReason, HealthReport, HealthThresholds, Verdict, assess};
pub use id::{IdError, Name, TicketId, TicketKey};
pub use inbox::{
    Action, ActionKind, ActionRequest, Addressee, InboxId, InboxItem, InboxKind, InboxPolicy,
    InboxState, InboxStatus, NewInboxItem,
};
pub use incident::{
    CheckName, Finding, Fingerprint, Incident, IncidentChange, IncidentId, IncidentState,
    Occurrence, Severity,
};
pub use policy::{Capacity, PolicyContext, Reason, ReasonCode, Runnability, runnability};
pub use review::{ReviewMode, ReviewOutcome, ReviewRecord, Reviewer, ReviewerKind};
pub use run::{
    Attempt, FailureClass, Lane, RetryPolicy, Run, RunEnding, RunId, RunOutcome, Settlement,
    TicketEffect, Uncharged, settle,
};
pub use ticket::{
    EvidencePolicy, NewTicket, State, Ticket, TicketDraft, TicketPatch, ValidationError,
    check_message,
};
pub use time::Timestamp;
pub use transition::{Effects, TransitionError, check_transition, plan_transition};
