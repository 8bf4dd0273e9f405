//! Usage and budgets: what runs consumed (the ledger's amounts and its buckets), the instance's
//! time zone and the windows budgets count over, the `[[budgets]]` section checked, and the
//! judgement of a budget against what was used.
//!
//! The ledger keeps, per scope (the instance, a worker, a pool, a label, a ticket) and per
//! 15-minute bucket of UTC time, what the runs that ended in that bucket used, and the running
//! total up to that bucket. Every real time zone's offset is a multiple of 15 minutes, so a local
//! day, week or month is a whole number of buckets in any zone, and the usage over a window is
//! two running totals subtracted — one index lookup each, whatever the window's length.

use crate::config::ConfigError;
use crate::id::{Name, TicketId};
use crate::time::Timestamp;
use chrono::{DateTime, Datelike, Duration as ChronoDuration, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The ledger's bucket: 15 minutes of UTC time.
pub const BUCKET_MS: i64 = 15 * 60 * 1000;

/// The bucket `at` falls in.
pub fn bucket_of(at: Timestamp) -> i64 {
    at.as_millis().div_euclid(BUCKET_MS)
}

/// The first instant of `bucket`.
pub fn bucket_start(bucket: i64) -> Timestamp {
    Timestamp::from_millis(bucket.saturating_mul(BUCKET_MS))
}

/// What runs used. Cost is kept in millionths of a US dollar, so sums are exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    pub runs: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    pub cost_micros: i64,
    /// Wall time of the runs, from their start to their process's end.
    pub run_ms: i64,
}

impl Usage {
    pub fn plus(self, other: Usage) -> Usage {
        Usage {
            runs: self.runs + other.runs,
            input_tokens: self.input_tokens + other.input_tokens,
            output_tokens: self.output_tokens + other.output_tokens,
            cached_tokens: self.cached_tokens + other.cached_tokens,
            cost_micros: self.cost_micros + other.cost_micros,
            run_ms: self.run_ms + other.run_ms,
        }
    }

    pub fn minus(self, other: Usage) -> Usage {
        Usage {
            runs: self.runs - other.runs,
            input_tokens: self.input_tokens - other.input_tokens,
            output_tokens: self.output_tokens - other.output_tokens,
            cached_tokens: self.cached_tokens - other.cached_tokens,
            cost_micros: self.cost_micros - other.cost_micros,
            run_ms: self.run_ms - other.run_ms,
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == Usage::default()
    }

    /// Input and output tokens (cached input tokens are part of the input).
    pub fn tokens(&self) -> i64 {
        self.input_tokens + self.output_tokens
    }

    pub fn cost_usd(&self) -> f64 {
        self.cost_micros as f64 / 1e6
    }

    pub fn run_hours(&self) -> f64 {
        self.run_ms as f64 / 3_600_000.0
    }
}

/// A cost in dollars as the ledger keeps it.
pub fn usd_to_micros(usd: f64) -> i64 {
    if usd.is_finite() {
        (usd * 1e6).round() as i64
    } else {
        0
    }
}

/// What the ledger aggregates by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    Instance,
    Worker,
    Pool,
    Label,
    Ticket,
}

impl ScopeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Instance => "instance",
            ScopeKind::Worker => "worker",
            ScopeKind::Pool => "pool",
            ScopeKind::Label => "label",
            ScopeKind::Ticket => "ticket",
        }
    }
}

impl std::str::FromStr for ScopeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "instance" => Ok(ScopeKind::Instance),
            "worker" => Ok(ScopeKind::Worker),
            "pool" => Ok(ScopeKind::Pool),
            "label" => Ok(ScopeKind::Label),
            "ticket" => Ok(ScopeKind::Ticket),
            _ => Err(format!("unknown usage scope {s:?}")),
        }
    }
}

/// One ledger series: a scope and its key (`""` for the instance).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct LedgerKey {
    pub scope: ScopeKind,
    pub key: String,
}

impl LedgerKey {
    pub fn new(scope: ScopeKind, key: impl Into<String>) -> Self {
        LedgerKey {
            scope,
            key: key.into(),
        }
    }

    pub fn instance() -> Self {
        LedgerKey::new(ScopeKind::Instance, "")
    }
}

