//! Tickets and events through the store's traits: creation, numbering, moves checked against the
//! current state, edits, listing, the event log, and the kinds of errors.

use super::Backend;
use crate::common::{change, key, new_ticket, operator_move};
use mission_core::transition::Via;
use mission_core::{State, TicketId, TicketPatch};
use mission_store::{ErrorKind, EventQuery, Move, StoreError, TicketFilter};
use std::collections::BTreeSet;

fn all_events() -> EventQuery {
    EventQuery {
        since: 0,
        limit: 1_000_000,
        ticket: None,
    }
}

fn id(n: i64) -> TicketId {
    TicketId::new(&key(), n)
}

pub async fn created_tickets_round_trip_byte_exact<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let hostile = "rm -rf / ; echo $(whoami) `id` | cat\n--flag\0NUL\u{202e}é\n".repeat(1000);
    let mut new = new_ticket("Fix the pickup loop", Some("luci"));
    new.body = hostile.clone();
    let created = store
        .create_tickets(&key(), vec![new], &change(1))
        .await
        .unwrap();
    assert_eq!(created[0].id.to_string(), "MC-1");
    assert_eq!(created[0].state, State::Todo);
    let read = store.ticket(&id(1)).await.unwrap();
    assert_eq!(read, created[0]);
    assert_eq!(read.body.as_bytes(), hostile.as_bytes());

    let events = store.events(&all_events()).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "ticket.created");
    assert_eq!(events[0].data["body_bytes"], hostile.len());
}

pub async fn numbers_continue_across_batches_and_reopen<B: Backend>() {
    let mut t = B::fresh().await;
    let store = t.store();
    let batch = (0..3).map(|i| new_ticket(&format!("t{i}"), None)).collect();
    store
        .create_tickets(&key(), batch, &change(1))
        .await
        .unwrap();
    drop(store);
    t.reopen().await;
    let store = t.store();
    let more = store
        .create_tickets(&key(), vec![new_ticket("t3", None)], &change(2))
        .await
        .unwrap();
    assert_eq!(more[0].id, id(4));
    assert_eq!(store.last_event_seq().await.unwrap(), 4);
}

pub async fn a_batch_with_a_missing_dependency_writes_nothing<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let mut bad = new_ticket("depends on a ghost", None);
    bad.depends_on = vec![id(99)];
    let err = store
        .create_tickets(&key(), vec![new_ticket("fine", None), bad], &change(1))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MC-2 depends on MC-99, which does not exist"
    );
    assert!(err.is_input_error());
    assert!(
        store
            .list_tickets(&TicketFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.last_event_seq().await.unwrap(), 0);
}

pub async fn moves_are_checked_against_the_current_state<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    store
        .create_tickets(&key(), vec![new_ticket("t", Some("luci"))], &change(1))
        .await
        .unwrap();
    let cases: &[(State, Via, Result<State, &str>)] = &[
        (
            State::Running,
            Via::Operator,
            Err("MC-1: cannot move from todo to running (only the dispatcher starts a run)"),
        ),
        (
            State::Done,
            Via::Operator,
            Err(
                "MC-1: cannot move from todo to done (only the gate closes a ticket: use `mission ticket done`)",
            ),
        ),
        (State::Blocked, Via::Operator, Ok(State::Blocked)),
        (
            State::Blocked,
            Via::Operator,
            Err("MC-1: cannot move from blocked to blocked (it is already there)"),
        ),
        (State::Todo, Via::Operator, Ok(State::Todo)),
        (State::Running, Via::Claim, Ok(State::Running)),
        (State::Review, Via::RunSubmit, Ok(State::Review)),
        (State::Done, Via::Gate, Ok(State::Done)),
        (
            State::Todo,
            Via::Operator,
            Err("MC-1: cannot move from done to todo (done is final; open a new ticket)"),
        ),
    ];
    let mut expected_events = 1;
    for (to, via, expect) in cases {
        let request = Move {
            to: *to,
            via: *via,
            reason: Some("because".into()),
        };
        let got = store.move_ticket(&id(1), &request, &change(2)).await;
        match (got, expect) {
            (Ok(ticket), Ok(state)) => {
                assert_eq!(ticket.state, *state);
                expected_events += 1;
            }
            (Err(err), Err(message)) => assert_eq!(err.to_string(), *message),
            (got, want) => panic!("{to} via {via:?}: got {got:?}, want {want:?}"),
        }
        assert_eq!(store.last_event_seq().await.unwrap(), expected_events);
        let stored = store.ticket(&id(1)).await.unwrap();
        assert_eq!(
            stored.version, expected_events,
            "one version per accepted change"
        );
    }
    let moves = store.events(&all_events()).await.unwrap();
    let last = moves.last().unwrap();
    assert_eq!(last.kind, "ticket.moved");
    assert_eq!(
        last.data,
        serde_json::json!({"from": "review", "to": "done", "via": "gate", "reason": "because"})
    );
}

