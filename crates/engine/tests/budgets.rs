//! Budgets in virtual time, through the dispatcher against a real SQLite store: each kind of
//! limit (USD, tokens, runs, run-hours) over each scope (worker, pool, label, instance) stops
//! dispatch exactly at the hard limit, says so in `explain`, leaves what it does not cover
//! alone, raises its soft alert once, and lets dispatch resume when its local day ends.

use mission_core::config::Config;
use mission_core::policy::ReasonCode;
use mission_core::{Actor, Lane, TicketDraft, TicketKey, Timestamp};
use mission_engine::dispatcher::Dispatcher;
use mission_engine::{Clock, ManualClock, Settings};
use mission_store::prelude::*;
use mission_store::sqlite::SqliteOptions;
use mission_store::{Change, InboxFilter, RunEnd, SqliteStore};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

struct Case {
    /// The budget's scope keys and limit, as in mission.toml.
    budget: serde_json::Value,
    /// Runs dispatched before the hard limit holds.
    runs_before_stop: usize,
    /// Whether worker `b`'s unlabelled ticket (another pool) is held too.
    holds_other: bool,
    /// What each run reports it cost.
    usd: f64,
    /// Runs of `a` at once. USD, tokens and run-hours count the runs that ended (a pass does
    /// not know what its runs will use); a runs limit counts the live ones too, so that even
    /// eight free slots in one pass take exactly what is left.
    concurrent: u32,
}

/// Each run of worker `a` reports 300 tokens and takes 30 minutes.
const TOKENS: i64 = 300;
const USD: f64 = 0.30;
const MINUTES: u64 = 30;

async fn run_case(case: &Case) {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        create: true,
        ..SqliteOptions::default()
    };
    let store: Arc<dyn Store> = Arc::new({
        let s = SqliteStore::open(&dir.path().join("mission.db"), options)
            .await
            .unwrap();
        s.migrate().await.unwrap();
        s
    });
    let mut budget = case.budget.clone();
    budget["name"] = json!("the-budget");
    budget["window"] = json!("day");
    budget["soft"] = json!(0.5);
    let config: Config = serde_json::from_value(json!({
        "instance": { "time_zone": "Europe/Paris" },
        "pools": { "p1": { "max_concurrent": 8 }, "p2": { "max_concurrent": 8 } },
        "workers": {
            "a": { "runtime": "shell", "command": ["true"], "pool": "p1", "max_concurrent": case.concurrent },
            "b": { "runtime": "shell", "command": ["true"], "pool": "p2", "max_concurrent": 8 },
        },
        "dispatch": { "max_workers": 16 },
        "budgets": [budget],
    }))
    .unwrap();
    let settings = Arc::new(
        Settings::from_config(&config, dir.path(), dir.path(), "test", "/bin/true").unwrap(),
    );
    // 2026-06-01 20:00 in Paris (18:00 UTC): the local day ends in four hours.
    let clock = Arc::new(ManualClock::at(
        Timestamp::parse_rfc3339("2026-06-01T18:00:00Z").unwrap(),
    ));
    let change = |clock: &ManualClock| Change::new(Actor::new("test"), clock.now());
    let ticket = |worker: &str, labels: &[&str]| {
        TicketDraft {
            title: format!("work of {worker}"),
            assignee: Some(worker.to_owned()),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            ..TicketDraft::default()
        }
        .validate()
        .unwrap()
    };
    let batch = (0..8).map(|_| ticket("a", &["docs"])).collect();
    store
        .create_tickets(&TicketKey::default(), batch, &change(&clock))
        .await
        .unwrap();
    let dispatcher = Dispatcher::new(store.clone(), settings.clone(), clock.clone());
    let label = format!("{}", case.budget);
    // Dispatch and finish runs one pass at a time until a pass claims nothing.
    let mut ran = 0;
    loop {
        let report = dispatcher.dispatch_once(Lane::Normal).await.unwrap();
        if report.claimed.is_empty() {
            break;
        }
        clock.advance(Duration::from_secs(MINUTES * 60));
        for (run, _) in &report.claimed {
            let end = RunEnd {
                input_tokens: Some(TOKENS - 50),
                output_tokens: Some(50),
                cost_usd: Some(case.usd),
                ..RunEnd::default()
            };
            store
                .end_run(
                    run.id,
                    run.attempt,
                    &end,
                    &settings.retry(),
                    &settings.gate.routes,
                    &change(&clock),
                )
                .await
                .unwrap();
            ran += 1;
        }
        assert!(ran <= 8, "{label}: runaway");
    }
    assert_eq!(ran, case.runs_before_stop, "{label}");
    // The next ticket of `a` is held, and explain says by what and until when.
    let waiting = store
        .list_tickets(&mission_store::TicketFilter {
            state: Some(mission_core::State::Todo),
            ..Default::default()
        })
        .await
        .unwrap();
    let (_, verdict) = mission_engine::explain::explain(
        store.as_ref(),
        &settings.workforce,
        &waiting[0].id,
        clock.now(),
    )
    .await
    .unwrap();
    assert_eq!(
        verdict.codes(),
        vec![ReasonCode::BudgetExhausted],
        "{label}"
    );
    let detail = &verdict.reasons()[0].detail;
    assert!(
        detail.contains("budget the-budget")
            && detail.contains("day")
            && detail.contains("resets at 2026-06-02T00:00:00+02:00"),
        "{label}: {detail}"
    );
    // A ticket of `b` (pool p2, no label) is held only by an instance budget.
    let other = store
        .create_tickets(
            &TicketKey::default(),
            vec![ticket("b", &[])],
            &change(&clock),
        )
        .await
        .unwrap();
    let report = dispatcher.dispatch_once(Lane::Normal).await.unwrap();
    let other_claimed = report.claimed_tickets.contains(&other[0].id);
    assert_eq!(other_claimed, !case.holds_other, "{label}");
    // One soft alert (when a pass saw the budget past its soft line: one pass of eight slots
    // goes from within to exhausted at once) and one exhausted alert, however many passes saw
    // them.
    dispatcher.dispatch_once(Lane::Normal).await.unwrap();
    let alerts: Vec<String> = store
        .inbox_items(&InboxFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|item| item.text)
        .collect();
    let soft = usize::from(case.concurrent == 1);
    assert_eq!(alerts.len(), 1 + soft, "{label}: {alerts:?}");
    assert_eq!(
        alerts
            .iter()
            .filter(|t| t.contains("passed its soft limit"))
            .count(),
        soft,
        "{label}"
    );
    assert!(alerts.iter().any(|t| t.contains("is exhausted")), "{label}");
    // Past local midnight the window is new: `a` runs again.
    clock.advance(Duration::from_secs(4 * 3600));
    let report = dispatcher.dispatch_once(Lane::Normal).await.unwrap();
    assert!(
        !report.claimed.is_empty(),
        "{label}: nothing dispatched after the reset"
    );
}

