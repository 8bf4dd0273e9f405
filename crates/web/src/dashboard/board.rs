//! The board: a column per state, each the first tickets of its state (highest priority first)
//! with its count and a link to the rest; or, with a state chosen, that state's tickets a page
//! at a time. Every waiting ticket shown says why it is not running (the runnability policy,
//! through `App::explain_each`). Nothing here reads more than a page per column.

use super::view::{Shell, WhyLine, ago, clip};
use super::{PageResult, Visitor, forms, page};
use crate::Web;
use crate::api::types::TicketState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use mission_core::{Name, State as TicketStateCore, TicketId};
use mission_store::{TicketFilter, TicketSummary};
use serde::Deserialize;
use std::collections::HashMap;

/// Tickets per column of the board.
const COLUMN: u32 = 15;
/// Tickets per page of one state's list.
const LIST_PAGE: u32 = 50;

/// The columns, in the order work flows; `done` and `cancelled` only as counts and links.
const COLUMNS: [TicketStateCore; 7] = [
    TicketStateCore::Triage,
    TicketStateCore::Todo,
    TicketStateCore::Running,
    TicketStateCore::NeedsInput,
    TicketStateCore::Review,
    TicketStateCore::Blocked,
    TicketStateCore::Failed,
];

/// States whose tickets wait for something: each says why it is not running.
fn waits(state: TicketStateCore) -> bool {
    matches!(
        state,
        TicketStateCore::Todo | TicketStateCore::Triage | TicketStateCore::Blocked
    )
}

#[derive(Debug, Deserialize)]
pub struct BoardQuery {
    pub state: Option<String>,
    pub assignee: Option<String>,
    pub offset: Option<u32>,
}

pub struct Card {
    pub id: String,
    pub title: String,
    pub state: String,
    pub assignee: String,
    pub priority: i64,
    pub labels: String,
    pub age: String,
    /// Why it is not running, for a waiting ticket; `runnable` when nothing stops it.
    pub why: Vec<WhyLine>,
    pub runnable: bool,
}

pub struct Column {
    pub state: String,
    pub count: i64,
    pub cards: Vec<Card>,
    /// The link to the rest of the column.
    pub more: Option<String>,
}

pub struct Count {
    pub state: String,
    pub count: i64,
    pub href: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "board.html")]
pub struct BoardPage {
    pub shell: Shell,
    pub counts: Vec<Count>,
    pub total: i64,
    /// The board's columns, when no state is chosen.
    pub columns: Vec<Column>,
    /// One state's page, when a state is chosen.
    pub list: Option<ListView>,
    pub assignee: String,
    pub workers: Vec<String>,
    pub states: Vec<StateOption>,
}

pub struct StateOption {
    pub name: &'static str,
    pub selected: bool,
}

pub struct ListView {
    pub state: String,
    pub cards: Vec<Card>,
    pub first: u32,
    pub last: u32,
    pub previous: Option<String>,
    pub next: Option<String>,
}

fn state_str(state: TicketStateCore) -> &'static str {
    state.as_str()
}

fn href(state: Option<&str>, assignee: &str, offset: u32) -> String {
    let mut query = Vec::new();
    if let Some(state) = state {
        query.push(format!("state={}", forms::percent_encode(state)));
    }
    if !assignee.is_empty() {
        query.push(format!("assignee={}", forms::percent_encode(assignee)));
    }
    if offset > 0 {
        query.push(format!("offset={offset}"));
    }
    if query.is_empty() {
        "/".to_owned()
    } else {
        format!("/?{}", query.join("&"))
    }
}

