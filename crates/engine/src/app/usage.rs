//! `usage`: what runs used, from the ledger, grouped by worker, pool, ticket, label or local day,
//! with the budgets as judged now and the workers parked by a rate limit.

use super::{App, AppError, AppResult};
use mission_core::Timestamp;
use mission_core::usage::{ScopeKind, Standing, Usage, bucket_of, bucket_start};
use serde::Serialize;
use std::str::FromStr;

/// What `usage` groups by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageBy {
    Worker,
    Pool,
    Ticket,
    Label,
    /// The instance's local days.
    Day,
}

impl UsageBy {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageBy::Worker => "worker",
            UsageBy::Pool => "pool",
            UsageBy::Ticket => "ticket",
            UsageBy::Label => "label",
            UsageBy::Day => "day",
        }
    }
}

/// The most days `usage --by day` reports (ten years).
pub const MAX_DAYS: i64 = 3_660;

/// How many tickets `usage --by ticket` shows when not told.
pub const TICKETS_SHOWN: u32 = 50;

impl FromStr for UsageBy {
    type Err = AppError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "worker" => Ok(UsageBy::Worker),
            "pool" => Ok(UsageBy::Pool),
            "ticket" => Ok(UsageBy::Ticket),
            "label" => Ok(UsageBy::Label),
            "day" => Ok(UsageBy::Day),
            other => Err(AppError::invalid(format!(
                "--by {other:?}: expected worker, pool, ticket, label or day"
            ))),
        }
    }
}

/// One group's usage.
#[derive(Clone, Debug, Serialize)]
pub struct UsageRow {
    pub key: String,
    pub runs: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    pub cost_usd: f64,
    pub run_hours: f64,
}

impl UsageRow {
    fn of(key: String, usage: &Usage) -> Self {
        UsageRow {
            key,
            runs: usage.runs,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cached_tokens: usage.cached_tokens,
            cost_usd: usage.cost_usd(),
            run_hours: (usage.run_hours() * 1000.0).round() / 1000.0,
        }
    }
}

/// A budget as judged now.
#[derive(Clone, Debug, Serialize)]
pub struct BudgetView {
    pub name: String,
    pub scope: String,
    pub window: String,
    /// `within`, `soft` or `exhausted`.
    pub standing: &'static str,
    /// The limit at or past its soft or hard line: `tokens 1200 tokens of 1000 tokens`.
    pub detail: Option<String>,
    pub resets: Option<String>,
}

/// A worker parked by a rate limit.
#[derive(Clone, Debug, Serialize)]
pub struct ParkView {
    pub worker: String,
    pub until: String,
    pub reason: String,
}

/// The answer of `usage`.
#[derive(Clone, Debug, Serialize)]
pub struct UsageReport {
    pub by: UsageBy,
    pub since: String,
    pub time_zone: String,
    pub rows: Vec<UsageRow>,
    /// How many groups used anything since `since` (`rows` shows the first of them by cost when
    /// limited).
    pub groups: i64,
    pub total: UsageRow,
    pub budgets: Vec<BudgetView>,
    pub parked: Vec<ParkView>,
}

