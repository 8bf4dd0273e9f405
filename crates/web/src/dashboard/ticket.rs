//! A ticket's page: its fields and text, why it is not running (when it waits), its runs with
//! cost, tokens and session, its evidence with each verification, its open inbox items with
//! their forms, the forms of what a person may do now, its timeline, and the live log of its
//! latest run.

use super::view::{ItemView, Shell, WhyLine, clip, when, when_opt};
use super::{PageResult, Visitor, forms, page};
use crate::Web;
use crate::api::tickets::ticket_id;
use crate::api::types::{failure_str, lane_str, outcome_str};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use mission_core::{EvidenceRecord, Run, State as TicketState, Verification};
use mission_engine::app::LogWindow;
use mission_store::InboxFilter;

/// The log tail a ticket page starts with.
const LOG_TAIL: u64 = 64 * 1024;
/// The longest event data shown in the timeline.
const EVENT_DATA_CHARS: usize = 400;

pub struct RunRow {
    pub attempt: i64,
    pub worker: String,
    pub lane: String,
    pub started: String,
    pub ended: String,
    pub outcome: String,
    pub failure: String,
    pub detail: String,
    pub exit_code: String,
    pub tokens: String,
    pub cost: String,
    pub session: String,
    pub log_href: String,
}

pub struct EvidenceRow {
    pub kind: String,
    pub subject: String,
    pub status: String,
    pub verified_at: String,
    pub failure: String,
    pub recorded_by: String,
    pub observed: String,
}

pub struct EventRow {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub actor: String,
    pub data: String,
}

pub struct LogView {
    pub attempt: i64,
    pub text: String,
    /// Where the live stream goes on from.
    pub from: u64,
    pub stream: String,
    pub ended: bool,
    /// The tail does not start at the log's beginning.
    pub cut: bool,
}

#[derive(Template)]
#[template(path = "ticket.html")]
pub struct TicketPage {
    pub shell: Shell,
    pub id: String,
    pub title: String,
    pub body: String,
    pub state: String,
    pub assignee: String,
    pub owner: String,
    pub labels: String,
    pub priority: i64,
    pub depends_on: Vec<String>,
    pub evidence_policy: String,
    pub repo: String,
    pub created: String,
    pub updated: String,
    pub attempts: i64,
    pub resume: bool,
    pub not_before: String,
    /// Why it is not running, when it waits.
    pub why: Option<Vec<WhyLine>>,
    pub runnable: bool,
    pub runs: Vec<RunRow>,
    pub evidence: Vec<EvidenceRow>,
    pub items: Vec<ItemView>,
    pub timeline: Vec<EventRow>,
    pub log: Option<LogView>,
    /// In review: a person may approve, reject, or ask the gate.
    pub in_review: bool,
    /// The states an operator may move it to.
    pub moves: Vec<&'static str>,
    pub back: String,
}

fn run_row(run: &Run) -> RunRow {
    let tokens = match (run.input_tokens, run.output_tokens) {
        (None, None) => String::new(),
        (input, output) => format!(
            "{} in / {} out",
            input.map_or("?".to_owned(), |n| n.to_string()),
            output.map_or("?".to_owned(), |n| n.to_string())
        ),
    };
    RunRow {
        attempt: run.attempt.get(),
        worker: run.worker.to_string(),
        lane: lane_str(run.lane).to_owned(),
        started: when(run.started_at),
        ended: when_opt(run.ended_at),
        outcome: run
            .outcome
            .map_or("running".to_owned(), |o| outcome_str(o).to_owned()),
        failure: run
            .failure_class
            .map(|c| failure_str(c).to_owned())
            .unwrap_or_default(),
        detail: run
            .detail
            .as_deref()
            .map(|d| clip(d, 300))
            .unwrap_or_default(),
        exit_code: run.exit_code.map(|c| c.to_string()).unwrap_or_default(),
        tokens,
        cost: run.cost_usd.map(|c| format!("${c:.4}")).unwrap_or_default(),
        session: run.session_id.clone().unwrap_or_default(),
        log_href: format!(
            "/api/v1/tickets/{}/runs/{}/log",
            run.ticket,
            run.attempt.get()
        ),
    }
}

fn evidence_row(record: &EvidenceRecord) -> EvidenceRow {
    let (status, failure) = match &record.verification {
        Verification::Verified { .. } => ("verified", String::new()),
        Verification::Failed { reason, .. } => ("failed", reason.clone()),
    };
    let observed = serde_json::to_string(&record.evidence).unwrap_or_default();
    EvidenceRow {
        kind: record.evidence.kind().as_str().to_owned(),
        subject: record.evidence.subject().unwrap_or_default().to_owned(),
        status: status.to_owned(),
        verified_at: when(record.verification.at()),
        failure,
        recorded_by: record.recorded_by.as_str().to_owned(),
        observed: clip(&observed, EVENT_DATA_CHARS),
    }
}

