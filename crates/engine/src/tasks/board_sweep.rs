//! `board-sweep`: reports tickets that stayed in a state longer than the task's limit for it.

use super::TaskContext;
use crate::error::EngineError;
use mission_core::Timestamp;
use mission_core::task::{Outcome, TaskResult, TaskSpec};

/// Most tickets named per state.
const LISTED: u32 = 50;

pub(super) async fn run(context: &TaskContext, spec: &TaskSpec) -> Result<TaskResult, EngineError> {
    let now = context.clock.now();
    let mut findings = Vec::new();
    let mut result = TaskResult::new(Outcome::Noop, "");
    let mut total = 0;
    for (state, limit) in &spec.limits {
        let before = Timestamp::from_millis(now.as_millis() - limit.as_millis() as i64);
        let stale = context.store.stale_tickets(*state, before, LISTED).await?;
        total += stale.len() as i64;
        result = result.count(state.as_str(), stale.len() as i64);
        if !stale.is_empty() {
            let ids: Vec<String> = stale.iter().map(|t| t.id.to_string()).collect();
            findings.push(format!(
                "{state} over {}: {}",
                humantime::format_duration(*limit),
                ids.join(", ")
            ));
        }
    }
    result = result.count("over_limit", total);
    if findings.is_empty() {
        result.reason = "no ticket over its limit".to_owned();
    } else {
        result.outcome = Outcome::Acted;
        result.reason = format!("reported {total}: {}", findings.join("; "));
    }
    Ok(result)
}
