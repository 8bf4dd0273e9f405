//! Usage through the store's traits: the ledger kept in the run-ending transaction and read over
//! windows, a rate limit parking its worker without charging the ticket, the worker's breaker,
//! budget alerts once per window.

use super::Backend;
use super::runs::{id, request, retry, routes};
use crate::common::{change, key};
use mission_core::breaker::BreakerPolicy;
use mission_core::usage::{
    LedgerKey, ScopeKind, Usage, Zone, bucket_of, bucket_start, usd_to_micros,
};
use mission_core::{FailureClass, Lane, RetryPolicy, State, TicketDraft, Timestamp};
use mission_store::{BudgetAlert, ClaimOutcome, RunEnd, Store, WindowQuery};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use std::sync::Arc;
use std::time::Duration;

fn ticket(title: &str, labels: &[&str]) -> mission_core::NewTicket {
    TicketDraft {
        title: title.to_owned(),
        assignee: Some("luci".to_owned()),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        ..TicketDraft::default()
    }
    .validate()
    .unwrap()
}

/// Claims ticket `n` at `at`: the run.
async fn claim(store: &Arc<dyn Store>, n: i64, at: i64) -> mission_core::Run {
    let version = store.ticket(&id(n)).await.unwrap().version;
    match store
        .claim(
            &request(n, version, Lane::Normal, &format!("t{n}-{at}")),
            &change(at),
        )
        .await
        .unwrap()
    {
        ClaimOutcome::Claimed(run) => *run,
        ClaimOutcome::Refused(refusal) => panic!("{n} at {at}: {refusal:?}"),
    }
}

fn window(scope: ScopeKind, key: &str, since: i64) -> WindowQuery {
    WindowQuery {
        key: LedgerKey::new(scope, key),
        since,
        first_bucket: true,
    }
}

const HOUR: i64 = 3_600_000;

