//! The board: creating, reading, listing, moving and editing tickets.

use crate::{Change, Result};
use async_trait::async_trait;
use mission_core::policy::DependencyState;
use mission_core::transition::Via;
use mission_core::{Name, NewTicket, State, Ticket, TicketId, TicketKey, TicketPatch, Timestamp};
use serde_json::Value;

#[async_trait]
pub trait TicketStore: Send + Sync {
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

    /// Tickets in `state` since before `entered_before`, oldest first.
    async fn stale_tickets(
        &self,
        state: State,
        entered_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<TicketSummary>>;
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
    /// Skip this many tickets first (paging).
    pub offset: Option<u32>,
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

/// A dependency edge as a batch read returns it: (ticket, depends on, the dependency's state —
/// `None` when it does not exist).
pub(crate) type Edge = (String, String, Option<String>);

/// Puts a batch read of tickets and their dependency edges together, in `ids`' order (ids that
/// named no ticket are left out). `decode` turns a row and its dependency ids into the ticket,
/// `id_of` reads a row's id, `state` parses a stored state: the backends' own.
pub(crate) fn assemble_with_dependencies<R>(
    ids: &[TicketId],
    rows: Vec<R>,
    edges: Vec<Edge>,
    id_of: impl Fn(&R) -> Result<String>,
    decode: impl Fn(&R, Vec<String>) -> Result<Ticket>,
    state: impl Fn(&str) -> Result<State>,
) -> Result<Vec<(Ticket, Vec<DependencyState>)>> {
    let mut by_ticket: std::collections::HashMap<String, Vec<(String, Option<String>)>> =
        std::collections::HashMap::new();
    for (ticket, depends_on, dep_state) in edges {
        by_ticket
            .entry(ticket)
            .or_default()
            .push((depends_on, dep_state));
    }
    let mut loaded = std::collections::HashMap::with_capacity(rows.len());
    for row in rows {
        let id = id_of(&row)?;
        let edges = by_ticket.remove(&id).unwrap_or_default();
        let ticket = decode(&row, edges.iter().map(|(d, _)| d.clone()).collect())?;
        let mut states = edges
            .into_iter()
            .map(|(d, dep_state)| {
                Ok(DependencyState {
                    id: TicketId::parse(&d).map_err(|_| crate::error::corrupt("ticket id", &d))?,
                    state: dep_state.map(|s| state(&s)).transpose()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        states.sort_by(|a, b| a.id.cmp(&b.id));
        loaded.insert(id, (ticket, states));
    }
    Ok(ids
        .iter()
        .filter_map(|id| loaded.remove(&id.to_string()))
        .collect())
}
