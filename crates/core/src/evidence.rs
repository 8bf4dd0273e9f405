//! Evidence: structured proof attached to a ticket, observed by the harness and judged here.
//!
//! There are four kinds: a `commit` (by sha), a `test` (a named test command the harness itself
//! ran: exit code, duration, the tail of its output and a hash), a `route` (a named HTTP GET the
//! harness made: expected and recorded status, latency) and an `artifact` (a file inside the
//! workspace: size, sha256, media type). The engine observes — runs git, the test command, the
//! request, hashes the file — and this module decides what an observation proves: a
//! `Verification`. There is no kind for prose: a comment saying "fixed, verified" cannot be
//! expressed as evidence, so it can never count.
//!
//! The `EvidencePolicy` says what a ticket must prove before the gate (`gate.rs`) lets it reach
//! `done`: `none`, or requirements joined by `+` such as `commit+test:unit+route:health`.

use crate::event::Actor;
use crate::id::{Name, TicketId, store_id};
use crate::ticket::ValidationError;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

store_id!(
    /// An evidence record's id, assigned by the store.
    EvidenceId
);

/// Most bytes of a test's output kept with its evidence: the end of it, where failures are.
pub const MAX_OUTPUT_TAIL_BYTES: usize = 16 * 1024;
/// Longest body substring a route may expect, and longest error kept of a failed request.
pub const MAX_ROUTE_TEXT_BYTES: usize = 1024;
/// Longest workspace path, route base URL or route path, in bytes.
pub const MAX_PATH_BYTES: usize = 2048;
/// Most requirements in one policy.
pub const MAX_REQUIREMENTS: usize = 32;

/// Why a piece of evidence (or a part of it) is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("unknown evidence kind {0:?}: expected commit, test, route or artifact")]
    Kind(String),
    #[error("invalid commit {0:?}: expected 40 or 64 hexadecimal digits")]
    Commit(String),
    #[error("invalid sha256 {0:?}: expected 64 hexadecimal digits")]
    Sha256(String),
    #[error(
        "invalid workspace path {0:?}: expected a relative path without '..', '.' or empty parts"
    )]
    Path(String),
    #[error("invalid media type {0:?}: expected TYPE/SUBTYPE such as image/png")]
    MediaType(String),
    #[error("invalid route base URL {0:?}: expected http:// or https:// and a host")]
    BaseUrl(String),
    #[error("invalid route path {0:?}: expected a path starting with '/'")]
    RoutePath(String),
    #[error("invalid HTTP status {0}: expected 100-599")]
    Status(u16),
    #[error("{0} is longer than {MAX_ROUTE_TEXT_BYTES} bytes")]
    TooLong(&'static str),
    #[error("the output tail is longer than {MAX_OUTPUT_TAIL_BYTES} bytes")]
    TailTooLong,
}

/// The kinds of evidence. Stable strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// A commit that exists in the ticket's repository and is reachable from its branch.
    Commit,
    /// A named test command the harness itself ran, with exit 0.
    Test,
    /// A named route that answered with its expected status.
    Route,
    /// A file in the workspace whose hash matches the recorded one.
    Artifact,
}

impl EvidenceKind {
    pub const ALL: [EvidenceKind; 4] = [
        EvidenceKind::Commit,
        EvidenceKind::Test,
        EvidenceKind::Route,
        EvidenceKind::Artifact,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::Commit => "commit",
            EvidenceKind::Test => "test",
            EvidenceKind::Route => "route",
            EvidenceKind::Artifact => "artifact",
        }
    }
}

impl fmt::Display for EvidenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EvidenceKind {
    type Err = EvidenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EvidenceKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| EvidenceError::Kind(s.to_owned()))
    }
}

/// One requirement of a policy: a kind, optionally narrowed to one subject — a test or route by
/// its configured name (`test:unit`), an artifact by its path (`artifact:shots/home.png`).
///
/// Without a subject, the requirement holds when the ticket has at least one record of the kind
/// and the latest record of every subject of that kind verifies (a failing test cannot hide
/// behind a passing one). `commit` takes no subject: the ticket's branch is its subject.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Requirement {
    kind: EvidenceKind,
    subject: Option<String>,
}

