//! Claims and run reports through the store's traits: compare-and-set, capacity inside the
//! transaction, fencing by attempt, questions and answers.

use super::Backend;
use crate::common::{change, key, new_ticket, operator_move};
use mission_core::{Attempt, FailureClass, Lane, Name, RetryPolicy, SlotLimits, State, TicketId};
use mission_store::{ClaimOutcome, ClaimRefusal, ClaimRequest, RunEnd, StoreError};
use std::time::Duration;

pub fn id(n: i64) -> TicketId {
    TicketId::new(&key(), n)
}

pub fn request(n: i64, version: i64, lane: Lane, token: &str) -> ClaimRequest {
    ClaimRequest {
        ticket: id(n),
        lane,
        expected_version: version,
        limits: SlotLimits {
            worker: Name::parse("luci").unwrap(),
            worker_max: 2,
            pool: "default".into(),
            pool_max: None,
            global_max: 3,
        },
        node: "test:1".into(),
        token_hash: token.into(),
        lease: Duration::from_secs(30),
    }
}

pub fn routes() -> mission_core::proof::InboxRoutes {
    mission_core::proof::InboxRoutes::default()
}

pub fn retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 2,
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(4),
        max_orphaned: 10,
        ..mission_core::RetryPolicy::default()
    }
}

pub async fn claims_are_compare_and_set<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let batch = (0..4)
        .map(|i| new_ticket(&format!("t{i}"), Some("luci")))
        .collect();
    store
        .create_tickets(&key(), batch, &change(1))
        .await
        .unwrap();

    let ClaimOutcome::Claimed(run) = store
        .claim(&request(1, 1, Lane::Normal, "a"), &change(2))
        .await
        .unwrap()
    else {
        panic!("first claim refused")
    };
    assert_eq!((run.attempt, run.lane), (Attempt::new(1), Lane::Normal));
    let refusals = [
        (
            request(1, 2, Lane::Normal, "b"),
            ClaimRefusal::AlreadyClaimed { run: run.id },
        ),
        (
            request(2, 7, Lane::Normal, "c"),
            ClaimRefusal::Changed {
                state: State::Todo,
                version: 1,
            },
        ),
        (
            request(2, 1, Lane::NeedsInput, "d"),
            ClaimRefusal::WrongLane,
        ),
    ];
    for (req, expected) in refusals {
        assert_eq!(
            store.claim(&req, &change(3)).await.unwrap(),
            ClaimOutcome::Refused(expected)
        );
    }
    // The worker's cap (2) is re-counted inside the claim's transaction.
    assert!(matches!(
        store
            .claim(&request(2, 1, Lane::Normal, "e"), &change(4))
            .await
            .unwrap(),
        ClaimOutcome::Claimed(_)
    ));
    let third = store
        .claim(&request(3, 1, Lane::Normal, "f"), &change(5))
        .await
        .unwrap();
    assert!(
        matches!(
            third,
            ClaimOutcome::Refused(ClaimRefusal::CapacityFull { .. })
        ),
        "{third:?}"
    );
    let counts = store.active_counts().await.unwrap();
    assert_eq!((counts.total, counts.worker("luci")), (2, 2));
}

