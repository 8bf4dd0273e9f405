//! What an output parser reports, and the per-run summary folded from it.

use serde_json::Value;

/// The longest `Progress` text, in characters.
pub(crate) const PROGRESS_CHARS: usize = 500;
/// The longest `Malformed` line kept, in characters.
pub(crate) const MALFORMED_CHARS: usize = 200;
/// The longest `Result` text kept, in characters.
pub(crate) const RESULT_CHARS: usize = 4000;

/// One thing learned from a line of agent output.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentEvent {
    /// The agent's session id: Claude Code `system/init` `session_id`, Codex `thread.started`
    /// `thread_id`. Needed to resume the session after a question is answered.
    Session { id: String },
    /// What the agent is doing: assistant text, a tool call or a command it runs. Short.
    Progress { text: String },
    /// Tokens used. `input_tokens` counts every input token, cached ones included;
    /// `cached_input_tokens` is the part served from the prompt cache. `cost_usd` is what the
    /// agent reported (Claude Code does, Codex does not).
    Usage {
        input_tokens: u64,
        output_tokens: u64,
        cached_input_tokens: u64,
        cost_usd: Option<f64>,
    },
    /// The agent's verdict on the run. Claude Code: its `result` event (judged by `is_error`,
    /// never by `subtype`). Codex: `turn.completed`, `turn.failed` or a top-level `error`.
    Result {
        is_error: bool,
        rate_limited: bool,
        text: Option<String>,
    },
    /// When the rate or usage limit the agent hit resets, as it said (see [`crate::reset_hint`]).
    LimitReset { reset: crate::ResetHint },
    /// Something non-fatal the agent reported, e.g. Codex's "Model metadata … not found".
    Warning { message: String },
    /// A line that is not JSON or not of the expected shape, shortened and lossily decoded.
    Malformed { line: String },
}

/// What the runner records about a run, folded from its events in order.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub session_id: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    /// The sum of reported costs; `None` while no event reported one.
    pub cost_usd: Option<f64>,
    /// The last `Result`: `(is_error, rate_limited)`.
    pub result: Option<(bool, bool)>,
    /// The last reset time of a limit the agent reported.
    pub limit_reset: Option<crate::ResetHint>,
    pub malformed_lines: u32,
    pub last_progress: Option<String>,
}

/// Whether an agent's session or thread id may be stored and later put into a resume argv:
/// `^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`. Anything else (an option such as
/// `--dangerously-skip-permissions`, a path, a huge string) is never used.
pub fn is_valid_session_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

impl RunSummary {
    pub fn apply(&mut self, event: &AgentEvent) {
        match event {
            // The first valid id of a run is its session: a later or malformed one is not believed.
            AgentEvent::Session { id } => {
                if self.session_id.is_none() && is_valid_session_id(id) {
                    self.session_id = Some(id.clone());
                }
            }
            AgentEvent::Progress { text } => self.last_progress = Some(text.clone()),
            AgentEvent::Usage {
                input_tokens,
                output_tokens,
                cached_input_tokens,
                cost_usd,
            } => {
                self.input_tokens = self.input_tokens.saturating_add(*input_tokens);
                self.output_tokens = self.output_tokens.saturating_add(*output_tokens);
                self.cached_input_tokens = self
                    .cached_input_tokens
                    .saturating_add(*cached_input_tokens);
                if let Some(cost) = cost_usd {
                    self.cost_usd = Some(self.cost_usd.unwrap_or(0.0) + cost);
                }
            }
            AgentEvent::Result {
                is_error,
                rate_limited,
                ..
            } => self.result = Some((*is_error, *rate_limited)),
            AgentEvent::LimitReset { reset } => self.limit_reset = Some(reset.clone()),
            AgentEvent::Warning { .. } => {}
            AgentEvent::Malformed { .. } => {
                self.malformed_lines = self.malformed_lines.saturating_add(1)
            }
        }
    }
}

/// A line of an agent's JSON stream.
pub(crate) enum Line {
    /// Blank: nothing to report.
    Blank,
    /// A JSON object with a string `type`.
    Event {
        kind: String,
        event: serde_json::Map<String, Value>,
    },
    /// Anything else, as the `Malformed` event to report.
    Malformed(AgentEvent),
}

pub(crate) fn classify(line: &[u8]) -> Line {
    if line.trim_ascii().is_empty() {
        return Line::Blank;
    }
    let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(line) else {
        return Line::Malformed(malformed(line));
    };
    match event.get("type").and_then(Value::as_str) {
        Some(kind) => Line::Event {
            kind: kind.to_owned(),
            event,
        },
        None => Line::Malformed(malformed(line)),
    }
}

pub(crate) fn malformed(line: &[u8]) -> AgentEvent {
    AgentEvent::Malformed {
        line: shorten(
            &String::from_utf8_lossy(line.trim_ascii_end()),
            MALFORMED_CHARS,
        ),
    }
}

