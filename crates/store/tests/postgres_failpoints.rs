//! The races of `sqlite_failpoints.rs`, made deterministic with the same fault injection points,
//! on PostgreSQL (a fresh schema per test on the test kit's cluster). Failpoints are
//! process-wide, so these tests live in a binary of their own.

mod common;

use common::{change, key, new_ticket};
use mission_core::{Lane, TicketId};
use mission_store::prelude::*;
use mission_store::{OpenOptions, PgStore};
use mission_testkit::pg::Cluster;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

struct Fresh {
    store: PgStore,
    url: String,
}

/// A fresh, migrated store in a schema of its own.
async fn fresh() -> Fresh {
    let url = tokio::task::spawn_blocking(|| Cluster::shared().create_schema())
        .await
        .unwrap();
    let store = open(&url).await;
    Fresh { store, url }
}

async fn open(url: &str) -> PgStore {
    let store = PgStore::connect(url, OpenOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    store
}

/// A ticket event committed between `touched_tickets`' read of the events and its read of the
/// newest sequence number must not fall behind the cursor unread. The failpoint between the two
/// reads commits a new todo ticket through another handle at every pass; the cursor, moved to
/// what each pass returns, must still reach every ticket.
#[test]
fn touched_tickets_does_not_skip_an_event_committed_between_its_reads() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scenario = fail::FailScenario::setup();
    let t = runtime.block_on(fresh());
    let url = t.url.clone();
    let created: Arc<Mutex<Vec<TicketId>>> = Arc::default();
    let writer_created = created.clone();
    fail::cfg_callback("touched-tickets-between-reads", move || {
        // The store's own runtime thread is blocked here, so the writer runs on a thread and
        // runtime of its own, as another process would.
        let url = url.clone();
        let id = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let store = open(&url).await;
                let ticket = store
                    .create_tickets(&key(), vec![new_ticket("t", Some("luci"))], &change(2))
                    .await
                    .unwrap()
                    .remove(0);
                store.close().await;
                ticket.id
            })
        })
        .join()
        .unwrap();
        writer_created.lock().unwrap().push(id);
    })
    .unwrap();

    let (seen, cursor) = runtime.block_on(async {
        let mut seen = BTreeSet::new();
        let mut cursor = 0;
        for _ in 0..5 {
            let (touched, last) = t
                .store
                .touched_tickets(Lane::Normal, cursor, 2000)
                .await
                .unwrap();
            seen.extend(touched);
            cursor = last;
        }
        (seen, cursor)
    });
    fail::remove("touched-tickets-between-reads");
    let (last_pass, _) = runtime
        .block_on(t.store.touched_tickets(Lane::Normal, cursor, 2000))
        .unwrap();
    let seen: BTreeSet<TicketId> = seen.into_iter().chain(last_pass).collect();
    let created: BTreeSet<TicketId> = created.lock().unwrap().iter().cloned().collect();
    assert_eq!(created.len(), 5, "the failpoint ran at every pass");
    let missed: Vec<&TicketId> = created.difference(&seen).collect();
    assert!(missed.is_empty(), "left behind the cursor: {missed:?}");
    scenario.teardown();
}

/// A handler that dies inside the acting transaction (after the action and the item are
/// written, before the commit) leaves the item as it was: delivered, with no action, and
/// actable again.
#[test]
fn an_act_that_dies_before_its_commit_leaves_the_item_delivered() {
    use mission_core::review::ReviewRules;
    use mission_core::{
        ActionKind, Addressee, InboxKind, InboxPolicy, Name, NewInboxItem, Reviewer, ReviewerKind,
    };
    use mission_store::ActOnItem;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scenario = fail::FailScenario::setup();
    runtime.block_on(async {
        let t = fresh().await;
        let council = Name::parse("council").unwrap();
        let item = t
            .store
            .create_inbox_item(
                &NewInboxItem::new(
                    InboxKind::Alert,
                    None,
                    Addressee::Worker(council.clone()),
                    "decide",
                )
                .unwrap(),
                &change(1),
            )
            .await
            .unwrap();
        t.store
            .deliver_inbox_item(item.id, &InboxPolicy::default(), Some("tok"), &change(2))
            .await
            .unwrap();
        let (rules, routes) = (
            ReviewRules::default(),
            mission_core::proof::InboxRoutes::default(),
        );
        let act = ActOnItem {
            item: item.id,
            action: ActionKind::Dismissed,
            text: None,
            by: Reviewer {
                name: council,
                kind: ReviewerKind::Worker,
            },
            token_hash: Some("tok".to_owned()),
            rules: &rules,
            max_attempts: 3,
            routes: &routes,
        };
        fail::cfg("inbox-act-before-commit", "return").unwrap();
        let before = t.store.last_event_seq().await.unwrap();
        assert!(t.store.act_on_inbox_item(&act, &change(3)).await.is_err());
        let after = t.store.inbox_item(item.id).await.unwrap();
        assert_eq!(after.status(), mission_core::inbox::InboxStatus::Delivered);
        assert!(after.action().is_none());
        assert_eq!(t.store.last_event_seq().await.unwrap(), before);
        fail::remove("inbox-act-before-commit");
        let acted = t.store.act_on_inbox_item(&act, &change(4)).await.unwrap();
        assert_eq!(acted.action.kind, ActionKind::Dismissed);
    });
    scenario.teardown();
}
