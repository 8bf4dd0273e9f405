//! Tickets: list, create (idempotent with `Idempotency-Key`), show, edit, move, answer, done,
//! review, explain.
//! Each handler parses, calls one use case of `App`, and converts.

use super::types::{
    AnswerTicket, CreateTicket, EditTicket, ExplanationBody, GateBody, MoveTicket, ReviewTicket,
    ReviewedBody, TicketBody, TicketDetail, TicketListItem, TicketPage, TicketQuery,
};
use super::{ApiJson, ApiQuery, check_json, parse_json};
use crate::Web;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mission_core::{EvidencePolicy, Name, TicketDraft, TicketId, TicketPatch, Timestamp};
use mission_engine::App;
use mission_store::{IdempotencyKey, Reservation, TicketFilter};
use sha2::{Digest, Sha256};

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

/// How long an idempotency key is remembered.
const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The board, highest priority first, a page at a time.
#[utoipa::path(get, path = "/api/v1/tickets", tag = "tickets", params(TicketQuery),
    responses(
        (status = 200, body = TicketPage),
        (status = 422, body = ErrorBody, description = "a bad filter or page"),
    ))]
pub async fn list(
    State(web): State<Web>,
    ApiQuery(query): ApiQuery<TicketQuery>,
) -> ApiResult<Json<TicketPage>> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(
            ApiError::invalid(format!("limit {limit}: must be 1..={MAX_PAGE}")).on_field("limit"),
        );
    }
    let offset = query.offset.unwrap_or(0);
    let assignee = query
        .assignee
        .as_deref()
        .map(Name::parse)
        .transpose()
        .map_err(|e| ApiError::invalid(e.to_string()).on_field("assignee"))?;
    // One more than the page tells whether there is a next one.
    let filter = TicketFilter {
        state: query.state.map(Into::into),
        assignee,
        limit: Some(limit + 1),
        offset: Some(offset),
    };
    let mut tickets = web.app.list_tickets(&filter).await?;
    let more = tickets.len() > limit as usize;
    tickets.truncate(limit as usize);
    Ok(Json(TicketPage {
        tickets: tickets.into_iter().map(TicketListItem::from).collect(),
        limit,
        offset,
        next_offset: more.then_some(offset + limit),
    }))
}

/// Creates a ticket (`todo` when assigned, else `triage`) and wakes the dispatcher. With an
/// `Idempotency-Key`, a retry of the same request returns the first response (for 24 hours);
/// the same key with another request is refused.
#[utoipa::path(post, path = "/api/v1/tickets", tag = "tickets", request_body = CreateTicket,
    params(("Idempotency-Key" = Option<String>, Header,
        pattern = "^[\\x21-\\x7e]([\\x20-\\x7e]{0,253}[\\x21-\\x7e])?$",
        description = "Makes retries safe: the same key returns the first result")),
    responses(
        (status = 201, body = TicketBody, headers(("Location" = String))),
        (status = 409, body = ErrorBody, description = "the key's first request is still running"),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "invalid ticket, or the key was used for another request"),
    ))]
pub async fn create(
    State(web): State<Web>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    check_json(&headers)?;
    let body = body.map_err(super::body_rejected)?;
    let request: CreateTicket = parse_json(&body)?;
    let Some(key) = headers.get("idempotency-key") else {
        let ticket = add(&web.app, request, &principal).await?;
        return Ok(created(ticket));
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
            ))
            .on_field("Idempotency-Key")
        })?;
    let mut fingerprint = Sha256::new();
    fingerprint.update(b"POST /api/v1/tickets\n");
    fingerprint.update(&body);
    let key = IdempotencyKey {
        principal: principal.key(),
        key: key.to_owned(),
        request_hash: format!("{:x}", fingerprint.finalize()),
    };
    let store = web.app.store().clone();
    let now = web.app.clock().now();
    let forget_before = Timestamp::from_millis(now.as_millis() - IDEMPOTENCY_WINDOW_MS);
    match store
        .reserve_idempotency_key(&key, now, forget_before)
        .await?
    {
        Reservation::Existing {
            request_hash,
            response,
        } => {
            if request_hash != key.request_hash {
                return Err(ApiError::invalid(
                    "this Idempotency-Key was used for a different request",
                )
                .on_field("Idempotency-Key"));
            }
            let Some((status, body)) = response else {
                return Err(ApiError::conflict(
                    "the first request with this Idempotency-Key has not finished",
                ));
            };
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let location = (status == StatusCode::CREATED)
                .then(|| serde_json::from_str::<serde_json::Value>(&body).ok())
                .flatten()
                .and_then(|v| v["id"].as_str().map(|id| format!("/api/v1/tickets/{id}")))
                .and_then(|l| HeaderValue::from_str(&l).ok());
            let mut response = (
                status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response();
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            if let Some(location) = location {
                response.headers_mut().insert(header::LOCATION, location);
            }
            Ok(response)
        }
        Reservation::Reserved => {
            // The create and the record of its result run to their end even if the client goes
            // away, so that the key never stays reserved after a ticket was made.
            let app = web.app.clone();
            let finished = tokio::spawn(async move {
                let result = add(&app, request, &principal).await;
                let recorded = match &result {
                    Ok(ticket) => {
                        let body = serde_json::to_string(ticket).unwrap_or_default();
                        store.complete_idempotency_key(&key, 201, &body).await
                    }
                    // A failure a retry may fix gives the key back.
                    Err(error) if error.status.is_server_error() => {
                        store.release_idempotency_key(&key).await
                    }
                    Err(error) => {
                        let body = serde_json::to_string(&error.body()).unwrap_or_default();
                        store
                            .complete_idempotency_key(&key, error.status.as_u16(), &body)
                            .await
                    }
                };
                if let Err(error) = recorded {
                    tracing::error!(%error, "could not record an idempotent create's result");
                }
                result
            })
            .await
            .map_err(|e| ApiError::internal(format!("the create failed: {e}")))?;
            Ok(created(finished?))
        }
    }
}

