//! The SQLite store at its boundary: real files, real transactions.

mod common;

use common::{change, fresh, key, new_ticket, open};
use mission_core::transition::Via;
use mission_core::{State, TicketId, TicketPatch};
use mission_store::sqlite::SqliteOptions;
use mission_store::{EventQuery, Move, SqliteStore, Store, StoreError, TicketFilter};

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

#[tokio::test]
async fn created_tickets_round_trip_byte_exact() {
    let t = fresh().await;
    let hostile = "rm -rf / ; echo $(whoami) `id` | cat\n--flag\0NUL\u{202e}é\n".repeat(1000);
    let mut new = new_ticket("Fix the pickup loop", Some("luci"));
    new.body = hostile.clone();
    let created = t
        .store
        .create_tickets(&key(), vec![new], &change(1))
        .await
        .unwrap();
    assert_eq!(created[0].id.to_string(), "MC-1");
    assert_eq!(created[0].state, State::Todo);
    let read = t.store.ticket(&id(1)).await.unwrap();
    assert_eq!(read, created[0]);
    assert_eq!(read.body.as_bytes(), hostile.as_bytes());

    let events = t.store.events(&all_events()).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "ticket.created");
    assert_eq!(events[0].data["body_bytes"], hostile.len());
}

#[tokio::test]
async fn numbers_continue_across_batches_and_reopen() {
    let t = fresh().await;
    let batch = (0..3).map(|i| new_ticket(&format!("t{i}"), None)).collect();
    t.store
        .create_tickets(&key(), batch, &change(1))
        .await
        .unwrap();
    t.store.close().await;
    let store = open(&t.path, false).await;
    let more = store
        .create_tickets(&key(), vec![new_ticket("t3", None)], &change(2))
        .await
        .unwrap();
    assert_eq!(more[0].id, id(4));
    assert_eq!(store.last_event_seq().await.unwrap(), 4);
}

#[tokio::test]
async fn a_batch_with_a_missing_dependency_writes_nothing() {
    let t = fresh().await;
    let mut bad = new_ticket("depends on a ghost", None);
    bad.depends_on = vec![id(99)];
    let err = t
        .store
        .create_tickets(&key(), vec![new_ticket("fine", None), bad], &change(1))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MC-2 depends on MC-99, which does not exist"
    );
    assert!(err.is_input_error());
    assert!(
        t.store
            .list_tickets(&TicketFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(t.store.last_event_seq().await.unwrap(), 0);
}

#[tokio::test]
async fn moves_are_checked_against_the_current_state() {
    let t = fresh().await;
    t.store
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
        let got = t.store.move_ticket(&id(1), &request, &change(2)).await;
        match (got, expect) {
            (Ok(ticket), Ok(state)) => {
                assert_eq!(ticket.state, *state);
                expected_events += 1;
            }
            (Err(err), Err(message)) => assert_eq!(err.to_string(), *message),
            (got, want) => panic!("{to} via {via:?}: got {got:?}, want {want:?}"),
        }
        assert_eq!(t.store.last_event_seq().await.unwrap(), expected_events);
        let stored = t.store.ticket(&id(1)).await.unwrap();
        assert_eq!(
            stored.version, expected_events,
            "one version per accepted change"
        );
    }
    let moves = t.store.events(&all_events()).await.unwrap();
    let last = moves.last().unwrap();
    assert_eq!(last.kind, "ticket.moved");
    assert_eq!(
        last.data,
        serde_json::json!({"from": "review", "to": "done", "via": "gate", "reason": "because"})
    );
}

