//! The one error of the use cases. Every failure the CLI, the HTTP API or the dashboard can meet
//! has a kind, and the kind alone decides the exit code and the HTTP status — the edges never
//! look at messages. Messages are one line and name what was wrong.

use mission_core::{IdError, ValidationError};
use mission_store::StoreError;
use std::fmt;

/// What kind of failure, as the caller must react to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The input is malformed or breaks a rule of its own (exit 2, HTTP 422).
    Invalid,
    /// The thing named does not exist (exit 2, HTTP 404).
    NotFound,
    /// The request conflicts with the current state, e.g. an illegal move (exit 2, HTTP 409).
    Conflict,
    /// The answer is no: a superseded attempt's report, a gate that does not open (exit 1,
    /// HTTP 409).
    Refused,
    /// The store cannot be reached right now (exit 3, HTTP 503).
    Unavailable,
    /// Anything else: a corrupt store, a bug (exit 3, HTTP 500).
    Internal,
}

impl ErrorKind {
    /// The exit code of SPEC §3: 1 negative answer, 2 usage or input, 3 internal or store.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Refused => 1,
            ErrorKind::Invalid | ErrorKind::NotFound | ErrorKind::Conflict => 2,
            ErrorKind::Unavailable | ErrorKind::Internal => 3,
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Invalid => 422,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict | ErrorKind::Refused => 409,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Refused => "refused",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

/// A use case's failure: its kind, a one-line message, and the input field it concerns when
/// there is one.
#[derive(Debug)]
pub struct AppError {
    pub kind: ErrorKind,
    message: String,
    pub field: Option<&'static str>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let message: String = message.into();
        // One line, whatever the source put in it.
        let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
        AppError {
            kind,
            message,
            field: None,
            source: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        AppError::new(ErrorKind::Invalid, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        AppError::new(ErrorKind::NotFound, message)
    }

    pub fn refused(message: impl Into<String>) -> Self {
        AppError::new(ErrorKind::Refused, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        AppError::new(ErrorKind::Internal, message)
    }

    /// Names the input field the error concerns (`title`, `body`, `id`…).
    pub fn on_field(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with context, e.g. the store file.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        use mission_store::ErrorKind as StoreKind;
        let kind = match (&err, err.kind()) {
            // A superseded attempt's report is a "no", not a conflicting request.
            (StoreError::Fenced { .. }, _) => ErrorKind::Refused,
            (_, StoreKind::NotFound) => ErrorKind::NotFound,
            (_, StoreKind::Conflict) => ErrorKind::Conflict,
            (_, StoreKind::Invalid) => ErrorKind::Invalid,
            (_, StoreKind::Unavailable) => ErrorKind::Unavailable,
            (_, StoreKind::Internal) => ErrorKind::Internal,
        };
        let mut error = AppError::new(kind, err.to_string());
        error.source = Some(Box::new(err));
        error
    }
}

impl From<ValidationError> for AppError {
    fn from(err: ValidationError) -> Self {
        let field = match &err {
            ValidationError::EmptyTitle
            | ValidationError::TitleTooLong(_)
            | ValidationError::TitleControlChar => Some("title"),
            ValidationError::BodyTooLarge(_) => Some("body"),
            ValidationError::Label(_) | ValidationError::TooManyLabels(_) => Some("labels"),
            ValidationError::TooManyDependencies(_) | ValidationError::SelfDependency(_) => {
                Some("depends_on")
            }
            ValidationError::Priority(_) => Some("priority"),
            ValidationError::EvidencePolicy(_) => Some("evidence_policy"),
            ValidationError::Repo(_) => Some("repo"),
            ValidationError::State(_) => Some("state"),
            ValidationError::EmptyMessage(_) | ValidationError::MessageTooLarge(..) => Some("text"),
            ValidationError::Id(_) => None,
        };
        let mut error = AppError::invalid(err.to_string());
        error.field = field;
        error.source = Some(Box::new(err));
        error
    }
}

impl From<IdError> for AppError {
    fn from(err: IdError) -> Self {
        AppError::invalid(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mission_core::transition::Via;
    use mission_core::{Attempt, RunId, State, TicketId, TicketKey, TransitionError};

    #[test]
    fn kinds_map_to_exit_codes_and_statuses() {
        let id = TicketId::new(&TicketKey::default(), 7);
        // (store error, kind, exit code, HTTP status)
        let cases = [
            (
                StoreError::NotFound(id.clone()),
                ErrorKind::NotFound,
                2,
                404,
            ),
            (
                StoreError::Transition {
                    id: id.clone(),
                    source: TransitionError {
                        from: State::Done,
                        to: State::Todo,
                        via: Via::Operator,
                    },
                },
                ErrorKind::Conflict,
                2,
                409,
            ),
            (
                StoreError::Fenced {
                    run: RunId::new(3),
                    attempt: Attempt::new(1),
                },
                ErrorKind::Refused,
                1,
                409,
            ),
            (
                StoreError::Cycle(vec![id.clone()]),
                ErrorKind::Invalid,
                2,
                422,
            ),
            (
                StoreError::Unavailable("database is locked".into()),
                ErrorKind::Unavailable,
                3,
                503,
            ),
            (
                StoreError::SchemaTooNew {
                    found: 9,
                    supported: 3,
                },
                ErrorKind::Internal,
                3,
                500,
            ),
        ];
        for (err, kind, code, status) in cases {
            let app = AppError::from(err);
            assert_eq!(app.kind, kind, "{app}");
            assert_eq!(app.kind.exit_code(), code, "{app}");
            assert_eq!(app.kind.http_status(), status, "{app}");
        }
    }

    #[test]
    fn messages_are_one_line_and_name_the_field() {
        let err = AppError::invalid("bad\nthing\there");
        assert_eq!(err.to_string(), "bad thing here");
        let err = AppError::from(ValidationError::EmptyTitle);
        assert_eq!(err.field, Some("title"));
    }
}