pub async fn the_ledger_counts_each_run_once_and_answers_windows<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    store
        .create_tickets(
            &key(),
            vec![
                ticket("a", &["docs"]),
                ticket("b", &["docs", "ui"]),
                ticket("c", &[]),
            ],
            &change(1),
        )
        .await
        .unwrap();
    let base = 100 * 24 * HOUR;
    // Ticket 1: 100 in, 10 out, $0.5, from base to base + 1h.
    let run = claim(&store, 1, base).await;
    let end = RunEnd {
        input_tokens: Some(100),
        output_tokens: Some(10),
        cached_tokens: Some(40),
        cost_usd: Some(0.5),
        ..RunEnd::default()
    };
    let ended = store
        .end_run(
            run.id,
            run.attempt,
            &end,
            &retry(),
            &routes(),
            &change(base + HOUR),
        )
        .await
        .unwrap();
    assert_eq!(ended.accounting.usage.runs, 1);
    // The same end recorded again (a retried call) adds nothing.
    let again = store
        .end_run(
            run.id,
            run.attempt,
            &end,
            &retry(),
            &routes(),
            &change(base + HOUR + 5),
        )
        .await
        .unwrap();
    assert!(again.accounting.usage.is_zero(), "{:?}", again.accounting);
    // Ticket 2 asks (ends by its report), then its process's figures arrive: counted once, with
    // the figures; a subscription runtime reporting cost 0.
    let run2 = claim(&store, 2, base + 2 * HOUR).await;
    store
        .run_ask(
            run2.id,
            run2.attempt,
            "which?",
            &routes(),
            &change(base + 2 * HOUR + 10),
        )
        .await
        .unwrap();
    let end2 = RunEnd {
        input_tokens: Some(1000),
        output_tokens: Some(1),
        cost_usd: Some(0.0),
        ..RunEnd::default()
    };
    store
        .end_run(
            run2.id,
            run2.attempt,
            &end2,
            &retry(),
            &routes(),
            &change(base + 3 * HOUR),
        )
        .await
        .unwrap();
    // Ticket 3: live, no figures yet.
    let _live = claim(&store, 3, base + 3 * HOUR).await;

    let since_all = bucket_of(Timestamp::from_millis(base));
    let since_late = bucket_of(Timestamp::from_millis(base + 2 * HOUR));
    let facts = store
        .holds(&[
            window(ScopeKind::Instance, "", since_all),
            window(ScopeKind::Worker, "luci", since_late),
            window(ScopeKind::Label, "docs", since_all),
            window(ScopeKind::Label, "ui", since_all),
            window(ScopeKind::Pool, "default", since_late + 100),
        ])
        .await
        .unwrap();
    let usage = |runs, input, output, cached, usd: f64, hours: i64| Usage {
        runs,
        input_tokens: input,
        output_tokens: output,
        cached_tokens: cached,
        cost_micros: usd_to_micros(usd),
        run_ms: hours,
    };
    let expect = [
        (
            usage(2, 1100, 11, 40, 0.5, HOUR + HOUR),
            1,
            Some(bucket_of(Timestamp::from_millis(base + HOUR))),
        ),
        (
            usage(1, 1000, 1, 0, 0.0, HOUR),
            1,
            Some(bucket_of(Timestamp::from_millis(base + 3 * HOUR))),
        ),
        (
            usage(2, 1100, 11, 40, 0.5, 2 * HOUR),
            0,
            Some(bucket_of(Timestamp::from_millis(base + HOUR))),
        ),
        (
            usage(1, 1000, 1, 0, 0.0, HOUR),
            0,
            Some(bucket_of(Timestamp::from_millis(base + 3 * HOUR))),
        ),
        (Usage::default(), 1, None),
    ];
    assert_eq!(facts.windows.len(), expect.len(), "{:?}", facts.windows);
    for (i, (window, (used, live, first))) in facts.windows.iter().zip(expect).enumerate() {
        assert_eq!(
            (window.used, window.live_runs, window.first_bucket),
            (used, live, first),
            "window {i}"
        );
    }
    // Grouped by key, one query.
    let by_label = store
        .usage_by(ScopeKind::Label, since_all, None, None)
        .await
        .unwrap();
    assert_eq!(by_label.groups, 2);
    assert_eq!(
        by_label.rows,
        vec![
            ("docs".to_owned(), usage(2, 1100, 11, 40, 0.5, 2 * HOUR)),
            ("ui".to_owned(), usage(1, 1000, 1, 0, 0.0, HOUR)),
        ]
    );
    let by_ticket = store
        .usage_by(ScopeKind::Ticket, since_all, None, None)
        .await
        .unwrap();
    assert_eq!((by_ticket.rows.len(), by_ticket.groups), (2, 2));
    // The first by cost only, still counting every key that used anything.
    let first = store
        .usage_by(ScopeKind::Label, since_all, None, Some(1))
        .await
        .unwrap();
    assert_eq!((first.rows.len(), first.groups), (1, 2));
    assert_eq!(first.rows[0].0, "docs");
    // A window with an end counts its keys the long way.
    let bounded = store
        .usage_by(ScopeKind::Label, since_all, Some(i64::MAX - 1), Some(1))
        .await
        .unwrap();
    assert_eq!((bounded.rows.len(), bounded.groups), (1, 2));
    // Spans between bounds: the first run's hour, then the second's.
    let spans = store
        .usage_between(
            &LedgerKey::instance(),
            &[
                since_all,
                bucket_of(Timestamp::from_millis(base + 2 * HOUR)),
                bucket_of(Timestamp::from_millis(base + 10 * HOUR)),
            ],
        )
        .await
        .unwrap();
    assert_eq!(spans.iter().map(|u| u.runs).collect::<Vec<_>>(), vec![1, 1]);
}

