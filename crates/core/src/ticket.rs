//! Tickets: states, the validated shape of a new ticket and of an edit.

pub use crate::evidence::{EvidenceKind, EvidencePolicy};
use crate::id::{IdError, Name, TicketId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Largest body, in bytes. Large enough for a pasted log or spec; a ticket is not a file store.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Most labels on one ticket.
pub const MAX_LABELS: usize = 20;
/// Most dependencies of one ticket.
pub const MAX_DEPENDENCIES: usize = 50;
/// Priorities range over this interval; higher runs first.
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i64> = -1000..=1000;
/// Longest repository path, in bytes.
pub const MAX_REPO_BYTES: usize = 4096;
/// The largest message a run or a person sends through the board: a question, an answer, a
/// progress report.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The states of SPEC §1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Triage,
    Todo,
    Running,
    Review,
    Done,
    NeedsInput,
    Blocked,
    Failed,
    Cancelled,
}

impl State {
    pub const ALL: [State; 9] = [
        State::Triage,
        State::Todo,
        State::Running,
        State::Review,
        State::Done,
        State::NeedsInput,
        State::Blocked,
        State::Failed,
        State::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Triage => "triage",
            State::Todo => "todo",
            State::Running => "running",
            State::Review => "review",
            State::Done => "done",
            State::NeedsInput => "needs_input",
            State::Blocked => "blocked",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    /// A dependency in this state no longer holds its dependents back.
    pub fn satisfies_dependency(self) -> bool {
        self == State::Done
    }

    /// No further work will happen on a ticket in this state unless someone reopens it.
    pub fn is_closed(self) -> bool {
        matches!(self, State::Done | State::Cancelled)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = ValidationError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let normal = text.trim().to_ascii_lowercase().replace('-', "_");
        State::ALL
            .into_iter()
            .find(|s| s.as_str() == normal)
            .ok_or_else(|| ValidationError::State(text.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("title is empty")]
    EmptyTitle,
    #[error("title is {0} characters long; the limit is {MAX_TITLE_CHARS}")]
    TitleTooLong(usize),
    #[error("title contains a control character (newline, tab, NUL…); put details in the body")]
    TitleControlChar,
    #[error("body is {0} bytes long; the limit is {MAX_BODY_BYTES}")]
    BodyTooLarge(usize),
    #[error("invalid label {0:?}: expected 1-50 lowercase letters, digits, '.', '_', ':' or '-'")]
    Label(String),
    #[error("too many labels ({0}); the limit is {MAX_LABELS}")]
    TooManyLabels(usize),
    #[error("too many dependencies ({0}); the limit is {MAX_DEPENDENCIES}")]
    TooManyDependencies(usize),
    #[error("priority {0} is out of range {min}..={max}", min = PRIORITY_RANGE.start(), max = PRIORITY_RANGE.end())]
    Priority(i64),
    #[error(
        "invalid evidence policy {0:?}: expected none, or requirements joined by '+' from commit, test, test:NAME, route, route:NAME, artifact, artifact:PATH"
    )]
    EvidencePolicy(String),
    #[error("invalid repository path {0:?}")]
    Repo(String),
    #[error(
        "unknown state {0:?}: expected one of triage, todo, running, review, done, needs_input, blocked, failed, cancelled"
    )]
    State(String),
    #[error("ticket {0} cannot depend on itself")]
    SelfDependency(TicketId),
    #[error("{0} is empty")]
    EmptyMessage(&'static str),
    #[error("{0} is {1} bytes long; the limit is {MAX_MESSAGE_BYTES}")]
    MessageTooLarge(&'static str, usize),
    #[error(transparent)]
    Id(#[from] IdError),
}

/// Checks a message (`what` names it in the error: "question", "answer", "progress report").
pub fn check_message(what: &'static str, text: &str) -> Result<(), ValidationError> {
    if text.trim().is_empty() {
        return Err(ValidationError::EmptyMessage(what));
    }
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(ValidationError::MessageTooLarge(what, text.len()));
    }
    Ok(())
}

/// A stored ticket, as read back from the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ticket {
    pub id: TicketId,
    pub title: String,
    pub body: String,
    pub state: State,
    pub assignee: Option<Name>,
    pub owner: Option<Name>,
    pub labels: Vec<String>,
    pub priority: i64,
    pub depends_on: Vec<TicketId>,
    pub evidence_policy: EvidencePolicy,
    pub repo: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Increases with every change; the optimistic-concurrency token of the row.
    pub version: i64,
    /// Attempts started so far; the current run's attempt number (see `current_attempt`).
    pub attempts: i64,
    /// Answered after a question: the needs-input lane resumes its agent session.
    pub resume: bool,
    /// After a failed attempt: not to be dispatched before this time.
    pub not_before: Option<Timestamp>,
}

impl Ticket {
    /// The attempt number of the ticket's latest run (0 before its first claim).
    pub fn current_attempt(&self) -> crate::run::Attempt {
        crate::run::Attempt::new(self.attempts)
    }
}

