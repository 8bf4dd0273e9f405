//! The configuration schema (`mission.toml`) and its checks. Reading files and the environment
//! is the binary's job; this module only says what a valid configuration is.

use crate::id::{Name, TicketKey};
use serde::{Deserialize, Deserializer};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A problem with the configuration, naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key `{key}`: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// The whole `mission.toml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub instance: InstanceConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub dispatch: DispatchConfig,
    #[serde(default)]
    pub pools: BTreeMap<String, PoolConfig>,
    #[serde(default)]
    pub workers: BTreeMap<String, WorkerConfig>,
    #[serde(default)]
    pub triage: TriageConfig,
    #[serde(default)]
    pub server: ServerConfig,
    /// When the facts turn into health reasons.
    #[serde(default)]
    pub health: crate::health::HealthThresholds,
    /// The operator audit: state limits, auto-resolve, probes.
    #[serde(default)]
    pub audit: crate::audit::AuditConfig,
    /// Default evidence policies and the named tests and routes the harness checks.
    #[serde(default)]
    pub evidence: crate::proof::EvidenceConfig,
    /// Who reviews what, and the auto-review cap.
    #[serde(default)]
    pub review: crate::review::ReviewRules,
    /// Inbox delivery and where items go.
    #[serde(default)]
    pub inbox: crate::proof::InboxConfig,
    /// Repositories: base branch and merge on done.
    #[serde(default)]
    pub repos: Vec<crate::proof::RepoConfig>,
    /// Notifications: Telegram and webhooks, through the outbox.
    #[serde(default)]
    pub notify: crate::notify::NotifyConfig,
    /// Budgets: limits in USD, tokens, runs and run-hours over a window.
    #[serde(default)]
    pub budgets: Vec<crate::usage::BudgetConfig>,
}

/// The HTTP side of `mission serve`: the JSON API, `/metrics` and the dashboard.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The address to listen on (`IP:PORT`). Anything but a loopback address needs `auth`.
    #[serde(default = "default_bind")]
    pub bind: std::net::SocketAddr,
    /// Require an API token (`Authorization: Bearer mc_…`) on every route but `/healthz`.
    #[serde(default)]
    pub auth: bool,
    /// Host names the server answers to besides `localhost` and IP addresses (a `Host` header
    /// naming anything else is refused: DNS rebinding).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: default_bind(),
            auth: false,
            allowed_hosts: Vec::new(),
        }
    }
}

fn default_bind() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 3001))
}

/// Rules of the `triage` task: the first rule that matches a ticket in triage names its assignee.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageConfig {
    #[serde(default)]
    pub rules: Vec<TriageRuleConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageRuleConfig {
    /// Matches tickets with this label.
    #[serde(default)]
    pub label: Option<String>,
    /// Matches tickets whose title matches this regular expression.
    #[serde(default)]
    pub title: Option<String>,
    pub assignee: String,
}

/// A checked triage rule.
#[derive(Clone, Debug)]
pub struct TriageRule {
    pub label: Option<String>,
    pub title: Option<regex::Regex>,
    pub assignee: Name,
}

impl TriageRule {
    pub fn matches(&self, title: &str, labels: &[String]) -> bool {
        self.label.as_ref().is_none_or(|l| labels.contains(l))
            && self.title.as_ref().is_none_or(|re| re.is_match(title))
    }
}

/// Checks the triage rules.
pub fn triage_rules(config: &TriageConfig) -> Result<Vec<TriageRule>, ConfigError> {
    config
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let key = |field: &str| format!("triage.rules[{i}].{field}");
            if rule.label.is_none() && rule.title.is_none() {
                return Err(ConfigError::new(
                    format!("triage.rules[{i}]"),
                    "a rule needs `label` or `title`",
                ));
            }
            Ok(TriageRule {
                label: rule.label.as_ref().map(|l| l.trim().to_ascii_lowercase()),
                title: rule
                    .title
                    .as_deref()
                    .map(regex::Regex::new)
                    .transpose()
                    .map_err(|e| {
                        ConfigError::new(key("title"), format!("invalid regular expression: {e}"))
                    })?,
                assignee: Name::parse(&rule.assignee)
                    .map_err(|e| ConfigError::new(key("assignee"), e.to_string()))?,
            })
        })
        .collect()
}

