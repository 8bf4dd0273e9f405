//! What the harness is configured to prove, and where the inbox sends what it raises: the
//! `[evidence]`, `[[repos]]` and `[inbox]` sections of `mission.toml`, with the pure lookups the
//! engine asks (which named test command or route applies to a ticket, which evidence policy a
//! new ticket gets, how a repository merges on `done`).
//!
//! A test or route is configured by the instance, never by a run: a run may only ask for one by
//! its name, so an agent cannot declare `true` to be its test.

use crate::config::ConfigError;
use crate::evidence::{EvidencePolicy, RouteTarget};
use crate::id::Name;
use crate::inbox::{Addressee, InboxPolicy};
use crate::time::deserialize_duration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The `[evidence]` section: default policies and the named checks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceConfig {
    /// The policy of a new ticket that names none and that no label or worker rule matches.
    /// Default: `commit`.
    #[serde(default)]
    pub default: Option<EvidencePolicy>,
    /// Policies by label.
    #[serde(default)]
    pub labels: BTreeMap<String, EvidencePolicy>,
    /// Policies by assigned worker.
    #[serde(default)]
    pub workers: BTreeMap<Name, EvidencePolicy>,
    /// Named test commands (`[[evidence.tests]]`).
    #[serde(default)]
    pub tests: Vec<TestCommand>,
    /// Named routes (`[[evidence.routes]]`).
    #[serde(default)]
    pub routes: Vec<RouteCheck>,
}

/// A named test command: an argv (no shell), run by the harness in the ticket's workspace.
/// `repo` and `label` narrow it to tickets of that repository (as the ticket names it) or with
/// that label; the first entry of a name that matches a ticket is the one used.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCommand {
    pub name: Name,
    pub command: Vec<String>,
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(
        default = "default_test_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub timeout: Duration,
}

/// A named route: a GET of `base_url` + `path` that must answer `status` (and contain
/// `body_contains` when given).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteCheck {
    pub name: Name,
    pub base_url: String,
    pub path: String,
    #[serde(default = "default_status")]
    pub status: u16,
    #[serde(default)]
    pub body_contains: Option<String>,
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(
        default = "default_route_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub timeout: Duration,
}

fn default_test_timeout() -> Duration {
    Duration::from_secs(600)
}

fn default_route_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_status() -> u16 {
    200
}

impl RouteCheck {
    pub fn target(&self) -> RouteTarget {
        RouteTarget::new(&self.base_url, &self.path).expect("checked with the configuration")
    }
}

/// Whether an entry narrowed to `repo` / `label` applies to a ticket.
fn applies(
    repo: Option<&str>,
    label: Option<&str>,
    ticket_repo: Option<&str>,
    labels: &[String],
) -> bool {
    repo.is_none_or(|r| ticket_repo == Some(r))
        && label.is_none_or(|l| labels.iter().any(|t| t == l))
}

impl EvidenceConfig {
    /// The policy of a new ticket that names none: every requirement of the label and worker
    /// rules that match (a label asking for a test cannot be weakened by its worker's rule), or
    /// the default when none matches.
    pub fn policy_for(&self, labels: &[String], worker: Option<&Name>) -> EvidencePolicy {
        let matching: Vec<&EvidencePolicy> = labels
            .iter()
            .filter_map(|label| self.labels.get(label))
            .chain(worker.and_then(|w| self.workers.get(w)))
            .collect();
        if matching.is_empty() {
            return self.default.clone().unwrap_or_default();
        }
        let text: Vec<String> = matching
            .iter()
            .filter(|p| !p.is_none())
            .map(|p| p.to_string())
            .collect();
        if text.is_empty() {
            return EvidencePolicy::none();
        }
        EvidencePolicy::parse(&text.join("+")).unwrap_or_else(|_| matching[0].clone())
    }

    /// The test command `name` for a ticket of `repo` with `labels`.
    pub fn test(&self, name: &str, repo: Option<&str>, labels: &[String]) -> Option<&TestCommand> {
        self.tests.iter().find(|t| {
            t.name.as_str() == name && applies(t.repo.as_deref(), t.label.as_deref(), repo, labels)
        })
    }

    /// The route `name` for a ticket of `repo` with `labels`.
    pub fn route(&self, name: &str, repo: Option<&str>, labels: &[String]) -> Option<&RouteCheck> {
        self.routes.iter().find(|r| {
            r.name.as_str() == name && applies(r.repo.as_deref(), r.label.as_deref(), repo, labels)
        })
    }