impl Requirement {
    /// A requirement of `kind` with no subject.
    pub fn any(kind: EvidenceKind) -> Self {
        Requirement {
            kind,
            subject: None,
        }
    }

    /// A requirement of one subject of `kind`; `None` when the kind takes no subject or the
    /// subject is not valid for it.
    pub fn of(kind: EvidenceKind, subject: &str) -> Option<Self> {
        let valid = match kind {
            EvidenceKind::Commit => false,
            EvidenceKind::Test | EvidenceKind::Route => Name::parse(subject).is_ok(),
            // `+` separates requirements, so a path holding one cannot be named in a policy.
            EvidenceKind::Artifact => {
                WorkspacePath::parse(subject).is_ok() && !subject.contains('+')
            }
        };
        valid.then(|| Requirement {
            kind,
            subject: Some(subject.to_owned()),
        })
    }

    pub fn kind(&self) -> EvidenceKind {
        self.kind
    }

    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    fn parse(text: &str) -> Option<Self> {
        match text.split_once(':') {
            None => text.parse().ok().map(Requirement::any),
            Some((kind, subject)) => Requirement::of(kind.parse().ok()?, subject),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subject {
            None => f.write_str(self.kind.as_str()),
            Some(subject) => write!(f, "{}:{subject}", self.kind),
        }
    }
}

/// What a ticket must prove before the gate lets it reach `done`.
///
/// Written as requirements joined by `+` (`commit+test:unit`); `none` requires nothing. The
/// written form is canonical: requirements sorted, duplicates removed, so it round-trips.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EvidencePolicy(Vec<Requirement>);

impl EvidencePolicy {
    pub fn none() -> Self {
        EvidencePolicy(Vec::new())
    }

    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let invalid = || ValidationError::EvidencePolicy(text.to_owned());
        let trimmed = text.trim();
        if trimmed == "none" {
            return Ok(EvidencePolicy::none());
        }
        let mut requirements = Vec::new();
        for part in trimmed.split('+') {
            requirements.push(Requirement::parse(part.trim()).ok_or_else(invalid)?);
        }
        requirements.sort();
        requirements.dedup();
        if requirements.len() > MAX_REQUIREMENTS {
            return Err(invalid());
        }
        Ok(EvidencePolicy(requirements))
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.0
    }

    /// Whether the policy requires nothing.
    pub fn is_none(&self) -> bool {
        self.0.is_empty()
    }
}

impl Default for EvidencePolicy {
    fn default() -> Self {
        EvidencePolicy(vec![Requirement::any(EvidenceKind::Commit)])
    }
}

impl fmt::Display for EvidencePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, requirement) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("+")?;
            }
            requirement.fmt(f)?;
        }
        Ok(())
    }
}

impl FromStr for EvidencePolicy {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EvidencePolicy::parse(s)
    }
}