async fn add(app: &App, request: CreateTicket, principal: &Principal) -> ApiResult<TicketBody> {
    let draft = TicketDraft {
        title: request.title,
        body: request.body,
        assignee: request.assignee,
        owner: request.owner,
        labels: request.labels,
        priority: request.priority,
        depends_on: ticket_ids(app, &request.depends_on, "depends_on")?,
        evidence_policy: request.evidence_policy,
        repo: request.repo,
    };
    Ok(app.add_ticket(draft, &principal.actor()).await?.into())
}

fn created(ticket: TicketBody) -> Response {
    let location = format!("/api/v1/tickets/{}", ticket.id);
    let mut response = (StatusCode::CREATED, Json(ticket)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn ticket_ids(app: &App, texts: &[String], field: &'static str) -> ApiResult<Vec<TicketId>> {
    texts
        .iter()
        .map(|t| {
            app.ticket_id(t)
                .map_err(|e| ApiError::from(e).on_field(field))
        })
        .collect()
}

pub(crate) fn ticket_id(app: &App, text: &str) -> ApiResult<TicketId> {
    Ok(app.ticket_id(text)?)
}

/// A ticket with its runs and its timeline.
#[utoipa::path(get, path = "/api/v1/tickets/{id}", tag = "tickets",
    params(("id" = String, Path, pattern = "^([A-Z][A-Z0-9]{0,9}-)?[1-9][0-9]{0,17}$", description = "`MC-12`, or `12` for this instance's key")),
    responses(
        (status = 200, body = TicketDetail),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "not a ticket id"),
    ))]
pub async fn show(State(web): State<Web>, Path(id): Path<String>) -> ApiResult<Json<TicketDetail>> {
    let id = ticket_id(&web.app, &id)?;
    Ok(Json(web.app.show_ticket(&id).await?.into()))
}

/// Changes fields: an absent field is kept, `null` clears the assignee, owner or repo. A
/// dependency cycle is refused.
#[utoipa::path(patch, path = "/api/v1/tickets/{id}", tag = "tickets", request_body = EditTicket,
    params(("id" = String, Path, pattern = "^([A-Z][A-Z0-9]{0,9}-)?[1-9][0-9]{0,17}$")),
    responses(
        (status = 200, body = TicketBody),
        (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "invalid fields, nothing to change, or a cycle"),
    ))]
pub async fn edit(
    State(web): State<Web>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<EditTicket>,
) -> ApiResult<Json<TicketBody>> {
    let id = ticket_id(&web.app, &id)?;
    let name = |text: Option<Option<String>>, field: &'static str| {
        text.map(|value| {
            value
                .as_deref()
                .map(Name::parse)
                .transpose()
                .map_err(|e| ApiError::invalid(e.to_string()).on_field(field))
        })
        .transpose()
    };
    let patch = TicketPatch {
        title: request.title,
        body: request.body,
        assignee: name(request.assignee, "assignee")?,
        owner: name(request.owner, "owner")?,
        labels: request.labels,
        priority: request.priority,
        depends_on: request
            .depends_on
            .map(|deps| ticket_ids(&web.app, &deps, "depends_on"))
            .transpose()?,
        evidence_policy: request
            .evidence_policy
            .as_deref()
            .map(EvidencePolicy::parse)
            .transpose()
            .map_err(|e| ApiError::from(mission_engine::AppError::from(e)))?,
        repo: request.repo,
    };
    let ticket = web.app.edit_ticket(&id, patch, &principal.actor()).await?;
    Ok(Json(ticket.into()))
}