pub async fn a_rate_limit_parks_the_worker_and_charges_no_attempt<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    store
        .create_tickets(&key(), vec![ticket("a", &[])], &change(1))
        .await
        .unwrap();
    let policy = RetryPolicy {
        max_attempts: 2,
        rate_limit_backoff: Duration::from_secs(60),
        rate_limit_backoff_max: Duration::from_secs(600),
        ..retry()
    };
    let mut at = 1_000_000;
    // Four limits in a row, without a reset time, then one with: never charged, the park grows.
    for (reset, until) in [
        (None, 60_000),
        (None, 120_000),
        (None, 240_000),
        (Some(5_000_000), 5_000_000 - 1_000_000),
        // The park in force is longer than the capped backoff: it stays.
        (None, 5_030_000 - 1_040_000),
    ] {
        let run = claim(&store, 1, at).await;
        let end = RunEnd {
            failure: Some(FailureClass::RateLimited),
            limit_reset: reset.map(|r: i64| Timestamp::from_millis(at + r - 1_000_000)),
            ..RunEnd::default()
        };
        let ended = store
            .end_run(run.id, run.attempt, &end, &policy, &routes(), &change(at))
            .await
            .unwrap();
        assert_eq!(ended.ticket_state, State::Todo, "attempt {}", run.attempt);
        let ticket = store.ticket(&id(1)).await.unwrap();
        assert!(
            ticket
                .not_before
                .is_none_or(|nb| nb <= Timestamp::from_millis(at)),
            "no backoff"
        );
        let facts = store.holds(&[]).await.unwrap();
        assert_eq!(facts.parks.len(), 1);
        assert_eq!(
            facts.parks[0].until,
            Timestamp::from_millis(at + until),
            "attempt {}",
            run.attempt
        );
        assert_eq!(facts.parks[0].worker.as_str(), "luci");
        at += 10_000;
    }
    // Parks and breakers are read together: with a breaker beside the park, both come back.
    let breakers = BreakerPolicy {
        failures: 1,
        cooldown: Duration::from_secs(60),
    };
    let (opened, _) = store
        .record_breaker(
            &mission_store::task_subject("nightly"),
            mission_core::breaker::Verdict::Failure,
            &breakers,
            Timestamp::from_millis(at),
        )
        .await
        .unwrap();
    let facts = store.holds(&[]).await.unwrap();
    assert_eq!(
        (facts.parks.len(), facts.parks[0].worker.as_str()),
        (1, "luci")
    );
    assert_eq!(facts.breakers, vec![("task:nightly".to_owned(), opened)]);
    // A run a spent budget stopped is not charged either (the stores count it with the limits);
    // its own failures are charged as its first and second attempts: then it fails.
    for (failure, expect) in [
        (FailureClass::BudgetStopped, State::Todo),
        (FailureClass::AgentError, State::Todo),
        (FailureClass::AgentError, State::Failed),
    ] {
        let version = store.ticket(&id(1)).await.unwrap().version;
        at += 1_000_000;
        let ClaimOutcome::Claimed(run) = store
            .claim(
                &request(1, version, Lane::Normal, &format!("x{at}")),
                &change(at),
            )
            .await
            .unwrap()
        else {
            panic!()
        };
        let end = RunEnd {
            failure: Some(failure),
            ..RunEnd::default()
        };
        let ended = store
            .end_run(run.id, run.attempt, &end, &policy, &routes(), &change(at))
            .await
            .unwrap();
        assert_eq!(ended.ticket_state, expect, "{failure:?}");
    }
}

pub async fn a_worker_breaker_opens_after_failures_in_a_row_and_closes_on_success<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    store
        .create_tickets(
            &key(),
            (0..5).map(|i| ticket(&format!("t{i}"), &[])).collect(),
            &change(1),
        )
        .await
        .unwrap();
    let policy = RetryPolicy {
        breaker: BreakerPolicy {
            failures: 2,
            cooldown: Duration::from_secs(60),
        },
        ..retry()
    };
    let end_with = |n: i64, at: i64, failure: Option<FailureClass>| {
        let store = store.clone();
        async move {
            let run = claim(&store, n, at).await;
            let end = RunEnd {
                failure,
                ..RunEnd::default()
            };
            store
                .end_run(
                    run.id,
                    run.attempt,
                    &end,
                    &policy,
                    &routes(),
                    &change(at + 1),
                )
                .await
                .unwrap()
                .accounting
        }
    };
    let breaker = || {
        let store = store.clone();
        async move { store.holds(&[]).await.unwrap().breakers }
    };
    assert!(
        end_with(1, 10, Some(FailureClass::AgentError))
            .await
            .breaker
            .is_some_and(|(_, opened)| !opened)
    );
    // A rate limit says nothing about the worker.
    assert!(
        end_with(2, 20, Some(FailureClass::RateLimited))
            .await
            .breaker
            .is_none()
    );
    let second = end_with(3, 30, Some(FailureClass::Timeout)).await;
    assert!(
        second.breaker.is_some_and(|(_, opened)| opened),
        "{second:?}"
    );
    let open = breaker().await;
    assert_eq!(open[0].0, "worker:luci");
    assert_eq!(open[0].1.opened_at, Some(Timestamp::from_millis(31)));
    // The probe succeeds: closed.
    end_with(4, 70_000, None).await;
    let closed = breaker().await;
    assert_eq!((closed[0].1.failures, closed[0].1.opened_at), (0, None));
}