impl Serialize for EvidencePolicy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EvidencePolicy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        EvidencePolicy::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn is_hex(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Declares a string newtype that only holds values accepted by its `parse`, stored and
/// serialized as the string itself.
macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = EvidenceError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = EvidenceError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                $name::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

checked_string!(
    /// A commit id: 40 (SHA-1) or 64 (SHA-256) hexadecimal digits, kept in lowercase.
    CommitSha
);

impl CommitSha {
    pub fn parse(text: &str) -> Result<Self, EvidenceError> {
        if matches!(text.len(), 40 | 64) && is_hex(text) {
            Ok(CommitSha(text.to_ascii_lowercase()))
        } else {
            Err(EvidenceError::Commit(text.to_owned()))
        }
    }

    /// The first 12 digits, for messages.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

checked_string!(
    /// A SHA-256 digest as 64 hexadecimal digits, kept in lowercase. Computed by the caller.
    Sha256Hex
);

impl Sha256Hex {
    pub fn parse(text: &str) -> Result<Self, EvidenceError> {
        if text.len() == 64 && is_hex(text) {
            Ok(Sha256Hex(text.to_ascii_lowercase()))
        } else {
            Err(EvidenceError::Sha256(text.to_owned()))
        }
    }
}

checked_string!(
    /// A path inside a ticket's workspace: relative, `/`-separated, no empty, `.` or `..` parts,
    /// no control characters, no surrounding spaces. It cannot point outside the workspace.
    WorkspacePath
);

impl WorkspacePath {
    pub fn parse(text: &str) -> Result<Self, EvidenceError> {
        let ok = !text.is_empty()
            && text.len() <= MAX_PATH_BYTES
            && text.trim() == text
            && !text.contains('\\')
            && !text.chars().any(char::is_control)
            && text.split('/').all(|part| !matches!(part, "" | "." | ".."));
        if ok {
            Ok(WorkspacePath(text.to_owned()))
        } else {
            Err(EvidenceError::Path(text.to_owned()))
        }
    }
}

checked_string!(
    /// A media type, `type/subtype` in lowercase (`image/png`, `text/html`).
    MediaType
);

impl MediaType {
    pub fn parse(text: &str) -> Result<Self, EvidenceError> {
        let token = |t: &str| {
            !t.is_empty()
                && t.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(
                            b,
                            b'!' | b'#' | b'$' | b'&' | b'^' | b'_' | b'.' | b'+' | b'-'
                        )
                })
        };
        let lower = text.to_ascii_lowercase();
        match lower.split_once('/') {
            Some((kind, sub)) if lower.len() <= 127 && token(kind) && token(sub) => {
                Ok(MediaType(lower))
            }
            _ => Err(EvidenceError::MediaType(text.to_owned())),
        }
    }
}

checked_string!(
    /// The last bytes of a test's output, at most `MAX_OUTPUT_TAIL_BYTES`.
    OutputTail
);

impl OutputTail {
    pub fn parse(text: &str) -> Result<Self, EvidenceError> {
        if text.len() <= MAX_OUTPUT_TAIL_BYTES {
            Ok(OutputTail(text.to_owned()))
        } else {
            Err(EvidenceError::TailTooLong)
        }
    }

    /// The tail of raw output: its last `MAX_OUTPUT_TAIL_BYTES` bytes, invalid UTF-8 replaced.
    pub fn of(output: &[u8]) -> Self {
        let start = output.len().saturating_sub(MAX_OUTPUT_TAIL_BYTES);
        let mut text = String::from_utf8_lossy(&output[start..]).into_owned();
        // A replacement character takes three bytes where the invalid byte took one.
        while text.len() > MAX_OUTPUT_TAIL_BYTES {
            text.remove(0);
        }
        OutputTail(text)
    }
}

/// Where a route is: a configured base URL and a path, requested with GET.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTarget {
    pub base_url: String,
    pub path: String,
}

impl RouteTarget {
    pub fn new(base_url: &str, path: &str) -> Result<Self, EvidenceError> {
        let clean = |t: &str| {
            t.len() <= MAX_PATH_BYTES && !t.chars().any(|c| c.is_control() || c.is_whitespace())
        };
        let host = base_url
            .strip_prefix("http://")
            .or_else(|| base_url.strip_prefix("https://"));
        if !clean(base_url) || host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
            return Err(EvidenceError::BaseUrl(base_url.to_owned()));
        }
        if !clean(path) || !path.starts_with('/') {
            return Err(EvidenceError::RoutePath(path.to_owned()));
        }
        Ok(RouteTarget {
            base_url: base_url.to_owned(),
            path: path.to_owned(),
        })
    }

    /// The URL requested: the base URL (without a trailing `/`) followed by the path.
    pub fn url(&self) -> String {
        format!("{}{}", self.base_url.trim_end_matches('/'), self.path)
    }
}

/// A commit of the ticket's work, recorded by the harness from HEAD after a run (or attached by
/// a run).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitEvidence {
    pub sha: CommitSha,
}

/// A named test command, configured per repository or label, that the harness itself ran in the
/// ticket's workspace. An agent cannot declare its own test: it can only ask for a configured one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestEvidence {
    pub name: Name,
    /// The workspace's HEAD when the test ran, when known.
    pub at_commit: Option<CommitSha>,
    /// `None` when the command did not exit by itself (killed by a signal, timed out).
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub output_tail: OutputTail,
    /// SHA-256 of the whole output the harness captured (`output_tail` is its end).
    pub output_sha256: Sha256Hex,
}

