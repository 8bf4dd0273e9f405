//! The configuration schema (`mission.toml`) and its checks. Reading files and the environment
//! is the binary's job; this module only says what a valid configuration is.

use crate::id::{Name, TicketKey};
use serde::{Deserialize, Deserializer};
use std::collections::{BTreeMap, BTreeSet};

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
    pub workers: BTreeMap<String, WorkerConfig>,
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
}

impl Default for InstanceConfig {
    fn default() -> Self {
        InstanceConfig {
            key: TicketKey::default(),
            data_dir: default_data_dir(),
        }
    }
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
    /// `sqlite:PATH` (relative paths are under the data folder) or, later, `postgres://…`.
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
#[derive(Clone, Debug, Default)]
pub struct Workforce {
    workers: BTreeMap<Name, WorkerConfig>,
    controllers: BTreeSet<Name>,
}

impl Workforce {
    pub fn new(
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
        })
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
        Workforce::new(&workers, &policy).map_err(|e| e.to_string())
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