/// The series a run's usage is added to: the instance, its worker, its pool, each label of its
/// ticket (as they are when the run's figures are recorded) and its ticket.
pub fn ledger_keys(
    worker: &str,
    pool: &str,
    labels: &[String],
    ticket: &TicketId,
) -> Vec<LedgerKey> {
    let mut keys = vec![
        LedgerKey::instance(),
        LedgerKey::new(ScopeKind::Worker, worker),
        LedgerKey::new(ScopeKind::Pool, pool),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for label in labels {
        if seen.insert(label.as_str()) {
            keys.push(LedgerKey::new(ScopeKind::Label, label.clone()));
        }
    }
    keys.push(LedgerKey::new(ScopeKind::Ticket, ticket.to_string()));
    keys
}

/// The instance's time zone (`[instance] time_zone`): where days, weeks and months begin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Zone(chrono_tz::Tz);

impl Default for Zone {
    fn default() -> Self {
        Zone(chrono_tz::Tz::UTC)
    }
}

impl Zone {
    pub fn parse(name: &str) -> Result<Zone, String> {
        name.parse::<chrono_tz::Tz>().map(Zone).map_err(|_| {
            format!("unknown time zone {name:?} (an IANA name such as \"Europe/Paris\")")
        })
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    fn local(&self, at: Timestamp) -> DateTime<chrono_tz::Tz> {
        DateTime::<Utc>::from_timestamp_millis(at.as_millis())
            .unwrap_or_default()
            .with_timezone(&self.0)
    }

    /// The local date `at` falls on.
    pub fn date_of(&self, at: Timestamp) -> NaiveDate {
        self.local(at).date_naive()
    }

    /// The first instant of local `date` (its midnight, or the first instant after a gap).
    pub fn start_of(&self, date: NaiveDate) -> Timestamp {
        let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists");
        let mut probe = midnight;
        // A day may start after a gap (a DST change at midnight): step forward until it exists.
        for _ in 0..96 {
            if let Some(at) = self.0.from_local_datetime(&probe).earliest() {
                return Timestamp::from_millis(at.timestamp_millis());
            }
            probe += ChronoDuration::minutes(15);
        }
        Timestamp::from_millis(Utc.from_utc_datetime(&midnight).timestamp_millis())
    }

    /// Shows `at` in this zone (RFC 3339 with the offset).
    pub fn show(&self, at: Timestamp) -> String {
        self.local(at)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
    }
}

/// The window a budget counts over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The local day.
    Day,
    /// The local week, from Monday.
    Week,
    /// The local calendar month.
    Month,
    /// The last `duration`, counted in whole buckets (up to 15 minutes more).
    Rolling(Duration),
}

impl Window {
    pub fn parse(text: &str) -> Result<Window, String> {
        match text {
            "day" => Ok(Window::Day),
            "week" => Ok(Window::Week),
            "month" => Ok(Window::Month),
            other => {
                let duration = crate::time::parse_duration(other).map_err(|_| {
                    format!(
                        "window {other:?}: expected day, week, month or a duration such as \"5h\""
                    )
                })?;
                if duration.as_millis() < BUCKET_MS as u128 {
                    return Err(format!(
                        "window {other:?}: a rolling window is at least 15m"
                    ));
                }
                Ok(Window::Rolling(duration))
            }
        }
    }

    /// Where the window containing `now` starts (a bucket boundary), and when it ends (`None` for
    /// a rolling window, which has no end).
    pub fn bounds(&self, now: Timestamp, zone: &Zone) -> (Timestamp, Option<Timestamp>) {
        let date = zone.date_of(now);
        let (first, next) = match self {
            Window::Rolling(duration) => {
                let start = now.as_millis() - duration.as_millis() as i64;
                return (bucket_start(start.div_euclid(BUCKET_MS)), None);
            }
            Window::Day => (date, date + ChronoDuration::days(1)),
            Window::Week => {
                let monday =
                    date - ChronoDuration::days(i64::from(date.weekday().num_days_from_monday()));
                (monday, monday + ChronoDuration::days(7))
            }
            Window::Month => {
                let first = date.with_day(1).expect("day 1 exists");
                let next = if first.month() == 12 {
                    NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
                }
                .expect("the first of a month exists");
                (first, next)
            }
        };
        (zone.start_of(first), Some(zone.start_of(next)))
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Window::Day => f.write_str("day"),
            Window::Week => f.write_str("week"),
            Window::Month => f.write_str("month"),
            Window::Rolling(d) => write!(f, "rolling {}", humantime::format_duration(*d)),
        }
    }
}