/// A new ticket as the user typed it: strings, not yet checked.
#[derive(Clone, Debug, Default)]
pub struct TicketDraft {
    pub title: String,
    pub body: String,
    pub assignee: Option<String>,
    pub owner: Option<String>,
    pub labels: Vec<String>,
    pub priority: Option<i64>,
    pub depends_on: Vec<TicketId>,
    pub evidence_policy: Option<String>,
    pub repo: Option<String>,
}

/// A new ticket whose every field is valid on its own. (Whether its dependencies exist is the
/// store's question, asked in the transaction that creates it.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTicket {
    pub title: String,
    pub body: String,
    pub assignee: Option<Name>,
    pub owner: Option<Name>,
    pub labels: Vec<String>,
    pub priority: i64,
    pub depends_on: Vec<TicketId>,
    pub evidence_policy: EvidencePolicy,
    pub repo: Option<String>,
}

impl NewTicket {
    /// The state a new ticket starts in: `todo` when someone is assigned, else `triage`.
    pub fn initial_state(&self) -> State {
        if self.assignee.is_some() {
            State::Todo
        } else {
            State::Triage
        }
    }
}

impl TicketDraft {
    pub fn validate(self) -> Result<NewTicket, ValidationError> {
        Ok(NewTicket {
            title: validate_title(&self.title)?,
            body: validate_body(self.body)?,
            assignee: self.assignee.as_deref().map(Name::parse).transpose()?,
            owner: self.owner.as_deref().map(Name::parse).transpose()?,
            labels: validate_labels(self.labels)?,
            priority: validate_priority(self.priority.unwrap_or(0))?,
            depends_on: validate_dependencies(self.depends_on)?,
            evidence_policy: match self.evidence_policy.as_deref() {
                Some(text) => EvidencePolicy::parse(text)?,
                None => EvidencePolicy::default(),
            },
            repo: self.repo.map(validate_repo).transpose()?,
        })
    }
}

/// A change to a ticket's fields. `None` leaves a field as it is; for the optional fields,
/// `Some(None)` clears it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TicketPatch {
    pub title: Option<String>,
    pub body: Option<String>,
    pub assignee: Option<Option<Name>>,
    pub owner: Option<Option<Name>>,
    pub labels: Option<Vec<String>>,
    pub priority: Option<i64>,
    pub depends_on: Option<Vec<TicketId>>,
    pub evidence_policy: Option<EvidencePolicy>,
    pub repo: Option<Option<String>>,
}

impl TicketPatch {
    /// Checks each field on its own; the store checks what needs the board (dependency cycles).
    pub fn validate(self) -> Result<TicketPatch, ValidationError> {
        Ok(TicketPatch {
            title: self.title.as_deref().map(validate_title).transpose()?,
            body: self.body.map(validate_body).transpose()?,
            assignee: self.assignee,
            owner: self.owner,
            labels: self.labels.map(validate_labels).transpose()?,
            priority: self.priority.map(validate_priority).transpose()?,
            depends_on: self.depends_on.map(validate_dependencies).transpose()?,
            evidence_policy: self.evidence_policy,
            repo: match self.repo {
                Some(Some(repo)) => Some(Some(validate_repo(repo)?)),
                other => other,
            },
        })
    }

    pub fn is_empty(&self) -> bool {
        *self == TicketPatch::default()
    }

    /// Applies the patch to a ticket, returning the JSON object of the fields that really
    /// changed (`{"field": {"from": .., "to": ..}}`), or `None` when nothing changed.
    pub fn apply(&self, ticket: &mut Ticket) -> Option<serde_json::Value> {
        let mut changes = serde_json::Map::new();
        fn set<T: PartialEq + Serialize + Clone>(
            changes: &mut serde_json::Map<String, serde_json::Value>,
            field: &str,
            slot: &mut T,
            new: &Option<T>,
        ) {
            if let Some(new) = new
                && slot != new
            {
                changes.insert(
                    field.to_owned(),
                    serde_json::json!({ "from": slot.clone(), "to": new }),
                );
                *slot = new.clone();
            }
        }
        set(&mut changes, "title", &mut ticket.title, &self.title);
        if let Some(body) = &self.body {
            // The body can be megabytes: record that it changed and its new size, not both copies.
            if &ticket.body != body {
                changes.insert(
                    "body".to_owned(),
                    serde_json::json!({ "from_bytes": ticket.body.len(), "to_bytes": body.len() }),
                );
                ticket.body = body.clone();
            }
        }
        set(
            &mut changes,
            "assignee",
            &mut ticket.assignee,
            &self.assignee,
        );
        set(&mut changes, "owner", &mut ticket.owner, &self.owner);
        set(&mut changes, "labels", &mut ticket.labels, &self.labels);
        set(
            &mut changes,
            "priority",
            &mut ticket.priority,
            &self.priority,
        );
        set(
            &mut changes,
            "depends_on",
            &mut ticket.depends_on,
            &self.depends_on,
        );
        set(
            &mut changes,
            "evidence_policy",
            &mut ticket.evidence_policy,
            &self.evidence_policy,
        );
        set(&mut changes, "repo", &mut ticket.repo, &self.repo);
        (!changes.is_empty()).then_some(serde_json::Value::Object(changes))
    }
}

