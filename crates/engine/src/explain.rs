//! `explain`: the runnability policy's answer for one ticket, with the same inputs the
//! dispatcher uses — the ticket, its dependencies' states, capacity as counted now (and as the
//! dispatcher last saw it), and the time.

use crate::dispatcher::capacity_view;
use mission_core::policy::{Capacity, PolicyContext, runnability};
use mission_core::{Runnability, Ticket, TicketId, Timestamp, Workforce};
use mission_store::StoreError;
use mission_store::prelude::*;

pub async fn explain(
    store: &dyn Store,
    workforce: &Workforce,
    id: &TicketId,
    now: Timestamp,
) -> Result<(Ticket, Runnability), StoreError> {
    let mut answers = explain_each(store, workforce, std::slice::from_ref(id), now).await?;
    Ok(answers.remove(0))
}

/// The policy's answer for each of `ids` (a page of the board), with capacity counted once.
pub async fn explain_each(
    store: &dyn Store,
    workforce: &Workforce,
    ids: &[TicketId],
    now: Timestamp,
) -> Result<Vec<(Ticket, Runnability)>, StoreError> {
    let capacity = capacity_view(store).await.map_err(|e| e.detail());
    let holds = crate::holds::gather(store, workforce, now).await?;
    let mut answers = Vec::with_capacity(ids.len());
    for id in ids {
        let (ticket, deps) = store.ticket_with_dependencies(id).await?;
        let context = PolicyContext {
            workforce,
            capacity: match &capacity {
                Ok(counts) => Capacity::Counted(counts),
                Err(error) => Capacity::Unknown(error),
            },
            holds: &holds.holds,
            now,
        };
        let verdict = runnability(&ticket, &deps, context);
        answers.push((ticket, verdict));
    }
    Ok(answers)
}