#[tokio::test]
async fn unknown_ticket_is_not_found() {
    let t = fresh().await;
    let err = t.store.ticket(&id(7)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)));
    assert_eq!(err.to_string(), "no ticket MC-7");
    let request = Move {
        to: State::Todo,
        via: Via::Operator,
        reason: None,
    };
    assert!(matches!(
        t.store.move_ticket(&id(7), &request, &change(1)).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn edits_reject_cycles_and_record_only_what_changed() {
    let t = fresh().await;
    let batch = (1..=3)
        .map(|i| new_ticket(&format!("t{i}"), None))
        .collect();
    t.store
        .create_tickets(&key(), batch, &change(1))
        .await
        .unwrap();
    let deps = |ids: &[i64]| TicketPatch {
        depends_on: Some(ids.iter().map(|n| id(*n)).collect()),
        ..TicketPatch::default()
    };

    t.store
        .edit_ticket(&id(1), &deps(&[2]), &change(2))
        .await
        .unwrap();
    t.store
        .edit_ticket(&id(2), &deps(&[3]), &change(3))
        .await
        .unwrap();
    let before = t.store.last_event_seq().await.unwrap();

    let err = t
        .store
        .edit_ticket(&id(3), &deps(&[1]), &change(4))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "dependency cycle: MC-3 -> MC-1 -> MC-2 -> MC-3"
    );
    let err = t
        .store
        .edit_ticket(&id(3), &deps(&[3]), &change(4))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "ticket MC-3 cannot depend on itself");
    let err = t
        .store
        .edit_ticket(&id(3), &deps(&[42]), &change(4))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MC-3 depends on MC-42, which does not exist"
    );
    assert_eq!(
        t.store.last_event_seq().await.unwrap(),
        before,
        "rejected edits write no event"
    );
    assert!(t.store.ticket(&id(3)).await.unwrap().depends_on.is_empty());

    // The same value again is no change: no event.
    t.store
        .edit_ticket(&id(1), &deps(&[2]), &change(5))
        .await
        .unwrap();
    assert_eq!(t.store.last_event_seq().await.unwrap(), before);

    let patch = TicketPatch {
        title: Some("renamed".into()),
        priority: Some(5),
        ..TicketPatch::default()
    };
    let edited = t
        .store
        .edit_ticket(&id(1), &patch, &change(6))
        .await
        .unwrap();
    assert_eq!(
        (
            edited.title.as_str(),
            edited.priority,
            edited.depends_on.clone()
        ),
        ("renamed", 5, vec![id(2)])
    );
    let last = t.store.events(&all_events()).await.unwrap().pop().unwrap();
    assert_eq!(
        last.data,
        serde_json::json!({"changes": {"title": {"from": "t1", "to": "renamed"}, "priority": {"from": 0, "to": 5}}})
    );
    let (_, dep_states) = t.store.ticket_with_dependencies(&id(1)).await.unwrap();
    assert_eq!(dep_states.len(), 1);
    assert_eq!(dep_states[0].state, Some(State::Triage));
}

#[tokio::test]
async fn listing_filters_and_orders_by_priority() {
    let t = fresh().await;
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
    t.store
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
        let store = &t.store;
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

#[tokio::test]
async fn events_page_and_filter_by_ticket() {
    let t = fresh().await;
    let batch = (0..5)
        .map(|i| new_ticket(&format!("t{i}"), Some("luci")))
        .collect();
    t.store
        .create_tickets(&key(), batch, &change(1))
        .await
        .unwrap();
    let request = Move {
        to: State::Blocked,
        via: Via::Operator,
        reason: None,
    };
    t.store
        .move_ticket(&id(2), &request, &change(2))
        .await
        .unwrap();
    let page = t
        .store
        .events(&EventQuery {
            since: 2,
            limit: 2,
            ticket: None,
        })
        .await
        .unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
    let of_two = t
        .store
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

#[tokio::test]
async fn the_event_log_refuses_updates_and_deletes() {
    let t = fresh().await;
    t.store
        .create_tickets(&key(), vec![new_ticket("t", None)], &change(1))
        .await
        .unwrap();
    t.store.close().await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", t.path.display()))
        .await
        .unwrap();
    let update = sqlx::query("UPDATE events SET kind = 'forged'")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(
        update.to_string().contains("events are append-only"),
        "{update}"
    );
    let delete = sqlx::query("DELETE FROM events")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(
        delete.to_string().contains("events are append-only"),
        "{delete}"
    );
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_left_untouched() {
    let t = fresh().await;
    t.store
        .create_tickets(&key(), vec![new_ticket("t", None)], &change(1))
        .await
        .unwrap();
    t.store.close().await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", t.path.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = SqliteStore::open(&t.path, SqliteOptions::default())
        .await
        .unwrap();
    let err = store.migrate().await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 999,
                supported: 5
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_input_error());
    let tickets = store.list_tickets(&TicketFilter::default()).await.unwrap();
    assert_eq!(tickets.len(), 1);
}

#[tokio::test]
async fn garbage_and_foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    let bytes: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&garbage, &bytes).unwrap();
    let err = match SqliteStore::open(&garbage, SqliteOptions::default()).await {
        Ok(store) => store.migrate().await.unwrap_err(),
        Err(err) => err,
    };
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert_eq!(
        std::fs::read(&garbage).unwrap(),
        bytes,
        "a corrupt file is left as it was"
    );

    let foreign = dir.path().join("foreign.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}?mode=rwc", foreign.display()))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE photos (id INTEGER)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let store = SqliteStore::open(&foreign, SqliteOptions::default())
        .await
        .unwrap();
    let err = store.migrate().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the database is corrupt or not a Mission Control store: it has tables but no schema_migrations"
    );
}

#[tokio::test]
async fn a_missing_file_is_not_created_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.db");
    let err = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("run `mission init` first"),
        "{err}"
    );
    assert!(!path.exists());
}