#[tokio::test]
async fn each_budget_kind_and_scope_stops_dispatch_at_its_hard_limit_and_resumes_after_the_reset() {
    let cases = [
        // $1: three runs make $0.90, the fourth $1.20.
        Case {
            budget: json!({ "worker": "a", "usd": 1.0 }),
            runs_before_stop: 4,
            holds_other: false,
            usd: USD,
            concurrent: 1,
        },
        // 1000 tokens: the same arithmetic.
        Case {
            budget: json!({ "pool": "p1", "tokens": 1000 }),
            runs_before_stop: 4,
            holds_other: false,
            usd: USD,
            concurrent: 1,
        },
        // Three runs: exactly three, though eight slots are free in one pass.
        Case {
            budget: json!({ "label": "docs", "runs": 3 }),
            runs_before_stop: 3,
            holds_other: false,
            usd: USD,
            concurrent: 8,
        },
        Case {
            budget: json!({ "runs": 3 }),
            runs_before_stop: 3,
            holds_other: true,
            usd: USD,
            concurrent: 8,
        },
        // 1.5 run-hours: three runs of 30 minutes.
        Case {
            budget: json!({ "worker": "a", "run_hours": 1.5 }),
            runs_before_stop: 3,
            holds_other: false,
            usd: USD,
            concurrent: 1,
        },
        // A runtime reporting cost 0 is still stopped by its token limit.
        Case {
            budget: json!({ "usd": 1000.0, "tokens": 600 }),
            runs_before_stop: 2,
            holds_other: true,
            usd: 0.0,
            concurrent: 1,
        },
    ];
    for case in &cases {
        run_case(case).await;
    }
}
