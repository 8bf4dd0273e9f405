//! Tasks: recurring jobs defined in `tasks/*.md` — TOML front matter between `+++` lines, then a
//! body (the prompt of an `agent` task, the script of a `command` task). Parsing, schedules and
//! the firing plan (catch-up after downtime, jitter) are pure functions here; the scheduler in the
//! engine does the I/O.

use crate::id::Name;
use crate::run::Lane;
use crate::ticket::State;
use crate::time::Timestamp;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What a task does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// Runs the body as a script (`sh`), in its own process group.
    Command,
    /// Gives the body as a prompt to a configured worker, through the ticket runner.
    Agent,
    /// One pass of the dispatcher: the same function as the server's loop.
    Dispatch,
    /// Assigns tickets in triage by the `[[triage.rules]]` of the configuration.
    Triage,
    /// Reports tickets that stayed in a state longer than the task's `limits`.
    BoardSweep,
    /// The deterministic operator audit: its findings open, update or reopen incidents.
    OperatorAudit,
    /// Reviews each ticket in review with a reviewer worker (never its author); asks the gate.
    AutoReview,
    /// Delivers pending inbox items addressed to workers by running them with the item.
    InboxDrain,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Command => "command",
            TaskKind::Agent => "agent",
            TaskKind::Dispatch => "dispatch",
            TaskKind::Triage => "triage",
            TaskKind::BoardSweep => "board-sweep",
            TaskKind::OperatorAudit => "operator-audit",
            TaskKind::AutoReview => "auto-review",
            TaskKind::InboxDrain => "inbox-drain",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// A firing while the previous run is still going is recorded as `skipped`.
    #[default]
    Forbid,
    /// The running one is cancelled (recorded) and the new one starts.
    Replace,
    /// Runs may overlap.
    Allow,
}

/// What an `agent` task does when the ticket of its previous firing is still open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IfOpen {
    /// No new ticket: the firing is recorded `skipped`, naming the open one. Slow agents never
    /// pile up tickets.
    #[default]
    Skip,
    /// A new ticket at every firing.
    Create,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Slots missed while the scheduler was down are recorded as skipped, not run.
    Skip,
    /// Only the most recent missed slot runs (if within the window).
    #[default]
    Latest,
    /// Every missed slot within the window runs, oldest first.
    All,
}

/// How a task run ended. Exactly one per run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It did its job; the counts say what.
    Acted,
    /// There was nothing to do; the reason says why.
    Noop,
    /// It did not run (overlap, missed while down).
    Skipped,
    /// It ran but could not do its job fully.
    Degraded,
    /// Error or timeout.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Acted => "acted",
            Outcome::Noop => "noop",
            Outcome::Skipped => "skipped",
            Outcome::Degraded => "degraded",
            Outcome::Failed => "failed",
        }
    }
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
            format!("unknown outcome {s:?}: expected acted, noop, skipped, degraded or failed")
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a task run started: its slot fell due, a missed slot was caught up, or an operator ran
/// it. The string forms are stored with each run and shown in its history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A slot fired on time.
    Schedule,
    /// A slot fired late, after the scheduler was down.
    CatchUp,
    /// `mission task run`.
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::CatchUp => "catch_up",
            Trigger::Manual => "manual",
        }
    }
}

impl FromStr for Trigger {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "schedule" => Ok(Trigger::Schedule),
            "catch_up" => Ok(Trigger::CatchUp),
            "manual" => Ok(Trigger::Manual),
            _ => Err(format!(
                "unknown trigger {s:?}: expected schedule, catch_up or manual"
            )),
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task run's result: the outcome, why, and what it counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    pub outcome: Outcome,
    pub reason: String,
    #[serde(default)]
    pub counts: BTreeMap<String, i64>,
}

impl TaskResult {
    pub fn new(outcome: Outcome, reason: impl Into<String>) -> Self {
        TaskResult {
            outcome,
            reason: reason.into(),
            counts: BTreeMap::new(),
        }
    }

    pub fn count(mut self, name: &str, value: i64) -> Self {
        self.counts.insert(name.to_owned(), value);
        self
    }
}

/// When a task fires.
#[derive(Clone, Debug)]
pub enum Schedule {
    Cron {
        expression: String,
        cron: Box<croner::Cron>,
        timezone: chrono_tz::Tz,
    },
    /// Every interval, on multiples of it since the Unix epoch (so slots survive restarts).
    Every(Duration),
}

