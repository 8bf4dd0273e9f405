//! The resolved configuration the engines run with. Built once by the binary; every engine —
//! whether started by the server, a scheduled task or the CLI — gets the same.

use crate::prompt::Prompts;
use crate::sandbox::SandboxSettings;
use mission_core::config::DispatchConfig;
use mission_core::{RetryPolicy, TicketKey, TriageRule, Workforce};
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct Settings {
    pub workforce: Workforce,
    pub dispatch: DispatchConfig,
    /// The prefix of ticket ids this instance creates.
    pub ticket_key: TicketKey,
    /// Rules of the `triage` task.
    pub triage: Vec<TriageRule>,
    /// The task files.
    pub tasks_dir: PathBuf,
    /// The folder of mission.toml; relative paths in the configuration start here.
    pub instance_dir: PathBuf,
    /// The config file, handed to runs (`MISSION_CONFIG`) so that their callbacks find the
    /// instance.
    pub config_file: PathBuf,
    /// Run logs and prompt files.
    pub runs_dir: PathBuf,
    /// Ticket workspaces.
    pub workspaces_dir: PathBuf,
    /// This server's name in runs.
    pub node: String,
    /// The `mission` binary, put first on runs' PATH for their callbacks.
    pub mission_bin: PathBuf,
    /// The wake socket of the server of this instance.
    pub wake_socket: PathBuf,
    /// How runs are sandboxed (the launcher, what the kernel offers, the workers' homes).
    pub sandbox: SandboxSettings,
    /// The workers' prompt templates.
    pub prompts: Prompts,
}

impl Settings {
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.dispatch.max_attempts,
            backoff_base: self.dispatch.backoff_base,
            backoff_max: self.dispatch.backoff_max,
        }
    }
}
