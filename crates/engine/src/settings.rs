//! The resolved configuration the engines run with. Built once by the binary; every engine —
//! whether started by the server, a scheduled task or the CLI — gets the same.

use mission_core::config::{Config, DispatchConfig};
use mission_core::proof::{EvidenceConfig, InboxRoutes, RepoConfig};
use mission_core::review::ReviewRules;
use mission_core::{InboxPolicy, RetryPolicy, TicketKey, TriageRule, Workforce};
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
    /// Evidence, review, the inbox and merging: what stands between review and done.
    pub gate: GateSettings,
}

/// What the harness checks before done, who reviews, where inbox items go, how repositories
/// merge (`[evidence]`, `[review]`, `[inbox]`, `[[repos]]`).
#[derive(Clone, Debug, Default)]
pub struct GateSettings {
    pub evidence: EvidenceConfig,
    pub review: ReviewRules,
    pub inbox: InboxPolicy,
    pub routes: InboxRoutes,
    pub repos: Vec<RepoConfig>,
}

impl GateSettings {
    pub fn from_config(config: &Config) -> Self {
        GateSettings {
            evidence: config.evidence.clone(),
            review: config.review.clone(),
            inbox: config.inbox.policy(),
            routes: config.inbox.routes(),
            repos: config.repos.clone(),
        }
    }
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
