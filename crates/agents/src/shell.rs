//! The shell runtime: plain output is only logged, except `{"progress": "…"}` lines.

use crate::OutputParser;
use crate::event::{AgentEvent, progress};
use serde_json::Value;

pub(crate) struct ShellParser;

impl OutputParser for ShellParser {
    fn line(&mut self, line: &[u8]) -> Vec<AgentEvent> {
        if !line.trim_ascii_start().starts_with(b"{") {
            return Vec::new();
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(object)) => match object.get("progress") {
                Some(Value::String(text)) => vec![progress(text)],
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }
}