/// What a budget does to runs in progress when its hard limit is reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExhaust {
    /// Nothing new is dispatched; runs in progress finish.
    #[default]
    Finish,
    /// Runs in progress under the budget are stopped too.
    Stop,
}

/// One `[[budgets]]` entry as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// Names the budget in reasons and alerts. Default: `SCOPE:KEY/WINDOW`.
    #[serde(default)]
    pub name: Option<String>,
    /// At most one of `worker`, `pool`, `label`; none: the whole instance.
    #[serde(default)]
    pub worker: Option<String>,
    #[serde(default)]
    pub pool: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    /// `day`, `week`, `month` (in the instance's time zone) or a rolling duration (`"5h"`).
    pub window: String,
    #[serde(default)]
    pub usd: Option<f64>,
    #[serde(default)]
    pub tokens: Option<u64>,
    #[serde(default)]
    pub runs: Option<u64>,
    #[serde(default)]
    pub run_hours: Option<f64>,
    /// The soft limit, as a fraction of each hard limit (e.g. 0.8): an inbox alert once per window.
    #[serde(default)]
    pub soft: Option<f64>,
    #[serde(default)]
    pub on_exhaust: OnExhaust,
}

/// What a budget covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "scope", content = "key", rename_all = "snake_case")]
pub enum BudgetScope {
    Instance,
    Worker(Name),
    Pool(String),
    Label(String),
}

impl BudgetScope {
    pub fn ledger_key(&self) -> LedgerKey {
        match self {
            BudgetScope::Instance => LedgerKey::instance(),
            BudgetScope::Worker(name) => LedgerKey::new(ScopeKind::Worker, name.as_str()),
            BudgetScope::Pool(pool) => LedgerKey::new(ScopeKind::Pool, pool.clone()),
            BudgetScope::Label(label) => LedgerKey::new(ScopeKind::Label, label.clone()),
        }
    }

    /// Whether a run of `worker` (in `pool`) on a ticket with `labels` counts under it.
    pub fn covers(&self, worker: &str, pool: &str, labels: &[String]) -> bool {
        match self {
            BudgetScope::Instance => true,
            BudgetScope::Worker(name) => name.as_str() == worker,
            BudgetScope::Pool(p) => p == pool,
            BudgetScope::Label(label) => labels.iter().any(|l| l == label),
        }
    }
}

impl fmt::Display for BudgetScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BudgetScope::Instance => f.write_str("the instance"),
            BudgetScope::Worker(name) => write!(f, "worker {name}"),
            BudgetScope::Pool(pool) => write!(f, "pool {pool}"),
            BudgetScope::Label(label) => write!(f, "label {label}"),
        }
    }
}

/// The kinds of limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    Usd,
    Tokens,
    Runs,
    RunHours,
}

impl LimitKind {
    pub const ALL: [LimitKind; 4] = [
        LimitKind::Usd,
        LimitKind::Tokens,
        LimitKind::Runs,
        LimitKind::RunHours,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Usd => "usd",
            LimitKind::Tokens => "tokens",
            LimitKind::Runs => "runs",
            LimitKind::RunHours => "run_hours",
        }
    }

    /// This kind's amount in `usage`, in the ledger's units (micro-dollars, tokens, runs, ms).
    fn amount(self, usage: &Usage) -> i64 {
        match self {
            LimitKind::Usd => usage.cost_micros,
            LimitKind::Tokens => usage.tokens(),
            LimitKind::Runs => usage.runs,
            LimitKind::RunHours => usage.run_ms,
        }
    }

    fn show(self, amount: i64) -> String {
        match self {
            LimitKind::Usd => format!("${:.2}", amount as f64 / 1e6),
            LimitKind::Tokens => format!("{amount} tokens"),
            LimitKind::Runs => format!("{amount} runs"),
            LimitKind::RunHours => format!("{:.2} run-hours", amount as f64 / 3_600_000.0),
        }
    }
}

/// A checked budget. Limits are in the ledger's units.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    pub name: String,
    pub scope: BudgetScope,
    pub window: Window,
    pub limits: Vec<(LimitKind, i64)>,
    pub soft: Option<f64>,
    pub on_exhaust: OnExhaust,
}

