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
    let (ticket, deps) = store.ticket_with_dependencies(id).await?;
    let capacity = capacity_view(store).await.map_err(|e| e.detail());
    let context = PolicyContext {
        workforce,
        capacity: match &capacity {
            Ok(counts) => Capacity::Counted(counts),
            Err(error) => Capacity::Unknown(error),
        },
        now,
    };
    let verdict = runnability(&ticket, &deps, context);
    Ok((ticket, verdict))
}
