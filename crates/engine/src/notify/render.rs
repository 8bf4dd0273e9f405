//! What a person reads: a notification as Telegram HTML (`parse_mode = HTML`: only `&`, `<` and
//! `>` need escaping, in text and attributes alike, plus `"` in attributes). Free text (a
//! question, a ticket's title, an incident's detail) is escaped and cut so that a message stays
//! within Telegram's 4,096 characters; a cut text ends with a link to its dashboard page.

use mission_core::notify::Topic;
use serde_json::Value;

/// Telegram's limit of a message's text (after entities are parsed).
pub const TELEGRAM_LIMIT: usize = 4096;

/// The longest free text a message carries; the rest is on the dashboard.
pub const TEXT_BUDGET: usize = 3000;

/// Escapes text for Telegram's HTML parse mode.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// Cuts `text` to `budget` characters (at a character boundary), saying so.
pub fn cut(text: &str, budget: usize) -> (String, bool) {
    if text.chars().count() <= budget {
        return (text.to_owned(), false);
    }
    let kept: String = text.chars().take(budget).collect();
    (format!("{kept}…"), true)
}

/// What a message is about, read from the store when it is sent.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// The ticket's id and title.
    pub ticket: Option<(String, String)>,
    /// The inbox item's text (a question, a review's request, an alert).
    pub item_text: Option<String>,
}

/// The dashboard page of a notification, if the dashboard's address is known.
pub fn link(dashboard: Option<&str>, topic: Topic, payload: &Value) -> Option<String> {
    let base = dashboard?;
    let data = &payload["data"];
    let ticket = payload["ticket"].as_str();
    let path = match topic {
        Topic::IncidentOpened | Topic::IncidentReopened => {
            format!("/incidents/{}", data["incident"].as_i64()?)
        }
        Topic::HealthChanged | Topic::Ping => "/".to_owned(),
        _ => match ticket {
            Some(ticket) => format!("/tickets/{ticket}"),
            None => "/inbox".to_owned(),
        },
    };
    Some(format!("{base}{path}"))
}

/// The message's text (HTML), within Telegram's limit. `id` is the outbox row's: a duplicate
/// delivery shows the same.
pub fn message(
    id: i64,
    topic: Topic,
    payload: &Value,
    facts: &Facts,
    dashboard: Option<&str>,
) -> String {
    let data = &payload["data"];
    let str_of = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let ticket_line = match &facts.ticket {
        Some((id, title)) => {
            let (title, _) = cut(title, 200);
            format!("<b>{}</b> {}", escape(id), escape(&title))
        }
        None => match payload["ticket"].as_str() {
            Some(id) => format!("<b>{}</b>", escape(id)),
            None => String::new(),
        },
    };
    let (heading, body, hint) = match topic {
        Topic::Question => (
            format!("❓ Question on {ticket_line}"),
            facts.item_text.clone(),
            Some("Reply to this message to answer."),
        ),
        Topic::ReviewRequest => (
            format!("👀 Review requested: {ticket_line}"),
            facts.item_text.clone(),
            None,
        ),
        Topic::Approval => (
            format!("✋ Approval needed: {ticket_line}"),
            facts.item_text.clone(),
            None,
        ),
        Topic::Alert => ("⚠️ Alert".to_owned(), facts.item_text.clone(), None),
        Topic::FailedTicketItem | Topic::TicketFailed => (
            format!("✖️ Failed: {ticket_line}"),
            facts.item_text.clone(),
            None,
        ),
        Topic::RunFinished => (
            format!("🏁 Run ended: {ticket_line}"),
            Some(format!(
                "{} → {}",
                str_of(&data["outcome"]),
                str_of(&data["to"])
            )),
            None,
        ),
        Topic::IncidentOpened | Topic::IncidentReopened => (
            format!(
                "🚨 Incident #{} {} ({})",
                data["incident"].as_i64().unwrap_or(0),
                if topic == Topic::IncidentOpened {
                    "opened"
                } else {
                    "reopened"
                },
                escape(&str_of(&data["severity"]))
            ),
            Some(str_of(&data["detail"])),
            None,
        ),
        Topic::HealthChanged => (
            format!(
                "🩺 Health: {} → <b>{}</b>",
                escape(data["from"].as_str().unwrap_or("none")),
                escape(&str_of(&data["to"]))
            ),
            data["codes"].as_array().map(|codes| {
                codes
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
            None,
        ),
        Topic::Ping => ("🏓 Ping from Mission Control".to_owned(), None, None),
    };
    let mut text = heading;
    let mut was_cut = false;
    if let Some(body) = body.filter(|b| !b.is_empty()) {
        let (body, cut_it) = cut(&body, TEXT_BUDGET);
        was_cut = cut_it;
        text.push_str("\n\n");
        text.push_str(&escape(&body));
    }
    if let Some(hint) = hint {
        text.push_str("\n\n<i>");
        text.push_str(hint);
        text.push_str("</i>");
    }
    match link(dashboard, topic, payload) {
        Some(url) if was_cut => text.push_str(&format!(
            "\n\n(cut: the whole text is on <a href=\"{}\">the dashboard</a>)",
            escape(&url)
        )),
        Some(url) => text.push_str(&format!("\n<a href=\"{}\">Open</a>", escape(&url))),
        None if was_cut => text.push_str("\n\n(cut: the whole text is on the dashboard)"),
        None => {}
    }
    text.push_str(&format!("\n#n{id}"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn free_text_is_escaped_and_long_text_cut_with_a_link() {
        let payload = json!({"ticket": "MC-3", "data": {"item": 7, "kind": "question"}});
        let facts = Facts {
            ticket: Some(("MC-3".into(), "<b>bold</b> & co".into())),
            item_text: Some(format!("why <script>? {}", "x".repeat(5000))),
        };
        let text = message(
            12,
            Topic::Question,
            &payload,
            &facts,
            Some("https://mc.example"),
        );
        assert!(text.contains("&lt;b&gt;bold&lt;/b&gt; &amp; co"), "{text}");
        assert!(text.contains("why &lt;script&gt;?"));
        assert!(!text.contains("<script>"));
        assert!(text.contains("<a href=\"https://mc.example/tickets/MC-3\">the dashboard</a>"));
        assert!(text.ends_with("#n12"));
        assert!(text.chars().count() < TELEGRAM_LIMIT);
        let short = Facts {
            item_text: Some("which port?".into()),
            ..facts
        };
        let text = message(12, Topic::Question, &payload, &short, None);
        assert!(
            text.contains("which port?") && !text.contains("cut"),
            "{text}"
        );
    }

    #[test]
    fn a_cut_keeps_whole_characters() {
        let (text, was_cut) = cut(&"é".repeat(10), 4);
        assert!(was_cut);
        assert_eq!(text, "éééé…");
    }
}
