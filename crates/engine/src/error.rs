//! The engines' errors: what can go wrong inside a pass, a task run or the server, typed, with
//! the source kept. A task run's failure becomes its `failed` outcome's reason (its `Display`);
//! the use-case layer turns these into `AppError`s.

use mission_store::StoreError;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Active runs could not be counted (the store failed, or the failpoint said so).
    #[error("active runs could not be counted: {0}")]
    CapacityUnknown(String),
    /// The dispatcher's last pass recorded that it could not count active runs.
    #[error("the dispatcher's last pass could not count active runs")]
    CapacityUnknownAtLastPass,
    /// A file or folder of the instance could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A process could not be started or waited for.
    #[error("{what}: {source}")]
    Process {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A task could not do its job, for the reason given.
    #[error("{0}")]
    Task(String),
    /// The server could not start.
    #[error("{0}")]
    Start(String),
}

impl EngineError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// The reason without the kind's own words: for `CapacityUnknown`, why counting failed.
    pub fn detail(&self) -> String {
        match self {
            EngineError::CapacityUnknown(why) => why.clone(),
            other => other.to_string(),
        }
    }

    pub fn process(what: impl Into<String>, source: std::io::Error) -> Self {
        EngineError::Process {
            what: what.into(),
            source,
        }
    }
}

impl From<String> for EngineError {
    fn from(reason: String) -> Self {
        EngineError::Task(reason)
    }
}