/// A task's breaker (kept apart from any worker's): failures in a row open it, a neutral end
/// leaves it, a success closes it; each call reads and writes in one transaction.
pub async fn a_task_breaker_records_its_runs_verdicts<B: Backend>() {
    use mission_core::breaker::Verdict;
    let t = B::fresh().await;
    let store = t.store();
    let policy = BreakerPolicy {
        failures: 2,
        cooldown: Duration::from_secs(60),
    };
    let subject = mission_store::task_subject("nightly");
    let record = |verdict, at| {
        let (store, subject) = (store.clone(), subject.clone());
        async move {
            store
                .record_breaker(&subject, verdict, &policy, Timestamp::from_millis(at))
                .await
                .unwrap()
        }
    };
    let (first, opened) = record(Verdict::Failure, 10).await;
    assert_eq!((first.failures, first.opened_at, opened), (1, None, false));
    let (_, opened) = record(Verdict::Neutral, 15).await;
    assert!(!opened);
    let (second, opened) = record(Verdict::Failure, 20).await;
    assert_eq!(
        (second.failures, second.opened_at, opened),
        (2, Some(Timestamp::from_millis(20)), true)
    );
    let stored = store.holds(&[]).await.unwrap().breakers;
    assert_eq!(stored, vec![("task:nightly".to_owned(), second)]);
    // A failed probe opens it again, without a second "opened".
    let (again, opened) = record(Verdict::Failure, 70_000).await;
    assert_eq!(
        (again.opened_at, opened),
        (Some(Timestamp::from_millis(70_000)), false)
    );
    let (closed, _) = record(Verdict::Success, 140_000).await;
    assert_eq!(closed, mission_core::breaker::Breaker::default());
    assert_eq!(
        store.holds(&[]).await.unwrap().breakers,
        vec![("task:nightly".to_owned(), closed)]
    );
}

pub async fn a_budget_alert_is_raised_once_per_window<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let alert = |window_start| BudgetAlert {
        budget: "daily".into(),
        window_start,
        kind: "soft".into(),
        text: "Budget daily passed its soft limit".into(),
    };
    let to = routes().alerts;
    assert!(
        store
            .raise_budget_alert(&alert(0), &to, &change(1))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .raise_budget_alert(&alert(0), &to, &change(2))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .raise_budget_alert(&alert(86_400_000), &to, &change(3))
            .await
            .unwrap()
            .is_some()
    );
    let items = store
        .inbox_items(&mission_store::InboxFilter::default())
        .await
        .unwrap();
    assert_eq!(items.len(), 2);
}

/// One random run: ticket (0..3), end offset in minutes from the base (not in order), figures.
#[derive(Clone, Debug)]
struct RandomRun {
    ticket: i64,
    end_minutes: i64,
    input: i64,
    output: i64,
    cents: i64,
}

fn random_run() -> impl Strategy<Value = RandomRun> {
    (
        0i64..3,
        0i64..(4 * 24 * 60),
        0i64..5000,
        0i64..500,
        0i64..300,
    )
        .prop_map(|(ticket, end_minutes, input, output, cents)| RandomRun {
            ticket,
            end_minutes,
            input,
            output,
            cents,
        })
}

