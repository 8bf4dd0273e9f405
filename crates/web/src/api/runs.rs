//! A run's log: its tail (or a read on from an offset), and the live log as Server-Sent Events.
//! The use case reads the file safely and redacts the workers' secrets; these handlers only
//! page through it.
//!
//! The stream's event ids are byte offsets: a client that reconnects with `Last-Event-ID` goes on
//! from where it was. It ends with an `end` event once the run has ended and its log is read
//! to the end.

use super::ApiQuery;
use super::tickets::ticket_id;
use super::types::{RunLogBody, RunLogQuery, RunLogStreamParams};
use crate::Web;
use crate::error::{ApiError, ApiResult, ErrorBody};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use mission_core::TicketId;
use mission_engine::App;
use mission_engine::app::{LogChunk, LogWindow, MAX_LOG_READ};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, watch};

/// The tail shown by default.
pub const DEFAULT_TAIL: u64 = 64 * 1024;
/// A comment line this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// After its run ended, a log is followed this much longer (the agent may still be exiting).
const AFTER_END_MS: i64 = 2_000;

fn attempt_number(text: &str) -> ApiResult<i64> {
    text.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::invalid(format!("attempt {text:?}: expected a number from 1")).on_field("attempt")
    })
}

/// The tail of a run's log, or what follows `from`; secrets redacted. Reads stop at a line end
/// while the run may still write.
#[utoipa::path(get, path = "/api/v1/tickets/{id}/runs/{attempt}/log", tag = "runs",
    params(("id" = String, Path, pattern = "^([A-Z][A-Z0-9]{0,9}-)?[1-9][0-9]{0,17}$"), ("attempt" = i64, Path, minimum = 1), RunLogQuery),
    responses(
        (status = 200, body = RunLogBody),
        (status = 404, body = ErrorBody, description = "no such ticket or attempt"),
        (status = 422, body = ErrorBody),
    ))]
pub async fn log(
    State(web): State<Web>,
    Path((id, attempt)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<RunLogQuery>,
) -> ApiResult<Json<RunLogBody>> {
    let id = ticket_id(&web.app, &id)?;
    let attempt = attempt_number(&attempt)?;
    let bytes = query.bytes.unwrap_or(DEFAULT_TAIL);
    if !(1..=MAX_LOG_READ).contains(&bytes) {
        return Err(
            ApiError::invalid(format!("bytes {bytes}: must be 1..={MAX_LOG_READ}"))
                .on_field("bytes"),
        );
    }
    let window = match query.from {
        Some(offset) => LogWindow::From { offset, bytes },
        None => LogWindow::Tail { bytes },
    };
    Ok(Json(web.app.run_log(&id, attempt, window).await?.into()))
}

/// A run's log live, as Server-Sent Events: `id` is the byte offset after the event's text,
/// `data` is `{"start", "end", "text"}`; a last `end` event carries `{"outcome"}`. Reconnecting
/// with `Last-Event-ID` goes on from that offset.
#[utoipa::path(get, path = "/api/v1/tickets/{id}/runs/{attempt}/log/stream", tag = "runs",
    params(
        ("id" = String, Path, pattern = "^([A-Z][A-Z0-9]{0,9}-)?[1-9][0-9]{0,17}$"), ("attempt" = i64, Path, minimum = 1), RunLogStreamParams,
        ("Last-Event-ID" = Option<u64>, Header, description = "Go on from this byte offset"),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
            description = "`id: OFFSET` and `data: {\"start\", \"end\", \"text\"}` per piece; `event: end` last"),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "too many open streams"),
    ))]
pub async fn log_stream(
    State(web): State<Web>,
    headers: HeaderMap,
    Path((id, attempt)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<RunLogStreamParams>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let permit = web.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many event streams open; retry shortly",
        )
    })?;
    let id = ticket_id(&web.app, &id)?;
    let attempt = attempt_number(&attempt)?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::invalid("Last-Event-ID: must be a byte offset")
                        .on_field("Last-Event-ID")
                })
        })
        .transpose()?;
    let window = match last_event_id.or(params.from) {
        Some(offset) => LogWindow::From {
            offset,
            bytes: MAX_LOG_READ,
        },
        None => LogWindow::Tail {
            bytes: DEFAULT_TAIL,
        },
    };
    // The first read answers 404 for an attempt that does not exist, before the stream starts.
    let first = web.app.run_log(&id, attempt, window).await?;
    let follow = FollowLog {
        app: web.app.clone(),
        ticket: id,
        attempt,
        pending: Some(first),
        offset: 0,
        poll: web.config.event_poll,
        closed: web.feed.closed(),
        done: false,
        _permit: permit,
    };
    let events = futures_util::stream::unfold(follow, |mut follow| async move {
        let event = follow.next().await?;
        Some((Ok(event), follow))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// One log stream's cursor.
struct FollowLog {
    app: App,
    ticket: TicketId,
    attempt: i64,
    pending: Option<LogChunk>,
    offset: u64,
    poll: Duration,
    closed: watch::Receiver<bool>,
    done: bool,
    _permit: OwnedSemaphorePermit,
}

impl FollowLog {
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if self.done || *self.closed.borrow() {
                return None;
            }
            if let Some(chunk) = self.pending.take() {
                self.offset = chunk.end;
                let finished = chunk.ended
                    && chunk.end >= chunk.size
                    && chunk.run.ended_at.is_some_and(|at| {
                        self.app.clock().now().as_millis() - at.as_millis() >= AFTER_END_MS
                    });
                if !chunk.text.is_empty() {
                    if finished {
                        // The end follows this last piece.
                        self.pending = Some(LogChunk {
                            text: String::new(),
                            ..chunk.clone()
                        });
                    }
                    return Some(piece(&chunk));
                }
                if finished {
                    self.done = true;
                    let outcome = chunk
                        .run
                        .outcome
                        .map(|o| super::types::outcome_str(o).to_owned());
                    return Some(
                        SseEvent::default()
                            .event("end")
                            .data(serde_json::json!({ "outcome": outcome }).to_string()),
                    );
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = self.closed.changed() => return None,
            }
            let window = LogWindow::From {
                offset: self.offset,
                bytes: MAX_LOG_READ,
            };
            match self.app.run_log(&self.ticket, self.attempt, window).await {
                Ok(chunk) => self.pending = Some(chunk),
                Err(error) => {
                    tracing::warn!(%error, ticket.id = %self.ticket, attempt = self.attempt,
                        "a log stream ends: reading the log failed");
                    return None;
                }
            }
        }
    }
}

fn piece(chunk: &LogChunk) -> SseEvent {
    SseEvent::default().id(chunk.end.to_string()).data(
        serde_json::json!({ "start": chunk.start, "end": chunk.end, "text": chunk.text })
            .to_string(),
    )
}