pub async fn unknown_ticket_is_not_found<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let err = store.ticket(&id(7)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)));
    assert_eq!(err.to_string(), "no ticket MC-7");
    let request = Move {
        to: State::Todo,
        via: Via::Operator,
        reason: None,
    };
    assert!(matches!(
        store.move_ticket(&id(7), &request, &change(1)).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn edits_reject_cycles_and_record_only_what_changed<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let batch = (1..=3)
        .map(|i| new_ticket(&format!("t{i}"), None))
        .collect();
    store
        .create_tickets(&key(), batch, &change(1))
        .await
        .unwrap();
    let deps = |ids: &[i64]| TicketPatch {
        depends_on: Some(ids.iter().map(|n| id(*n)).collect()),
        ..TicketPatch::default()
    };

    store
        .edit_ticket(&id(1), &deps(&[2]), &change(2))
        .await
        .unwrap();
    store
        .edit_ticket(&id(2), &deps(&[3]), &change(3))
        .await
        .unwrap();
    let before = store.last_event_seq().await.unwrap();

    let err = store
        .edit_ticket(&id(3), &deps(&[1]), &change(4))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "dependency cycle: MC-3 -> MC-1 -> MC-2 -> MC-3"
    );
    let err = store
        .edit_ticket(&id(3), &deps(&[3]), &change(4))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "ticket MC-3 cannot depend on itself");
    let err = store
        .edit_ticket(&id(3), &deps(&[42]), &change(4))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MC-3 depends on MC-42, which does not exist"
    );
    assert_eq!(
        store.last_event_seq().await.unwrap(),
        before,
        "rejected edits write no event"
    );
    assert!(store.ticket(&id(3)).await.unwrap().depends_on.is_empty());

    // The same value again is no change: no event.
    store
        .edit_ticket(&id(1), &deps(&[2]), &change(5))
        .await
        .unwrap();
    assert_eq!(store.last_event_seq().await.unwrap(), before);

    let patch = TicketPatch {
        title: Some("renamed".into()),
        priority: Some(5),
        ..TicketPatch::default()
    };
    let edited = store.edit_ticket(&id(1), &patch, &change(6)).await.unwrap();
    assert_eq!(
        (
            edited.title.as_str(),
            edited.priority,
            edited.depends_on.clone()
        ),
        ("renamed", 5, vec![id(2)])
    );
    let last = store.events(&all_events()).await.unwrap().pop().unwrap();
    assert_eq!(
        last.data,
        serde_json::json!({"changes": {"title": {"from": "t1", "to": "renamed"}, "priority": {"from": 0, "to": 5}}})
    );
    let (_, dep_states) = store.ticket_with_dependencies(&id(1)).await.unwrap();
    assert_eq!(dep_states.len(), 1);
    assert_eq!(dep_states[0].state, Some(State::Triage));
}

/// A ticket read with its dependencies: their ids and their states as they are now, in id order
/// (MC-2 before MC-10), whatever the order they were named in.
pub async fn a_ticket_reads_with_its_dependencies_states_in_order<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let batch = (1..=10)
        .map(|i| new_ticket(&format!("t{i}"), (i % 2 == 0).then_some("luci")))
        .collect();
    store
        .create_tickets(&key(), batch, &change(1))
        .await
        .unwrap();
    let mut dependent = new_ticket("t11", Some("luci"));
    dependent.depends_on = vec![id(10), id(2), id(3)];
    store
        .create_tickets(&key(), vec![dependent], &change(2))
        .await
        .unwrap();
    store
        .move_ticket(&id(10), &operator_move(State::Blocked), &change(3))
        .await
        .unwrap();
    let (ticket, deps) = store.ticket_with_dependencies(&id(11)).await.unwrap();
    assert_eq!(ticket.depends_on, vec![id(2), id(3), id(10)]);
    assert_eq!(ticket, store.ticket(&id(11)).await.unwrap());
    let mut expected = Vec::new();
    for n in [2, 3, 10] {
        expected.push((id(n), Some(store.ticket(&id(n)).await.unwrap().state)));
    }
    let got: Vec<_> = deps.into_iter().map(|d| (d.id, d.state)).collect();
    assert_eq!(got, expected);
    assert_eq!(
        got.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        vec![Some(State::Todo), Some(State::Triage), Some(State::Blocked)]
    );
    let (plain, none) = store.ticket_with_dependencies(&id(1)).await.unwrap();
    assert!(plain.depends_on.is_empty() && none.is_empty());
}