fn validate_title(title: &str) -> Result<String, ValidationError> {
    let title = title.trim();
    if title.is_empty() {
        return Err(ValidationError::EmptyTitle);
    }
    if title.chars().any(char::is_control) {
        return Err(ValidationError::TitleControlChar);
    }
    let chars = title.chars().count();
    if chars > MAX_TITLE_CHARS {
        return Err(ValidationError::TitleTooLong(chars));
    }
    Ok(title.to_owned())
}

fn validate_body(body: String) -> Result<String, ValidationError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ValidationError::BodyTooLarge(body.len()));
    }
    Ok(body)
}

fn validate_labels(labels: Vec<String>) -> Result<Vec<String>, ValidationError> {
    let mut out: Vec<String> = Vec::with_capacity(labels.len());
    for label in labels {
        let label = label.trim().to_ascii_lowercase();
        let ok = (1..=50).contains(&label.len())
            && label.starts_with(|c: char| c.is_ascii_alphanumeric())
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
        if !ok {
            return Err(ValidationError::Label(label));
        }
        if !out.contains(&label) {
            out.push(label);
        }
    }
    if out.len() > MAX_LABELS {
        return Err(ValidationError::TooManyLabels(out.len()));
    }
    out.sort();
    Ok(out)
}

fn validate_priority(priority: i64) -> Result<i64, ValidationError> {
    if PRIORITY_RANGE.contains(&priority) {
        Ok(priority)
    } else {
        Err(ValidationError::Priority(priority))
    }
}

fn validate_dependencies(mut deps: Vec<TicketId>) -> Result<Vec<TicketId>, ValidationError> {
    deps.sort();
    deps.dedup();
    if deps.len() > MAX_DEPENDENCIES {
        return Err(ValidationError::TooManyDependencies(deps.len()));
    }
    Ok(deps)
}

fn validate_repo(repo: String) -> Result<String, ValidationError> {
    if repo.trim().is_empty() || repo.len() > MAX_REPO_BYTES || repo.chars().any(char::is_control) {
        return Err(ValidationError::Repo(repo));
    }
    Ok(repo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(title: &str) -> TicketDraft {
        TicketDraft {
            title: title.to_owned(),
            ..TicketDraft::default()
        }
    }

    #[test]
    fn drafts() {
        let cases: Vec<(TicketDraft, Result<(), &str>)> = vec![
            (draft("Fix the pickup loop"), Ok(())),
            (draft("   "), Err("title is empty")),
            (draft("a\nb"), Err("control character")),
            (draft(&"x".repeat(201)), Err("201 characters")),
            (
                TicketDraft {
                    body: "x".repeat(MAX_BODY_BYTES + 1),
                    ..draft("t")
                },
                Err("body is 2097153 bytes"),
            ),
            (
                TicketDraft {
                    labels: vec!["ok".into(), "Bad Label".into()],
                    ..draft("t")
                },
                Err("invalid label \"bad label\""),
            ),
            (
                TicketDraft {
                    priority: Some(5000),
                    ..draft("t")
                },
                Err("priority 5000"),
            ),
            (
                TicketDraft {
                    evidence_policy: Some("commit+vibes".into()),
                    ..draft("t")
                },
                Err("invalid evidence policy"),
            ),
            (
                TicketDraft {
                    assignee: Some("$(rm -rf /)".into()),
                    ..draft("t")
                },
                Err("invalid name"),
            ),
        ];
        for (input, expect) in cases {
            let got = input
                .clone()
                .validate()
                .map(|_| ())
                .map_err(|e| e.to_string());
            match (got, expect) {
                (Ok(()), Ok(())) => {}
                (Err(got), Err(want)) => assert!(got.contains(want), "{got:?} lacks {want:?}"),
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn initial_state_follows_assignee() {
        let t = draft("t").validate().unwrap();
        assert_eq!(t.initial_state(), State::Triage);
        let t = TicketDraft {
            assignee: Some("luci".into()),
            ..draft("t")
        }
        .validate()
        .unwrap();
        assert_eq!(t.initial_state(), State::Todo);
    }

    #[test]
    fn evidence_policies() {
        assert_eq!(EvidencePolicy::parse("none").unwrap().to_string(), "none");
        assert_eq!(
            EvidencePolicy::parse("test+commit+test")
                .unwrap()
                .to_string(),
            "commit+test"
        );
        assert_eq!(EvidencePolicy::default().to_string(), "commit");
        assert!(EvidencePolicy::parse("").is_err());
    }

    #[test]
    fn states_parse_loosely_and_print_canonically() {
        assert_eq!("needs-input".parse::<State>().unwrap(), State::NeedsInput);
        assert_eq!("TODO".parse::<State>().unwrap(), State::Todo);
        assert!("doing".parse::<State>().is_err());
        for s in State::ALL {
            assert_eq!(s.as_str().parse::<State>().unwrap(), s);
        }
    }
}