pub async fn board(
    State(web): State<Web>,
    visitor: Visitor,
    headers: HeaderMap,
    Query(query): Query<BoardQuery>,
) -> PageResult {
    let state = match query.state.as_deref().filter(|s| !s.is_empty()) {
        Some(text) => Some(TicketStateCore::from(
            serde_json::from_value::<TicketState>(serde_json::Value::String(text.to_owned()))
                .map_err(|_| {
                    crate::error::ApiError::invalid(format!("state {text:?}: not a ticket state"))
                })?,
        )),
        None => None,
    };
    let assignee_text = query.assignee.clone().unwrap_or_default();
    let assignee = match assignee_text.trim() {
        "" => None,
        text => Some(
            Name::parse(text)
                .map_err(|e| crate::error::ApiError::invalid(e.to_string()).on_field("assignee"))?,
        ),
    };
    let counts_by_state: HashMap<TicketStateCore, i64> =
        web.app.ticket_counts().await?.into_iter().collect();
    let total = counts_by_state.values().sum();
    let all_states = COLUMNS
        .into_iter()
        .chain([TicketStateCore::Done, TicketStateCore::Cancelled]);
    let counts = all_states
        .clone()
        .map(|s| Count {
            state: state_str(s).to_owned(),
            count: counts_by_state.get(&s).copied().unwrap_or(0),
            href: href(Some(state_str(s)), &assignee_text, 0),
            current: Some(s) == state,
        })
        .collect();
    let now = web.app.clock().now();
    let (columns, list) = match state {
        None => {
            let mut columns = Vec::new();
            for column in COLUMNS {
                let filter = TicketFilter {
                    state: Some(column),
                    assignee: assignee.clone(),
                    limit: Some(COLUMN + 1),
                    offset: None,
                };
                let mut tickets = web.app.list_tickets(&filter).await?;
                let more = tickets.len() > COLUMN as usize;
                tickets.truncate(COLUMN as usize);
                columns.push(Column {
                    state: state_str(column).to_owned(),
                    count: counts_by_state.get(&column).copied().unwrap_or(0),
                    cards: cards(&web, tickets, now).await?,
                    more: more.then(|| href(Some(state_str(column)), &assignee_text, COLUMN)),
                });
            }
            (columns, None)
        }
        Some(state) => {
            let offset = query.offset.unwrap_or(0);
            let filter = TicketFilter {
                state: Some(state),
                assignee: assignee.clone(),
                limit: Some(LIST_PAGE + 1),
                offset: Some(offset),
            };
            let mut tickets = web.app.list_tickets(&filter).await?;
            let more = tickets.len() > LIST_PAGE as usize;
            tickets.truncate(LIST_PAGE as usize);
            let shown = tickets.len() as u32;
            let name = state_str(state);
            let list = ListView {
                state: name.to_owned(),
                cards: cards(&web, tickets, now).await?,
                first: offset + 1,
                last: offset + shown,
                previous: (offset > 0)
                    .then(|| href(Some(name), &assignee_text, offset.saturating_sub(LIST_PAGE))),
                next: more.then(|| href(Some(name), &assignee_text, offset + LIST_PAGE)),
            };
            (Vec::new(), Some(list))
        }
    };
    let workers = web
        .app
        .settings()
        .workforce
        .workers()
        .map(|(name, _)| name.to_string())
        .collect();
    let title = match state {
        Some(state) => format!("Board: {}", state_str(state)),
        None => "Board".to_owned(),
    };
    let shell = Shell::new(&web, &visitor, title, "board")
        .await
        .with_notice(forms::notice(&headers));
    let page_ = BoardPage {
        shell,
        counts,
        total,
        columns,
        list,
        assignee: assignee_text,
        workers,
        states: all_states
            .map(|s| StateOption {
                name: state_str(s),
                selected: Some(s) == state,
            })
            .collect(),
    };
    forms::with_notice_cleared(page(&page_)?, &headers)
}

/// Cards of `tickets`, each waiting one with the policy's reasons.
async fn cards(
    web: &Web,
    tickets: Vec<TicketSummary>,
    now: mission_core::Timestamp,
) -> Result<Vec<Card>, super::PageError> {
    let waiting: Vec<TicketId> = tickets
        .iter()
        .filter(|t| waits(t.state))
        .map(|t| t.id.clone())
        .collect();
    let mut explained: HashMap<String, (bool, Vec<WhyLine>)> = web
        .app
        .explain_each(&waiting)
        .await?
        .into_iter()
        .map(|e| {
            let why = e
                .reasons
                .into_iter()
                .map(|r| WhyLine {
                    code: r.code.as_str().to_owned(),
                    detail: r.detail,
                })
                .collect();
            (e.ticket.to_string(), (e.runnable, why))
        })
        .collect();
    Ok(tickets
        .into_iter()
        .map(|t| {
            let id = t.id.to_string();
            let (runnable, why) = explained.remove(&id).unwrap_or((false, Vec::new()));
            Card {
                title: clip(&t.title, 120),
                state: state_str(t.state).to_owned(),
                assignee: t.assignee.map(|n| n.to_string()).unwrap_or_default(),
                priority: t.priority,
                labels: t.labels.join(", "),
                age: ago(t.updated_at, now),
                why,
                runnable: runnable && waits(t.state),
                id,
            }
        })
        .collect())
}
