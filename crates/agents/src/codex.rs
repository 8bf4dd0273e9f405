//! `codex exec --json`: one JSON thread event a line.

use crate::OutputParser;
use crate::event::{
    AgentEvent, Line, RESULT_CHARS, SessionTracker, classify, malformed, mentions_rate_limit,
    progress, shorten, u64_at,
};
use serde_json::{Map, Value};

/// Parses Codex's thread events. Event and item types it does not know are ignored.
#[derive(Default)]
pub(crate) struct CodexParser {
    /// The last `agent_message`, reported as the text of the turn's result.
    last_message: Option<String>,
    session: SessionTracker,
}

impl OutputParser for CodexParser {
    fn line(&mut self, line: &[u8]) -> Vec<AgentEvent> {
        let (kind, event) = match classify(line) {
            Line::Event { kind, event } => (kind, event),
            Line::Blank => return Vec::new(),
            Line::Malformed(malformed) => return vec![malformed],
        };
        let parsed = match kind.as_str() {
            "thread.started" => event
                .get("thread_id")
                .and_then(Value::as_str)
                .map(|id| self.session.observe(id).into_iter().collect()),
            "item.started" => item(&event).map(|item| item_started(item).into_iter().collect()),
            "item.completed" => item(&event).map(|item| self.item_completed(item)),
            "turn.completed" => self.turn_completed(&event),
            "turn.failed" => turn_failed(&event),
            "error" => event.get("message").and_then(Value::as_str).map(failure),
            // `turn.started`, `item.updated` and event types this adapter does not use.
            _ => Some(Vec::new()),
        };
        parsed.unwrap_or_else(|| vec![malformed(line)])
    }
}

impl CodexParser {
    fn item_completed(&mut self, item: &Map<String, Value>) -> Vec<AgentEvent> {
        match item_type(item) {
            "agent_message" => {
                let Some(text) = item.get("text").and_then(Value::as_str) else {
                    return Vec::new();
                };
                self.last_message = Some(text.to_owned());
                vec![progress(text)]
            }
            // Non-fatal: Codex carries on after these ("Model metadata for … not found").
            "error" => item
                .get("message")
                .and_then(Value::as_str)
                .map(|message| AgentEvent::Warning {
                    message: message.to_owned(),
                })
                .into_iter()
                .collect(),
            "file_change" => {
                let paths: Vec<&str> = item
                    .get("changes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|change| change.get("path").and_then(Value::as_str))
                    .collect();
                vec![progress(&format!("edited {}", paths.join(", ")))]
            }
            // Commands were reported when they started.
            _ => Vec::new(),
        }
    }

    /// The end of a successful turn: its usage (input tokens include cached ones) and the
    /// verdict. Codex reports no cost.
    fn turn_completed(&mut self, event: &Map<String, Value>) -> Option<Vec<AgentEvent>> {
        let usage = event.get("usage").filter(|usage| usage.is_object())?;
        Some(vec![
            AgentEvent::Usage {
                input_tokens: u64_at(usage, "input_tokens"),
                output_tokens: u64_at(usage, "output_tokens"),
                cached_input_tokens: u64_at(usage, "cached_input_tokens"),
                cost_usd: None,
            },
            AgentEvent::Result {
                is_error: false,
                rate_limited: false,
                text: self
                    .last_message
                    .take()
                    .map(|text| shorten(&text, RESULT_CHARS)),
            },
        ])
    }
}

fn item(event: &Map<String, Value>) -> Option<&Map<String, Value>> {
    event.get("item")?.as_object()
}

fn item_type(item: &Map<String, Value>) -> &str {
    item.get("type").and_then(Value::as_str).unwrap_or("")
}

/// What the agent starts doing: a command, a tool call, a web search.
fn item_started(item: &Map<String, Value>) -> Option<AgentEvent> {
    let text_at = |key: &str| item.get(key).and_then(Value::as_str);
    match item_type(item) {
        "command_execution" => Some(progress(&format!("$ {}", text_at("command")?))),
        "mcp_tool_call" => Some(progress(&format!(
            "{}.{}",
            text_at("server")?,
            text_at("tool")?
        ))),
        "web_search" => Some(progress(&format!("search: {}", text_at("query")?))),
        _ => None,
    }
}

/// `turn.failed {"error": {"message": …}}`.
fn turn_failed(event: &Map<String, Value>) -> Option<Vec<AgentEvent>> {
    let message = event
        .get("error")
        .and_then(|error| error.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("turn failed");
    Some(failure(message))
}

fn failure(message: &str) -> Vec<AgentEvent> {
    let rate_limited = mentions_rate_limit(message);
    let mut events: Vec<AgentEvent> = crate::event::limit_reset(rate_limited, Some(message))
        .into_iter()
        .collect();
    events.push(AgentEvent::Result {
        is_error: true,
        rate_limited,
        text: Some(shorten(message, RESULT_CHARS)),
    });
    events
}