    /// Checks what deserializing alone does not: commands are not empty, routes are valid URLs.
    pub fn check(&self) -> Result<(), ConfigError> {
        for (i, test) in self.tests.iter().enumerate() {
            if test.command.is_empty() || test.command[0].is_empty() {
                return Err(ConfigError::new(
                    format!("evidence.tests[{i}].command"),
                    "needs a program, e.g. [\"cargo\", \"test\"]",
                ));
            }
            if test.timeout.is_zero() {
                return Err(ConfigError::new(
                    format!("evidence.tests[{i}].timeout"),
                    "must be more than 0",
                ));
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            RouteTarget::new(&route.base_url, &route.path)
                .map_err(|e| ConfigError::new(format!("evidence.routes[{i}]"), e.to_string()))?;
            if !(100..=599).contains(&route.status) {
                return Err(ConfigError::new(
                    format!("evidence.routes[{i}].status"),
                    "expected an HTTP status from 100 to 599",
                ));
            }
            if route
                .body_contains
                .as_ref()
                .is_some_and(|t| t.len() > crate::evidence::MAX_ROUTE_TEXT_BYTES)
            {
                return Err(ConfigError::new(
                    format!("evidence.routes[{i}].body_contains"),
                    "is too long",
                ));
            }
        }
        Ok(())
    }
}

/// How the harness merges a ticket's branch into its base branch when the ticket is done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeMode {
    /// The branch is kept; nothing is merged.
    #[default]
    None,
    /// Fast-forward only: a base branch that moved on is a conflict.
    Ff,
    /// A merge commit (`--no-ff`).
    Merge,
}

/// A repository's settings (`[[repos]]`), matched by the path tickets name it by (`--repo`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    pub path: String,
    /// The base branch; default: the branch checked out in the repository.
    #[serde(default)]
    pub base: Option<String>,
    #[serde(default)]
    pub merge: MergeMode,
}

/// The repository settings for a ticket's `repo`, if configured.
pub fn repo_config<'a>(repos: &'a [RepoConfig], repo: &str) -> Option<&'a RepoConfig> {
    repos.iter().find(|r| r.path == repo)
}

/// Where the inbox items the harness raises go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxRoutes {
    /// A run's question (`mission run ask`).
    pub questions: Addressee,
    /// A ticket that needs a human reviewer (its diff was over the auto-review cap, or its mode
    /// is `human`).
    pub reviews: Addressee,
    /// A ticket that used up its attempts.
    pub failures: Addressee,
    /// Everything else that went wrong (a merge conflict, an item that could not be delivered).
    pub alerts: Addressee,
}

impl Default for InboxRoutes {
    fn default() -> Self {
        InboxConfig::default().routes()
    }
}

/// The `[inbox]` section: the delivery policy and the addressees of each kind of item.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboxConfig {
    #[serde(deserialize_with = "deserialize_duration")]
    pub worker_lease: Duration,
    #[serde(deserialize_with = "deserialize_duration")]
    pub channel_lease: Duration,
    pub max_deliveries: u32,
    pub alert_to: Addressee,
    pub questions_to: Addressee,
    pub reviews_to: Addressee,
    pub failures_to: Addressee,
}

impl Default for InboxConfig {
    fn default() -> Self {
        let policy = InboxPolicy::default();
        InboxConfig {
            worker_lease: policy.worker_lease,
            channel_lease: policy.channel_lease,
            max_deliveries: policy.max_deliveries,
            questions_to: policy.alert_to.clone(),
            reviews_to: policy.alert_to.clone(),
            failures_to: policy.alert_to.clone(),
            alert_to: policy.alert_to,
        }
    }
}

impl InboxConfig {
    pub fn policy(&self) -> InboxPolicy {
        InboxPolicy {
            worker_lease: self.worker_lease,
            channel_lease: self.channel_lease,
            max_deliveries: self.max_deliveries,
            alert_to: self.alert_to.clone(),
        }
    }

