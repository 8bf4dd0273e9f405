//! What every page shows (`Shell`: the verdict banner, the navigation, who is signed in, the
//! CSRF token of its forms, a notice left by the last form) and the pieces several pages share,
//! already turned into text: templates only lay them out.

use super::Visitor;
use crate::Web;
use crate::auth::Principal;
use mission_core::inbox::StoredInboxItem;
use mission_core::{ActionKind, Timestamp};

/// The frame of every page.
pub struct Shell {
    pub title: String,
    /// `board`, `inbox`, `tasks` or `incidents`: the navigation's current entry.
    pub active: &'static str,
    /// `working`, `degraded`, `broken`, or `unknown` when it could not be assessed.
    pub verdict: String,
    pub reasons: Vec<BannerReason>,
    pub server_alive: bool,
    /// The CSRF token every form of the page carries.
    pub csrf: String,
    /// Authentication is on: the page offers to sign out.
    pub auth: bool,
    /// Who is signed in (`token 3, write`), when authentication is on.
    pub signed_in: Option<String>,
    /// What the last form did (a flash cookie, so that no link can put words on a page).
    pub notice: Option<String>,
}

pub struct BannerReason {
    pub code: String,
    pub severity: String,
    pub detail: String,
    pub ids: String,
}

impl Shell {
    pub async fn new(web: &Web, visitor: &Visitor, title: String, active: &'static str) -> Shell {
        let (verdict, reasons, server_alive) = match web.verdict.get(web).await {
            Ok(report) => (
                report.verdict.as_str().to_owned(),
                report
                    .reasons
                    .iter()
                    .map(|r| BannerReason {
                        code: r.code.as_str().to_owned(),
                        severity: r.severity.as_str().to_owned(),
                        detail: r.detail.clone(),
                        ids: r.ids.join(", "),
                    })
                    .collect(),
                report.server.alive,
            ),
            Err(error) => (
                "unknown".to_owned(),
                vec![BannerReason {
                    code: "verdict_unavailable".to_owned(),
                    severity: "critical".to_owned(),
                    detail: format!("the verdict could not be assessed: {error}"),
                    ids: String::new(),
                }],
                false,
            ),
        };
        let signed_in = match &visitor.principal {
            Principal::Local => None,
            Principal::Token { id, scope } | Principal::Session { token: id, scope } => {
                Some(format!("token {id}, {scope}"))
            }
        };
        Shell {
            title,
            active,
            verdict,
            reasons,
            server_alive,
            csrf: visitor.csrf.value().to_owned(),
            auth: web.config.auth,
            signed_in,
            notice: None,
        }
    }

    pub fn with_notice(mut self, notice: Option<String>) -> Shell {
        self.notice = notice;
        self
    }
}

/// A time as pages show it: `2026-11-28 07:15:02`, in UTC.
pub fn when(at: Timestamp) -> String {
    let text = at.to_rfc3339();
    text.get(..19).unwrap_or(&text).replace('T', " ")
}

pub fn when_opt(at: Option<Timestamp>) -> String {
    at.map_or_else(String::new, when)
}

/// How long ago, in the largest whole unit: `3m`, `2h`, `5d`.
pub fn ago(at: Timestamp, now: Timestamp) -> String {
    let seconds = (now.as_millis() - at.as_millis()).max(0) / 1000;
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// The first `chars` characters of `text`, with `…` when cut.
pub fn clip(text: &str, chars: usize) -> String {
    let mut clipped: String = text.chars().take(chars).collect();
    if text.chars().nth(chars).is_some() {
        clipped.push('…');
    }
    clipped
}

/// One reason a ticket is not running.
pub struct WhyLine {
    pub code: String,
    pub detail: String,
}

/// An inbox item with the forms that settle it.
pub struct ItemView {
    pub id: i64,
    pub kind: String,
    pub ticket: Option<String>,
    pub addressee: String,
    pub text: String,
    pub created: String,
    pub age: String,
    pub status: String,
    pub deliveries: u32,
    /// Open (pending or delivered): it has forms.
    pub open: bool,
    pub forms: Vec<ActionForm>,
    /// What was done, once acted on (or why it failed).
    pub outcome: Option<String>,
}

/// A form of one action on an item.
pub struct ActionForm {
    pub action: &'static str,
    /// The button's words.
    pub label: &'static str,
    /// A text field: needed (an answer, a rejection's reason) or optional (a note).
    pub text: TextField,
}

#[derive(PartialEq, Eq)]
pub enum TextField {
    Needed(&'static str),
    Optional(&'static str),
    None,
}

impl TextField {
    pub fn shown(&self) -> bool {
        !matches!(self, TextField::None)
    }

    pub fn required(&self) -> bool {
        matches!(self, TextField::Needed(_))
    }

    pub fn label(&self) -> &'static str {
        match self {
            TextField::Needed(label) | TextField::Optional(label) => label,
            TextField::None => "",
        }
    }
}

impl ItemView {
    pub fn new(item: StoredInboxItem, now: Timestamp) -> ItemView {
        let open = !item.status.is_settled();
        let forms = if open {
            ActionKind::ALL
                .into_iter()
                .filter(|action| item.kind.allows(*action))
                .map(action_form)
                .collect()
        } else {
            Vec::new()
        };
        let outcome = match (&item.action, &item.failure) {
            (Some(action), _) => Some(format!(
                "{} by {} at {}{}",
                action.kind,
                action.actor.as_str(),
                when(action.at),
                action
                    .text
                    .as_deref()
                    .map(|t| format!(": {}", clip(t, 500)))
                    .unwrap_or_default()
            )),
            (None, Some((reason, at))) => Some(format!("failed at {}: {reason}", when(*at))),
            (None, None) => None,
        };
        ItemView {
            id: item.id.get(),
            kind: item.kind.as_str().to_owned(),
            ticket: item.ticket.map(|t| t.to_string()),
            addressee: item.addressee.to_string(),
            text: item.text,
            created: when(item.created_at),
            age: ago(item.created_at, now),
            status: item.status.as_str().to_owned(),
            deliveries: item.deliveries,
            open,
            forms,
            outcome,
        }
    }
}

fn action_form(action: ActionKind) -> ActionForm {
    let (label, text) = match action {
        ActionKind::Answered => ("Answer", TextField::Needed("answer")),
        ActionKind::Approved => ("Approve", TextField::Optional("note")),
        ActionKind::Rejected => ("Reject", TextField::Needed("reason")),
        ActionKind::Requeued => ("Requeue", TextField::Optional("note")),
        ActionKind::Escalated => ("Escalate", TextField::Optional("note")),
        ActionKind::Dismissed => ("Dismiss", TextField::None),
    };
    ActionForm {
        action: action.as_str(),
        label,
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_ages() {
        let at = Timestamp::from_millis(1_700_000_000_000);
        assert_eq!(when(at), "2023-11-14 22:13:20");
        let later = |ms: i64| Timestamp::from_millis(1_700_000_000_000 + ms);
        assert_eq!(ago(at, later(5_000)), "5s");
        assert_eq!(ago(at, later(180_000)), "3m");
        assert_eq!(ago(at, later(7_200_000)), "2h");
        assert_eq!(ago(at, later(-1)), "0s");
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("abc", 3), "abc");
    }
}
