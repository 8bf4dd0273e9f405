//! `triage`: tickets in triage are assigned by the first matching rule and released to todo.
//! Tickets no rule matches stay in triage and are counted: the run is `degraded`, naming them.

use super::TaskContext;
use crate::error::EngineError;
use mission_core::State;
use mission_core::task::{Outcome, TaskResult, TaskSpec};
use mission_core::transition::Via;
use mission_core::{TicketPatch, TriageRule};
use mission_store::{Move, TicketFilter};

/// Most tickets triaged in one run.
const BATCH: u32 = 1000;

pub(super) async fn run(context: &TaskContext, spec: &TaskSpec) -> Result<TaskResult, EngineError> {
    let rules: &[TriageRule] = &context.settings.triage;
    let filter = TicketFilter {
        state: Some(State::Triage),
        assignee: None,
        limit: Some(BATCH),
        offset: None,
    };
    let tickets = context.store.list_tickets(&filter).await?;
    if tickets.is_empty() {
        return Ok(TaskResult::new(Outcome::Noop, "triage is empty")
            .count("assigned", 0)
            .count("unmatched", 0));
    }
    let change = context.change(spec.name.as_str());
    let mut assigned = 0;
    let mut unmatched = Vec::new();
    for ticket in &tickets {
        let Some(rule) = rules
            .iter()
            .find(|r| r.matches(&ticket.title, &ticket.labels))
        else {
            unmatched.push(ticket.id.to_string());
            continue;
        };
        if ticket.assignee.as_ref() != Some(&rule.assignee) {
            let patch = TicketPatch {
                assignee: Some(Some(rule.assignee.clone())),
                ..TicketPatch::default()
            };
            context
                .store
                .edit_ticket(&ticket.id, &patch, &change)
                .await?;
        }
        let request = Move {
            to: State::Todo,
            via: Via::Triage,
            reason: Some(format!("triage rule: {}", rule.assignee)),
        };
        context
            .store
            .move_ticket(&ticket.id, &request, &change)
            .await?;
        assigned += 1;
    }
    if assigned > 0 {
        context.waker.wake();
    }
    let result = if unmatched.is_empty() {
        TaskResult::new(Outcome::Acted, format!("assigned {assigned}"))
    } else {
        TaskResult::new(
            Outcome::Degraded,
            format!(
                "{} tickets match no rule and stay in triage: {}",
                unmatched.len(),
                unmatched.join(", ")
            ),
        )
    };
    Ok(result
        .count("assigned", assigned)
        .count("unmatched", unmatched.len() as i64))
}
