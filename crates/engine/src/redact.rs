//! Secrets kept out of what the instance shows: the values of the workers' `env` (literal API
//! keys), and of the variables passed to runs from the server's environment (`env_pass`,
//! `dispatch.env_allow`). A run's output is written by an untrusted agent that sees these
//! values; whatever shows that output (the run log's tail, its live stream) passes it through
//! `Redactor::redact` first.
//!
//! Values shorter than `MIN_SECRET_CHARS` are not treated as secrets: replacing every `1` or
//! `true` in a log would hide the log, not a key.

use crate::settings::Settings;

/// The shortest value that is redacted.
pub const MIN_SECRET_CHARS: usize = 6;

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// The secret values of an instance, longest first (so that a secret containing another is
/// replaced whole).
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// The secrets of `settings`: every worker's `env` values, and the current values of the
    /// server's variables that runs are given (`env_pass`, `dispatch.env_allow`).
    pub fn from_settings(settings: &Settings) -> Self {
        let mut values: Vec<String> = Vec::new();
        let passed = settings.dispatch.env_allow.iter();
        for (_, worker) in settings.workforce.workers() {
            values.extend(worker.env.values().map(|v| v.expose().to_owned()));
            values.extend(
                worker
                    .env_pass
                    .iter()
                    .filter_map(|name| std::env::var(name).ok()),
            );
        }
        values.extend(passed.filter_map(|name| std::env::var(name).ok()));
        Redactor::new(values)
    }

    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = values
            .into_iter()
            .filter(|v| v.chars().count() >= MIN_SECRET_CHARS)
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Redactor { secrets }
    }

    /// The longest secret, in bytes: a reader that cuts text at an arbitrary point keeps this
    /// many bytes minus one back, so that no secret is split across two pieces.
    pub fn longest(&self) -> usize {
        self.secrets.first().map_or(0, String::len)
    }

    /// `text` with every secret replaced by `[REDACTED]`.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_whole_and_short_values_kept() {
        let redactor = Redactor::new(
            ["sk-live-123456", "sk-live-123456-extended", "1", "true"]
                .into_iter()
                .map(str::to_owned),
        );
        assert_eq!(
            redactor.redact("key=sk-live-123456-extended and sk-live-123456, debug=1 true"),
            "key=[REDACTED] and [REDACTED], debug=1 true"
        );
        assert_eq!(redactor.longest(), "sk-live-123456-extended".len());
        assert_eq!(Redactor::default().redact("as is"), "as is");
        assert_eq!(format!("{redactor:?}"), "Redactor(2 secrets)");
    }
}