/// An operator's move. `running`, `review`, `needs_input` and `done` are reached only through
/// the dispatcher, runs, answers and the gate: asking for them is a conflict.
#[utoipa::path(post, path = "/api/v1/tickets/{id}/move", tag = "tickets", request_body = MoveTicket,
    params(("id" = String, Path, pattern = "^([A-Z][A-Z0-9]{0,9}-)?[1-9][0-9]{0,17}$")),
    responses(
        (status = 200, body = TicketBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "not a legal move from the ticket's state"),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn move_ticket(
    State(web): State<Web>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<MoveTicket>,
) -> ApiResult<Json<TicketBody>> {
    let id = ticket_id(&web.app, &id)?;
    let ticket = web
        .app
        .move_ticket(
            &id,
            request.state.into(),
            request.reason,
            &principal.actor(),
        )
        .await?;
    Ok(Json(ticket.into()))
}

/// Answers the ticket's open question; the ticket is requeued for the needs-input lane, which
/// resumes the same agent session.
#[utoipa::path(post, path = "/api/v1/tickets/{id}/answer", tag = "tickets",
    request_body = AnswerTicket, params(("id" = String, Path, pattern = "^([A-Z][A-Z0-9]{0,9}-)?[1-9][0-9]{0,17}$")),
    responses(
        (status = 200, body = TicketBody),
        (status = 404, body = ErrorBody, description = "no such ticket, or no open question"),
        (status = 409, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn answer(
    State(web): State<Web>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<AnswerTicket>,
) -> ApiResult<Json<TicketBody>> {
    let id = ticket_id(&web.app, &id)?;
    let ticket = web
        .app
        .answer(&id, &request.text, &principal.actor())
        .await?;
    Ok(Json(ticket.into()))
}

/// Whether the ticket may be dispatched now, and every reason why not (the runnability
/// policy, with the dispatcher's own inputs). Not runnable is an answer, not an error: 200.
#[utoipa::path(get, path = "/api/v1/tickets/{id}/explain", tag = "tickets",
    params(("id" = String, Path, pattern = "^([A-Z][A-Z0-9]{0,9}-)?[1-9][0-9]{0,17}$")),
    responses(
        (status = 200, body = ExplanationBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn explain(
    State(web): State<Web>,
    Path(id): Path<String>,
) -> ApiResult<Json<ExplanationBody>> {
    let id = ticket_id(&web.app, &id)?;
    Ok(Json(web.app.explain(&id).await?.into()))
}

/// `done`: asks the gate now. The ticket is done when its evidence verifies (again, now) and
/// its review allows; otherwise a refusal (409) names every gap.
#[utoipa::path(post, path = "/api/v1/tickets/{id}/done", tag = "tickets",
    params(("id" = String, Path, pattern = "^([A-Z][A-Z0-9]{0,9}-)?[1-9][0-9]{0,17}$")),
    responses(
        (status = 200, body = GateBody, description = "done"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the gate refused: every gap named"),
        (status = 422, body = ErrorBody),
    ))]
pub async fn done(
    State(web): State<Web>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<GateBody>> {
    let id = ticket_id(&web.app, &id)?;
    let closing = web.app.close_ticket(&id, &principal.actor()).await?;
    Ok(Json(closing.into()))
}

/// A person's verdict on a ticket in review. An approval asks the gate at once; a rejection
/// sends the ticket back to todo with the reason. An author's own verdict is refused (409).
#[utoipa::path(post, path = "/api/v1/tickets/{id}/review", tag = "tickets",
    request_body = ReviewTicket, params(("id" = String, Path, pattern = "^([A-Z][A-Z0-9]{0,9}-)?[1-9][0-9]{0,17}$")),
    responses(
        (status = 200, body = ReviewedBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "not in review, or the reviewer may not review it"),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn review(
    State(web): State<Web>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ReviewTicket>,
) -> ApiResult<Json<ReviewedBody>> {
    let id = ticket_id(&web.app, &id)?;
    let reviewer = person(request.reviewer.as_deref(), "reviewer")?;
    let reviewed = web
        .app
        .review_ticket(
            &id,
            request.decision.into(),
            &request.reason,
            reviewer,
            &principal.actor(),
        )
        .await?;
    Ok(Json(reviewed.into()))
}

/// The name a person acts under: given, or `operator` (as the CLI's `--as`).
pub(crate) fn person(name: Option<&str>, field: &'static str) -> ApiResult<Name> {
    Name::parse(name.unwrap_or("operator"))
        .map_err(|e| ApiError::invalid(e.to_string()).on_field(field))
}