impl Schedule {
    /// The first slot strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Every(interval) => {
                let step = interval.as_millis() as i64;
                let t = after.as_millis();
                Some(Timestamp::from_millis((t.div_euclid(step) + 1) * step))
            }
            Schedule::Cron { cron, timezone, .. } => {
                // Cron works in whole seconds: start from the second `after` falls in.
                let seconds = after.as_millis().div_euclid(1000);
                let at = DateTime::<Utc>::from_timestamp(seconds, 0)?.with_timezone(timezone);
                let next = cron.find_next_occurrence(&at, false).ok()?;
                Some(Timestamp::from_millis(next.timestamp() * 1000))
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Schedule::Every(interval) => format!("every {}", humantime::format_duration(*interval)),
            Schedule::Cron {
                expression,
                timezone,
                ..
            } => format!("cron {expression} ({timezone})"),
        }
    }
}

/// A parsed, checked task file.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    pub name: Name,
    pub kind: TaskKind,
    pub schedule: Schedule,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    pub catch_up_window: Duration,
    pub jitter: Duration,
    pub timeout: Duration,
    pub enabled: bool,
    /// `agent` tasks: the worker that runs the prompt.
    pub worker: Option<Name>,
    /// `agent` tasks: whether a firing creates a ticket while the previous one's is open.
    pub if_open: IfOpen,
    /// `board-sweep` tasks: the longest a ticket may stay in each state.
    pub limits: BTreeMap<State, Duration>,
    /// `dispatch` tasks: one lane only (default: both, as the server).
    pub lane: Option<Lane>,
    /// `auto-review` tasks: the workers that review, first one not an author first.
    pub reviewers: Vec<Name>,
    pub body: String,
}

impl TaskSpec {
    /// When slot `slot` actually fires: the slot plus a fixed per-(task, slot) jitter in
    /// `[0, jitter)`, so that tasks sharing a schedule do not start at once, and a restart fires a
    /// slot at the same moment it would have.
    pub fn fire_time(&self, slot: Timestamp) -> Timestamp {
        let jitter = self.jitter.as_millis() as u64;
        if jitter == 0 {
            return slot;
        }
        // FNV-1a over the name and the slot: stable across runs and versions.
        let mut hash: u64 = 0xcbf29ce484222325;
        for byte in self
            .name
            .as_str()
            .bytes()
            .chain(slot.as_millis().to_le_bytes())
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x100000001b3);
        }
        Timestamp::from_millis(slot.as_millis() + (hash % jitter) as i64)
    }
}

/// What to do with the slots that fell due since `last` (the newest slot already fired or
/// skipped), at `now`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Slots to fire now, oldest first.
    pub fire: Vec<Timestamp>,
    /// The newest slot not fired (missed while down), and how many were missed; recorded as one
    /// `skipped` run.
    pub skipped: Option<(Timestamp, u32)>,
}

/// How late a slot may fire and still count as on time rather than missed.
pub const ON_TIME: Duration = Duration::from_secs(60);

/// Most slots looked at in one plan (a long downtime of a frequent task).
const MAX_SLOTS: usize = 100_000;

/// The firing plan for one task. A slot whose fire time is within `ON_TIME` of `now` is simply
/// due; older ones were missed, and the catch-up policy decides (only within the window).
pub fn plan(spec: &TaskSpec, last: Option<Timestamp>, now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    // A task without history starts now: nothing before it existed was missed.
    let Some(mut cursor) = last else {
        return plan;
    };
    let mut due = Vec::new();
    while let Some(slot) = spec.schedule.next_after(cursor) {
        if spec.fire_time(slot) > now || due.len() >= MAX_SLOTS {
            break;
        }
        due.push(slot);
        cursor = slot;
    }
    let on_time = ON_TIME.as_millis() as i64;
    let window = spec.catch_up_window.as_millis() as i64;
    let (missed, current): (Vec<Timestamp>, Vec<Timestamp>) = due
        .into_iter()
        .partition(|slot| now.as_millis() - spec.fire_time(*slot).as_millis() > on_time);
    let in_window: Vec<Timestamp> = missed
        .iter()
        .copied()
        .filter(|slot| now.as_millis() - slot.as_millis() <= window)
        .collect();
    let fire_missed: Vec<Timestamp> = match spec.catch_up {
        CatchUp::Skip => Vec::new(),
        CatchUp::Latest => in_window.last().copied().into_iter().collect(),
        CatchUp::All => in_window,
    };
    let not_fired: Vec<Timestamp> = missed
        .iter()
        .copied()
        .filter(|s| !fire_missed.contains(s))
        .collect();
    if let Some(newest) = not_fired.last() {
        plan.skipped = Some((*newest, not_fired.len() as u32));
    }
    plan.fire = fire_missed;
    plan.fire.extend(current);
    plan.fire.sort();
    plan
}