/// How the dispatcher and the runner behave.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchConfig {
    /// Most runs at once across all workers.
    #[serde(default = "default_max_workers")]
    pub max_workers: u32,
    /// Attempts per ticket before it fails.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Attempts orphaned by a server crash, counted apart from `max_attempts`, before the
    /// ticket fails (a ticket that crashes the server every time).
    #[serde(default = "default_max_orphaned")]
    pub max_orphaned: u32,
    /// Backoff before the second attempt; doubles per attempt up to `backoff_max`.
    #[serde(default = "secs::<10>", deserialize_with = "duration")]
    pub backoff_base: Duration,
    #[serde(default = "secs::<600>", deserialize_with = "duration")]
    pub backoff_max: Duration,
    /// A run's lease; renewed by its supervisor's heartbeat. An expired lease means the run is
    /// orphaned.
    #[serde(default = "secs::<30>", deserialize_with = "duration")]
    pub lease: Duration,
    /// The fallback pass when no event woke the dispatcher.
    #[serde(default = "secs::<2>", deserialize_with = "duration")]
    pub reconcile_interval: Duration,
    /// No output and no progress report for this long: the run is stalled.
    #[serde(default = "secs::<600>", deserialize_with = "duration")]
    pub stall_timeout: Duration,
    /// A run taking longer than this is stopped as timed out.
    #[serde(default = "secs::<7200>", deserialize_with = "duration")]
    pub run_timeout: Duration,
    /// Between SIGTERM and SIGKILL of a run's process group.
    #[serde(default = "secs::<10>", deserialize_with = "duration")]
    pub kill_grace: Duration,
    /// A run's log file stops growing at this size.
    #[serde(default = "default_log_cap")]
    pub log_cap_bytes: u64,
    /// Environment variables passed to every worker's runs besides the built-in allow-list.
    /// Deprecated: a worker's `env_pass` gives a variable to that worker alone.
    #[serde(default)]
    pub env_allow: Vec<String>,
    /// This server's name in runs (several servers may share a store). Default: the host name.
    #[serde(default)]
    pub node: Option<String>,
    /// A worker whose runtime reported a rate or usage limit without a reset time is parked this
    /// long; doubled for each limit in a row, up to `rate_limit_backoff_max`.
    #[serde(default = "secs::<60>", deserialize_with = "duration")]
    pub rate_limit_backoff: Duration,
    #[serde(default = "secs::<3600>", deserialize_with = "duration")]
    pub rate_limit_backoff_max: Duration,
    /// Failed runs of a worker in a row that open its circuit breaker (0: no breaker).
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open breaker stays open before a probe run may start.
    #[serde(default = "secs::<600>", deserialize_with = "duration")]
    pub breaker_cooldown: Duration,
}

fn default_breaker_failures() -> u32 {
    5
}

impl Default for DispatchConfig {
    fn default() -> Self {
        // The serde defaults, in one place.
        toml_defaults()
    }
}

fn toml_defaults() -> DispatchConfig {
    serde_json::from_value(serde_json::json!({})).expect("every field has a default")
}

fn default_max_workers() -> u32 {
    4
}

fn default_max_orphaned() -> u32 {
    10
}

fn default_max_attempts() -> u32 {
    3
}

fn default_log_cap() -> u64 {
    10 * 1024 * 1024
}

fn secs<const N: u64>() -> Duration {
    Duration::from_secs(N)
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::time::parse_duration(&text).map_err(serde::de::Error::custom)
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Most runs at once of the workers in this pool.
    pub max_concurrent: u32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// Prefix of ticket ids.
    #[serde(default, deserialize_with = "ticket_key")]
    pub key: TicketKey,
    /// Folder for the store, run logs and workspaces, relative to the config file's folder.
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    /// Where days, weeks and months begin for budgets and `mission usage` (an IANA name).
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        InstanceConfig {
            key: TicketKey::default(),
            data_dir: default_data_dir(),
            time_zone: default_time_zone(),
        }
    }
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}

fn default_data_dir() -> String {
    "data".to_owned()
}

