//! The event log: a page at a time by sequence number, and live as Server-Sent Events.
//!
//! A stream replays from the store everything after its starting point (`Last-Event-ID`, so a
//! reconnecting client misses nothing), then follows: one poller per server watches the newest
//! sequence number while someone listens, and each stream reads what is new from the store at
//! its own pace. A slow client only holds its own cursor: nothing waits for it, nothing is
//! buffered for it beyond one page.

use super::ApiQuery;
use super::types::{EventBody, EventPage, EventQueryParams, EventStreamParams};
use crate::Web;
use crate::error::{ApiError, ApiResult, ErrorBody};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use mission_core::{Event, TicketId};
use mission_engine::App;
use mission_store::{EventQuery, Store};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, watch};

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
/// Events a stream reads from the store at once.
const STREAM_PAGE: u32 = 200;
/// A comment line this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The newest event's sequence number, watched while streams are open, and the server's
/// shutdown, which ends them.
#[derive(Clone)]
pub struct EventFeed(Arc<FeedInner>);

struct FeedInner {
    store: Arc<dyn Store>,
    poll: Duration,
    head: watch::Sender<i64>,
    closed: watch::Sender<bool>,
    poller: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl EventFeed {
    pub fn new(store: Arc<dyn Store>, poll: Duration) -> Self {
        EventFeed(Arc::new(FeedInner {
            store,
            poll,
            head: watch::Sender::new(0),
            closed: watch::Sender::new(false),
            poller: Mutex::new(None),
        }))
    }

    /// A stream's view of the feed; starts the poller on first use.
    fn subscribe(&self) -> (watch::Receiver<i64>, watch::Receiver<bool>) {
        let receivers = (self.0.head.subscribe(), self.0.closed.subscribe());
        let mut poller = self.0.poller.lock().unwrap_or_else(|e| e.into_inner());
        if poller.is_none() {
            *poller = Some(tokio::spawn(poll(self.0.clone())));
        }
        receivers
    }

    /// Turns true when the server shuts down: other streams (a run's log) end then too.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.0.closed.subscribe()
    }

    /// Ends every stream and the poller (the server is shutting down).
    pub fn close(&self) {
        self.0.closed.send_replace(true);
        if let Some(poller) = self
            .0
            .poller
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            poller.abort();
        }
    }
}

/// Reads the newest sequence number every `poll` while a stream listens.
async fn poll(feed: Arc<FeedInner>) {
    let mut failing = false;
    loop {
        tokio::time::sleep(feed.poll).await;
        if *feed.closed.borrow() {
            return;
        }
        if feed.head.receiver_count() == 0 {
            continue;
        }
        match feed.store.last_event_seq().await {
            Ok(seq) => {
                failing = false;
                feed.head.send_if_modified(|head| {
                    let changed = *head != seq;
                    *head = seq;
                    changed
                });
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "event streams cannot read the newest event");
                }
                failing = true;
            }
        }
    }
}

/// A page of the event log: the events after `since`, oldest first.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventQueryParams),
    responses(
        (status = 200, body = EventPage),
        (status = 422, body = ErrorBody),
    ))]
pub async fn list(
    State(web): State<Web>,
    ApiQuery(params): ApiQuery<EventQueryParams>,
) -> ApiResult<Json<EventPage>> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(
            ApiError::invalid(format!("limit {limit}: must be 1..={MAX_PAGE}")).on_field("limit"),
        );
    }
    let since = params.since.unwrap_or(0);
    let ticket = ticket_filter(&web.app, params.ticket.as_deref())?;
    let events = web
        .app
        .events(&EventQuery {
            since,
            limit,
            ticket,
        })
        .await?;
    let next_since = events.last().map_or(since, |e| e.seq);
    Ok(Json(EventPage {
        events: events.into_iter().map(EventBody::from).collect(),
        next_since,
    }))
}

fn ticket_filter(app: &App, ticket: Option<&str>) -> ApiResult<Option<TicketId>> {
    ticket
        .map(|t| {
            app.ticket_id(t)
                .map_err(|e| ApiError::from(e).on_field("ticket"))
        })
        .transpose()
}

/// The event log live, as Server-Sent Events: each event's `id` is its sequence number and its
/// `data` the event as JSON. A client that reconnects with `Last-Event-ID` gets everything
/// after it, then what follows.
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events",
    params(
        EventStreamParams,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this sequence number"),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
            description = "`id: SEQ` and `data: {event as JSON}` per event; comment lines keep it alive"),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "too many open streams"),
    ))]
pub async fn stream(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<EventStreamParams>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let permit = web.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many event streams open; retry shortly",
        )
    })?;
    let ticket = ticket_filter(&web.app, params.ticket.as_deref())?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::invalid("Last-Event-ID: must be an event's sequence number")
                        .on_field("Last-Event-ID")
                })
        })
        .transpose()?;
    let since = match last_event_id.or(params.since) {
        Some(since) if since < 0 => {
            return Err(
                ApiError::invalid(format!("since {since}: must be 0 or more")).on_field("since"),
            );
        }
        Some(since) => since,
        None => web.app.store().last_event_seq().await?,
    };
    let (head, closed) = web.feed.subscribe();
    let state = Follow {
        app: web.app.clone(),
        since,
        ticket,
        buffer: VecDeque::new(),
        head,
        closed,
        _permit: permit,
    };
    let events = futures_util::stream::unfold(state, |mut follow| async move {
        let event = follow.next().await?;
        Some((Ok(sse(event)), follow))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// One stream's cursor.
struct Follow {
    app: App,
    since: i64,
    ticket: Option<TicketId>,
    buffer: VecDeque<Event>,
    head: watch::Receiver<i64>,
    closed: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
}

impl Follow {
    /// The next event; `None` ends the stream (shutdown, or a store failure: the client
    /// reconnects with its `Last-Event-ID`).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.since = event.seq;
                return Some(event);
            }
            if *self.closed.borrow() {
                return None;
            }
            let query = EventQuery {
                since: self.since,
                limit: STREAM_PAGE,
                ticket: self.ticket.clone(),
            };
            match self.app.events(&query).await {
                Ok(events) if !events.is_empty() => {
                    self.buffer.extend(events);
                    continue;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, since = self.since, "an event stream ends: reading events failed");
                    return None;
                }
            }
            // Nothing new: wait until the newest event moves, or the server stops.
            tokio::select! {
                changed = self.head.changed() => if changed.is_err() { return None; },
                _ = self.closed.changed() => {}
            }
        }
    }
}

fn sse(event: Event) -> SseEvent {
    let id = event.seq.to_string();
    let body = EventBody::from(event);
    SseEvent::default()
        .id(id)
        .json_data(&body)
        .unwrap_or_else(|_| SseEvent::default().comment("an event could not be encoded"))
}