/// The session id a run reports: the first valid one wins; an invalid one, or a second different
/// one, is a warning and never the session.
#[derive(Default)]
pub(crate) struct SessionTracker {
    first: Option<String>,
}

impl SessionTracker {
    /// What reporting `id` means: a new session, a warning, or nothing (the same id again).
    pub(crate) fn observe(&mut self, id: &str) -> Option<AgentEvent> {
        if !crate::valid_session_id(id) {
            return Some(AgentEvent::Warning {
                message: format!(
                    "ignored an invalid session id {:?}",
                    shorten(id, MALFORMED_CHARS)
                ),
            });
        }
        match &self.first {
            None => {
                self.first = Some(id.to_owned());
                Some(AgentEvent::Session { id: id.to_owned() })
            }
            Some(first) if first == id => None,
            Some(first) => Some(AgentEvent::Warning {
                message: format!("ignored a second session id {id:?}; the session is {first}"),
            }),
        }
    }
}

pub(crate) fn progress(text: &str) -> AgentEvent {
    AgentEvent::Progress {
        text: shorten(text.trim(), PROGRESS_CHARS),
    }
}

/// At most `max` characters of `text`, with `…` marking a cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((cut, _)) => {
            let mut short = text[..cut].to_owned();
            short.push('…');
            short
        }
    }
}

/// Whether an error message is about rate or usage limits.
pub(crate) fn mentions_rate_limit(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "rate limit",
        "rate_limit",
        "ratelimit",
        "rate-limit",
        "429",
        "too many requests",
        "usage limit",
        "hit your limit",
        "hour limit reached",
        "weekly limit reached",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// The events of an error result: the reset time first, when it is a limit that gives one.
pub(crate) fn limit_reset(rate_limited: bool, text: Option<&str>) -> Option<AgentEvent> {
    if !rate_limited {
        return None;
    }
    crate::reset_hint(text?).map(|reset| AgentEvent::LimitReset { reset })
}

pub(crate) fn u64_at(object: &Value, key: &str) -> u64 {
    object.get(key).and_then(Value::as_u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_cuts_on_characters() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcd", 3), "abc…");
        assert_eq!(shorten("ééé", 2), "éé…");
        assert_eq!(shorten("", 0), "");
    }

    #[test]
    fn rate_limit_words() {
        assert!(mentions_rate_limit("Rate limit reached for requests"));
        assert!(mentions_rate_limit(
            "exceeded retry limit, last status: 429 Too Many Requests"
        ));
        assert!(mentions_rate_limit("You've hit your usage limit."));
        assert!(!mentions_rate_limit(
            "stream disconnected before completion"
        ));
    }

    #[test]
    fn summary_folds_events() {
        let mut summary = RunSummary::default();
        for event in [
            AgentEvent::Session { id: "s1".into() },
            AgentEvent::Progress { text: "one".into() },
            AgentEvent::Usage {
                input_tokens: 10,
                output_tokens: 2,
                cached_input_tokens: 4,
                cost_usd: None,
            },
            AgentEvent::Usage {
                input_tokens: 5,
                output_tokens: 1,
                cached_input_tokens: 0,
                cost_usd: Some(0.25),
            },
            AgentEvent::Warning {
                message: "w".into(),
            },
            AgentEvent::Malformed { line: "x".into() },
            AgentEvent::Result {
                is_error: true,
                rate_limited: true,
                text: None,
            },
            AgentEvent::Progress { text: "two".into() },
            AgentEvent::Result {
                is_error: false,
                rate_limited: false,
                text: Some("done".into()),
            },
        ] {
            summary.apply(&event);
        }
        assert_eq!(
            summary,
            RunSummary {
                session_id: Some("s1".into()),
                input_tokens: 15,
                output_tokens: 3,
                cached_input_tokens: 4,
                cost_usd: Some(0.25),
                result: Some((false, false)),
                malformed_lines: 1,
                last_progress: Some("two".into()),
                limit_reset: None,
            }
        );
    }

    #[test]
    fn only_the_first_valid_session_id_counts() {
        let cases = [
            ("abc-123_XYZ", true),
            ("--dangerously-skip-permissions", false),
            ("-x", false),
            ("", false),
            ("a b", false),
            ("../../etc", false),
            (&*"a".repeat(128), true),
            (&*"a".repeat(129), false),
        ];
        for (id, valid) in cases {
            assert_eq!(is_valid_session_id(id), valid, "{id:?}");
        }
        let mut summary = RunSummary::default();
        for id in ["--dangerously-skip-permissions", "s1", "s2"] {
            summary.apply(&AgentEvent::Session { id: id.into() });
        }
        assert_eq!(summary.session_id.as_deref(), Some("s1"));
    }
}
