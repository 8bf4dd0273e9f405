//! The HTTP side's part of the store: API tokens, idempotency keys, the counts of `/metrics`, and
//! paging of the board.

mod common;

use common::{change, fresh, key, new_ticket, operator_move};
use mission_core::{State, Timestamp};
use mission_store::prelude::*;
use mission_store::{IdempotencyKey, NewApiToken, Reservation, TicketFilter};

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

#[tokio::test]
async fn tokens_are_found_by_hash_revoked_once_and_touched() {
    let t = fresh().await;
    let created = t
        .store
        .create_api_token(&NewApiToken {
            token_hash: "h1".to_owned(),
            scope: "read".to_owned(),
            label: Some("ci".to_owned()),
            created_at: at(10),
            expires_at: Some(at(1000)),
        })
        .await
        .unwrap();
    assert_eq!(created.id, 1);
    assert_eq!(created.scope, "read");
    assert_eq!(created.expires_at, Some(at(1000)));
    assert_eq!(
        t.store.api_token_by_hash("h1").await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(t.store.api_token_by_hash("h2").await.unwrap(), None);

    t.store.touch_api_token(1, at(20)).await.unwrap();
    let revoked = t.store.revoke_api_token(1, at(30)).await.unwrap().unwrap();
    assert_eq!(revoked.last_used_at, Some(at(20)));
    assert_eq!(revoked.revoked_at, Some(at(30)));
    // A second revocation keeps the first time; an unknown id is None.
    let again = t.store.revoke_api_token(1, at(40)).await.unwrap().unwrap();
    assert_eq!(again.revoked_at, Some(at(30)));
    assert_eq!(t.store.revoke_api_token(9, at(40)).await.unwrap(), None);
    assert_eq!(t.store.api_tokens().await.unwrap(), vec![again]);
}

#[tokio::test]
async fn an_idempotency_key_holds_its_first_response() {
    let t = fresh().await;
    let key = IdempotencyKey {
        principal: "token:1".to_owned(),
        key: "k".to_owned(),
        request_hash: "r1".to_owned(),
    };
    let reserve = |key: IdempotencyKey, now: i64| {
        let store = &t.store;
        async move {
            store
                .reserve_idempotency_key(&key, at(now), at(now - 100))
                .await
                .unwrap()
        }
    };
    assert_eq!(reserve(key.clone(), 10).await, Reservation::Reserved);
    // While the first request runs, the key is taken without a response.
    assert_eq!(
        reserve(key.clone(), 11).await,
        Reservation::Existing {
            request_hash: "r1".to_owned(),
            response: None
        }
    );
    t.store
        .complete_idempotency_key(&key, 201, "{\"id\":\"MC-1\"}")
        .await
        .unwrap();
    assert_eq!(
        reserve(key.clone(), 12).await,
        Reservation::Existing {
            request_hash: "r1".to_owned(),
            response: Some((201, "{\"id\":\"MC-1\"}".to_owned()))
        }
    );
    // Another sender's key of the same name is its own.
    let other = IdempotencyKey {
        principal: "token:2".to_owned(),
        ..key.clone()
    };
    assert_eq!(reserve(other.clone(), 13).await, Reservation::Reserved);
    // A released key (its request failed) can be used again; a completed one cannot be released.
    t.store.release_idempotency_key(&other).await.unwrap();
    assert_eq!(reserve(other, 14).await, Reservation::Reserved);
    t.store.release_idempotency_key(&key).await.unwrap();
    assert!(matches!(
        reserve(key.clone(), 15).await,
        Reservation::Existing {
            response: Some(_),
            ..
        }
    ));
    // Old keys are forgotten.
    assert_eq!(reserve(key, 1000).await, Reservation::Reserved);
}

#[tokio::test]
async fn counts_and_pages_of_the_board() {
    let t = fresh().await;
    let batch = (0..5)
        .map(|i| new_ticket(&format!("t{i}"), Some("luci")))
        .collect();
    t.store
        .create_tickets(&key(), batch, &change(1))
        .await
        .unwrap();
    let id = mission_core::TicketId::new(&key(), 2);
    t.store
        .move_ticket(&id, &operator_move(State::Blocked), &change(2))
        .await
        .unwrap();
    assert_eq!(
        t.store.ticket_counts().await.unwrap(),
        vec![(State::Blocked, 1), (State::Todo, 4)]
    );
    assert!(t.store.run_counts().await.unwrap().is_empty());
    assert!(t.store.task_outcome_counts().await.unwrap().is_empty());

    let page = |limit, offset| {
        let store = &t.store;
        async move {
            store
                .list_tickets(&TicketFilter {
                    limit,
                    offset,
                    ..TicketFilter::default()
                })
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.id.number())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(Some(2), Some(0)).await, vec![1, 2]);
    assert_eq!(page(Some(2), Some(2)).await, vec![3, 4]);
    assert_eq!(page(Some(2), Some(4)).await, vec![5]);
    assert_eq!(page(None, Some(3)).await, vec![4, 5]);
}