pub async fn listing_filters_and_orders_by_priority<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let mut batch = Vec::new();
    for (i, (assignee, priority)) in [
        (Some("luci"), 0),
        (None, 9),
        (Some("luci"), 5),
        (Some("larry"), 5),
    ]
    .iter()
    .enumerate()
    {
        let mut new = new_ticket(&format!("t{}", i + 1), *assignee);
        new.priority = *priority;
        batch.push(new);
    }
    store
        .create_tickets(&key(), batch, &change(1))
        .await
        .unwrap();
    let list = |state, assignee: Option<&str>, limit| {
        let filter = TicketFilter {
            state,
            assignee: assignee.map(|a| mission_core::Name::parse(a).unwrap()),
            limit,
            offset: None,
        };
        let store = &store;
        async move {
            store
                .list_tickets(&filter)
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.id.number())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(None, None, None).await, vec![2, 3, 4, 1]);
    assert_eq!(list(Some(State::Todo), None, None).await, vec![3, 4, 1]);
    assert_eq!(
        list(Some(State::Todo), Some("luci"), None).await,
        vec![3, 1]
    );
    assert_eq!(list(None, None, Some(2)).await, vec![2, 3]);
    assert_eq!(list(Some(State::Done), None, None).await, Vec::<i64>::new());
}

pub async fn events_page_and_filter_by_ticket<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let batch = (0..5)
        .map(|i| new_ticket(&format!("t{i}"), Some("luci")))
        .collect();
    store
        .create_tickets(&key(), batch, &change(1))
        .await
        .unwrap();
    let request = Move {
        to: State::Blocked,
        via: Via::Operator,
        reason: None,
    };
    store
        .move_ticket(&id(2), &request, &change(2))
        .await
        .unwrap();
    let page = store
        .events(&EventQuery {
            since: 2,
            limit: 2,
            ticket: None,
        })
        .await
        .unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
    let of_two = store
        .events(&EventQuery {
            since: 0,
            limit: 10,
            ticket: Some(id(2)),
        })
        .await
        .unwrap();
    assert_eq!(
        of_two.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        vec!["ticket.created", "ticket.moved"]
    );
}

/// Ticket numbers come from a counter taken in the creating transaction: creators writing at
/// once, through separate handles, get distinct numbers with no gap, and a refused batch gives
/// its numbers back.
pub async fn numbers_stay_unique_and_dense_under_concurrent_creators<B: Backend>() {
    let t = B::fresh().await;
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..4i64 {
        let store = t.connect().await;
        writers.spawn(async move {
            let mut numbers = Vec::new();
            for round in 0..5i64 {
                let batch = (0..3)
                    .map(|i| new_ticket(&format!("w{writer} r{round} t{i}"), None))
                    .collect();
                let created = store
                    .create_tickets(&key(), batch, &change(round))
                    .await
                    .unwrap();
                numbers.extend(created.iter().map(|t| t.id.number()));
                // A refused batch takes no number for good.
                let mut bad = new_ticket("depends on a ghost", None);
                bad.depends_on = vec![id(10_000)];
                assert!(
                    store
                        .create_tickets(&key(), vec![bad], &change(round))
                        .await
                        .is_err()
                );
            }
            numbers
        });
    }
    let mut all = Vec::new();
    while let Some(numbers) = writers.join_next().await {
        all.extend(numbers.unwrap());
    }
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "a number was given twice: {all:?}"
    );
    assert_eq!(distinct, (1..=60).collect::<BTreeSet<i64>>());
    let store = t.store();
    let next = store
        .create_tickets(&key(), vec![new_ticket("next", None)], &change(9))
        .await
        .unwrap();
    assert_eq!(next[0].id, id(61));
}

/// Each error says what kind of failure it is, for the edges (exit codes, HTTP statuses).
pub async fn errors_have_kinds<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let kind = |err: StoreError| (err.kind(), err.is_input_error());
    assert_eq!(
        kind(store.ticket(&id(1)).await.unwrap_err()),
        (ErrorKind::NotFound, true)
    );
    store
        .create_tickets(
            &key(),
            vec![new_ticket("a", Some("luci")), new_ticket("b", None)],
            &change(1),
        )
        .await
        .unwrap();
    let illegal = Move {
        to: State::Done,
        via: Via::Operator,
        reason: None,
    };
    assert_eq!(
        kind(
            store
                .move_ticket(&id(1), &illegal, &change(2))
                .await
                .unwrap_err()
        ),
        (ErrorKind::Conflict, true)
    );
    let deps = |ids: &[i64]| TicketPatch {
        depends_on: Some(ids.iter().map(|n| id(*n)).collect()),
        ..TicketPatch::default()
    };
    store
        .edit_ticket(&id(1), &deps(&[2]), &change(3))
        .await
        .unwrap();
    assert_eq!(
        kind(
            store
                .edit_ticket(&id(2), &deps(&[1]), &change(4))
                .await
                .unwrap_err()
        ),
        (ErrorKind::Invalid, true)
    );
    assert_eq!(
        kind(
            store
                .edit_ticket(&id(2), &deps(&[9]), &change(4))
                .await
                .unwrap_err()
        ),
        (ErrorKind::Invalid, true)
    );
    assert_eq!(
        kind(store.answer(&id(1), "?", &change(5)).await.unwrap_err()),
        (ErrorKind::NotFound, true)
    );
}