/// What the ledger says about a budget's window: the usage of the runs that ended in it, and the
/// runs of the budget's scope live now (they count against a runs limit at once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetUse {
    pub used: Usage,
    pub live_runs: i64,
}

/// A budget judged against its use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    Within,
    /// Past the soft limit of `kind`.
    Soft {
        kind: LimitKind,
        used: i64,
        limit: i64,
    },
    /// At or past the hard limit of `kind`: nothing more is dispatched under the budget.
    Exhausted {
        kind: LimitKind,
        used: i64,
        limit: i64,
    },
}

impl Standing {
    pub fn is_exhausted(&self) -> bool {
        matches!(self, Standing::Exhausted { .. })
    }

    /// `tokens: 1200 tokens of 1000 tokens`.
    pub fn describe(&self) -> Option<String> {
        match self {
            Standing::Within => None,
            Standing::Soft { kind, used, limit } | Standing::Exhausted { kind, used, limit } => {
                Some(format!(
                    "{} {} of {}",
                    kind.as_str(),
                    kind.show(*used),
                    kind.show(*limit)
                ))
            }
        }
    }
}

impl Budget {
    /// Whether the runs in progress under this budget are to be stopped now: it says
    /// `on_exhaust = "stop"` and the runs that ENDED in its window reached a USD, token or
    /// run-hour limit. A runs limit stops nothing: the dispatcher never starts the run that would
    /// pass it, so the live runs are within it. Returns what was reached.
    pub fn stops_runs(&self, usage: &BudgetUse) -> Option<String> {
        if self.on_exhaust != OnExhaust::Stop {
            return None;
        }
        self.limits
            .iter()
            .filter(|(kind, _)| *kind != LimitKind::Runs)
            .find(|(kind, limit)| kind.amount(&usage.used) >= *limit)
            .map(|&(kind, limit)| {
                format!(
                    "budget {} ({}, {}) is spent: {} {} of {}",
                    self.name,
                    self.scope,
                    self.window,
                    kind.as_str(),
                    kind.show(kind.amount(&usage.used)),
                    kind.show(limit)
                )
            })
    }

    /// The judgement: exhausted when any hard limit is reached (a runs limit counts the live runs
    /// too, so that the run that would pass it is never started), else soft when any amount is
    /// at or past its soft fraction.
    pub fn standing(&self, usage: &BudgetUse) -> Standing {
        let amount = |kind: LimitKind| {
            let used = kind.amount(&usage.used);
            if kind == LimitKind::Runs {
                used + usage.live_runs
            } else {
                used
            }
        };
        for &(kind, limit) in &self.limits {
            let used = amount(kind);
            if used >= limit {
                return Standing::Exhausted { kind, used, limit };
            }
        }
        if let Some(soft) = self.soft {
            for &(kind, limit) in &self.limits {
                let used = amount(kind);
                if used as f64 >= soft * limit as f64 {
                    return Standing::Soft { kind, used, limit };
                }
            }
        }
        Standing::Within
    }
}

