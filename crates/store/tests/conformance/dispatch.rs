//! The dispatcher's own records through the store's traits: decisions, the capacity fact, the
//! decision cursors, and the tickets touched since a cursor.

use super::Backend;
use crate::common::{change, key, new_ticket};
use mission_core::{Lane, TicketId};
use mission_store::{CapacityFact, EventQuery};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn id(n: i64) -> TicketId {
    TicketId::new(&key(), n)
}

pub async fn decisions_are_recorded_only_when_they_change<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    store
        .create_tickets(&key(), vec![new_ticket("t", Some("lucienne"))], &change(1))
        .await
        .unwrap();
    let decision =
        serde_json::json!({"runnable": false, "reasons": [{"code": "controller_parked"}]});
    assert!(
        store
            .record_decision(
                &id(1),
                Lane::Normal,
                "controller_parked",
                &decision,
                &change(2)
            )
            .await
            .unwrap()
    );
    for at in 3..10 {
        assert!(
            !store
                .record_decision(
                    &id(1),
                    Lane::Normal,
                    "controller_parked",
                    &decision,
                    &change(at)
                )
                .await
                .unwrap()
        );
    }
    assert!(
        store
            .record_decision(&id(1), Lane::Normal, "unassigned", &decision, &change(11))
            .await
            .unwrap()
    );
    assert_eq!(
        store.last_event_seq().await.unwrap(),
        3,
        "created + two decisions"
    );
}

/// The capacity fact is typed, and each change of it (not each pass) writes one event of its
/// kind, with the same strings as ever.
pub async fn the_capacity_fact_is_recorded_once_per_change<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    assert_eq!(store.capacity_fact().await.unwrap(), None);
    assert!(
        store
            .set_capacity_fact(&CapacityFact::Counted, &change(1))
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_capacity_fact(&CapacityFact::Counted, &change(2))
            .await
            .unwrap()
    );
    let unknown = CapacityFact::Unknown {
        error: "disk on fire".to_owned(),
    };
    for at in 3..6 {
        assert_eq!(
            store
                .set_capacity_fact(&unknown, &change(at))
                .await
                .unwrap(),
            at == 3
        );
    }
    assert_eq!(store.capacity_fact().await.unwrap(), Some(unknown));
    assert!(
        store
            .set_capacity_fact(&CapacityFact::Counted, &change(6))
            .await
            .unwrap()
    );
    assert_eq!(
        store.capacity_fact().await.unwrap(),
        Some(CapacityFact::Counted)
    );
    let events = store
        .events(&EventQuery {
            since: 0,
            limit: 100,
            ticket: None,
        })
        .await
        .unwrap();
    let kinds: Vec<(&str, serde_json::Value)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.data.clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("dispatch.capacity_counted", serde_json::json!({})),
            (
                "dispatch.capacity_unknown",
                serde_json::json!({"error": "disk on fire"})
            ),
            ("dispatch.capacity_counted", serde_json::json!({})),
        ]
    );
}

pub async fn decision_cursors_are_kept_per_lane<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    assert_eq!(store.decision_cursor(Lane::Normal).await.unwrap(), 0);
    store
        .set_decision_cursor(Lane::Normal, 42, &change(1))
        .await
        .unwrap();
    store
        .set_decision_cursor(Lane::NeedsInput, 7, &change(1))
        .await
        .unwrap();
    store
        .set_decision_cursor(Lane::Normal, 43, &change(2))
        .await
        .unwrap();
    assert_eq!(store.decision_cursor(Lane::Normal).await.unwrap(), 43);
    assert_eq!(store.decision_cursor(Lane::NeedsInput).await.unwrap(), 7);
    assert_eq!(
        store.last_event_seq().await.unwrap(),
        0,
        "a cursor is no event"
    );
}

/// A dispatcher that moves its cursor to what `touched_tickets` returns sees every ticket a
/// concurrent writer makes todo: no event is left behind the cursor unread.
pub async fn touched_tickets_miss_no_event_of_a_concurrent_writer<B: Backend>() {
    const TICKETS: i64 = 80;
    let t = B::fresh().await;
    let store = t.store();
    let writer_store = t.connect().await;
    let done = Arc::new(AtomicBool::new(false));
    let writer_done = done.clone();
    let writer = tokio::spawn(async move {
        for n in 0..TICKETS {
            // Events of other kinds between ticket events, as a busy dispatcher writes them.
            let created = writer_store
                .create_tickets(&key(), vec![new_ticket("t", Some("luci"))], &change(n))
                .await
                .unwrap();
            let decision = serde_json::json!({"runnable": false, "reasons": []});
            writer_store
                .record_decision(&created[0].id, Lane::NeedsInput, "x", &decision, &change(n))
                .await
                .unwrap();
        }
        writer_done.store(true, Ordering::SeqCst);
    });
    let mut cursor = 0;
    let mut seen = BTreeSet::new();
    loop {
        let finished = done.load(Ordering::SeqCst);
        let (touched, last) = store
            .touched_tickets(Lane::Normal, cursor, 2000)
            .await
            .unwrap();
        assert!(last >= cursor, "the cursor never goes back");
        seen.extend(touched);
        cursor = last;
        if finished {
            break;
        }
    }
    writer.await.unwrap();
    let created: BTreeSet<TicketId> = (1..=TICKETS).map(id).collect();
    let missed: Vec<&TicketId> = created.difference(&seen).collect();
    assert!(
        missed.is_empty(),
        "tickets never seen by the cursor: {missed:?}"
    );
}
