//! Claude Code `--output-format stream-json --verbose`: one JSON event a line.

use crate::OutputParser;
use crate::event::{
    AgentEvent, Line, RESULT_CHARS, SessionTracker, classify, malformed, mentions_rate_limit,
    progress, shorten, u64_at,
};
use serde_json::{Map, Value};

/// Parses Claude Code's stream. Event types it does not know (newer CLIs add some) are ignored.
#[derive(Default)]
pub(crate) struct ClaudeParser {
    session: SessionTracker,
}

impl OutputParser for ClaudeParser {
    fn line(&mut self, line: &[u8]) -> Vec<AgentEvent> {
        let (kind, event) = match classify(line) {
            Line::Event { kind, event } => (kind, event),
            Line::Blank => return Vec::new(),
            Line::Malformed(malformed) => return vec![malformed],
        };
        let parsed = match kind.as_str() {
            "system" => system(&event),
            "assistant" => assistant(&event),
            "result" => result(&event),
            "rate_limit_event" => Some(rate_limit_event(&event)),
            // Tool results echoed back, and event types this adapter does not use.
            _ => Some(Vec::new()),
        };
        let Some(mut events) = parsed else {
            return vec![malformed(line)];
        };
        // Every event carries the session id; the first valid one is the session (reported even
        // if `init` was missed), anything else a warning.
        if let Some(id) = event.get("session_id").and_then(Value::as_str)
            && let Some(reported) = self.session.observe(id)
        {
            events.insert(0, reported);
        }
        events
    }
}

/// `system/init` names the session (the caller reports it); other system events are ignored.
fn system(event: &Map<String, Value>) -> Option<Vec<AgentEvent>> {
    if event.get("subtype").and_then(Value::as_str) == Some("init") {
        event.get("session_id")?.as_str()?;
    }
    Some(Vec::new())
}

/// An assistant message, one content block per event: text and tool calls become progress.
fn assistant(event: &Map<String, Value>) -> Option<Vec<AgentEvent>> {
    let content = event.get("message")?.get("content")?.as_array()?;
    let mut events = Vec::new();
    for block in content {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(text) = block.get("text").and_then(Value::as_str)
                    && !text.trim().is_empty()
                {
                    events.push(progress(text));
                }
            }
            Some("tool_use") => events.push(progress(&tool_use(block))),
            // Thinking and anything newer: nothing to show.
            _ => {}
        }
    }
    Some(events)
}

/// `Bash: echo hello`, `Edit: src/main.rs`, or just the tool's name.
fn tool_use(block: &Value) -> String {
    let name = block.get("name").and_then(Value::as_str).unwrap_or("tool");
    let input = block.get("input");
    let detail = [
        "command",
        "file_path",
        "path",
        "pattern",
        "url",
        "query",
        "description",
    ]
    .iter()
    .find_map(|key| input?.get(*key)?.as_str());
    match detail {
        Some(detail) => format!("{name}: {detail}"),
        None => name.to_owned(),
    }
}

/// The final event: usage and cost for the whole run, and the verdict by `is_error`.
fn result(event: &Map<String, Value>) -> Option<Vec<AgentEvent>> {
    let is_error = event.get("is_error")?.as_bool()?;
    let text = event
        .get("result")
        .and_then(Value::as_str)
        .map(|text| shorten(text, RESULT_CHARS));
    let status_429 = match event.get("api_error_status") {
        Some(Value::Number(status)) => status.as_u64() == Some(429),
        Some(Value::String(status)) => status.trim() == "429",
        _ => false,
    };
    let rate_limited = is_error && (status_429 || text.as_deref().is_some_and(mentions_rate_limit));
    let mut events = Vec::new();
    let usage = event.get("usage").filter(|usage| usage.is_object());
    let cost_usd = event.get("total_cost_usd").and_then(Value::as_f64);
    if usage.is_some() || cost_usd.is_some() {
        let usage = usage.unwrap_or(&Value::Null);
        let cached_input_tokens = u64_at(usage, "cache_read_input_tokens");
        events.push(AgentEvent::Usage {
            input_tokens: u64_at(usage, "input_tokens")
                .saturating_add(u64_at(usage, "cache_creation_input_tokens"))
                .saturating_add(cached_input_tokens),
            output_tokens: u64_at(usage, "output_tokens"),
            cached_input_tokens,
            cost_usd,
        });
    }
    events.extend(crate::event::limit_reset(rate_limited, text.as_deref()));
    events.push(AgentEvent::Result {
        is_error,
        rate_limited,
        text,
    });
    Some(events)
}

/// `{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":SECONDS,…}}`:
/// a refused request's reset time. Other statuses (allowed, a warning) say nothing to act on.
fn rate_limit_event(event: &Map<String, Value>) -> Vec<AgentEvent> {
    let Some(info) = event.get("rate_limit_info").and_then(Value::as_object) else {
        return Vec::new();
    };
    if info.get("status").and_then(Value::as_str) != Some("rejected") {
        return Vec::new();
    }
    info.get("resetsAt")
        .and_then(Value::as_i64)
        .filter(|secs| *secs > 0)
        .map(|secs| AgentEvent::LimitReset {
            reset: crate::ResetHint::At(mission_core::Timestamp::from_millis(secs * 1000)),
        })
        .into_iter()
        .collect()
}
