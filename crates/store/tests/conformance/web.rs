//! The HTTP side's part of the store through its traits: API tokens, idempotency keys (one
//! reservation of a key however many senders race for it), the counts of `/metrics`, and paging
//! of the board.

use super::Backend;
use crate::common::{change, key, new_ticket, operator_move};
use mission_core::{State, Timestamp};
use mission_store::{IdempotencyKey, NewApiToken, Reservation, TicketFilter};

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

pub async fn tokens_are_found_by_hash_revoked_once_and_touched<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let created = store
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
        store.api_token_by_hash("h1").await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(store.api_token_by_hash("h2").await.unwrap(), None);

    store.touch_api_token(1, at(20)).await.unwrap();
    let revoked = store.revoke_api_token(1, at(30)).await.unwrap().unwrap();
    assert_eq!(revoked.last_used_at, Some(at(20)));
    assert_eq!(revoked.revoked_at, Some(at(30)));
    // A second revocation keeps the first time; an unknown id is None.
    let again = store.revoke_api_token(1, at(40)).await.unwrap().unwrap();
    assert_eq!(again.revoked_at, Some(at(30)));
    assert_eq!(store.revoke_api_token(9, at(40)).await.unwrap(), None);
    assert_eq!(store.api_tokens().await.unwrap(), vec![again]);
}

pub async fn an_idempotency_key_holds_its_first_response<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let key = IdempotencyKey {
        principal: "token:1".to_owned(),
        key: "k".to_owned(),
        request_hash: "r1".to_owned(),
    };
    let reserve = |key: IdempotencyKey, now: i64| {
        let store = &store;
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
    store
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
    store.release_idempotency_key(&other).await.unwrap();
    assert_eq!(reserve(other, 14).await, Reservation::Reserved);
    store.release_idempotency_key(&key).await.unwrap();
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

pub async fn counts_and_pages_of_the_board<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let batch = (0..5)
        .map(|i| new_ticket(&format!("t{i}"), Some("luci")))
        .collect();
    store
        .create_tickets(&key(), batch, &change(1))
        .await
        .unwrap();
    let id = mission_core::TicketId::new(&key(), 2);
    store
        .move_ticket(&id, &operator_move(State::Blocked), &change(2))
        .await
        .unwrap();
    assert_eq!(
        store.ticket_counts().await.unwrap(),
        vec![(State::Blocked, 1), (State::Todo, 4)]
    );
    assert!(store.run_counts().await.unwrap().is_empty());
    assert!(store.task_outcome_counts().await.unwrap().is_empty());

    let page = |limit, offset| {
        let store = &store;
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

/// Senders on separate handles (as on several nodes) reserve one key at once: one reserves it,
/// the others find it taken by that request.
pub async fn racing_senders_reserve_a_key_once<B: Backend>() {
    let t = B::fresh().await;
    let mut handles = vec![t.store()];
    for _ in 0..3 {
        handles.push(t.connect().await);
    }
    let key = IdempotencyKey {
        principal: "token:1".to_owned(),
        key: "k".to_owned(),
        request_hash: "r1".to_owned(),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for store in handles {
        let key = key.clone();
        tasks.spawn(async move {
            store
                .reserve_idempotency_key(&key, at(10), at(0))
                .await
                .unwrap()
        });
    }
    let mut reserved = 0;
    while let Some(reservation) = tasks.join_next().await {
        match reservation.unwrap() {
            Reservation::Reserved => reserved += 1,
            Reservation::Existing {
                request_hash,
                response,
            } => assert_eq!((request_hash.as_str(), response), ("r1", None)),
        }
    }
    assert_eq!(reserved, 1);
}

pub async fn unsettled_inbox_items_and_open_incidents_are_counted<B: Backend>() {
    use mission_core::incident::{AutoResolve, Finding, Severity};
    use mission_core::{Addressee, Fingerprint, InboxKind, InboxPolicy, Name, NewInboxItem};
    use mission_store::{AuditPass, InboxCount};
    let t = B::fresh().await;
    let store = t.store();
    assert!(store.inbox_counts().await.unwrap().is_empty());
    assert!(store.open_incident_counts().await.unwrap().is_empty());

    store
        .create_tickets(&key(), vec![new_ticket("t", Some("luci"))], &change(1))
        .await
        .unwrap();
    let ticket = mission_core::TicketId::new(&key(), 1);
    let ops = Addressee::Channel(Name::parse("ops").unwrap());
    let mut items = Vec::new();
    for (kind, at_ms) in [
        (InboxKind::Alert, 5),
        (InboxKind::Alert, 7),
        (InboxKind::Alert, 8),
        (InboxKind::FailedTicket, 9),
    ] {
        let item = NewInboxItem::new(kind, Some(ticket.clone()), ops.clone(), "look").unwrap();
        items.push(
            store
                .create_inbox_item(&item, &change(at_ms))
                .await
                .unwrap(),
        );
    }
    // The oldest alert is delivered, the newest fails: delivered and pending are counted
    // apart, a settled item not at all.
    store
        .deliver_inbox_item(items[0].id, &InboxPolicy::default(), None, &change(10))
        .await
        .unwrap();
    let failed = store
        .fail_inbox_item(items[2].id, "gone", &InboxPolicy::default(), &change(11))
        .await
        .unwrap();
    // The failure may raise an alert of its own (created at 11): one more pending alert.
    let raised = i64::from(failed.alert.is_some());
    let count = |kind: &str, status: &str, count, oldest| InboxCount {
        kind: kind.to_owned(),
        status: status.to_owned(),
        count,
        oldest: at(oldest),
    };
    let counted = store.inbox_counts().await.unwrap();
    assert!(
        counted.contains(&count("alert", "delivered", 1, 5))
            && counted.contains(&count("alert", "pending", 1 + raised, 7))
            && counted.contains(&count("failed_ticket", "pending", 1, 9))
            && counted.len() == 3,
        "{counted:?}"
    );

    let finding = |fingerprint: &str, severity| Finding {
        fingerprint: Fingerprint::parse(fingerprint).unwrap(),
        severity,
        detail: fingerprint.to_owned(),
        evidence: serde_json::json!({}),
        ticket: None,
    };
    let pass = AuditPass {
        findings: vec![
            finding("disk:data", Severity::Warning),
            finding("disk:logs", Severity::Warning),
            finding("stuck_run:MC-1", Severity::Critical),
        ],
        checked: Default::default(),
        auto_resolve: AutoResolve::default(),
    };
    store.record_audit(&pass, &change(20)).await.unwrap();
    assert_eq!(
        store.open_incident_counts().await.unwrap(),
        vec![("critical".to_owned(), 1), ("warning".to_owned(), 2)]
    );
    // A resolved incident is no longer counted.
    let open = store
        .incidents(&mission_store::IncidentFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let critical = open
        .iter()
        .find(|i| i.severity == Severity::Critical)
        .unwrap();
    store
        .resolve_incident(critical.id, "fixed", &change(30))
        .await
        .unwrap();
    assert_eq!(
        store.open_incident_counts().await.unwrap(),
        vec![("warning".to_owned(), 2)]
    );
}