/// Checks the `[[budgets]]` section. `is_worker` says whether a name is a configured worker.
pub fn budgets(
    configs: &[BudgetConfig],
    is_worker: impl Fn(&Name) -> bool,
) -> Result<Vec<Budget>, ConfigError> {
    let mut checked: Vec<Budget> = Vec::new();
    for (i, config) in configs.iter().enumerate() {
        let key = |field: &str| format!("budgets[{i}].{field}");
        let scopes = [&config.worker, &config.pool, &config.label]
            .iter()
            .filter(|s| s.is_some())
            .count();
        if scopes > 1 {
            return Err(ConfigError::new(
                format!("budgets[{i}]"),
                "a budget covers one worker, one pool, one label, or (none of them) the instance",
            ));
        }
        let scope = if let Some(worker) = &config.worker {
            let name =
                Name::parse(worker).map_err(|e| ConfigError::new(key("worker"), e.to_string()))?;
            if !is_worker(&name) {
                return Err(ConfigError::new(
                    key("worker"),
                    format!("{worker:?} is not a configured worker"),
                ));
            }
            BudgetScope::Worker(name)
        } else if let Some(pool) = &config.pool {
            BudgetScope::Pool(pool.clone())
        } else if let Some(label) = &config.label {
            BudgetScope::Label(label.trim().to_ascii_lowercase())
        } else {
            BudgetScope::Instance
        };
        let window =
            Window::parse(&config.window).map_err(|e| ConfigError::new(key("window"), e))?;
        let mut limits = Vec::new();
        let positive = |field: &str, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(ConfigError::new(key(field), "must be a positive number"))
            }
        };
        if let Some(usd) = config.usd {
            positive("usd", usd)?;
            limits.push((LimitKind::Usd, usd_to_micros(usd).max(1)));
        }
        if let Some(tokens) = config.tokens {
            positive("tokens", tokens as f64)?;
            limits.push((LimitKind::Tokens, i64::try_from(tokens).unwrap_or(i64::MAX)));
        }
        if let Some(runs) = config.runs {
            positive("runs", runs as f64)?;
            limits.push((LimitKind::Runs, i64::try_from(runs).unwrap_or(i64::MAX)));
        }
        if let Some(hours) = config.run_hours {
            positive("run_hours", hours)?;
            limits.push((
                LimitKind::RunHours,
                ((hours * 3_600_000.0).round() as i64).max(1),
            ));
        }
        if limits.is_empty() {
            return Err(ConfigError::new(
                format!("budgets[{i}]"),
                "a budget needs at least one limit: usd, tokens, runs or run_hours",
            ));
        }
        if let Some(soft) = config.soft
            && !(soft > 0.0 && soft < 1.0)
        {
            return Err(ConfigError::new(
                key("soft"),
                "the soft limit is a fraction of the hard ones, between 0 and 1 (e.g. 0.8)",
            ));
        }
        if config.on_exhaust == OnExhaust::Stop && limits.iter().all(|(k, _)| *k == LimitKind::Runs)
        {
            // A runs limit is never passed by a run in progress (see `Budget::stops_runs`): a
            // "stop" that could never act is refused rather than ignored.
            return Err(ConfigError::new(
                key("on_exhaust"),
                "\"stop\" needs a usd, tokens or run_hours limit: a runs limit never stops a run in progress",
            ));
        }
        let name = match &config.name {
            Some(name) => {
                Name::parse(name).map_err(|e| ConfigError::new(key("name"), e.to_string()))?;
                name.clone()
            }
            None => {
                let scope = scope.ledger_key();
                let window = match window {
                    Window::Rolling(d) => {
                        humantime::format_duration(d).to_string().replace(' ', "")
                    }
                    other => other.to_string(),
                };
                if scope.key.is_empty() {
                    format!("instance/{window}")
                } else {
                    format!("{}:{}/{window}", scope.scope.as_str(), scope.key)
                }
            }
        };
        if checked.iter().any(|b| b.name == name) {
            return Err(ConfigError::new(
                key("name"),
                format!("a second budget named {name:?}; give each a distinct name"),
            ));
        }
        checked.push(Budget {
            name,
            scope,
            window,
            limits,
            soft: config.soft,
            on_exhaust: config.on_exhaust,
        });
    }
    Ok(checked)
}

/// A budget whose hard limit is reached, as the policy reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Exhausted {
    pub budget: String,
    pub scope: BudgetScope,
    pub window: String,
    /// `tokens 1200 tokens of 1000 tokens`.
    pub detail: String,
    /// When the window ends (or, rolling, when its oldest usage leaves it), shown in the zone.
    pub resets: Option<Timestamp>,
    pub resets_shown: Option<String>,
}

/// A worker parked after its runtime reported a rate or usage limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkerPark {
    pub worker: Name,
    /// Nothing of the worker is dispatched before this time.
    pub until: Timestamp,
    /// What the runtime said (shortened), or how the time was chosen.
    pub reason: String,
    /// Limits in a row (the backoff doubles with each).
    pub strikes: u32,
    pub since: Timestamp,
    pub run: Option<i64>,
}

/// A run's figures as stored: before and after its end is recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cached_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
}

impl Figures {
    fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.input_tokens.unwrap_or(0),
            output_tokens: self.output_tokens.unwrap_or(0),
            cached_tokens: self.cached_tokens.unwrap_or(0),
            cost_micros: self.cost_usd.map_or(0, usd_to_micros),
            ..Usage::default()
        }
    }
}

