//! The inbox: a page of items, one item, and a person acting on it — the same use cases as
//! `mission inbox list | show | act`.

use super::tickets::person;
use super::types::{ActOnItem, ActedBody, InboxItemBody, InboxPage, InboxQuery};
use super::{ApiJson, ApiQuery};
use crate::Web;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use mission_core::inbox::InboxStatus;
use mission_core::{ActionKind, InboxId};
use mission_store::InboxFilter;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

/// Parses an inbox item id (`7`).
pub(crate) fn item_id(text: &str) -> ApiResult<InboxId> {
    text.parse::<InboxId>()
        .ok()
        .filter(|id| id.get() > 0)
        .ok_or_else(|| {
            ApiError::invalid(format!("invalid inbox item id {text:?}: expected a number"))
                .on_field("id")
        })
}

/// The filter of a page of the inbox: `open` (the default), `all`, or one status.
pub(crate) fn filter(
    web: &Web,
    status: Option<&str>,
    ticket: Option<&str>,
    limit: u32,
    after: Option<i64>,
) -> ApiResult<InboxFilter> {
    let (open, status) = match status.unwrap_or("open") {
        "open" => (true, None),
        "all" => (false, None),
        other => (
            false,
            Some(other.parse::<InboxStatus>().map_err(|_| {
                ApiError::invalid(format!(
                    "status {other:?}: must be open, all, pending, delivered, acted or failed"
                ))
                .on_field("status")
            })?),
        ),
    };
    let ticket = ticket
        .map(|t| {
            web.app
                .ticket_id(t)
                .map_err(|e| ApiError::from(e).on_field("ticket"))
        })
        .transpose()?;
    Ok(InboxFilter {
        status,
        open,
        ticket,
        after: after.map(InboxId::new),
        limit: Some(limit),
        ..InboxFilter::default()
    })
}

/// Items waiting for a decision (or as filtered), oldest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/inbox", tag = "inbox", params(InboxQuery),
    responses(
        (status = 200, body = InboxPage),
        (status = 422, body = ErrorBody),
    ))]
pub async fn list(
    State(web): State<Web>,
    ApiQuery(query): ApiQuery<InboxQuery>,
) -> ApiResult<Json<InboxPage>> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(
            ApiError::invalid(format!("limit {limit}: must be 1..={MAX_PAGE}")).on_field("limit"),
        );
    }
    // One more than the page tells whether there is a next one.
    let filter = filter(
        &web,
        query.status.as_deref(),
        query.ticket.as_deref(),
        limit + 1,
        query.after,
    )?;
    let mut items = web.app.inbox_list(&filter).await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_after = more.then(|| items.last().map(|i| i.id.get())).flatten();
    Ok(Json(InboxPage {
        items: items.into_iter().map(InboxItemBody::from).collect(),
        next_after,
    }))
}

/// An item, with its action once acted on.
#[utoipa::path(get, path = "/api/v1/inbox/{id}", tag = "inbox",
    params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, body = InboxItemBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn show(
    State(web): State<Web>,
    Path(id): Path<String>,
) -> ApiResult<Json<InboxItemBody>> {
    let id = item_id(&id)?;
    Ok(Json(web.app.inbox_show(id).await?.into()))
}

/// A person acts on an item: the item is `acted` in the same transaction that writes the action
/// and its effect on the ticket (an answer requeues it, an approval asks the gate, a rejection
/// sends it back). A settled item, or an action its kind does not allow, is refused (409).
#[utoipa::path(post, path = "/api/v1/inbox/{id}/act", tag = "inbox", request_body = ActOnItem,
    params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, body = ActedBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "settled, or not an action of its kind"),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn act(
    State(web): State<Web>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ActOnItem>,
) -> ApiResult<Json<ActedBody>> {
    let id = item_id(&id)?;
    let action = action(&request.action)?;
    let by = person(request.by.as_deref(), "by")?;
    let acted = web
        .app
        .inbox_act(id, action, request.text, by, &principal.actor())
        .await?;
    Ok(Json(acted.into()))
}

pub(crate) fn action(text: &str) -> ApiResult<ActionKind> {
    text.parse::<ActionKind>()
        .map_err(|e| ApiError::invalid(e.to_string()).on_field("action"))
}