/// A named route, configured as a base URL and a path, that the harness requested with GET.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEvidence {
    pub name: Name,
    pub target: RouteTarget,
    pub expected_status: u16,
    /// A text the body must contain, when configured.
    pub body_contains: Option<String>,
    /// The status answered; `None` when no answer came (refused, timed out).
    pub status: Option<u16>,
    /// Whether the body contained `body_contains`; `None` when nothing was expected or no
    /// answer came.
    pub body_matched: Option<bool>,
    pub latency_ms: u64,
    /// Why no answer came.
    pub error: Option<String>,
}

/// A file inside the workspace (a build output, a screenshot), hashed by the harness.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactEvidence {
    pub path: WorkspacePath,
    pub size_bytes: u64,
    pub sha256: Sha256Hex,
    pub media_type: MediaType,
}

/// One piece of evidence, as observed. Stored as JSON tagged by `kind`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    Commit(CommitEvidence),
    Test(TestEvidence),
    Route(RouteEvidence),
    Artifact(ArtifactEvidence),
}

impl Evidence {
    pub fn kind(&self) -> EvidenceKind {
        match self {
            Evidence::Commit(_) => EvidenceKind::Commit,
            Evidence::Test(_) => EvidenceKind::Test,
            Evidence::Route(_) => EvidenceKind::Route,
            Evidence::Artifact(_) => EvidenceKind::Artifact,
        }
    }

    /// What the evidence is about within its kind: the test's or route's name, the artifact's
    /// path. A commit's subject is the ticket's branch, so it has none here. The latest record
    /// of each (kind, subject) is the one that counts.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Evidence::Commit(_) => None,
            Evidence::Test(test) => Some(test.name.as_str()),
            Evidence::Route(route) => Some(route.name.as_str()),
            Evidence::Artifact(artifact) => Some(artifact.path.as_str()),
        }
    }

    /// Checks what the types alone do not: bounded route texts and valid statuses.
    pub fn check(&self) -> Result<(), EvidenceError> {
        if let Evidence::Route(route) = self {
            for status in std::iter::once(route.expected_status).chain(route.status) {
                if !(100..=599).contains(&status) {
                    return Err(EvidenceError::Status(status));
                }
            }
            if route
                .body_contains
                .as_ref()
                .is_some_and(|t| t.len() > MAX_ROUTE_TEXT_BYTES)
            {
                return Err(EvidenceError::TooLong("the expected body text"));
            }
            if route
                .error
                .as_ref()
                .is_some_and(|t| t.len() > MAX_ROUTE_TEXT_BYTES)
            {
                return Err(EvidenceError::TooLong("the request error"));
            }
        }
        Ok(())
    }

    /// A one-line description for lists: `commit 1a2b3c4d5e6f`, `test unit (exit 0, 1200 ms)`.
    pub fn summary(&self) -> String {
        match self {
            Evidence::Commit(commit) => format!("commit {}", commit.sha.short()),
            Evidence::Test(test) => match test.exit_code {
                Some(code) => format!("test {} (exit {code}, {} ms)", test.name, test.duration_ms),
                None => format!("test {} (no exit, {} ms)", test.name, test.duration_ms),
            },
            Evidence::Route(route) => match route.status {
                Some(status) => format!(
                    "route {} (GET {} → {status}, {} ms)",
                    route.name,
                    route.target.url(),
                    route.latency_ms
                ),
                None => format!(
                    "route {} (GET {} → no answer)",
                    route.name,
                    route.target.url()
                ),
            },
            Evidence::Artifact(artifact) => format!(
                "artifact {} ({} bytes, {})",
                artifact.path, artifact.size_bytes, artifact.media_type
            ),
        }
    }
}

/// What a check of a piece of evidence found, and when. A failure says why in words that
/// follow the requirement they fail: `test:unit: last run exited 1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verification {
    Verified { at: Timestamp },
    Failed { at: Timestamp, reason: String },
}