pub async fn reports_from_a_superseded_attempt_are_fenced<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    store
        .create_tickets(&key(), vec![new_ticket("t", Some("luci"))], &change(1))
        .await
        .unwrap();
    let ClaimOutcome::Claimed(first) = store
        .claim(&request(1, 1, Lane::Normal, "a"), &change(2))
        .await
        .unwrap()
    else {
        panic!()
    };
    store
        .heartbeat(
            first.id,
            Attempt::new(1),
            mission_core::Timestamp::from_millis(3),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let end = RunEnd {
        failure: Some(FailureClass::AgentError),
        exit_code: Some(1),
        ..RunEnd::default()
    };
    let ended = store
        .end_run(
            first.id,
            Attempt::new(1),
            &end,
            &retry(),
            &routes(),
            &change(4),
        )
        .await
        .unwrap();
    assert_eq!(ended.ticket_state, State::Todo);
    let ticket = store.ticket(&id(1)).await.unwrap();
    assert_eq!(ticket.not_before.map(|t| t.as_millis()), Some(4 + 1000));

    // Attempt 2 runs; attempt 1's token can do nothing any more.
    let ClaimOutcome::Claimed(second) = store
        .claim(
            &request(1, ticket.version, Lane::Normal, "b"),
            &change(2000),
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(second.attempt, Attempt::new(2));
    let fenced = |r: Result<_, StoreError>| matches!(r, Err(StoreError::Fenced { .. }));
    assert!(fenced(
        store
            .run_submit(first.id, Attempt::new(1), &change(2001))
            .await
            .map(|_| ())
    ));
    assert!(fenced(
        store
            .run_ask(first.id, Attempt::new(1), "?", &routes(), &change(2001))
            .await
            .map(|_| ())
    ));
    assert!(fenced(
        store
            .run_progress(first.id, Attempt::new(1), "x", &change(2001))
            .await
    ));
    assert!(fenced(
        store
            .heartbeat(
                first.id,
                Attempt::new(1),
                mission_core::Timestamp::from_millis(2001),
                Duration::from_secs(1)
            )
            .await
            .map(|_| ())
    ));
    assert!(fenced(
        store
            .end_run(
                second.id,
                Attempt::new(1),
                &RunEnd::default(),
                &retry(),
                &routes(),
                &change(2001)
            )
            .await
            .map(|_| ())
    ));

    // The current attempt's reports are taken; attempts exhausted, the ticket fails.
    let ended = store
        .end_run(
            second.id,
            Attempt::new(2),
            &end,
            &retry(),
            &routes(),
            &change(2002),
        )
        .await
        .unwrap();
    assert_eq!(ended.ticket_state, State::Failed);
}

pub async fn ask_and_answer_move_the_ticket_between_lanes<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    store
        .create_tickets(&key(), vec![new_ticket("t", Some("luci"))], &change(1))
        .await
        .unwrap();
    let err = store.answer(&id(1), "early", &change(2)).await.unwrap_err();
    assert_eq!(err.to_string(), "MC-1 has no open question");
    let ClaimOutcome::Claimed(run) = store
        .claim(&request(1, 1, Lane::Normal, "a"), &change(2))
        .await
        .unwrap()
    else {
        panic!()
    };
    store
        .run_session(run.id, Attempt::new(1), "session-1")
        .await
        .unwrap();
    let asked = store
        .run_ask(
            run.id,
            Attempt::new(1),
            "Which branch?",
            &routes(),
            &change(3),
        )
        .await
        .unwrap();
    assert_eq!(asked.state, State::NeedsInput);
    assert_eq!(
        store.active_counts().await.unwrap().total,
        0,
        "the slot is released"
    );
    // The process exiting afterwards only adds its figures.
    let late = store
        .end_run(
            run.id,
            Attempt::new(1),
            &RunEnd {
                exit_code: Some(0),
                ..RunEnd::default()
            },
            &retry(),
            &routes(),
            &change(4),
        )
        .await
        .unwrap();
    assert!(!late.ended_now);
    assert_eq!(late.ticket_state, State::NeedsInput);

    let answered = store.answer(&id(1), "main", &change(5)).await.unwrap();
    assert_eq!((answered.state, answered.resume), (State::Todo, true));
    let normal = store
        .claim(&request(1, answered.version, Lane::Normal, "b"), &change(6))
        .await
        .unwrap();
    assert_eq!(normal, ClaimOutcome::Refused(ClaimRefusal::WrongLane));
    let context = store.resume_context(&id(1)).await.unwrap().unwrap();
    assert_eq!(
        (
            context.session_id.as_deref(),
            context.question.as_str(),
            context.answer.as_str()
        ),
        (Some("session-1"), "Which branch?", "main")
    );
    let ClaimOutcome::Claimed(resumed) = store
        .claim(
            &request(1, answered.version, Lane::NeedsInput, "c"),
            &change(7),
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (resumed.attempt, resumed.lane),
        (Attempt::new(2), Lane::NeedsInput)
    );
    assert!(
        !store.ticket(&id(1)).await.unwrap().resume,
        "claimed: out of the needs-input lane"
    );
}

pub async fn a_ticket_is_not_claimed_again_while_its_last_process_may_still_run<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    store
        .create_tickets(&key(), vec![new_ticket("t", Some("luci"))], &change(1))
        .await
        .unwrap();
    let ClaimOutcome::Claimed(first) = store
        .claim(&request(1, 1, Lane::Normal, "a"), &change(2))
        .await
        .unwrap()
    else {
        panic!()
    };
    let start = mission_store::RunStart {
        pid: Some(4242),
        ..Default::default()
    };
    store
        .run_started(first.id, Attempt::new(1), &start)
        .await
        .unwrap();
    // An operator cancels and reopens the ticket while the run is still live.
    let (cancel, reopen) = (operator_move(State::Cancelled), operator_move(State::Todo));
    store
        .move_ticket(&id(1), &cancel, &change(3))
        .await
        .unwrap();
    let todo = store
        .move_ticket(&id(1), &reopen, &change(4))
        .await
        .unwrap();
    let refused = store
        .claim(&request(1, todo.version, Lane::Normal, "b"), &change(5))
        .await
        .unwrap();
    assert_eq!(
        refused,
        ClaimOutcome::Refused(ClaimRefusal::AlreadyClaimed { run: first.id })
    );
    let candidates = store
        .dispatch_candidates(
            Lane::Normal,
            &[Name::parse("luci").unwrap()],
            mission_core::Timestamp::from_millis(5),
            10,
        )
        .await
        .unwrap();
    assert!(candidates.is_empty(), "not a candidate either");
    // Once its supervisor records the process gone, the ticket can run again.
    let end = RunEnd {
        failure: Some(FailureClass::Cancelled),
        ..RunEnd::default()
    };
    store
        .end_run(
            first.id,
            Attempt::new(1),
            &end,
            &retry(),
            &routes(),
            &change(6),
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .claim(&request(1, todo.version, Lane::Normal, "c"), &change(7))
            .await
            .unwrap(),
        ClaimOutcome::Claimed(_)
    ));
}

