//! Tickets: add, list, show, move, edit, answer, explain, and the event log.

use super::{App, AppError, AppResult};
use mission_core::policy::Reason;
use mission_core::transition::Via;
use mission_core::{
    Actor, Event, EvidenceRecord, Run, State, Ticket, TicketDraft, TicketId, TicketPatch,
    check_message,
};
use mission_store::{EventQuery, Move, TicketFilter, TicketSummary};
use serde::Serialize;

/// The timeline shown with a ticket: at most this many events, oldest first.
const TIMELINE_LIMIT: u32 = 500;

/// A ticket with its runs and its timeline.
#[derive(Clone, Debug, Serialize)]
pub struct TicketView {
    #[serde(flatten)]
    pub ticket: Ticket,
    pub runs: Vec<Run>,
    /// Its evidence, each with its latest verification and when.
    pub evidence: Vec<EvidenceRecord>,
    pub timeline: Vec<Event>,
}

/// The policy's answer about one ticket.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub ticket: TicketId,
    pub runnable: bool,
    pub reasons: Vec<Reason>,
}

impl App {
    /// Creates a ticket (`todo` when assigned, else `triage`) and wakes the dispatcher.
    pub async fn add_ticket(&self, mut draft: TicketDraft, actor: &Actor) -> AppResult<Ticket> {
        if draft.evidence_policy.is_none() {
            // The configured default for its labels and worker (`[evidence]`), when it names
            // none itself.
            let labels: Vec<String> = draft
                .labels
                .iter()
                .map(|l| l.trim().to_ascii_lowercase())
                .collect();
            let worker = draft
                .assignee
                .as_deref()
                .and_then(|a| mission_core::Name::parse(a).ok());
            let policy = self
                .settings
                .gate
                .evidence
                .policy_for(&labels, worker.as_ref());
            draft.evidence_policy = Some(policy.to_string());
        }
        let new = draft.validate()?;
        let mut created = self
            .store
            .create_tickets(&self.settings.ticket_key, vec![new], &self.change(actor))
            .await?;
        if let Some(ticket) = created.first() {
            tracing::debug!(ticket.id = %ticket.id, "ticket created");
        }
        self.waker.wake();
        created
            .pop()
            .ok_or_else(|| AppError::internal("the store created no ticket"))
    }

    pub async fn list_tickets(&self, filter: &TicketFilter) -> AppResult<Vec<TicketSummary>> {
        Ok(self.store.list_tickets(filter).await?)
    }

    /// How many tickets are in each state (the heads of the board's columns).
    pub async fn ticket_counts(&self) -> AppResult<Vec<(State, i64)>> {
        Ok(self.store.ticket_counts().await?)
    }

    pub async fn show_ticket(&self, id: &TicketId) -> AppResult<TicketView> {
        let ticket = self.store.ticket(id).await?;
        let runs = self.store.runs_of(id).await?;
        let evidence = self.store.evidence_of(id).await?;
        let timeline = self
            .store
            .events(&EventQuery {
                since: 0,
                limit: TIMELINE_LIMIT,
                ticket: Some(id.clone()),
            })
            .await?;
        Ok(TicketView {
            ticket,
            runs,
            evidence,
            timeline,
        })
    }

    /// An operator's move; `running`, `review`, `needs_input` and `done` are reached only through
    /// the dispatcher, runs, answers and the gate, so the transition table refuses them here.
    pub async fn move_ticket(
        &self,
        id: &TicketId,
        to: State,
        reason: Option<String>,
        actor: &Actor,
    ) -> AppResult<Ticket> {
        if let Some(reason) = &reason {
            check_message("reason", reason).map_err(|e| AppError::from(e).on_field("reason"))?;
        }
        let request = Move {
            to,
            via: Via::Operator,
            reason,
        };
        let ticket = self
            .store
            .move_ticket(id, &request, &self.change(actor))
            .await?;
        self.waker.wake();
        Ok(ticket)
    }

    /// Changes fields; a patch that changes nothing is refused as input.
    pub async fn edit_ticket(
        &self,
        id: &TicketId,
        patch: TicketPatch,
        actor: &Actor,
    ) -> AppResult<Ticket> {
        let patch = patch.validate()?;
        if patch.is_empty() {
            return Err(AppError::invalid(
                "nothing to change: give at least one field to edit",
            ));
        }
        let ticket = self
            .store
            .edit_ticket(id, &patch, &self.change(actor))
            .await?;
        self.waker.wake();
        Ok(ticket)
    }

    /// Answers the ticket's open question; the ticket goes back to todo for the needs-input
    /// lane, which resumes the same agent session.
    pub async fn answer(&self, id: &TicketId, text: &str, actor: &Actor) -> AppResult<Ticket> {
        check_message("answer", text)?;
        let ticket = self.store.answer(id, text, &self.change(actor)).await?;
        self.waker.wake();
        Ok(ticket)
    }

    /// Whether the ticket may run now, and every reason why not — with the dispatcher's inputs.
    pub async fn explain(&self, id: &TicketId) -> AppResult<Explanation> {
        let (ticket, verdict) = crate::explain::explain(
            self.store.as_ref(),
            &self.settings.workforce,
            id,
            self.clock.now(),
        )
        .await?;
        Ok(Explanation {
            ticket: ticket.id,
            runnable: verdict.is_runnable(),
            reasons: verdict.reasons().to_vec(),
        })
    }

    /// `explain` for each of `ids` (a page of the board), with capacity counted once.
    pub async fn explain_each(&self, ids: &[TicketId]) -> AppResult<Vec<Explanation>> {
        let answers = crate::explain::explain_each(
            self.store.as_ref(),
            &self.settings.workforce,
            ids,
            self.clock.now(),
        )
        .await?;
        Ok(answers
            .into_iter()
            .map(|(ticket, verdict)| Explanation {
                ticket: ticket.id,
                runnable: verdict.is_runnable(),
                reasons: verdict.reasons().to_vec(),
            })
            .collect())
    }

    /// A page of the event log.
    pub async fn events(&self, query: &EventQuery) -> AppResult<Vec<Event>> {
        if query.since < 0 {
            return Err(
                AppError::invalid(format!("since {}: must be 0 or more", query.since))
                    .on_field("since"),
            );
        }
        Ok(self.store.events(query).await?)
    }
}