/// A problem with a task file, with the line it is on when known.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", .line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct TaskFileError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    kind: TaskKind,
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default)]
    every: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    overlap: Overlap,
    #[serde(default)]
    catch_up: CatchUp,
    #[serde(default)]
    catch_up_window: Option<String>,
    #[serde(default)]
    jitter: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    worker: Option<String>,
    #[serde(default)]
    if_open: Option<IfOpen>,
    #[serde(default)]
    limits: BTreeMap<String, String>,
    #[serde(default)]
    lane: Option<String>,
    #[serde(default)]
    reviewers: Vec<String>,
}

fn yes() -> bool {
    true
}

/// Default time limit of a task run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default catch-up window.
pub const DEFAULT_CATCH_UP_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Parses a task file. `file` names it in errors; the task's name is the file's stem.
pub fn parse_task(file: &str, stem: &str, bytes: &[u8]) -> Result<TaskSpec, TaskFileError> {
    let error = |line: Option<usize>, message: String| TaskFileError {
        file: file.to_owned(),
        line,
        message,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        error(
            Some(line_at(bytes, e.valid_up_to())),
            "not UTF-8 text".to_owned(),
        )
    })?;
    if text.contains('\0') {
        return Err(error(
            Some(line_at(bytes, text.find('\0').unwrap_or(0))),
            "contains a NUL byte".to_owned(),
        ));
    }
    let name = Name::parse(stem)
        .map_err(|e| error(None, format!("the file name is not a task name: {e}")))?;
    let Some(rest) = text
        .strip_prefix("+++\n")
        .or_else(|| text.strip_prefix("+++\r\n"))
    else {
        return Err(error(
            Some(1),
            "expected front matter: the first line must be +++".to_owned(),
        ));
    };
    let Some(end) = rest.find("\n+++") else {
        return Err(error(
            None,
            "the front matter has no closing +++ line".to_owned(),
        ));
    };
    let front = &rest[..end + 1];
    let body = rest[end + 4..]
        .trim_start_matches(['\r'])
        .strip_prefix('\n')
        .unwrap_or(&rest[end + 4..]);
    // Lines in errors count from the file's first line; the front matter starts on line 2.
    let at_line = |offset: usize| Some(line_at(front.as_bytes(), offset) + 1);
    let de = toml::de::Deserializer::parse(front).map_err(|e| {
        error(
            e.span().and_then(|s| at_line(s.start)),
            e.message().to_owned(),
        )
    })?;
    let matter: FrontMatter = deserialize_front(de).map_err(|(key, message, span)| {
        let message = if key.is_empty() {
            message
        } else {
            format!("key `{key}`: {message}")
        };
        error(span.and_then(|s| at_line(s.start)), message)
    })?;
    let key_line = |key: &str| {
        front
            .lines()
            .position(|l| l.trim_start().starts_with(key))
            .map(|i| i + 2)
    };
    let bad = |key: &str, message: String| error(key_line(key), format!("key `{key}`: {message}"));
    let duration =
        |key: &str, value: &Option<String>, default: Duration| -> Result<Duration, TaskFileError> {
            match value {
                None => Ok(default),
                Some(text) => crate::time::parse_duration(text).map_err(|e| bad(key, e)),
            }
        };
    let schedule = match (&matter.schedule, &matter.every) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "every",
                "give `schedule` or `every`, not both".to_owned(),
            ));
        }
        (None, None) => {
            return Err(error(
                None,
                "no schedule: give `schedule` (cron) or `every`".to_owned(),
            ));
        }
        (None, Some(every)) => {
            if matter.timezone.is_some() {
                return Err(bad(
                    "timezone",
                    "only a cron `schedule` takes a time zone".to_owned(),
                ));
            }
            let interval = duration("every", &Some(every.clone()), Duration::ZERO)?;
            if interval < Duration::from_secs(1) {
                return Err(bad("every", "must be at least 1s".to_owned()));
            }
            Schedule::Every(interval)
        }
        (Some(expression), None) => {
            let fields = expression.split_whitespace().count();
            if !(5..=6).contains(&fields) {
                return Err(bad(
                    "schedule",
                    format!("cron expression {expression:?} has {fields} fields; expected 5 or 6"),
                ));
            }
            let cron = croner::Cron::from_str(expression).map_err(|e| {
                bad(
                    "schedule",
                    format!("invalid cron expression {expression:?}: {e}"),
                )
            })?;
            let timezone = match &matter.timezone {
                None => chrono_tz::Tz::UTC,
                Some(tz) => tz.parse::<chrono_tz::Tz>().map_err(|_| {
                    bad(
                        "timezone",
                        format!("unknown time zone {tz:?} (e.g. \"Europe/Berlin\", \"UTC\")"),
                    )
                })?,
            };
            Schedule::Cron {
                expression: expression.clone(),
                cron: Box::new(cron),
                timezone,
            }
        }
    };
    let worker = matter
        .worker
        .as_deref()
        .map(Name::parse)
        .transpose()
        .map_err(|e| bad("worker", e.to_string()))?;
    match (matter.kind, &worker) {
        (TaskKind::Agent, None) => {
            return Err(error(None, "an agent task needs `worker`".to_owned()));
        }
        (TaskKind::Agent, Some(_)) => {}
        (_, Some(_)) => {
            return Err(bad(
                "worker",
                "only an agent task takes a worker".to_owned(),
            ));
        }
        _ => {}
    }
    if matter.if_open.is_some() && matter.kind != TaskKind::Agent {
        return Err(bad(
            "if_open",
            "only an agent task takes if_open".to_owned(),
        ));
    }
    if matches!(matter.kind, TaskKind::Command | TaskKind::Agent) && body.trim().is_empty() {
        return Err(error(
            None,
            format!(
                "a {} task needs a body (its {})",
                matter.kind.as_str(),
                if matter.kind == TaskKind::Agent {
                    "prompt"
                } else {
                    "script"
                }
            ),
        ));
    }
    let mut limits = BTreeMap::new();
    for (state, limit) in &matter.limits {
        let parsed: State = state
            .parse()
            .map_err(|e: crate::ValidationError| bad("limits", e.to_string()))?;
        limits.insert(
            parsed,
            duration("limits", &Some(limit.clone()), Duration::ZERO)?,
        );
    }
    if matter.kind == TaskKind::BoardSweep && limits.is_empty() {
        return Err(error(
            None,
            "a board-sweep task needs `limits`, e.g. limits = { running = \"2h\" }".to_owned(),
        ));
    }
    if matter.kind != TaskKind::BoardSweep && !limits.is_empty() {
        return Err(bad(
            "limits",
            "only a board-sweep task takes limits".to_owned(),
        ));
    }
    let lane = matter
        .lane
        .as_deref()
        .map(str::parse::<Lane>)
        .transpose()
        .map_err(|e| bad("lane", e))?;
    if lane.is_some() && matter.kind != TaskKind::Dispatch {
        return Err(bad("lane", "only a dispatch task takes a lane".to_owned()));
    }
    let reviewers = matter
        .reviewers
        .iter()
        .map(|r| Name::parse(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("reviewers", e.to_string()))?;
    match (matter.kind, reviewers.is_empty()) {
        (TaskKind::AutoReview, true) => {
            return Err(error(
                None,
                "an auto-review task needs `reviewers`, e.g. reviewers = [\"larry\"]".to_owned(),
            ));
        }
        (TaskKind::AutoReview, false) | (_, true) => {}
        (_, false) => {
            return Err(bad(
                "reviewers",
                "only an auto-review task takes reviewers".to_owned(),
            ));
        }
    }
    Ok(TaskSpec {
        name,
        kind: matter.kind,
        schedule,
        overlap: matter.overlap,
        catch_up: matter.catch_up,
        catch_up_window: duration(
            "catch_up_window",
            &matter.catch_up_window,
            DEFAULT_CATCH_UP_WINDOW,
        )?,
        jitter: duration("jitter", &matter.jitter, Duration::ZERO)?,
        timeout: duration("timeout", &matter.timeout, DEFAULT_TIMEOUT)?,
        enabled: matter.enabled,
        worker,
        if_open: matter.if_open.unwrap_or_default(),
        limits,
        lane,
        reviewers,
        body: body.to_owned(),
    })
}

/// Deserializes, keeping the path of the failing key and the span of the error.
fn deserialize_front(
    de: toml::de::Deserializer<'_>,
) -> Result<FrontMatter, (String, String, Option<std::ops::Range<usize>>)> {
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let inner = e.into_inner();
        (key, inner.message().to_owned(), inner.span())
    })
}

fn line_at(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}