/// What recording the end of a run (its figures, how it ended) does to the ledger, its worker's
/// park and its worker's breaker. Decided here; the store writes it in the ending transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct Accounting {
    /// Added to each of the run's ledger series (zero: nothing to add).
    pub usage: Usage,
    /// The worker's park to store (a rate limit).
    pub park: Option<WorkerPark>,
    /// The worker's breaker to store, and whether this end opened it.
    pub breaker: Option<(crate::breaker::Breaker, bool)>,
}

/// The inputs of [`account`].
#[derive(Clone, Debug)]
pub struct RunEndFacts<'a> {
    /// The run after its end was recorded.
    pub run: &'a crate::run::Run,
    pub before: Figures,
    pub after: Figures,
    /// Whether the run was already counted in the ledger (a second account of it adds only
    /// figures that changed).
    pub counted: bool,
    /// The reset time of the limit the runtime reported.
    pub limit_reset: Option<Timestamp>,
    /// The worker's park and breaker as stored.
    pub park: Option<&'a WorkerPark>,
    pub breaker: crate::breaker::Breaker,
    pub now: Timestamp,
}

/// The accounting of a run's end: its figures' increase; the first time, one run and its wall
/// time (start to now), the worker's breaker moved by how it ended, and, for a rate limit, the
/// worker parked (the longer of the park in force and the new one; limits in a row counted while
/// the previous park is recent).
pub fn account(facts: &RunEndFacts<'_>, retry: &crate::run::RetryPolicy) -> Accounting {
    use crate::breaker::Verdict;
    use crate::run::{FailureClass, RunOutcome};
    let run = facts.run;
    let mut usage = facts.after.usage().minus(facts.before.usage());
    if !facts.counted {
        usage.runs = 1;
        usage.run_ms = (facts.now.as_millis() - run.started_at.as_millis()).max(0);
    }
    let mut park = None;
    let mut breaker = None;
    if !facts.counted {
        if run.failure_class == Some(FailureClass::RateLimited) {
            let recent = facts
                .park
                .filter(|p| p.until.plus(retry.rate_limit_backoff_max) >= facts.now);
            let strikes_before = recent.map_or(0, |p| p.strikes);
            let until = retry.park_until(facts.limit_reset, strikes_before, facts.now);
            let until = recent.map_or(until, |p| p.until.max(until));
            park = Some(WorkerPark {
                worker: run.worker.clone(),
                until,
                reason: match facts.limit_reset {
                    Some(_) => format!(
                        "run {} hit a limit; the runtime gave its reset time",
                        run.id
                    ),
                    None => format!(
                        "run {} hit a limit without a reset time; backoff after {} in a row",
                        run.id,
                        strikes_before + 1
                    ),
                },
                strikes: strikes_before + 1,
                since: facts.now,
                run: Some(run.id.get()),
            });
        }
        let verdict = match (run.outcome, run.failure_class) {
            (Some(RunOutcome::Submitted | RunOutcome::Asked), _) => Verdict::Success,
            (
                _,
                Some(
                    FailureClass::AgentError
                    | FailureClass::Timeout
                    | FailureClass::Stalled
                    | FailureClass::RuntimeMissing,
                ),
            ) => Verdict::Failure,
            _ => Verdict::Neutral,
        };
        let (next, opened) = facts.breaker.after(verdict, facts.now, &retry.breaker);
        if next != facts.breaker {
            breaker = Some((next, opened));
        }
    }
    Accounting {
        usage,
        park,
        breaker,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn windows_start_at_local_boundaries() {
        let paris = Zone::parse("Europe/Paris").unwrap();
        let kathmandu = Zone::parse("Asia/Kathmandu").unwrap();
        // (zone, window, now, start, end)
        let cases = [
            (
                paris,
                Window::Day,
                "2026-03-10T23:30:00Z",
                "2026-03-10T23:00:00Z",
                "2026-03-11T23:00:00Z",
            ),
            (
                paris,
                Window::Day,
                "2026-03-10T22:59:59Z",
                "2026-03-09T23:00:00Z",
                "2026-03-10T23:00:00Z",
            ),
            // The day DST starts is 23 hours long.
            (
                paris,
                Window::Day,
                "2026-03-29T12:00:00Z",
                "2026-03-28T23:00:00Z",
                "2026-03-29T22:00:00Z",
            ),
            (
                kathmandu,
                Window::Day,
                "2026-03-10T18:14:00Z",
                "2026-03-09T18:15:00Z",
                "2026-03-10T18:15:00Z",
            ),
            (
                Zone::default(),
                Window::Week,
                "2026-11-28T10:00:00Z",
                "2026-11-23T00:00:00Z",
                "2026-11-30T00:00:00Z",
            ),
            (
                Zone::default(),
                Window::Month,
                "2026-12-31T10:00:00Z",
                "2026-12-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
            ),
            (
                paris,
                Window::Month,
                "2026-01-31T23:30:00Z",
                "2026-01-31T23:00:00Z",
                "2026-02-28T23:00:00Z",
            ),
        ];
        for (zone, window, now, start, end) in cases {
            let (s, e) = window.bounds(at(now), &zone);
            assert_eq!(
                (s, e),
                (at(start), Some(at(end))),
                "{window} {now} {}",
                zone.name()
            );
            assert_eq!(s.as_millis() % BUCKET_MS, 0, "a window starts on a bucket");
        }
        let (s, e) = Window::Rolling(Duration::from_secs(5 * 3600))
            .bounds(at("2026-01-01T10:07:00Z"), &Zone::default());
        assert_eq!((s, e), (at("2026-01-01T05:00:00Z"), None));
    }

    fn budget(limits: &[(LimitKind, i64)], soft: Option<f64>) -> Budget {
        Budget {
            name: "b".into(),
            scope: BudgetScope::Instance,
            window: Window::Day,
            limits: limits.to_vec(),
            soft,
            on_exhaust: OnExhaust::Finish,
        }
    }

    /// `stop` stops runs in progress once the ended runs reached a USD, token or run-hour
    /// limit — never for a runs limit, and never under `finish`.
    #[test]
    fn a_stopping_budget_stops_runs_only_past_a_spent_amount() {
        use LimitKind::*;
        let used = |runs, tokens, micros, ms, live| BudgetUse {
            used: Usage {
                runs,
                input_tokens: tokens,
                output_tokens: 0,
                cached_tokens: 0,
                cost_micros: micros,
                run_ms: ms,
            },
            live_runs: live,
        };
        let stopping = |limits: &[(LimitKind, i64)]| Budget {
            on_exhaust: OnExhaust::Stop,
            ..budget(limits, None)
        };
        for (budget, usage, stops) in [
            (stopping(&[(Tokens, 100)]), used(1, 99, 0, 0, 1), false),
            (stopping(&[(Tokens, 100)]), used(1, 100, 0, 0, 1), true),
            (stopping(&[(Usd, 5)]), used(1, 0, 5, 0, 1), true),
            (stopping(&[(RunHours, 10)]), used(1, 0, 0, 11, 1), true),
            // A runs limit reached by the live runs themselves stops nothing.
            (stopping(&[(Runs, 2)]), used(1, 0, 0, 0, 5), false),
            (
                stopping(&[(Runs, 2), (Tokens, 10)]),
                used(3, 0, 0, 0, 1),
                false,
            ),
            (budget(&[(Tokens, 100)], None), used(1, 500, 0, 0, 1), false),
        ] {
            assert_eq!(
                budget.stops_runs(&usage).is_some(),
                stops,
                "{:?} {usage:?}",
                budget.limits
            );
        }
        let detail = stopping(&[(Tokens, 100)])
            .stops_runs(&used(1, 150, 0, 0, 0))
            .unwrap();
        assert_eq!(
            detail,
            "budget b (the instance, day) is spent: tokens 150 tokens of 100 tokens"
        );
    }

    #[test]
    fn standing_per_limit_kind() {
        use LimitKind::*;
        let used = |runs, tokens, micros, ms| BudgetUse {
            used: Usage {
                runs,
                input_tokens: tokens,
                output_tokens: 0,
                cached_tokens: 0,
                cost_micros: micros,
                run_ms: ms,
            },
            live_runs: 0,
        };
        // (limits, soft, use, expected: None within / Some(kind, exhausted))
        // (limits, soft fraction, use, expected: None within / Some(kind, exhausted))
        type Case = (
            Vec<(LimitKind, i64)>,
            Option<f64>,
            BudgetUse,
            Option<(LimitKind, bool)>,
        );
        let cases: Vec<Case> = vec![
            (vec![(Tokens, 1000)], None, used(9, 999, 0, 0), None),
            (
                vec![(Tokens, 1000)],
                None,
                used(9, 1000, 0, 0),
                Some((Tokens, true)),
            ),
            (
                vec![(Tokens, 1000)],
                Some(0.8),
                used(9, 800, 0, 0),
                Some((Tokens, false)),
            ),
            (vec![(Tokens, 1000)], Some(0.8), used(9, 799, 0, 0), None),
            // A subscription runtime reports cost 0: its runs still count.
            (
                vec![(Usd, 1_000_000), (Runs, 3)],
                None,
                used(3, 0, 0, 0),
                Some((Runs, true)),
            ),
            (
                vec![(Runs, 3)],
                None,
                BudgetUse {
                    live_runs: 1,
                    ..used(2, 0, 0, 0)
                },
                Some((Runs, true)),
            ),
            (
                vec![(Runs, 3)],
                None,
                BudgetUse {
                    live_runs: 0,
                    ..used(2, 0, 0, 0)
                },
                None,
            ),
            (
                vec![(Usd, 5_000_000)],
                None,
                used(1, 0, 5_000_000, 0),
                Some((Usd, true)),
            ),
            (
                vec![(RunHours, 3_600_000)],
                Some(0.5),
                used(1, 0, 0, 1_800_000),
                Some((RunHours, false)),
            ),
            (
                vec![(RunHours, 3_600_000)],
                None,
                used(1, 0, 0, 3_600_000),
                Some((RunHours, true)),
            ),
        ];
        for (limits, soft, usage, expected) in cases {
            let standing = budget(&limits, soft).standing(&usage);
            let got = match standing {
                Standing::Within => None,
                Standing::Soft { kind, .. } => Some((kind, false)),
                Standing::Exhausted { kind, .. } => Some((kind, true)),
            };
            assert_eq!(got, expected, "{limits:?} {soft:?} {usage:?}");
        }
    }

    fn config(toml_text: &str) -> Result<Vec<Budget>, String> {
        #[derive(Deserialize)]
        struct Doc {
            budgets: Vec<BudgetConfig>,
        }
        let doc: Doc = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        budgets(&doc.budgets, |n| n.as_str() == "claude").map_err(|e| e.to_string())
    }

    #[test]
    fn budget_configuration_is_checked() {
        let ok = config(
            "[[budgets]]\nworker = \"claude\"\nwindow = \"day\"\ntokens = 100\nsoft = 0.5\n",
        )
        .unwrap();
        assert_eq!(ok[0].name, "worker:claude/day");
        assert_eq!(
            ok[0].scope,
            BudgetScope::Worker(Name::parse("claude").unwrap())
        );
        let rolling = config("[[budgets]]\nwindow = \"5h\"\nruns = 2\n").unwrap();
        assert_eq!(rolling[0].name, "instance/5h");
        for (text, error) in [
            (
                "[[budgets]]\nwindow = \"day\"\n",
                "key `budgets[0]`: a budget needs at least one limit",
            ),
            (
                "[[budgets]]\nworker = \"ghost\"\nwindow = \"day\"\nruns = 1\n",
                "key `budgets[0].worker`: \"ghost\" is not a configured worker",
            ),
            (
                "[[budgets]]\nworker = \"claude\"\npool = \"p\"\nwindow = \"day\"\nruns = 1\n",
                "key `budgets[0]`: a budget covers one",
            ),
            (
                "[[budgets]]\nwindow = \"fortnight\"\nruns = 1\n",
                "key `budgets[0].window`",
            ),
            (
                "[[budgets]]\nwindow = \"day\"\nusd = -1\n",
                "key `budgets[0].usd`: must be a positive number",
            ),
            (
                "[[budgets]]\nwindow = \"day\"\nruns = 1\nsoft = 1.5\n",
                "key `budgets[0].soft`",
            ),
            (
                "[[budgets]]\nwindow = \"day\"\nruns = 1\non_exhaust = \"stop\"\n",
                "key `budgets[0].on_exhaust`: \"stop\" needs a usd, tokens or run_hours limit",
            ),
            (
                "[[budgets]]\nwindow = \"day\"\nruns = 1\n[[budgets]]\nwindow = \"day\"\nruns = 2\n",
                "key `budgets[1].name`: a second budget",
            ),
        ] {
            let got = config(text).unwrap_err();
            assert!(got.starts_with(error), "{text}: {got}");
        }
    }
}
