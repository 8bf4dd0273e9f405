//! The resolved configuration the engines run with. Built once by the binary; every engine —
//! whether started by the server, a scheduled task or the CLI — gets the same.

use crate::prompt::Prompts;
use crate::sandbox::SandboxSettings;
use mission_core::audit::AuditSettings;
use mission_core::config::{Config, DispatchConfig};
use mission_core::health::HealthThresholds;
use mission_core::proof::{EvidenceConfig, InboxRoutes, RepoConfig};
use mission_core::review::ReviewRules;
use mission_core::{InboxPolicy, RetryPolicy, TicketKey, TriageRule, Workforce};
use std::path::{Path, PathBuf};

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
    /// When facts turn into health reasons (`[health]`).
    pub health: HealthThresholds,
    /// The operator audit's state limits, auto-resolve rules and probes (`[audit]`).
    pub audit: AuditSettings,
    /// Evidence, review, the inbox and merging: what stands between review and done.
    pub gate: GateSettings,
    /// How runs are sandboxed (the launcher, what the kernel offers, the workers' homes).
    pub sandbox: SandboxSettings,
    /// The workers' prompt templates.
    pub prompts: Prompts,
    /// Notifications: the channels, their subscriptions, the retry policy (`[notify]`).
    pub notify: mission_core::notify::NotifySettings,
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
    /// The settings of an instance from its parsed configuration: `instance_dir` holds
    /// mission.toml and tasks/, `data_dir` the runs, workspaces and wake socket. Checks what the
    /// configuration's types cannot (workers, triage rules, the audit); the binary does the same
    /// through its instance loader, with each error located in the file.
    pub fn from_config(
        config: &Config,
        instance_dir: &Path,
        data_dir: &Path,
        node: impl Into<String>,
        mission_bin: impl Into<PathBuf>,
    ) -> Result<Settings, String> {
        Ok(Settings {
            workforce: Workforce::new(config).map_err(|e| format!("{}: {}", e.key, e.problem))?,
            dispatch: config.dispatch.clone(),
            ticket_key: config.instance.key.clone(),
            triage: mission_core::config::triage_rules(&config.triage)
                .map_err(|e| format!("{}: {}", e.key, e.problem))?,
            tasks_dir: instance_dir.join("tasks"),
            instance_dir: instance_dir.to_owned(),
            config_file: instance_dir.join("mission.toml"),
            runs_dir: data_dir.join("runs"),
            workspaces_dir: data_dir.join("workspaces"),
            node: node.into(),
            mission_bin: mission_bin.into(),
            wake_socket: data_dir.join("wake.sock"),
            health: config.health.clone(),
            audit: config
                .audit
                .check()
                .map_err(|e| format!("{}: {}", e.key, e.problem))?,
            gate: GateSettings::from_config(config),
            // Runs start directly: the launcher is the binary's to set (`SandboxSettings`).
            sandbox: SandboxSettings {
                homes_dir: data_dir.join("homes"),
                ..SandboxSettings::default()
            },
            prompts: Prompts::default(),
            notify: config
                .notify
                .check()
                .map_err(|e| format!("{}: {}", e.key, e.problem))?,
        })
    }

    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.dispatch.max_attempts,
            backoff_base: self.dispatch.backoff_base,
            backoff_max: self.dispatch.backoff_max,
            max_orphaned: self.dispatch.max_orphaned,
            rate_limit_backoff: self.dispatch.rate_limit_backoff,
            rate_limit_backoff_max: self.dispatch.rate_limit_backoff_max,
            breaker: *self.workforce.breaker(),
        }
    }
}