impl App {
    /// Usage since `since` (an RFC 3339 time, a local date `YYYY-MM-DD`, or a duration back from
    /// now such as `7d`; default: the start of the local month), grouped `by`: the first `limit`
    /// groups by cost (0: all; default: [`TICKETS_SHOWN`] tickets, every other group).
    pub async fn usage(
        &self,
        by: UsageBy,
        since: Option<&str>,
        limit: Option<u32>,
    ) -> AppResult<UsageReport> {
        let limit = match (by, limit) {
            (UsageBy::Day, Some(_)) => {
                return Err(AppError::invalid(
                    "--limit: applies to --by worker, pool, ticket or label, not day",
                ));
            }
            (_, Some(0)) => None,
            (UsageBy::Ticket, None) => Some(TICKETS_SHOWN),
            (_, limit) => limit,
        };
        let workforce = &self.settings.workforce;
        let zone = workforce.zone();
        let now = self.clock.now();
        let since = match since {
            None => mission_core::usage::Window::Month.bounds(now, zone).0,
            Some(text) => parse_since(text, now, zone)?,
        };
        let from = bucket_of(since);
        let (groups, rows): (i64, Vec<UsageRow>) = match by {
            UsageBy::Day => {
                // Each local day's span of buckets from `since` to the end of today (a local day
                // is whole buckets), read as two running totals per day.
                let mut dates = Vec::new();
                let mut bounds = vec![from];
                let mut date = zone.date_of(bucket_start(from));
                let today = zone.date_of(now);
                // Two lookups a day: a `--since` from centuries back would be a statement of
                // hundreds of thousands of them.
                if (today - date).num_days() > MAX_DAYS {
                    return Err(AppError::invalid(format!(
                        "--since: --by day reports at most {MAX_DAYS} days; {date} is further back"
                    )));
                }
                while date <= today {
                    let Some(next) = date.succ_opt() else { break };
                    dates.push(date);
                    bounds.push(bucket_of(zone.start_of(next)));
                    date = next;
                }
                let days = self
                    .store
                    .usage_between(&mission_core::usage::LedgerKey::instance(), &bounds)
                    .await?;
                let rows: Vec<UsageRow> = dates
                    .into_iter()
                    .zip(days)
                    .filter(|(_, usage)| usage.runs > 0)
                    .map(|(day, usage)| UsageRow::of(day.to_string(), &usage))
                    .collect();
                (rows.len() as i64, rows)
            }
            other => {
                let scope = match other {
                    UsageBy::Worker => ScopeKind::Worker,
                    UsageBy::Pool => ScopeKind::Pool,
                    UsageBy::Ticket => ScopeKind::Ticket,
                    _ => ScopeKind::Label,
                };
                let groups = self.store.usage_by(scope, from, None, limit).await?;
                let rows = groups
                    .rows
                    .into_iter()
                    .map(|(key, usage)| UsageRow::of(key, &usage))
                    .collect();
                (groups.groups, rows)
            }
        };
        let total = self
            .store
            .usage_by(ScopeKind::Instance, from, None, None)
            .await?
            .rows
            .into_iter()
            .fold(Usage::default(), |sum, (_, usage)| sum.plus(usage));
        let view = crate::holds::gather(self.store.as_ref(), workforce, now).await?;
        let budgets = view
            .standings
            .iter()
            .map(|s| BudgetView {
                name: s.budget.name.clone(),
                scope: s.budget.scope.to_string(),
                window: s.budget.window.to_string(),
                standing: match s.standing {
                    Standing::Within => "within",
                    Standing::Soft { .. } => "soft",
                    Standing::Exhausted { .. } => "exhausted",
                },
                detail: s.standing.describe(),
                resets: s.resets.map(|at| zone.show(at)),
            })
            .collect();
        let parked = view
            .holds
            .parks
            .values()
            .filter(|p| p.until > now)
            .map(|p| ParkView {
                worker: p.worker.to_string(),
                until: zone.show(p.until),
                reason: p.reason.clone(),
            })
            .collect();
        Ok(UsageReport {
            by,
            since: zone.show(since),
            time_zone: zone.name().to_owned(),
            rows,
            groups,
            total: UsageRow::of("total".to_owned(), &total),
            budgets,
            parked,
        })
    }
}

fn parse_since(
    text: &str,
    now: Timestamp,
    zone: &mission_core::usage::Zone,
) -> AppResult<Timestamp> {
    if let Some(at) = Timestamp::parse_rfc3339(text) {
        return Ok(at);
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(zone.start_of(date));
    }
    match mission_core::time::parse_duration(text) {
        Ok(back) => Ok(Timestamp::from_millis(
            now.as_millis() - i64::try_from(back.as_millis()).unwrap_or(i64::MAX),
        )),
        Err(_) => Err(AppError::invalid(format!(
            "--since {text:?}: expected a time (2026-11-01T00:00:00Z), a date (2026-11-01) or a duration back from now (7d)"
        ))),
    }
}
