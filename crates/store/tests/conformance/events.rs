//! Event order with concurrent writers: a follower that reads `events --since` its last sequence
//! number, in a loop, while writers on separate handles (separate connections, as separate
//! processes or nodes) commit events, sees every event, once, in order. On a backend whose
//! sequence numbers do not follow commit order, the follower moves past a number still
//! uncommitted and never sees that event.

use super::Backend;
use crate::common::{change, key, new_ticket, operator_move};
use mission_core::{Event, State};
use mission_store::EventQuery;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const WRITERS: usize = 4;
const ROUNDS: i64 = 25;

pub async fn a_follower_misses_no_event_of_concurrent_writers<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let running = Arc::new(AtomicUsize::new(WRITERS));
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let handle = t.connect().await;
        let running = running.clone();
        writers.spawn(async move {
            for round in 0..ROUNDS {
                // Transactions of one event and of several, so that some hold their numbers
                // longer than others before they commit.
                let batch = (0..1 + (round as usize + writer) % 4)
                    .map(|i| new_ticket(&format!("w{writer} r{round} {i}"), Some("luci")))
                    .collect();
                let created = handle
                    .create_tickets(&key(), batch, &change(round))
                    .await
                    .unwrap();
                handle
                    .move_ticket(
                        &created[0].id,
                        &operator_move(State::Blocked),
                        &change(round),
                    )
                    .await
                    .unwrap();
            }
            running.fetch_sub(1, Ordering::SeqCst);
        });
    }

    let mut seen: Vec<Event> = Vec::new();
    let mut since = 0;
    loop {
        let finished = running.load(Ordering::SeqCst) == 0;
        let page = store
            .events(&EventQuery {
                since,
                limit: 50,
                ticket: None,
            })
            .await
            .unwrap();
        for event in &page {
            assert!(
                event.seq > since,
                "events come in order: {} after {since}",
                event.seq
            );
            since = event.seq;
        }
        let drained = page.len() < 50;
        seen.extend(page);
        if finished && drained {
            break;
        }
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }

    let table = store
        .events(&EventQuery {
            since: 0,
            limit: 1_000_000,
            ticket: None,
        })
        .await
        .unwrap();
    let written: usize = (0..WRITERS)
        .map(|w| {
            (0..ROUNDS)
                .map(|r| 1 + (r as usize + w) % 4 + 1)
                .sum::<usize>()
        })
        .sum();
    assert_eq!(table.len(), written, "every event is in the table once");
    let seen_seqs: Vec<i64> = seen.iter().map(|e| e.seq).collect();
    let table_seqs: Vec<i64> = table.iter().map(|e| e.seq).collect();
    let missed: Vec<i64> = table_seqs
        .iter()
        .filter(|seq| !seen_seqs.contains(seq))
        .copied()
        .collect();
    assert!(missed.is_empty(), "the follower never saw {missed:?}");
    assert_eq!(seen, table, "the follower saw the table, in order");
}