async fn ledger_matches_hand_sums<B: Backend>(
    runs: Vec<RandomRun>,
    zone: &str,
) -> Result<(), TestCaseError> {
    let t = B::fresh().await;
    let store = t.store();
    let labels: [&[&str]; 3] = [&["docs"], &["docs", "ui"], &[]];
    store
        .create_tickets(
            &key(),
            (0..3)
                .map(|i| ticket(&format!("t{i}"), labels[i]))
                .collect(),
            &change(1),
        )
        .await
        .unwrap();
    let zone = Zone::parse(zone).unwrap();
    // 2026-03-27, days before a DST change in many zones.
    let base = 1_774_569_600_000i64;
    let mut ended = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let started = base + r.end_minutes * 60_000 - 7 * 60_000;
        let end_at = base + r.end_minutes * 60_000;
        let run = claim(&store, r.ticket + 1, started - i as i64).await;
        let end = RunEnd {
            input_tokens: Some(r.input),
            output_tokens: Some(r.output),
            cost_usd: Some(r.cents as f64 / 100.0),
            ..RunEnd::default()
        };
        store
            .end_run(
                run.id,
                run.attempt,
                &end,
                &retry(),
                &routes(),
                &change(end_at),
            )
            .await
            .unwrap();
        // Back to todo for the next claim (a clean end went to review).
        store
            .move_ticket(
                &id(r.ticket + 1),
                &crate::common::operator_move(State::Todo),
                &change(end_at + 1),
            )
            .await
            .unwrap();
        ended.push((
            r.clone(),
            Timestamp::from_millis(end_at),
            end_at - (started - i as i64),
        ));
    }
    // The usage of the ended runs that `keep` takes, summed by hand.
    let hand_sum = |keep: &dyn Fn(&RandomRun, Timestamp) -> bool| {
        ended
            .iter()
            .filter(|(r, at, _)| keep(r, *at))
            .fold(Usage::default(), |sum, (r, _, ms)| {
                sum.plus(Usage {
                    runs: 1,
                    input_tokens: r.input,
                    output_tokens: r.output,
                    cached_tokens: 0,
                    cost_micros: r.cents * 10_000,
                    run_ms: *ms,
                })
            })
    };
    // Each local day of the zone over the four days: per label, by the ledger and by hand.
    let mut date = zone.date_of(Timestamp::from_millis(base));
    for _ in 0..5 {
        let next = date.succ_opt().unwrap();
        let start = zone.start_of(date);
        let end = zone.start_of(next);
        let by_label = store
            .usage_by(
                ScopeKind::Label,
                bucket_of(start),
                Some(bucket_of(end)),
                None,
            )
            .await
            .unwrap()
            .rows;
        for label in ["docs", "ui"] {
            let hand = hand_sum(&|r, at| {
                zone.date_of(at) == date && labels[r.ticket as usize].contains(&label)
            });
            let got = by_label
                .iter()
                .find(|(k, _)| k == label)
                .map_or(Usage::default(), |(_, u)| *u);
            prop_assert_eq!(got, hand, "{} on {}", label, date);
        }
        prop_assert!(by_label.iter().all(|(_, u)| u.runs > 0), "{:?}", by_label);
        // The instance's day, as two running totals.
        let day = store
            .usage_between(&LedgerKey::instance(), &[bucket_of(start), bucket_of(end)])
            .await
            .unwrap();
        let hand_day = hand_sum(&|_, at| zone.date_of(at) == date);
        prop_assert_eq!(day, vec![hand_day], "the instance on {}", date);
        // From the day's start on, open-ended: per ticket, by the ledger and by hand.
        let by_ticket = store
            .usage_by(ScopeKind::Ticket, bucket_of(start), None, None)
            .await
            .unwrap();
        for n in 0..3i64 {
            let hand = hand_sum(&|r, at| r.ticket == n && at >= start);
            let got = by_ticket
                .rows
                .iter()
                .find(|(k, _)| *k == id(n + 1).to_string())
                .map_or(Usage::default(), |(_, u)| *u);
            prop_assert_eq!(got, hand, "MC-{} from {}", n + 1, date);
        }
        prop_assert_eq!(by_ticket.groups, by_ticket.rows.len() as i64);
        // The running totals give the same window from its start on.
        let facts = store
            .holds(&[window(ScopeKind::Instance, "", bucket_of(start))])
            .await
            .unwrap();
        let hand_runs = ended.iter().filter(|(_, at, _)| *at >= start).count() as i64;
        prop_assert_eq!(facts.windows[0].used.runs, hand_runs);
        prop_assert_eq!(
            bucket_start(bucket_of(start)),
            start,
            "a local day starts on a bucket"
        );
        date = next;
    }
    Ok(())
}

