//! The use cases: every action a person or a run can take — add, edit, move, answer, explain, a
//! run's ask / progress / submit, a dispatch pass, a task run, the health verdict (`status`),
//! incidents, a run's log — each ONE function here. The CLI
//! and the HTTP API are thin adapters over these functions (arguments → use case → output); no
//! rule lives in an adapter. Failures are `AppError`s, whose kind decides the exit code and the
//! HTTP status.

mod dispatch;
mod error;
mod evidence;
mod health;
mod inbox;
mod incidents;
mod logs;
mod notify;
mod review;
mod runs;
mod tasks;
mod tickets;
mod usage;

pub use dispatch::DispatchOutcome;
pub use error::{AppError, AppResult, ErrorKind};
pub use evidence::EvidenceRequest;
pub use health::StatusReport;
pub use inbox::ActedItem;
pub use incidents::IncidentView;
pub use logs::{LogChunk, LogWindow, MAX_LOG_READ};
pub use review::Reviewed;
pub use tasks::{ListedTask, TaskListing, TaskRunReport};
pub use tickets::{Explanation, TicketView};
pub use usage::{BudgetView, ParkView, UsageBy, UsageReport, UsageRow};

use crate::clock::Clock;
use crate::settings::Settings;
use crate::wake::Waker;
use mission_core::{Actor, TicketId};
use mission_store::{Change, Store};
use std::sync::Arc;

/// What every use case runs with: the store, the resolved settings, the clock, and the waker
/// that tells the dispatcher about new work.
#[derive(Clone)]
pub struct App {
    store: Arc<dyn Store>,
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
    waker: Arc<dyn Waker>,
}

impl App {
    pub fn new(
        store: Arc<dyn Store>,
        settings: Arc<Settings>,
        clock: Arc<dyn Clock>,
        waker: Arc<dyn Waker>,
    ) -> Self {
        App {
            store,
            settings,
            clock,
            waker,
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// A change by `actor`, now.
    fn change(&self, actor: &Actor) -> Change {
        Change::new(actor.clone(), self.clock.now())
    }

    /// Parses a ticket id; a bare number means this instance's key (`12` → `MC-12`).
    pub fn ticket_id(&self, text: &str) -> AppResult<TicketId> {
        TicketId::parse_with_default(text, &self.settings.ticket_key)
            .map_err(|e| AppError::from(e).on_field("id"))
    }

    /// Closes the store's connections (a one-shot command, at its end).
    pub async fn close(&self) {
        self.store.close().await;
    }
}