impl Verification {
    pub fn at(&self) -> Timestamp {
        match self {
            Verification::Verified { at } | Verification::Failed { at, .. } => *at,
        }
    }

    pub fn is_verified(&self) -> bool {
        matches!(self, Verification::Verified { .. })
    }

    /// `verified` or `failed`: the stored status.
    pub fn status(&self) -> &'static str {
        match self {
            Verification::Verified { .. } => "verified",
            Verification::Failed { .. } => "failed",
        }
    }

    pub fn failure(&self) -> Option<&str> {
        match self {
            Verification::Verified { .. } => None,
            Verification::Failed { reason, .. } => Some(reason),
        }
    }

    fn judge(at: Timestamp, failure: Option<String>) -> Self {
        match failure {
            None => Verification::Verified { at },
            Some(reason) => Verification::Failed { at, reason },
        }
    }
}

/// What git said about a commit, asked in the ticket's repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitCheck {
    /// The commit exists and the branch contains it.
    Reachable,
    /// The commit exists but the branch does not contain it (rewritten, reset, another branch).
    NotReachable,
    /// The repository has no such commit.
    Missing,
    /// The repository could not be asked; never read as a pass.
    Unavailable(String),
}

/// Whether a commit proves work on `branch`: only when git found it reachable from the branch.
pub fn verify_commit(
    commit: &CommitEvidence,
    branch: &str,
    check: &CommitCheck,
    now: Timestamp,
) -> Verification {
    let sha = commit.sha.short();
    Verification::judge(
        now,
        match check {
            CommitCheck::Reachable => None,
            CommitCheck::NotReachable => Some(format!("{sha} is not reachable from {branch}")),
            CommitCheck::Missing => Some(format!("{sha} does not exist in the repository")),
            CommitCheck::Unavailable(error) => {
                Some(format!("could not check {sha} on {branch}: {error}"))
            }
        },
    )
}

/// Whether a test run proves anything now: it exited 0 and, when the branch's current head is
/// given, it ran at that head (a pass on an older commit says nothing about the current one).
pub fn verify_test(test: &TestEvidence, head: Option<&CommitSha>, now: Timestamp) -> Verification {
    let failure = match test.exit_code {
        None => Some("last run did not exit by itself (killed or timed out)".to_owned()),
        Some(code) if code != 0 => Some(format!("last run exited {code}")),
        Some(_) => match (head, &test.at_commit) {
            (Some(head), Some(at)) if at != head => Some(format!(
                "last run was at {}; the branch is now at {}",
                at.short(),
                head.short()
            )),
            (Some(head), None) => Some(format!(
                "last run's commit is unknown; the branch is at {}",
                head.short()
            )),
            _ => None,
        },
    };
    Verification::judge(now, failure)
}

/// Whether a route answered as configured: the expected status and, when configured, a body
/// containing the expected text.
pub fn verify_route(route: &RouteEvidence, now: Timestamp) -> Verification {
    let url = route.target.url();
    let failure = match route.status {
        None => Some(format!(
            "GET {url} got no answer: {}",
            route.error.as_deref().unwrap_or("no response")
        )),
        Some(status) if status != route.expected_status => Some(format!(
            "GET {url} answered {status}; expected {}",
            route.expected_status
        )),
        Some(_) => match (&route.body_contains, route.body_matched) {
            (Some(text), matched) if matched != Some(true) => {
                Some(format!("GET {url}: the body does not contain {text:?}"))
            }
            _ => None,
        },
    };
    Verification::judge(now, failure)
}

/// What the harness found at an artifact's path in the workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileCheck {
    Present {
        size_bytes: u64,
        sha256: Sha256Hex,
    },
    Missing,
    /// The file could not be read; never read as a pass.
    Unreadable(String),
}