/// The states an operator's move may reach from `state` (the transition table refuses the rest;
/// these are only the buttons offered).
fn moves(state: TicketState) -> Vec<&'static str> {
    use TicketState::*;
    let targets: &[TicketState] = match state {
        Triage => &[Todo, Blocked, Cancelled],
        Todo => &[Triage, Blocked, Cancelled],
        Blocked => &[Todo, Triage, Cancelled],
        Failed => &[Todo, Cancelled],
        Review | NeedsInput | Running => &[Cancelled],
        Done | Cancelled => &[],
    };
    targets.iter().map(|s| s.as_str()).collect()
}

pub async fn ticket(
    State(web): State<Web>,
    visitor: Visitor,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    let id = ticket_id(&web.app, &id)?;
    let view = web.app.show_ticket(&id).await?;
    let ticket = &view.ticket;
    let waits = matches!(
        ticket.state,
        TicketState::Todo | TicketState::Triage | TicketState::Blocked
    );
    let (why, runnable) = if waits {
        let explained = web.app.explain(&id).await?;
        let why = explained
            .reasons
            .into_iter()
            .map(|r| WhyLine {
                code: r.code.as_str().to_owned(),
                detail: r.detail,
            })
            .collect();
        (Some(why), explained.runnable)
    } else {
        (None, false)
    };
    let now = web.app.clock().now();
    let items = web
        .app
        .inbox_list(&InboxFilter {
            ticket: Some(id.clone()),
            open: true,
            limit: Some(20),
            ..InboxFilter::default()
        })
        .await?
        .into_iter()
        .map(|item| ItemView::new(item, now))
        .collect();
    let log = match view.runs.iter().max_by_key(|r| r.attempt) {
        Some(run) => {
            let attempt = run.attempt.get();
            let read = web
                .app
                .run_log(&id, attempt, LogWindow::Tail { bytes: LOG_TAIL })
                .await;
            Some(match read {
                Ok(chunk) => LogView {
                    attempt,
                    cut: chunk.start > 0,
                    text: chunk.text,
                    from: chunk.end,
                    stream: format!("/api/v1/tickets/{id}/runs/{attempt}/log/stream"),
                    ended: chunk.ended,
                },
                // The page still shows everything else.
                Err(error) => LogView {
                    attempt,
                    cut: false,
                    text: format!("(the log cannot be shown: {error})"),
                    from: 0,
                    stream: String::new(),
                    ended: true,
                },
            })
        }
        None => None,
    };
    let timeline = view
        .timeline
        .iter()
        .rev()
        .map(|event| EventRow {
            seq: event.seq,
            at: when(event.at),
            kind: event.kind.clone(),
            actor: event.actor.clone(),
            data: clip(&event.data.to_string(), EVENT_DATA_CHARS),
        })
        .collect();
    let shell = Shell::new(
        &web,
        &visitor,
        format!("{} {}", ticket.id, clip(&ticket.title, 80)),
        "board",
    )
    .await
    .with_notice(forms::notice(&headers));
    let page_ = TicketPage {
        shell,
        id: ticket.id.to_string(),
        title: ticket.title.clone(),
        body: ticket.body.clone(),
        state: ticket.state.as_str().to_owned(),
        assignee: ticket
            .assignee
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_default(),
        owner: ticket
            .owner
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_default(),
        labels: ticket.labels.join(", "),
        priority: ticket.priority,
        depends_on: ticket.depends_on.iter().map(|d| d.to_string()).collect(),
        evidence_policy: ticket.evidence_policy.to_string(),
        repo: ticket.repo.clone().unwrap_or_default(),
        created: when(ticket.created_at),
        updated: when(ticket.updated_at),
        attempts: ticket.attempts,
        resume: ticket.resume,
        not_before: when_opt(ticket.not_before),
        why,
        runnable,
        runs: view.runs.iter().rev().map(run_row).collect(),
        evidence: view.evidence.iter().rev().map(evidence_row).collect(),
        items,
        timeline,
        log,
        in_review: ticket.state == TicketState::Review,
        moves: moves(ticket.state),
        back: format!("/tickets/{}", ticket.id),
    };
    forms::with_notice_cleared(page(&page_)?, &headers)
}
