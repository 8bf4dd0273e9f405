//! The dispatcher's decisions against a real SQLite store: its decision cursor is written lazily
//! (a pass's aftermath has no commit of its own), and a dispatcher that starts from the lagging
//! stored cursor — a restarted server — looks again and records nothing twice.

use mission_core::config::Config;
use mission_core::{Actor, EventKind, Lane, TicketDraft, TicketKey, Timestamp};
use mission_engine::dispatcher::Dispatcher;
use mission_engine::{ManualClock, Settings};
use mission_store::prelude::*;
use mission_store::sqlite::SqliteOptions;
use mission_store::{Change, EventQuery, SqliteStore};
use serde_json::json;
use std::sync::Arc;

#[tokio::test]
async fn a_lagging_decision_cursor_costs_a_second_look_never_a_second_decision() {
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
    let config: Config = serde_json::from_value(json!({
        "workers": { "a": { "runtime": "shell", "command": ["true"] } },
    }))
    .unwrap();
    let settings = Arc::new(
        Settings::from_config(&config, dir.path(), dir.path(), "test", "/bin/true").unwrap(),
    );
    let clock = Arc::new(ManualClock::at(
        Timestamp::parse_rfc3339("2026-06-01T18:00:00Z").unwrap(),
    ));
    let change = Change::new(Actor::new("test"), Timestamp::now());
    // Assigned to nobody the workforce knows: never runnable, one decision about it.
    let draft = |title: &str| {
        TicketDraft {
            title: title.to_owned(),
            assignee: Some("ghost".to_owned()),
            ..TicketDraft::default()
        }
        .validate()
        .unwrap()
    };
    let decisions = |store: Arc<dyn Store>| async move {
        store
            .events(&EventQuery {
                since: 0,
                limit: 1000,
                ticket: None,
            })
            .await
            .unwrap()
            .iter()
            .filter(|e| e.kind == EventKind::DispatchDecision.as_str())
            .count()
    };
    store
        .create_tickets(&TicketKey::default(), vec![draft("first")], &change)
        .await
        .unwrap();
    let first = Dispatcher::new(store.clone(), settings.clone(), clock.clone());
    first.dispatch_once(Lane::Normal).await.unwrap();
    assert_eq!(decisions(store.clone()).await, 1);
    let stored = store.decision_cursor(Lane::Normal).await.unwrap();
    assert!(stored > 0, "the first pass writes the cursor");

    // A second ticket within the second: decided, but the stored cursor is not moved.
    store
        .create_tickets(&TicketKey::default(), vec![draft("second")], &change)
        .await
        .unwrap();
    first.dispatch_once(Lane::Normal).await.unwrap();
    assert_eq!(decisions(store.clone()).await, 2);
    assert_eq!(store.decision_cursor(Lane::Normal).await.unwrap(), stored);

    // A restarted server starts from the stored cursor: it looks at the second ticket again and
    // records nothing, then moves the stored cursor.
    let restarted = Dispatcher::new(store.clone(), settings.clone(), clock.clone());
    let report = restarted.dispatch_once(Lane::Normal).await.unwrap();
    assert_eq!(report.decisions_recorded, 0);
    assert_eq!(decisions(store.clone()).await, 2);
    assert!(store.decision_cursor(Lane::Normal).await.unwrap() > stored);
}