/// Whether an artifact is still what was recorded: present, same size, same hash.
pub fn verify_artifact(
    artifact: &ArtifactEvidence,
    check: &FileCheck,
    now: Timestamp,
) -> Verification {
    let path = &artifact.path;
    let failure = match check {
        FileCheck::Missing => Some(format!("{path} is missing from the workspace")),
        FileCheck::Unreadable(error) => Some(format!("{path} could not be read: {error}")),
        FileCheck::Present { sha256, .. } if *sha256 != artifact.sha256 => Some(format!(
            "{path} changed: its sha256 is {sha256}, {} was recorded",
            artifact.sha256
        )),
        FileCheck::Present { size_bytes, .. } if *size_bytes != artifact.size_bytes => {
            Some(format!(
                "{path} changed: {size_bytes} bytes, {} were recorded",
                artifact.size_bytes
            ))
        }
        FileCheck::Present { .. } => None,
    };
    Verification::judge(now, failure)
}

/// A stored piece of evidence with its latest verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EvidenceRecord {
    pub id: EvidenceId,
    pub ticket: TicketId,
    pub evidence: Evidence,
    pub recorded_at: Timestamp,
    /// `harness`, or the run that attached it (`run:MC-7#2`).
    pub recorded_by: Actor,
    pub verification: Verification,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(c: char) -> CommitSha {
        CommitSha::parse(&c.to_string().repeat(40)).unwrap()
    }

    #[test]
    fn policies_parse_to_a_canonical_form() {
        // (written, canonical form or None when refused)
        let cases: &[(&str, Option<&str>)] = &[
            ("none", Some("none")),
            (" none ", Some("none")),
            ("commit", Some("commit")),
            ("test+commit+test", Some("commit+test")),
            ("commit+test:unit", Some("commit+test:unit")),
            (
                "route:health + test:unit + commit + test",
                Some("commit+test+test:unit+route:health"),
            ),
            ("artifact:shots/home.png", Some("artifact:shots/home.png")),
            ("artifact+test:e2e", Some("test:e2e+artifact")),
            ("", None),
            ("commit+", None),
            ("vibes", None),
            ("commit+vibes", None),
            ("Commit", None),
            ("commit:abc", None),
            ("test:", None),
            ("test:$(rm -rf /)", None),
            ("route:a b", None),
            ("artifact:../secrets", None),
            ("artifact:/etc/passwd", None),
            ("artifact:a//b", None),
            ("none+commit", None),
        ];
        for (text, expect) in cases {
            let got = EvidencePolicy::parse(text).map(|p| p.to_string()).ok();
            assert_eq!(got.as_deref(), *expect, "{text:?}");
            if let Some(canonical) = expect {
                let again = EvidencePolicy::parse(canonical).unwrap();
                assert_eq!(again.to_string(), *canonical, "round trip of {canonical:?}");
            }
        }
        assert_eq!(EvidencePolicy::default().to_string(), "commit");
        let many: Vec<String> = (0..=MAX_REQUIREMENTS)
            .map(|i| format!("test:t{i}"))
            .collect();
        assert!(EvidencePolicy::parse(&many.join("+")).is_err());
    }

    #[test]
    fn kinds_round_trip() {
        for kind in EvidenceKind::ALL {
            assert_eq!(kind.as_str().parse::<EvidenceKind>().unwrap(), kind);
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.as_str());
        }
        assert!("prose".parse::<EvidenceKind>().is_err());
    }

    #[test]
    fn checked_strings() {
        assert!(CommitSha::parse(&"a".repeat(40)).is_ok());
        assert!(CommitSha::parse(&"A".repeat(64)).is_ok());
        assert_eq!(
            CommitSha::parse(&"AB".repeat(20)).unwrap().as_str(),
            "ab".repeat(20)
        );
        for bad in ["", "abc", &"g".repeat(40), &"a".repeat(41)] {
            assert!(CommitSha::parse(bad).is_err(), "{bad}");
        }
        assert!(Sha256Hex::parse(&"0".repeat(64)).is_ok());
        assert!(Sha256Hex::parse(&"0".repeat(40)).is_err());
        for ok in ["a.txt", "shots/home page.png", "a/b/c", ".hidden/x"] {
            assert!(WorkspacePath::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/abs", "a/../b", "..", "./a", "a/", "a//b", " a", "a\nb", "a\\b",
        ] {
            assert!(WorkspacePath::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(MediaType::parse("Image/PNG").unwrap().as_str(), "image/png");
        for bad in ["png", "image/", "/png", "a/b/c", "text/html; charset=utf-8"] {
            assert!(MediaType::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            RouteTarget::new("http://127.0.0.1:8080/", "/health")
                .unwrap()
                .url(),
            "http://127.0.0.1:8080/health"
        );
        assert!(RouteTarget::new("ftp://x", "/").is_err());
        assert!(RouteTarget::new("http://", "/").is_err());
        assert!(RouteTarget::new("http://x", "health").is_err());
        assert!(RouteTarget::new("http://x", "/a b").is_err());
        // Checked strings refuse invalid values when read back, too.
        assert!(serde_json::from_value::<WorkspacePath>(serde_json::json!("../x")).is_err());
    }

    #[test]
    fn output_tail_keeps_the_end_within_the_limit() {
        let output = format!("{}THE END", "x".repeat(MAX_OUTPUT_TAIL_BYTES));
        let tail = OutputTail::of(output.as_bytes());
        assert_eq!(tail.as_str().len(), MAX_OUTPUT_TAIL_BYTES);
        assert!(tail.as_str().ends_with("THE END"));
        let invalid = vec![0xffu8; MAX_OUTPUT_TAIL_BYTES];
        assert!(OutputTail::of(&invalid).as_str().len() <= MAX_OUTPUT_TAIL_BYTES);
        assert_eq!(OutputTail::of(b"ok\n").as_str(), "ok\n");
    }

    fn test_run(exit_code: Option<i32>, at: Option<CommitSha>) -> TestEvidence {
        TestEvidence {
            name: Name::parse("unit").unwrap(),
            at_commit: at,
            exit_code,
            duration_ms: 1200,
            output_tail: OutputTail::of(b"ok"),
            output_sha256: Sha256Hex::parse(&"0".repeat(64)).unwrap(),
        }
    }

    fn route(status: Option<u16>, body: Option<&str>, matched: Option<bool>) -> RouteEvidence {
        RouteEvidence {
            name: Name::parse("health").unwrap(),
            target: RouteTarget::new("http://127.0.0.1:9", "/health").unwrap(),
            expected_status: 200,
            body_contains: body.map(str::to_owned),
            status,
            body_matched: matched,
            latency_ms: 3,
            error: status.is_none().then(|| "connection refused".to_owned()),
        }
    }

    #[test]
    fn verifications() {
        let now = Timestamp::from_millis(7);
        let commit = CommitEvidence { sha: sha('a') };
        let branch = "mission/MC-7";
        let failure = |v: Verification| {
            assert_eq!(v.at(), now);
            v.failure().map(str::to_owned)
        };
        // (verification, expected failure or None when verified)
        let cases: Vec<(Verification, Option<&str>)> = vec![
            (
                verify_commit(&commit, branch, &CommitCheck::Reachable, now),
                None,
            ),
            (
                verify_commit(&commit, branch, &CommitCheck::NotReachable, now),
                Some("aaaaaaaaaaaa is not reachable from mission/MC-7"),
            ),
            (
                verify_commit(&commit, branch, &CommitCheck::Missing, now),
                Some("aaaaaaaaaaaa does not exist in the repository"),
            ),
            (
                verify_commit(
                    &commit,
                    branch,
                    &CommitCheck::Unavailable("not a git repository".into()),
                    now,
                ),
                Some("could not check aaaaaaaaaaaa on mission/MC-7: not a git repository"),
            ),
            (verify_test(&test_run(Some(0), None), None, now), None),
            (
                verify_test(&test_run(Some(0), Some(sha('a'))), Some(&sha('a')), now),
                None,
            ),
            (
                verify_test(&test_run(Some(1), None), None, now),
                Some("last run exited 1"),
            ),
            (
                verify_test(&test_run(None, None), None, now),
                Some("last run did not exit by itself (killed or timed out)"),
            ),
            (
                verify_test(&test_run(Some(0), Some(sha('a'))), Some(&sha('b')), now),
                Some("last run was at aaaaaaaaaaaa; the branch is now at bbbbbbbbbbbb"),
            ),
            (
                verify_test(&test_run(Some(0), None), Some(&sha('b')), now),
                Some("last run's commit is unknown; the branch is at bbbbbbbbbbbb"),
            ),
            (verify_route(&route(Some(200), None, None), now), None),
            (
                verify_route(&route(Some(200), Some("ok"), Some(true)), now),
                None,
            ),
            (
                verify_route(&route(Some(500), None, None), now),
                Some("GET http://127.0.0.1:9/health answered 500; expected 200"),
            ),
            (
                verify_route(&route(Some(200), Some("ok"), Some(false)), now),
                Some("GET http://127.0.0.1:9/health: the body does not contain \"ok\""),
            ),
            (
                verify_route(&route(Some(200), Some("ok"), None), now),
                Some("GET http://127.0.0.1:9/health: the body does not contain \"ok\""),
            ),
            (
                verify_route(&route(None, None, None), now),
                Some("GET http://127.0.0.1:9/health got no answer: connection refused"),
            ),
        ];
        for (i, (verification, expect)) in cases.into_iter().enumerate() {
            assert_eq!(failure(verification).as_deref(), expect, "case {i}");
        }
    }

    #[test]
    fn artifacts_verify_by_hash_and_size() {
        let now = Timestamp::from_millis(7);
        let hash = |c: char| Sha256Hex::parse(&c.to_string().repeat(64)).unwrap();
        let artifact = ArtifactEvidence {
            path: WorkspacePath::parse("shots/home.png").unwrap(),
            size_bytes: 10,
            sha256: hash('a'),
            media_type: MediaType::parse("image/png").unwrap(),
        };
        let present = |size_bytes, sha256| FileCheck::Present { size_bytes, sha256 };
        let cases: Vec<(FileCheck, Option<&str>)> = vec![
            (present(10, hash('a')), None),
            (
                present(10, hash('b')),
                Some("shots/home.png changed: its sha256 is bbbb"),
            ),
            (
                present(11, hash('a')),
                Some("shots/home.png changed: 11 bytes, 10 were recorded"),
            ),
            (
                FileCheck::Missing,
                Some("shots/home.png is missing from the workspace"),
            ),
            (
                FileCheck::Unreadable("permission denied".into()),
                Some("shots/home.png could not be read: permission denied"),
            ),
        ];
        for (check, expect) in cases {
            let got = verify_artifact(&artifact, &check, now);
            match (got.failure(), expect) {
                (None, None) => assert!(got.is_verified()),
                (Some(got), Some(want)) => assert!(got.starts_with(want), "{got}"),
                (got, want) => panic!("{check:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn evidence_is_stored_as_json_tagged_by_kind() {
        let evidence = Evidence::Test(test_run(Some(0), Some(sha('c'))));
        let json = serde_json::to_value(&evidence).unwrap();
        assert_eq!(json["kind"], "test");
        assert_eq!(json["name"], "unit");
        assert_eq!(serde_json::from_value::<Evidence>(json).unwrap(), evidence);
        assert_eq!(evidence.subject(), Some("unit"));
        assert_eq!(evidence.summary(), "test unit (exit 0, 1200 ms)");
        let mut bad = serde_json::to_value(&evidence).unwrap();
        bad["output_sha256"] = "xyz".into();
        assert!(serde_json::from_value::<Evidence>(bad).is_err());
        let verification = Verification::Failed {
            at: Timestamp::from_millis(0),
            reason: "last run exited 1".into(),
        };
        let json = serde_json::to_value(&verification).unwrap();
        assert_eq!(json["status"], "failed");
        assert_eq!(
            serde_json::from_value::<Verification>(json).unwrap(),
            verification
        );
    }

    #[test]
    fn route_texts_and_statuses_are_bounded() {
        let mut r = route(Some(200), None, None);
        assert!(Evidence::Route(r.clone()).check().is_ok());
        r.expected_status = 99;
        assert!(Evidence::Route(r.clone()).check().is_err());
        r.expected_status = 200;
        r.body_contains = Some("x".repeat(MAX_ROUTE_TEXT_BYTES + 1));
        assert!(Evidence::Route(r).check().is_err());
    }
}