    pub fn routes(&self) -> InboxRoutes {
        InboxRoutes {
            questions: self.questions_to.clone(),
            reviews: self.reviews_to.clone(),
            failures: self.failures_to.clone(),
            alerts: self.alert_to.clone(),
        }
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        if self.max_deliveries == 0 {
            return Err(ConfigError::new(
                "inbox.max_deliveries",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EvidenceConfig {
        toml::from_str(
            r#"
            default = "commit"
            labels = { docs = "none", web = "commit+route:health" }
            workers = { tessa = "commit+test:unit" }

            [[tests]]
            name = "unit"
            command = ["./test.sh", "--quick"]
            repo = "repo"

            [[tests]]
            name = "unit"
            command = ["cargo", "test"]
            timeout = "1m"

            [[routes]]
            name = "health"
            base_url = "http://127.0.0.1:8080"
            path = "/health"
            body_contains = "ok"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn new_tickets_get_every_matching_requirement() {
        let c = config();
        let labels = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let tessa = Name::parse("tessa").unwrap();
        // (labels, worker, policy)
        let cases = [
            (labels(&[]), None, "commit"),
            (labels(&["docs"]), None, "none"),
            (labels(&["web"]), None, "commit+route:health"),
            (labels(&["docs"]), Some(&tessa), "commit+test:unit"),
            (
                labels(&["web"]),
                Some(&tessa),
                "commit+test:unit+route:health",
            ),
            (labels(&["other"]), None, "commit"),
        ];
        for (labels, worker, expect) in cases {
            assert_eq!(
                c.policy_for(&labels, worker).to_string(),
                expect,
                "{labels:?}"
            );
        }
        assert_eq!(
            EvidenceConfig::default().policy_for(&[], None).to_string(),
            "commit"
        );
    }

    #[test]
    fn the_first_matching_test_or_route_is_used() {
        let c = config();
        assert!(c.check().is_ok());
        let unit = c.test("unit", Some("repo"), &[]).unwrap();
        assert_eq!(unit.command[0], "./test.sh");
        assert_eq!(unit.timeout, Duration::from_secs(600));
        let unit = c.test("unit", Some("other"), &[]).unwrap();
        assert_eq!(unit.command, ["cargo", "test"]);
        assert_eq!(unit.timeout, Duration::from_secs(60));
        assert!(c.test("e2e", None, &[]).is_none());
        let health = c.route("health", None, &[]).unwrap();
        assert_eq!(health.status, 200);
        assert_eq!(health.target().url(), "http://127.0.0.1:8080/health");
    }

    #[test]
    fn bad_checks_are_named() {
        let bad: EvidenceConfig =
            toml::from_str("[[tests]]\nname = \"unit\"\ncommand = []\n").unwrap();
        assert_eq!(
            bad.check().unwrap_err().to_string(),
            "key `evidence.tests[0].command`: needs a program, e.g. [\"cargo\", \"test\"]"
        );
        let bad: EvidenceConfig =
            toml::from_str("[[routes]]\nname = \"h\"\nbase_url = \"ftp://x\"\npath = \"/\"\n")
                .unwrap();
        assert!(bad.check().is_err());
        assert!(
            toml::from_str::<EvidenceConfig>("[[tests]]\nname = \"a b\"\ncommand = [\"x\"]\n")
                .is_err()
        );
        assert!(toml::from_str::<EvidenceConfig>("default = \"vibes\"").is_err());
    }

    #[test]
    fn inbox_addressees_default_to_the_operator() {
        let c: InboxConfig = toml::from_str("questions_to = \"worker:council\"").unwrap();
        let routes = c.routes();
        assert_eq!(routes.questions.to_string(), "worker:council");
        assert_eq!(routes.failures.to_string(), "channel:operator");
        assert_eq!(c.policy().max_deliveries, 3);
        let zero: InboxConfig = toml::from_str("max_deliveries = 0").unwrap();
        assert!(zero.check().is_err());
    }

    #[test]
    fn repos_merge_by_mode() {
        let repos: Vec<RepoConfig> = toml::from_str::<toml::Table>(
            "[[repos]]\npath = \"repo\"\nmerge = \"ff\"\n[[repos]]\npath = \"/srv/x\"\n",
        )
        .unwrap()["repos"]
            .clone()
            .try_into()
            .unwrap();
        assert_eq!(repo_config(&repos, "repo").unwrap().merge, MergeMode::Ff);
        assert_eq!(
            repo_config(&repos, "/srv/x").unwrap().merge,
            MergeMode::None
        );
        assert!(repo_config(&repos, "nope").is_none());
    }
}