fn ticket_key<'de, D: Deserializer<'de>>(deserializer: D) -> Result<TicketKey, D::Error> {
    let text = String::deserialize(deserializer)?;
    TicketKey::parse(&text).map_err(serde::de::Error::custom)
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite:PATH` (relative paths are under the data folder) or `postgres://USER@HOST/DB`.
    /// Default: `sqlite:mission.db`.
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Names that own campaigns. A ticket assigned to a controller is parked: never dispatched.
    #[serde(default)]
    pub controllers: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    /// Any command, given as an argv list; for scripts, tests and simple jobs.
    Shell,
    /// Claude Code, headless.
    ClaudeCode,
    /// Codex CLI, `codex exec`.
    Codex,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    pub runtime: RuntimeKind,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default = "one")]
    pub max_concurrent: u32,
    #[serde(default = "default_pool")]
    pub pool: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// For the `shell` runtime: the program and its arguments, run without a shell.
    #[serde(default)]
    pub command: Vec<String>,
    /// For the agent runtimes: extra arguments, e.g. `["--allowedTools", "Bash Edit Write Read"]`
    /// for Claude Code or `["-s", "workspace-write"]` for Codex.
    #[serde(default)]
    pub args: Vec<String>,
    /// The sandbox of this worker's runs: `on` (the default: Landlock where the kernel has it)
    /// or `off` (an explicit opt-out: the run sees the whole file system its user can).
    #[serde(default)]
    pub sandbox: SandboxMode,
    /// Paths the worker's runs may read (and execute) besides the system and their own folders,
    /// e.g. a tool installed under a home folder. `~/` is the server's home; relative paths start
    /// at the instance folder.
    #[serde(default)]
    pub sandbox_read: Vec<String>,
    /// Paths the worker's runs may read and write besides their own folders.
    #[serde(default)]
    pub sandbox_write: Vec<String>,
    /// Environment variables given to this worker's runs, with literal values (API keys).
    /// Another worker's runs never see them.
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
    /// Names of environment variables passed from the server's environment to this worker's runs
    /// (e.g. `["ANTHROPIC_API_KEY"]`).
    #[serde(default)]
    pub env_pass: Vec<String>,
    /// The runs' `HOME`: `private` (the default: a folder of this worker under the data folder)
    /// or `real` (the server's own home; its secrets stay out of reach of the sandbox unless
    /// declared in `sandbox_read` / `sandbox_write`).
    #[serde(default)]
    pub home: HomeMode,
    /// When the server runs as root: the unprivileged user the runs run as.
    #[serde(default)]
    pub run_as: Option<String>,
    /// The prompt template (minijinja) telling the agent how to work, relative to the instance
    /// folder. Default: `prompts/default.md` when it exists, else the built-in one.
    #[serde(default)]
    pub prompt: Option<String>,
}

/// Whether a worker's runs are sandboxed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    #[default]
    On,
    Off,
}

/// Where a worker's runs have their `HOME`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HomeMode {
    /// `DATA/homes/WORKER`, made for the worker.
    #[default]
    Private,
    /// The server's own `HOME`.
    Real,
}

