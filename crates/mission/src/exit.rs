//! Exit codes (SPEC §3) and the one-line error every failure is reported as.
//!
//! 0 success; 1 the command's answer is negative (not runnable, refused); 2 usage or input error;
//! 3 internal or store error. Every error message is a single line naming what was wrong.

use mission_store::StoreError;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    Negative = 1,
    Usage = 2,
    Internal = 3,
}

#[derive(Debug)]
pub struct CliError {
    pub code: ExitCode,
    message: String,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::new(ExitCode::Usage, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        CliError::new(ExitCode::Internal, message)
    }

    fn new(code: ExitCode, message: impl Into<String>) -> Self {
        // One line, whatever the source put in it.
        let message: String = message.into();
        let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
        CliError { code, message }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<mission_engine::AppError> for CliError {
    fn from(err: mission_engine::AppError) -> Self {
        let code = match err.kind.exit_code() {
            1 => ExitCode::Negative,
            2 => ExitCode::Usage,
            _ => ExitCode::Internal,
        };
        CliError::new(code, err.to_string())
    }
}

impl From<StoreError> for CliError {
    fn from(err: StoreError) -> Self {
        if err.is_input_error() {
            CliError::usage(err.to_string())
        } else {
            CliError::internal(err.to_string())
        }
    }
}

impl From<mission_core::ValidationError> for CliError {
    fn from(err: mission_core::ValidationError) -> Self {
        CliError::usage(err.to_string())
    }
}

impl From<mission_core::IdError> for CliError {
    fn from(err: mission_core::IdError) -> Self {
        CliError::usage(err.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(err: std::io::Error) -> Self {
        CliError::internal(err.to_string())
    }
}

impl From<serde_json::Error> for CliError {
    fn from(err: serde_json::Error) -> Self {
        CliError::internal(err.to_string())
    }
}
