//! The dashboard's forms. Each handler checks the form's CSRF token (`PageForm`), calls the
//! use case the API route of the same action calls, and sends the browser back with a notice
//! (a short-lived cookie) — or answers an error page with the use case's status and message.

use super::{PageError, PageResult, Visitor};
use crate::Web;
use crate::api::inbox::{action, item_id};
use crate::api::tickets::{person, ticket_id};
use crate::api::types::TicketState;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use mission_core::TicketDraft;
use mission_core::review::ReviewDecision;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// The notice cookie: what the last form did, shown once by the next page.
const NOTICE_COOKIE: &str = "mc_notice";
/// The longest notice kept.
const MAX_NOTICE: usize = 600;
/// How long a "run now" form waits for its task before going back (the run goes on).
const TASK_WAIT: Duration = Duration::from_secs(3);

/// A form body (`application/x-www-form-urlencoded`) whose `csrf` field matched the request's
/// CSRF token; anything else is refused (403) before the handler runs.
pub struct PageForm<T>(pub T);

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for PageForm<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &S) -> Result<Self, PageError> {
        let (mut parts, body) = request.into_parts();
        let visitor =
            <Visitor as axum::extract::FromRequestParts<S>>::from_request_parts(&mut parts, state)
                .await?;
        let bytes = axum::body::Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|e| PageError {
                status: StatusCode::BAD_REQUEST,
                message: e.body_text(),
            })?;
        let sent: CsrfField = serde_urlencoded::from_bytes(&bytes).unwrap_or(CsrfField {
            csrf: String::new(),
        });
        if !visitor.csrf.accepts(&sent.csrf) {
            return Err(PageError {
                status: StatusCode::FORBIDDEN,
                message:
                    "the form's CSRF token is missing or wrong: reload the page and send it again"
                        .to_owned(),
            });
        }
        serde_urlencoded::from_bytes::<T>(&bytes)
            .map(PageForm)
            .map_err(|e| PageError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: format!("the form does not fit: {e}"),
            })
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((high * 16 + low) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The notice the last form left, if any.
pub fn notice(headers: &HeaderMap) -> Option<String> {
    crate::session::cookie(headers, NOTICE_COOKIE)
        .map(|v| percent_decode(&v))
        .filter(|v| !v.is_empty())
}

/// Clears the notice once a page has shown it.
pub fn with_notice_cleared(
    mut response: axum::response::Response,
    headers: &HeaderMap,
) -> PageResult {
    if crate::session::cookie(headers, NOTICE_COOKIE).is_some()
        && let Ok(value) = HeaderValue::from_str(&format!(
            "{NOTICE_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        ))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// Where a form sends the browser back: a path of this server (never another site).
fn back_to(back: Option<&str>, default: &str) -> String {
    match back {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control) =>
        {
            path.to_owned()
        }
        _ => default.to_owned(),
    }
}

/// Back to `to`, with `notice` shown there once.
fn done_to(to: &str, notice: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    let notice: String = notice.chars().take(MAX_NOTICE).collect();
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{NOTICE_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=60",
        percent_encode(&notice)
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn ticket_page(id: &mission_core::TicketId) -> String {
    format!("/tickets/{id}")
}

#[derive(Deserialize)]
pub struct NewTicketForm {
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    assignee: String,
    #[serde(default)]
    labels: String,
    #[serde(default)]
    priority: String,
}

fn optional(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// A new ticket (`App::add_ticket`, as `POST /api/v1/tickets`).
pub async fn create_ticket(
    State(web): State<Web>,
    visitor: Visitor,
    PageForm(form): PageForm<NewTicketForm>,
) -> PageResult {
    let priority = match form.priority.trim() {
        "" => None,
        text => Some(text.parse::<i64>().map_err(|_| PageError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: format!("priority {text:?}: not a whole number"),
        })?),
    };
    let draft = TicketDraft {
        title: form.title,
        body: form.body,
        assignee: optional(&form.assignee),
        labels: form
            .labels
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        priority,
        ..TicketDraft::default()
    };
    let ticket = web
        .app
        .add_ticket(draft, &visitor.principal.dashboard_actor())
        .await?;
    Ok(done_to(
        &ticket_page(&ticket.id),
        &format!("{} created ({})", ticket.id, ticket.state),
    ))
}

#[derive(Deserialize)]
pub struct MoveForm {
    state: TicketState,
    #[serde(default)]
    reason: String,
}

/// An operator's move (`App::move_ticket`).
pub async fn move_ticket(
    State(web): State<Web>,
    visitor: Visitor,
    Path(id): Path<String>,
    PageForm(form): PageForm<MoveForm>,
) -> PageResult {
    let id = ticket_id(&web.app, &id)?;
    let ticket = web
        .app
        .move_ticket(
            &id,
            form.state.into(),
            optional(&form.reason),
            &visitor.principal.dashboard_actor(),
        )
        .await?;
    Ok(done_to(
        &ticket_page(&id),
        &format!("{} moved to {}", ticket.id, ticket.state),
    ))
}

#[derive(Deserialize)]
pub struct AnswerForm {
    text: String,
}

/// Answers the ticket's open question (`App::answer`).
pub async fn answer(
    State(web): State<Web>,
    visitor: Visitor,
    Path(id): Path<String>,
    PageForm(form): PageForm<AnswerForm>,
) -> PageResult {
    let id = ticket_id(&web.app, &id)?;
    let ticket = web
        .app
        .answer(&id, &form.text, &visitor.principal.dashboard_actor())
        .await?;
    Ok(done_to(
        &ticket_page(&id),
        &format!("{} answered: back to {}", ticket.id, ticket.state),
    ))
}

#[derive(Deserialize)]
pub struct EmptyForm {}

/// Asks the gate (`App::close_ticket`); a refusal is a page naming every gap.
pub async fn done(
    State(web): State<Web>,
    visitor: Visitor,
    Path(id): Path<String>,
    PageForm(_): PageForm<EmptyForm>,
) -> PageResult {
    let id = ticket_id(&web.app, &id)?;
    let closing = web
        .app
        .close_ticket(&id, &visitor.principal.dashboard_actor())
        .await?;
    Ok(done_to(
        &ticket_page(&id),
        &format!("{} is {}", closing.ticket.id, closing.ticket.state),
    ))
}

#[derive(Deserialize)]
pub struct ReviewForm {
    decision: String,
    #[serde(default)]
    reason: String,
}

/// A person's verdict (`App::review_ticket`); an approval asks the gate at once.
pub async fn review(
    State(web): State<Web>,
    visitor: Visitor,
    Path(id): Path<String>,
    PageForm(form): PageForm<ReviewForm>,
) -> PageResult {
    let id = ticket_id(&web.app, &id)?;
    let decision: ReviewDecision = form.decision.parse().map_err(|message| PageError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        message,
    })?;
    let reviewed = web
        .app
        .review_ticket(
            &id,
            decision,
            &form.reason,
            person(None, "reviewer")?,
            &visitor.principal.dashboard_actor(),
        )
        .await?;
    let mut notice = format!(
        "{} {}: {}",
        reviewed.ticket.id,
        reviewed.review.outcome.as_str(),
        reviewed.ticket.state
    );
    if let Some(gate) = reviewed.gate.as_ref().filter(|g| !g.done) {
        notice.push_str(&format!("; the gate says: {}", gate.missing.join("; ")));
    }
    Ok(done_to(&ticket_page(&id), &notice))
}

#[derive(Deserialize)]
pub struct ActForm {
    action: String,
    #[serde(default)]
    text: String,
    back: Option<String>,
}

/// A person acts on an inbox item (`App::inbox_act`).
pub async fn act(
    State(web): State<Web>,
    visitor: Visitor,
    Path(id): Path<String>,
    PageForm(form): PageForm<ActForm>,
) -> PageResult {
    let id = item_id(&id)?;
    let action = action(&form.action)?;
    let acted = web
        .app
        .inbox_act(
            id,
            action,
            optional(&form.text),
            person(None, "by")?,
            &visitor.principal.dashboard_actor(),
        )
        .await?;
    let mut notice = format!("inbox item {} {}", acted.item.id, action);
    if let Some(ticket) = &acted.item.ticket {
        notice.push_str(&format!(" ({ticket})"));
    }
    if let Some(gate) = acted.gate.as_ref() {
        notice.push_str(&if gate.done {
            format!("; {} is done", gate.ticket.id)
        } else {
            format!("; the gate says: {}", gate.missing.join("; "))
        });
    }
    Ok(done_to(&back_to(form.back.as_deref(), "/inbox"), &notice))
}

#[derive(Deserialize)]
pub struct ResolveForm {
    #[serde(default)]
    reason: String,
}

/// Resolves an incident (`App::resolve_incident`).
pub async fn resolve(
    State(web): State<Web>,
    visitor: Visitor,
    Path(id): Path<String>,
    PageForm(form): PageForm<ResolveForm>,
) -> PageResult {
    let id = web.app.incident_id(&id)?;
    let incident = web
        .app
        .resolve_incident(id, &form.reason, &visitor.principal.dashboard_actor())
        .await?;
    Ok(done_to(
        &format!("/incidents/{}", incident.id),
        &format!("incident {} resolved", incident.id),
    ))
}

/// Runs a task now (`App::run_task`, the path of a scheduled firing); goes back once it ended,
/// or after a few seconds while it goes on.
pub async fn run_task(
    State(web): State<Web>,
    Path(name): Path<String>,
    PageForm(_): PageForm<EmptyForm>,
) -> PageResult {
    let app = web.app.clone();
    let task = name.clone();
    let mut running = tokio::spawn(async move { app.run_task(&task).await });
    let to = format!("/tasks/{}", percent_encode(&name));
    match tokio::time::timeout(TASK_WAIT, &mut running).await {
        Ok(joined) => {
            let report = joined.map_err(|e| PageError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: format!("the task run failed: {e}"),
            })??;
            Ok(done_to(
                &to,
                &format!(
                    "{}: {} ({})",
                    report.task,
                    report.result.outcome.as_str(),
                    report.result.reason
                ),
            ))
        }
        Err(_) => Ok(done_to(&to, &format!("{name} is running"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_back_stays_here() {
        let text = "MC-1 answered: ü & 100% /x?y=z";
        assert_eq!(percent_decode(&percent_encode(text)), text);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(back_to(Some("/tickets/MC-1"), "/inbox"), "/tickets/MC-1");
        for foreign in [
            "//evil.example.com",
            "https://evil.example.com",
            "/\\evil",
            "x",
        ] {
            assert_eq!(back_to(Some(foreign), "/inbox"), "/inbox", "{foreign}");
        }
        assert_eq!(back_to(None, "/inbox"), "/inbox");
    }
}