/// The ledger against sums computed by hand, over random runs ended out of order and the local
/// days of random zones (one with a 45-minute offset, some changing to summer time).
pub fn the_ledger_matches_hand_computed_sums<B: Backend>() {
    let config = ProptestConfig {
        cases: 12,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let zones = prop::sample::select(vec![
        "UTC",
        "Europe/Paris",
        "America/New_York",
        "Asia/Kathmandu",
        "Australia/Lord_Howe",
    ]);
    let result = runner.run(
        &(prop::collection::vec(random_run(), 1..25), zones),
        |(runs, zone)| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(ledger_matches_hand_sums::<B>(runs, zone))
        },
    );
    if let Err(failure) = result {
        panic!("{failure}\n{runner}");
    }
}

/// The holds' version moves with every write the holds are read from — a claim, a run's end
/// (the ledger), a park, a breaker, a ticket's labels — and not with writes they do not depend
/// on; `holds` reports the version its facts were read at. A backend without one says `None`
/// both ways (its dispatcher reads the holds every pass).
pub async fn the_holds_version_moves_with_every_write_the_holds_read<B: Backend>() {
    use mission_core::TicketPatch;
    use mission_core::breaker::Verdict;
    use mission_core::transition::Via;
    let t = B::fresh().await;
    let store = t.store();
    let Some(start) = store.holds_version().await.unwrap() else {
        assert_eq!(store.holds(&[]).await.unwrap().version, None);
        assert_eq!(store.active_counts_versioned().await.unwrap().1, None);
        return;
    };
    assert_eq!(store.holds(&[]).await.unwrap().version, Some(start));
    let version = || async { store.holds_version().await.unwrap().unwrap() };
    let mut last = start;
    fn moved(last: &mut i64, now: i64, what: &str) {
        assert!(now > *last, "{what} did not move the holds' version");
        *last = now;
    }
    // Not read by the holds: new tickets, a move, an edit of anything but labels.
    store
        .create_tickets(
            &key(),
            vec![ticket("a", &["docs"]), ticket("b", &[])],
            &change(1),
        )
        .await
        .unwrap();
    store
        .move_ticket(
            &id(2),
            &mission_store::Move {
                to: State::Blocked,
                via: Via::Operator,
                reason: Some("later".to_owned()),
            },
            &change(2),
        )
        .await
        .unwrap();
    let retitle = TicketPatch {
        title: Some("a, renamed".to_owned()),
        ..TicketPatch::default()
    };
    store
        .edit_ticket(&id(1), &retitle, &change(3))
        .await
        .unwrap();
    assert_eq!(version().await, last, "writes the holds do not read");

    let run = claim(&store, 1, 10).await;
    moved(&mut last, version().await, "a claim");
    // The dispatcher reads the version with its capacity count, in one snapshot.
    let (counts, counted_at) = store.active_counts_versioned().await.unwrap();
    assert_eq!(counted_at, Some(last));
    assert_eq!(counts.total, 1);
    assert_eq!(counts, store.active_counts().await.unwrap());
    let relabel = TicketPatch {
        labels: Some(vec!["ui".to_owned()]),
        ..TicketPatch::default()
    };
    store
        .edit_ticket(&id(1), &relabel, &change(11))
        .await
        .unwrap();
    moved(&mut last, version().await, "a ticket's labels");
    let end = RunEnd {
        failure: Some(FailureClass::RateLimited),
        input_tokens: Some(5),
        ..RunEnd::default()
    };
    store
        .end_run(run.id, run.attempt, &end, &retry(), &routes(), &change(20))
        .await
        .unwrap();
    let now = version().await;
    moved(
        &mut last,
        now,
        "a run's end, its usage and its worker's park",
    );
    // Facts read now carry the version they were read at.
    assert_eq!(store.holds(&[]).await.unwrap().version, Some(now));
    let policy = BreakerPolicy {
        failures: 3,
        cooldown: Duration::from_secs(60),
    };
    store
        .record_breaker(
            &mission_store::task_subject("nightly"),
            Verdict::Failure,
            &policy,
            Timestamp::from_millis(30),
        )
        .await
        .unwrap();
    moved(&mut last, version().await, "a breaker");
}
