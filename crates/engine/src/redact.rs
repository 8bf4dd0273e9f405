//! Secrets kept out of what the instance shows: the values of the workers' `env` (literal API
//! keys), and of the variables passed to runs from the server's environment (`env_pass`,
//! `dispatch.env_allow`), and the notification channels' secrets (the Telegram bot token, the
//! webhooks' signing keys). A run's output is written by an untrusted agent that sees these
//! values; whatever shows that output (the run log's tail, its live stream) passes it through
//! `Redactor::redact` first.
//!
//! Values shorter than `MIN_SECRET_CHARS` are not treated as secrets: replacing every `1` or
//! `true` in a log would hide the log, not a key. Whatever has the shape of this product's own
//! tokens — an API token (`mc_` and 64 hex digits) or a run token (`mcr_`, the run's
//! `MISSION_RUN_TOKEN`) — is redacted too, whoever's it is.

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
        // The notification channels' secrets: the bot token, the webhooks' signing keys.
        if let Some(telegram) = &settings.notify.telegram
            && let Ok(token) = crate::notify::telegram::resolve_token(&telegram.token)
        {
            values.push(token);
        }
        values.extend(
            settings
                .notify
                .webhooks
                .iter()
                .map(|w| w.secret_text.expose().to_owned()),
        );
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

    /// `text` with every secret, and every token of this product, replaced by `[REDACTED]`.
    pub fn redact(&self, text: &str) -> String {
        let mut text = redact_tokens(text);
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }
}

/// Hex digits of a token after its prefix.
const TOKEN_HEX: usize = 64;

/// `text` with every `mc_…` / `mcr_…` token (64 hex digits after the prefix) redacted.
fn redact_tokens(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while let Some(found) = text[i..].find("mc") {
        let at = i + found;
        let prefix = if text[at..].starts_with(crate::token::PREFIX) {
            crate::token::PREFIX.len()
        } else if text[at..].starts_with("mc_") {
            3
        } else {
            i = at + 2;
            continue;
        };
        let start = at + prefix;
        let hex = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if hex >= TOKEN_HEX {
            out.push_str(&text[copied..at]);
            out.push_str(REDACTED);
            copied = start + hex;
            i = copied;
        } else {
            i = start;
        }
    }
    out.push_str(&text[copied..]);
    out
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

    #[test]
    fn tokens_of_this_product_are_redacted_whoever_s_they_are() {
        let run = format!("mcr_{}", "ab".repeat(32));
        let api = format!("mc_{}", "0f".repeat(32));
        let text = format!("MISSION_RUN_TOKEN={run}\nBearer {api}.\nmc_short mcr_ mc");
        assert_eq!(
            Redactor::default().redact(&text),
            "MISSION_RUN_TOKEN=[REDACTED]\nBearer [REDACTED].\nmc_short mcr_ mc"
        );
    }
}