/// A secret from the configuration: its `Debug` hides it, and it has no `Display`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Whether `name` may be set for a worker's runs: a plain variable name that is not one the
/// runner sets itself (`MISSION_*`, `PATH`, `HOME`, `TMPDIR`).
fn check_env_name(name: &str) -> Result<(), String> {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain {
        return Err(format!("{name:?} is not a variable name"));
    }
    if name.starts_with("MISSION_") || ["PATH", "HOME", "TMPDIR"].contains(&name) {
        return Err(format!(
            "{name} is set by the runner (use `home` for HOME; TMPDIR is the run's own)"
        ));
    }
    Ok(())
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

fn default_pool() -> String {
    "default".to_owned()
}

/// The workers and controllers, checked against each other. The one source of who may run.
#[derive(Clone, Debug)]
pub struct Workforce {
    workers: BTreeMap<Name, WorkerConfig>,
    controllers: BTreeSet<Name>,
    max_workers: u32,
    pool_limits: BTreeMap<String, u32>,
    budgets: Vec<crate::usage::Budget>,
    zone: crate::usage::Zone,
    breaker: crate::breaker::BreakerPolicy,
}

impl Workforce {
    pub fn new(config: &Config) -> Result<Workforce, ConfigError> {
        let mut workforce = Workforce::from_parts(&config.workers, &config.policy)?;
        if config.dispatch.max_workers == 0 {
            return Err(ConfigError::new(
                "dispatch.max_workers",
                "must be at least 1",
            ));
        }
        if config.dispatch.max_attempts == 0 {
            return Err(ConfigError::new(
                "dispatch.max_attempts",
                "must be at least 1",
            ));
        }
        if config.dispatch.max_orphaned == 0 {
            return Err(ConfigError::new(
                "dispatch.max_orphaned",
                "must be at least 1",
            ));
        }
        for (name, pool) in &config.pools {
            if pool.max_concurrent == 0 {
                return Err(ConfigError::new(
                    format!("pools.{name}.max_concurrent"),
                    "must be at least 1",
                ));
            }
        }
        config.evidence.check()?;
        config.inbox.check()?;
        workforce.zone = crate::usage::Zone::parse(&config.instance.time_zone)
            .map_err(|e| ConfigError::new("instance.time_zone", e))?;
        workforce.budgets =
            crate::usage::budgets(&config.budgets, |name| workforce.workers.contains_key(name))?;
        workforce.breaker = crate::breaker::BreakerPolicy {
            failures: config.dispatch.breaker_failures,
            cooldown: config.dispatch.breaker_cooldown,
        };
        workforce.max_workers = config.dispatch.max_workers;
        workforce.pool_limits = config
            .pools
            .iter()
            .map(|(n, p)| (n.clone(), p.max_concurrent))
            .collect();
        Ok(workforce)
    }

    /// Workers and controllers alone, with the default capacity limits.
    pub fn from_parts(
        workers: &BTreeMap<String, WorkerConfig>,
        policy: &PolicyConfig,
    ) -> Result<Workforce, ConfigError> {
        let mut checked = BTreeMap::new();
        for (name, worker) in workers {
            let key = |field: &str| format!("workers.{name}.{field}");
            let parsed = Name::parse(name)
                .map_err(|e| ConfigError::new(format!("workers.{name}"), e.to_string()))?;
            if worker.max_concurrent == 0 {
                return Err(ConfigError::new(
                    key("max_concurrent"),
                    "must be at least 1",
                ));
            }
            Name::parse(&worker.pool).map_err(|e| ConfigError::new(key("pool"), e.to_string()))?;
            match worker.runtime {
                RuntimeKind::Shell if worker.command.is_empty() => {
                    return Err(ConfigError::new(
                        key("command"),
                        "the shell runtime needs a command, e.g. [\"./scripts/work.sh\"]",
                    ));
                }
                RuntimeKind::Shell if !worker.args.is_empty() => {
                    return Err(ConfigError::new(
                        key("args"),
                        "the shell runtime takes its arguments in `command`",
                    ));
                }
                RuntimeKind::Shell => {}
                RuntimeKind::ClaudeCode | RuntimeKind::Codex if !worker.command.is_empty() => {
                    return Err(ConfigError::new(
                        key("command"),
                        "only the shell runtime takes a command",
                    ));
                }
                RuntimeKind::ClaudeCode | RuntimeKind::Codex => {}
            }
            for name in worker.env.keys() {
                check_env_name(name)
                    .map_err(|problem| ConfigError::new(key(&format!("env.{name}")), problem))?;
            }
            for (i, name) in worker.env_pass.iter().enumerate() {
                check_env_name(name)
                    .map_err(|problem| ConfigError::new(key(&format!("env_pass[{i}]")), problem))?;
            }
            if let Some(user) = &worker.run_as
                && (user.is_empty() || user.contains(['/', ':', '\0']))
            {
                return Err(ConfigError::new(key("run_as"), "not a user name"));
            }
            for (field, paths) in [
                ("sandbox_read", &worker.sandbox_read),
                ("sandbox_write", &worker.sandbox_write),
            ] {
                if let Some(i) = paths.iter().position(|p| p.is_empty()) {
                    return Err(ConfigError::new(
                        key(&format!("{field}[{i}]")),
                        "empty path",
                    ));
                }
            }
            checked.insert(parsed, worker.clone());
        }
        let mut controllers = BTreeSet::new();
        for (i, name) in policy.controllers.iter().enumerate() {
            let parsed = Name::parse(name)
                .map_err(|e| ConfigError::new(format!("policy.controllers[{i}]"), e.to_string()))?;
            if checked.contains_key(&parsed) {
                return Err(ConfigError::new(
                    format!("policy.controllers[{i}]"),
                    format!("{name:?} is also a worker; a name is either a worker or a controller"),
                ));
            }
            controllers.insert(parsed);
        }
        Ok(Workforce {
            workers: checked,
            controllers,
            max_workers: default_max_workers(),
            pool_limits: BTreeMap::new(),
            budgets: Vec::new(),
            zone: crate::usage::Zone::default(),
            breaker: crate::breaker::BreakerPolicy::default(),
        })
    }

    /// Most runs at once across all workers.
    pub fn max_workers(&self) -> u32 {
        self.max_workers
    }

    /// The budgets (`[[budgets]]`), checked.
    pub fn budgets(&self) -> &[crate::usage::Budget] {
        &self.budgets
    }

    /// The instance's time zone.
    pub fn zone(&self) -> &crate::usage::Zone {
        &self.zone
    }

    /// The workers' circuit breaker.
    pub fn breaker(&self) -> &crate::breaker::BreakerPolicy {
        &self.breaker
    }

    /// The cap of a pool, if it has one.
    pub fn pool_limit(&self, pool: &str) -> Option<u32> {
        self.pool_limits.get(pool).copied()
    }

    pub fn worker(&self, name: &Name) -> Option<&WorkerConfig> {
        self.workers.get(name)
    }

    pub fn workers(&self) -> impl Iterator<Item = (&Name, &WorkerConfig)> {
        self.workers.iter()
    }

    pub fn is_controller(&self, name: &Name) -> bool {
        self.controllers.contains(name)
    }

    pub fn controllers(&self) -> impl Iterator<Item = &Name> {
        self.controllers.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workforce(
        toml_workers: &[(&str, WorkerConfig)],
        controllers: &[&str],
    ) -> Result<Workforce, String> {
        let workers = toml_workers
            .iter()
            .map(|(n, w)| (n.to_string(), w.clone()))
            .collect();
        let policy = PolicyConfig {
            controllers: controllers.iter().map(|s| s.to_string()).collect(),
        };
        Workforce::from_parts(&workers, &policy).map_err(|e| e.to_string())
    }

    fn shell() -> WorkerConfig {
        WorkerConfig {
            runtime: RuntimeKind::Shell,
            model: None,
            max_concurrent: 1,
            pool: "default".into(),
            enabled: true,
            command: vec!["true".into()],
            args: vec![],
            sandbox: SandboxMode::On,
            sandbox_read: vec![],
            sandbox_write: vec![],
            env: BTreeMap::new(),
            env_pass: vec![],
            home: HomeMode::Private,
            run_as: None,
            prompt: None,
        }
    }

    #[test]
    fn checks() {
        assert!(workforce(&[("luci", shell())], &["lucienne"]).is_ok());
        assert_eq!(
            workforce(&[("luci", shell())], &["luci"]).unwrap_err(),
            "key `policy.controllers[0]`: \"luci\" is also a worker; a name is either a worker or a controller"
        );
        assert_eq!(
            workforce(
                &[(
                    "luci",
                    WorkerConfig {
                        max_concurrent: 0,
                        ..shell()
                    }
                )],
                &[]
            )
            .unwrap_err(),
            "key `workers.luci.max_concurrent`: must be at least 1"
        );
        assert!(
            workforce(
                &[(
                    "luci",
                    WorkerConfig {
                        command: vec![],
                        ..shell()
                    }
                )],
                &[]
            )
            .unwrap_err()
            .starts_with("key `workers.luci.command`")
        );
        assert!(
            workforce(&[("bad name", shell())], &[])
                .unwrap_err()
                .starts_with("key `workers.bad name`")
        );
    }
}
