//! The operator audit's configuration: the `[audit]` section of `mission.toml` — how long a
//! ticket may stay in each state, which checks resolve their incidents by themselves, and the
//! probes of conditions outside the board. Checked here into types that only hold valid values;
//! running the checks is the engine's.

use crate::config::ConfigError;
use crate::incident::{AutoResolve, CheckName, Severity};
use crate::ticket::State;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The `[audit]` section as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The longest a ticket may stay in a state, e.g. `{ running = "2h", review = "1d" }`.
    #[serde(default)]
    pub state_limits: BTreeMap<String, String>,
    /// Which checks resolve their incidents when the condition clears.
    #[serde(default)]
    pub auto_resolve: AutoResolve,
    #[serde(default)]
    pub probes: Vec<ProbeConfig>,
}

/// One `[[audit.probes]]` entry as written; `kind` says which other keys it takes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// The probe's name: the subject of its incidents' fingerprint (`probe.http:NAME`).
    pub name: String,
    /// `command`, `http`, `disk` or `repo_dirty`.
    pub kind: String,
    /// `command`: the program and its arguments (no shell involved).
    #[serde(default)]
    pub command: Vec<String>,
    /// `command`: the exit code that means healthy.
    #[serde(default)]
    pub expect_exit: i32,
    /// `http`: the URL to GET (`http://HOST:PORT/PATH`).
    #[serde(default)]
    pub url: Option<String>,
    /// `http`: the status that means healthy.
    #[serde(default = "ok_status")]
    pub expect_status: u16,
    /// `disk` and `repo_dirty`: the folder, relative to the instance folder.
    #[serde(default)]
    pub path: Option<String>,
    /// `disk`: the least free space, in MiB.
    #[serde(default)]
    pub min_free_mib: Option<u64>,
    #[serde(default)]
    pub timeout: Option<String>,
    /// `warning` (degraded) or `critical` (broken).
    #[serde(default = "warning")]
    pub severity: Severity,
}

fn ok_status() -> u16 {
    200
}

fn warning() -> Severity {
    Severity::Warning
}

/// A checked probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub name: String,
    pub kind: ProbeKind,
    pub timeout: Duration,
    pub severity: Severity,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Command {
        program: String,
        args: Vec<String>,
        expect_exit: i32,
    },
    Http {
        host: String,
        port: u16,
        path: String,
        expect_status: u16,
    },
    Disk {
        path: String,
        min_free_mib: u64,
    },
    RepoDirty {
        path: String,
    },
}

impl Probe {
    /// The check its findings are of: `probe.command`, `probe.http`, `probe.disk`,
    /// `probe.repo_dirty`.
    pub fn check(&self) -> CheckName {
        let kind = match self.kind {
            ProbeKind::Command { .. } => "probe.command",
            ProbeKind::Http { .. } => "probe.http",
            ProbeKind::Disk { .. } => "probe.disk",
            ProbeKind::RepoDirty { .. } => "probe.repo_dirty",
        };
        CheckName::parse(kind).expect("a valid check name")
    }
}

/// The `[audit]` section, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditSettings {
    pub state_limits: BTreeMap<State, Duration>,
    pub auto_resolve: AutoResolve,
    pub probes: Vec<Probe>,
}

/// Default time limit of a probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

impl AuditConfig {
    pub fn check(&self) -> Result<AuditSettings, ConfigError> {
        let mut state_limits = BTreeMap::new();
        for (state, limit) in &self.state_limits {
            let key = format!("audit.state_limits.{state}");
            let parsed: State = state
                .parse()
                .map_err(|e: crate::ValidationError| ConfigError::new(&key, e.to_string()))?;
            let limit =
                crate::time::parse_duration(limit).map_err(|e| ConfigError::new(&key, e))?;
            state_limits.insert(parsed, limit);
        }
        let mut probes = Vec::new();
        for (n, probe) in self.probes.iter().enumerate() {
            let checked = probe.check(n)?;
            if probes.iter().any(|p: &Probe| p.name == checked.name) {
                return Err(ConfigError::new(
                    format!("audit.probes[{n}].name"),
                    format!("a second probe named {:?}", checked.name),
                ));
            }
            probes.push(checked);
        }
        Ok(AuditSettings {
            state_limits,
            auto_resolve: self.auto_resolve.clone(),
            probes,
        })
    }
}