pub async fn a_question_left_by_a_cancel_is_closed_not_answered_later<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    store
        .create_tickets(&key(), vec![new_ticket("t", Some("luci"))], &change(1))
        .await
        .unwrap();
    let ClaimOutcome::Claimed(run) = store
        .claim(&request(1, 1, Lane::Normal, "a"), &change(2))
        .await
        .unwrap()
    else {
        panic!()
    };
    store
        .run_ask(
            run.id,
            Attempt::new(1),
            "First question?",
            &routes(),
            &change(3),
        )
        .await
        .unwrap();
    let (cancel, reopen) = (operator_move(State::Cancelled), operator_move(State::Todo));
    store
        .move_ticket(&id(1), &cancel, &change(4))
        .await
        .unwrap();
    let todo = store
        .move_ticket(&id(1), &reopen, &change(5))
        .await
        .unwrap();
    let err = store
        .answer(&id(1), "too late", &change(6))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "MC-1 has no open question");
    // The next attempt can ask again.
    let ClaimOutcome::Claimed(second) = store
        .claim(&request(1, todo.version, Lane::Normal, "b"), &change(7))
        .await
        .unwrap()
    else {
        panic!()
    };
    store
        .run_ask(
            second.id,
            Attempt::new(2),
            "Second question?",
            &routes(),
            &change(8),
        )
        .await
        .unwrap();
    store.answer(&id(1), "yes", &change(9)).await.unwrap();
    let context = store.resume_context(&id(1)).await.unwrap().unwrap();
    assert_eq!(
        (context.question.as_str(), context.answer.as_str()),
        ("Second question?", "yes")
    );
}

/// Attempts orphaned by a server crash are not charged against `max_attempts` (2 here); they
/// are bounded by `max_orphaned` on their own, and a ticket that keeps crashing its server
/// fails, raising its failed-ticket item in the same transaction.
pub async fn orphaned_attempts_are_not_charged_but_bounded<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    store
        .create_tickets(
            &key(),
            vec![
                new_ticket("crashes once", Some("luci")),
                new_ticket("crashes always", Some("luci")),
            ],
            &change(1),
        )
        .await
        .unwrap();
    let policy = RetryPolicy {
        max_orphaned: 3,
        ..retry()
    };
    // One attempt of ticket `n` at time `at`, ended with `class`: the ticket's state after.
    let attempt = |n: i64, at: i64, class: FailureClass| {
        let store = store.clone();
        async move {
            let version = store.ticket(&id(n)).await.unwrap().version;
            let ClaimOutcome::Claimed(run) = store
                .claim(
                    &request(n, version, Lane::Normal, &format!("t{n}-{at}")),
                    &change(at),
                )
                .await
                .unwrap()
            else {
                panic!("{n} not claimed at {at}")
            };
            let end = RunEnd {
                failure: Some(class),
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
                .ticket_state
        }
    };
    // Two crashes, then two failures of its own: only the last exhausts max_attempts = 2.
    let mut at = 10;
    for (class, expect) in [
        (FailureClass::Orphaned, State::Todo),
        (FailureClass::Orphaned, State::Todo),
        (FailureClass::AgentError, State::Todo),
        (FailureClass::AgentError, State::Failed),
    ] {
        assert_eq!(attempt(1, at, class).await, expect, "{class} at {at}");
        at += 10_000;
    }
    // Three crashes in a row: max_orphaned = 3 is reached, and an item says so.
    for expect in [State::Todo, State::Todo, State::Failed] {
        assert_eq!(attempt(2, at, FailureClass::Orphaned).await, expect);
        at += 10_000;
    }
    let items = store
        .inbox_items(&mission_store::InboxFilter::default())
        .await
        .unwrap();
    let failed: Vec<_> = items
        .iter()
        .filter(|i| i.kind == mission_core::InboxKind::FailedTicket)
        .map(|i| i.ticket.clone())
        .collect();
    assert_eq!(failed, [Some(id(1)), Some(id(2))]);
}

