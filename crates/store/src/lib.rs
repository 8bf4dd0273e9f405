//! The store: one `Store` trait, one implementation per backend (SQLite now), embedded
//! migrations. Every change is written together with its event in one transaction; every check
//! that needs the board (does the ticket exist, is the move legal from its current state, would
//! the new dependencies close a cycle) happens inside that transaction.

mod error;
mod migrate;
pub mod sqlite;

use async_trait::async_trait;
use mission_core::policy::DependencyState;
use mission_core::transition::Via;
use mission_core::{
    Actor, Event, Name, NewTicket, State, Ticket, TicketId, TicketKey, TicketPatch, Timestamp,
};
use serde_json::Value;

pub use error::StoreError;
pub use migrate::{MigrationReport, SchemaStatus};
pub use sqlite::SqliteStore;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Who made a change and when; passed to every write so that time stays injectable.
#[derive(Clone, Debug)]
pub struct Change {
    pub actor: Actor,
    pub at: Timestamp,
}

impl Change {
    pub fn new(actor: Actor, at: Timestamp) -> Self {
        Change { actor, at }
    }
}

/// A request to move a ticket to another state.
#[derive(Clone, Debug)]
pub struct Move {
    pub to: State,
    pub via: Via,
    pub reason: Option<String>,
}

/// Which tickets `list_tickets` returns. Empty fields match everything.
#[derive(Clone, Debug, Default)]
pub struct TicketFilter {
    pub state: Option<State>,
    pub assignee: Option<Name>,
    pub limit: Option<u32>,
}

/// A ticket without its body and dependencies, as listed on the board.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TicketSummary {
    pub id: TicketId,
    pub title: String,
    pub state: State,
    pub assignee: Option<Name>,
    pub owner: Option<Name>,
    pub labels: Vec<String>,
    pub priority: i64,
    pub updated_at: Timestamp,
}

/// Events to read: those after `since`, at most `limit`, optionally of one ticket.
#[derive(Clone, Debug)]
pub struct EventQuery {
    pub since: i64,
    pub limit: u32,
    pub ticket: Option<TicketId>,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Applies pending migrations; refuses a database whose schema is newer than this binary.
    async fn migrate(&self) -> Result<MigrationReport>;

    /// Creates tickets in one transaction, allocating their numbers; all or none.
    async fn create_tickets(
        &self,
        key: &TicketKey,
        tickets: Vec<NewTicket>,
        change: &Change,
    ) -> Result<Vec<Ticket>>;

    async fn ticket(&self, id: &TicketId) -> Result<Ticket>;

    /// The ticket and the current state of each of its dependencies, read in one snapshot.
    async fn ticket_with_dependencies(
        &self,
        id: &TicketId,
    ) -> Result<(Ticket, Vec<DependencyState>)>;

    /// Tickets ordered by priority (highest first), then number.
    async fn list_tickets(&self, filter: &TicketFilter) -> Result<Vec<TicketSummary>>;

    /// Moves a ticket if the transition is legal from its current state; writes `ticket.moved`.
    async fn move_ticket(&self, id: &TicketId, request: &Move, change: &Change) -> Result<Ticket>;

    /// Edits a ticket's fields; writes `ticket.edited` with what changed, or nothing when nothing
    /// did. New dependencies must exist and must not close a cycle.
    async fn edit_ticket(
        &self,
        id: &TicketId,
        patch: &TicketPatch,
        change: &Change,
    ) -> Result<Ticket>;

    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>>;

    /// The sequence number of the newest event, 0 when there is none.
    async fn last_event_seq(&self) -> Result<i64>;

    /// Closes connections, checkpointing what the backend needs to.
    async fn close(&self);
}

/// The JSON recorded with `ticket.created`: every field but the body, which can be megabytes and
/// is kept on the ticket; its size is recorded instead.
pub(crate) fn created_event_data(ticket: &Ticket) -> Value {
    serde_json::json!({
        "title": ticket.title,
        "state": ticket.state,
        "assignee": ticket.assignee,
        "owner": ticket.owner,
        "labels": ticket.labels,
        "priority": ticket.priority,
        "depends_on": ticket.depends_on,
        "evidence_policy": ticket.evidence_policy,
        "repo": ticket.repo,
        "body_bytes": ticket.body.len(),
    })
}