impl ProbeConfig {
    fn check(&self, n: usize) -> Result<Probe, ConfigError> {
        let key = |field: &str| format!("audit.probes[{n}].{field}");
        let bad = |field: &str, problem: String| ConfigError::new(key(field), problem);
        let subject_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !subject_ok {
            return Err(bad(
                "name",
                "1-64 letters, digits, '_', '.' or '-'".to_owned(),
            ));
        }
        let path = || {
            self.path
                .clone()
                .filter(|p| !p.is_empty())
                .ok_or_else(|| bad("path", format!("a {} probe needs a path", self.kind)))
        };
        let kind = match self.kind.as_str() {
            "command" => {
                let (program, args) = self
                    .command
                    .split_first()
                    .ok_or_else(|| bad("command", "a command probe needs a command".to_owned()))?;
                ProbeKind::Command {
                    program: program.clone(),
                    args: args.to_vec(),
                    expect_exit: self.expect_exit,
                }
            }
            "http" => {
                let url = self
                    .url
                    .as_deref()
                    .ok_or_else(|| bad("url", "an http probe needs a url".to_owned()))?;
                let (host, port, path) = parse_http_url(url).map_err(|e| bad("url", e))?;
                ProbeKind::Http {
                    host,
                    port,
                    path,
                    expect_status: self.expect_status,
                }
            }
            "disk" => ProbeKind::Disk {
                path: path()?,
                min_free_mib: self.min_free_mib.ok_or_else(|| {
                    bad("min_free_mib", "a disk probe needs min_free_mib".to_owned())
                })?,
            },
            "repo_dirty" => ProbeKind::RepoDirty { path: path()? },
            other => {
                return Err(bad(
                    "kind",
                    format!(
                        "unknown probe kind {other:?}: expected command, http, disk or repo_dirty"
                    ),
                ));
            }
        };
        let timeout = match &self.timeout {
            None => PROBE_TIMEOUT,
            Some(text) => crate::time::parse_duration(text).map_err(|e| bad("timeout", e))?,
        };
        Ok(Probe {
            name: self.name.clone(),
            kind,
            timeout,
            severity: self.severity,
        })
    }
}

/// `http://HOST[:PORT][/PATH]` → host, port (80 by default), path (`/` by default). Only plain
/// HTTP: a probe asks for a status, and HTTPS would bring a TLS stack into the binary.
pub fn parse_http_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// URLs are probed (https is not supported)"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("{url:?}: invalid port {port:?}"))?;
            (host, port)
        }
        _ => (authority, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let clean = |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_control() || c.is_whitespace());
    if !clean(host) || !clean(&path) {
        return Err(format!("{url:?}: invalid host or path"));
    }
    Ok((host.to_owned(), port, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<AuditSettings, ConfigError> {
        toml::from_str::<AuditConfig>(text).unwrap().check()
    }

    #[test]
    fn probes_are_checked() {
        let checked = config(
            r#"
state_limits = { running = "2h" }
auto_resolve = { default = true, checks = { "probe.disk" = false } }
[[probes]]
name = "api"
kind = "http"
url = "http://127.0.0.1:3001/healthz"
[[probes]]
name = "disk"
kind = "disk"
path = "."
min_free_mib = 1024
severity = "critical"
[[probes]]
name = "true"
kind = "command"
command = ["true"]
"#,
        )
        .unwrap();
        assert_eq!(
            checked.state_limits[&State::Running],
            Duration::from_secs(7200)
        );
        assert_eq!(
            checked.probes[0].kind,
            ProbeKind::Http {
                host: "127.0.0.1".into(),
                port: 3001,
                path: "/healthz".into(),
                expect_status: 200
            }
        );
        assert_eq!(checked.probes[1].check().as_str(), "probe.disk");
        assert_eq!(checked.probes[1].severity, Severity::Critical);
        assert!(!checked.auto_resolve.for_check(&checked.probes[1].check()));
        for (bad, key) in [
            (
                "state_limits = { sleeping = \"1h\" }",
                "audit.state_limits.sleeping",
            ),
            (
                "state_limits = { running = \"soon\" }",
                "audit.state_limits.running",
            ),
            (
                "[[probes]]\nname = \"x\"\nkind = \"ftp\"",
                "audit.probes[0].kind",
            ),
            (
                "[[probes]]\nname = \"x y\"\nkind = \"disk\"",
                "audit.probes[0].name",
            ),
            (
                "[[probes]]\nname = \"x\"\nkind = \"disk\"\npath = \".\"",
                "audit.probes[0].min_free_mib",
            ),
            (
                "[[probes]]\nname = \"x\"\nkind = \"http\"\nurl = \"https://a/\"",
                "audit.probes[0].url",
            ),
            (
                "[[probes]]\nname = \"x\"\nkind = \"command\"",
                "audit.probes[0].command",
            ),
            (
                "[[probes]]\nname = \"x\"\nkind = \"repo_dirty\"\npath = \"r\"\n[[probes]]\nname = \"x\"\nkind = \"repo_dirty\"\npath = \"r\"",
                "audit.probes[1].name",
            ),
        ] {
            assert_eq!(config(bad).unwrap_err().key, key, "{bad}");
        }
    }

    #[test]
    fn http_urls() {
        assert_eq!(
            parse_http_url("http://localhost").unwrap(),
            ("localhost".into(), 80, "/".into())
        );
        assert_eq!(
            parse_http_url("http://[::1]:8080/x?y=1").unwrap(),
            ("::1".into(), 8080, "/x?y=1".into())
        );
        assert!(parse_http_url("http://a:99999/").is_err());
        assert!(parse_http_url("http://a b/").is_err());
    }
}