/// One `claim_many` decides each of its claims as if they were made one after the other in its
/// order: a ticket claimed earlier in the batch is already claimed, capacity taken earlier in the
/// batch counts, refusals write nothing; the claims' events follow the batch's order. A batch
/// naming a ticket that does not exist writes nothing at all.
pub async fn a_claim_batch_decides_each_claim_in_turn<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let batch = (1..=6)
        .map(|i| new_ticket(&format!("t{i}"), Some("luci")))
        .collect();
    store
        .create_tickets(&key(), batch, &change(1))
        .await
        .unwrap();
    let ClaimOutcome::Claimed(earlier) = store
        .claim(&request(5, 1, Lane::Normal, "earlier"), &change(2))
        .await
        .unwrap()
    else {
        panic!("the earlier claim was refused")
    };
    let before = store.last_event_seq().await.unwrap();

    // luci may run 2 (one is taken), the instance 3.
    let mut larry = request(6, 1, Lane::Normal, "t6");
    larry.limits.worker = Name::parse("larry").unwrap();
    let requests = vec![
        request(1, 1, Lane::Normal, "t1"),
        request(1, 1, Lane::Normal, "t1-again"),
        request(2, 7, Lane::Normal, "t2"),
        request(5, 1, Lane::Normal, "t5"),
        request(3, 1, Lane::NeedsInput, "t3"),
        request(4, 1, Lane::Normal, "t4"),
        larry,
    ];
    let outcomes = store.claim_many(&requests, &change(3)).await.unwrap();
    assert_eq!(outcomes.len(), requests.len());
    let claimed = |i: usize| match &outcomes[i] {
        ClaimOutcome::Claimed(run) => run.clone(),
        other => panic!("request {i}: {other:?}"),
    };
    let (first, last) = (claimed(0), claimed(6));
    assert_eq!(
        (first.ticket.clone(), first.attempt, first.worker.as_str()),
        (id(1), Attempt::new(1), "luci")
    );
    assert_eq!(
        (last.ticket.clone(), last.worker.as_str()),
        (id(6), "larry")
    );
    assert!(first.id < last.id, "runs are numbered in the batch's order");
    let refused = |i: usize| match &outcomes[i] {
        ClaimOutcome::Refused(refusal) => refusal.clone(),
        other => panic!("request {i}: {other:?}"),
    };
    assert_eq!(
        refused(1),
        ClaimRefusal::AlreadyClaimed { run: first.id },
        "claimed earlier in the batch"
    );
    assert_eq!(
        refused(2),
        ClaimRefusal::Changed {
            state: State::Todo,
            version: 1
        }
    );
    assert_eq!(refused(3), ClaimRefusal::AlreadyClaimed { run: earlier.id });
    assert_eq!(refused(4), ClaimRefusal::WrongLane);
    assert!(
        matches!(refused(5), ClaimRefusal::CapacityFull { .. }),
        "the batch's own first claim filled luci's second slot"
    );

    // Exactly the two claims' events, in the batch's order, numbered densely.
    let events = store
        .events(&mission_store::EventQuery {
            since: before,
            ticket: None,
            limit: 100,
        })
        .await
        .unwrap();
    let moved: Vec<(i64, String, String, i64)> = events
        .iter()
        .map(|e| {
            (
                e.seq,
                e.kind.as_str().to_owned(),
                e.ticket
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                e.data["run"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        moved,
        vec![
            (
                before + 1,
                "ticket.moved".into(),
                id(1).to_string(),
                first.id.get()
            ),
            (
                before + 2,
                "ticket.moved".into(),
                id(6).to_string(),
                last.id.get()
            ),
        ]
    );
    for (n, state, version) in [
        (1, State::Running, 2),
        (2, State::Todo, 1),
        (3, State::Todo, 1),
        (4, State::Todo, 1),
        (6, State::Running, 2),
    ] {
        let ticket = store.ticket(&id(n)).await.unwrap();
        assert_eq!((ticket.state, ticket.version), (state, version), "t{n}");
    }
    assert_eq!(store.ticket(&id(6)).await.unwrap().attempts, 1);

    // A ticket that does not exist: the whole batch is refused, nothing written.
    let seq = store.last_event_seq().await.unwrap();
    let err = store
        .claim_many(
            &[
                request(2, 1, Lane::Normal, "t2-b"),
                request(99, 1, Lane::Normal, "t99"),
            ],
            &change(4),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound(ref missing) if *missing == id(99)),
        "{err:?}"
    );
    assert_eq!(store.last_event_seq().await.unwrap(), seq);
    assert_eq!(store.ticket(&id(2)).await.unwrap().state, State::Todo);
}
