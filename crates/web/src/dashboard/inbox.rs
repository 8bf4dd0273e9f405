//! The inbox: items waiting for a decision (or as filtered), oldest first, a page at a time,
//! each with the forms of the actions its kind allows — answer, approve, reject, requeue,
//! escalate, dismiss — posting to `App::inbox_act`.

use super::view::{ItemView, Shell};
use super::{PageResult, Visitor, forms, page};
use crate::Web;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;

const PAGE: u32 = 50;

#[derive(Debug, Deserialize)]
pub struct InboxQuery {
    pub status: Option<String>,
    pub after: Option<i64>,
}

pub struct Filter {
    pub name: &'static str,
    pub href: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "inbox.html")]
pub struct InboxPage {
    pub shell: Shell,
    pub status: String,
    pub filters: Vec<Filter>,
    pub items: Vec<ItemView>,
    pub next: Option<String>,
    pub back: String,
}

pub async fn inbox(
    State(web): State<Web>,
    visitor: Visitor,
    headers: HeaderMap,
    Query(query): Query<InboxQuery>,
) -> PageResult {
    let status = query
        .status
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "open".to_owned());
    let filter = crate::api::inbox::filter(&web, Some(&status), None, PAGE + 1, query.after)?;
    let mut items = web.app.inbox_list(&filter).await?;
    let more = items.len() > PAGE as usize;
    items.truncate(PAGE as usize);
    let next = more
        .then(|| {
            items
                .last()
                .map(|i| format!("/inbox?status={status}&after={}", i.id))
        })
        .flatten();
    let now = web.app.clock().now();
    let filters = ["open", "pending", "delivered", "acted", "failed", "all"]
        .into_iter()
        .map(|name| Filter {
            name,
            href: format!("/inbox?status={name}"),
            current: name == status,
        })
        .collect();
    let back = match query.after {
        Some(after) => format!("/inbox?status={status}&after={after}"),
        None => format!("/inbox?status={status}"),
    };
    let shell = Shell::new(&web, &visitor, "Inbox".to_owned(), "inbox")
        .await
        .with_notice(forms::notice(&headers));
    let page_ = InboxPage {
        shell,
        status,
        filters,
        items: items.into_iter().map(|i| ItemView::new(i, now)).collect(),
        next,
        back,
    };
    forms::with_notice_cleared(page(&page_)?, &headers)
}
