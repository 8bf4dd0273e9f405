//! The outbox through the store's traits: a notification is queued in the transaction of its
//! fact, for the channels subscribed to its topic only; a channel's rows are claimed in order
//! under a lease, a row waiting for its retry holds back the rows behind it; an expired lease
//! (a sender that died between a delivery and its record) gives the same row, same id, again;
//! the outbox survives a restart; a dead row opens its incident in the same transaction.

use super::Backend;
use super::runs::{request, retry, routes};
use crate::common::{change, key, new_ticket};
use mission_core::notify::{OutboxStatus, Subscription, Topic};
use mission_core::{Attempt, FailureClass, Finding, Fingerprint, Lane, Severity, Timestamp};
use mission_store::{
    AuditPass, ClaimOutcome, DeliveryOutcome, DeliveryResult, EventQuery, IncidentFilter,
    OutboxFilter, OutboxItem, RunEnd, Store,
};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

fn subscription(channel: &str, topics: &[Topic]) -> Subscription {
    Subscription {
        channel: channel.to_owned(),
        topics: topics.iter().copied().collect(),
    }
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

async fn rows(store: &Arc<dyn Store>, channel: &str) -> Vec<OutboxItem> {
    let mut rows = store
        .outbox(&OutboxFilter {
            channel: Some(channel.to_owned()),
            limit: 100,
            ..OutboxFilter::default()
        })
        .await
        .unwrap();
    rows.reverse();
    rows
}

fn result(id: i64, outcome: DeliveryOutcome) -> DeliveryResult {
    DeliveryResult {
        id,
        outcome,
        http_status: Some(200),
        latency: Duration::from_millis(3),
    }
}

fn sent(id: i64, remote: Option<&str>) -> DeliveryResult {
    result(
        id,
        DeliveryOutcome::Sent {
            remote_id: remote.map(str::to_owned),
        },
    )
}

fn ids(items: &[OutboxItem]) -> Vec<i64> {
    items.iter().map(|i| i.id).collect()
}

fn dead_finding(channel: &str) -> Finding {
    Finding {
        fingerprint: Fingerprint::parse(&format!("notify_dead:{channel}")).unwrap(),
        severity: Severity::Warning,
        detail: format!("a notification to {channel} was given up"),
        evidence: json!({ "channel": channel }),
        ticket: None,
    }
}

async fn pings(store: &Arc<dyn Store>, channel: &str, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let item = store
            .enqueue_notification(channel, Topic::Ping, &json!({ "n": i }), at(10))
            .await
            .unwrap();
        assert_eq!(item.status, OutboxStatus::Pending);
        ids.push(item.id);
    }
    ids
}

pub async fn notifications_are_queued_with_their_fact_for_subscribed_channels<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    store
        .set_subscriptions(&[
            subscription("hook", &[Topic::TicketFailed, Topic::FailedTicketItem]),
            subscription("runs", &[Topic::RunFinished]),
            subscription("telegram", &[Topic::Question]),
        ])
        .await
        .unwrap();
    assert_eq!(store.subscriptions().await.unwrap().len(), 3);
    store
        .create_tickets(&key(), vec![new_ticket("a", Some("luci"))], &change(1))
        .await
        .unwrap();
    let ClaimOutcome::Claimed(run) = store
        .claim(&request(1, 1, Lane::Normal, "a"), &change(2))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(
        rows(&store, "hook").await.is_empty(),
        "a creation and a claim notify nobody"
    );
    assert!(
        rows(&store, "runs").await.is_empty(),
        "a claim starts a run: it is not a run finished"
    );
    let end = RunEnd {
        failure: Some(FailureClass::RuntimeMissing),
        detail: Some("cannot start agent".into()),
        ..RunEnd::default()
    };
    store
        .end_run(
            run.id,
            Attempt::new(1),
            &end,
            &retry(),
            &routes(),
            &change(3),
        )
        .await
        .unwrap();
    let hook = rows(&store, "hook").await;
    let topics: Vec<Topic> = hook.iter().map(|r| r.topic).collect();
    assert_eq!(topics, [Topic::TicketFailed, Topic::FailedTicketItem]);
    let events = store
        .events(&EventQuery {
            since: 0,
            ticket: None,
            limit: 100,
        })
        .await
        .unwrap();
    for row in &hook {
        let event = events
            .iter()
            .find(|e| Some(e.seq) == row.event_seq)
            .expect("the row names its event");
        assert_eq!(row.payload["event"], event.kind.as_str());
        assert_eq!(row.payload["data"], event.data);
        assert_eq!(row.ticket, event.ticket);
        assert_eq!(row.created_at, at(3));
        assert_eq!(row.next_attempt_at, at(3));
    }
    assert!(rows(&store, "telegram").await.is_empty(), "not subscribed");

    // An incident opened by an audit pass: queued only once a channel subscribes to it.
    let pass = |fp: &str| AuditPass {
        findings: vec![dead_finding(fp)],
        ..AuditPass::default()
    };
    store.record_audit(&pass("x"), &change(4)).await.unwrap();
    assert!(rows(&store, "telegram").await.is_empty());
    store
        .set_subscriptions(&[subscription("telegram", &[Topic::IncidentOpened])])
        .await
        .unwrap();
    store.record_audit(&pass("y"), &change(5)).await.unwrap();
    let telegram = rows(&store, "telegram").await;
    assert_eq!(telegram.len(), 1);
    assert_eq!(telegram[0].topic, Topic::IncidentOpened);
    assert_eq!(telegram[0].payload["data"]["fingerprint"], "notify_dead:y");
    // Replacing the subscriptions keeps what is queued.
    assert_eq!(rows(&store, "hook").await.len(), 2);
}

pub async fn claims_are_ordered_leased_and_held_behind_a_retry<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let [a, b, c] = pings(&store, "hook", 3).await[..] else {
        panic!()
    };
    pings(&store, "other", 1).await;
    let lease = Duration::from_secs(1);
    let claimed = store.claim_outbox("hook", at(10), lease, 2).await.unwrap();
    assert_eq!(ids(&claimed), [a, b]);
    assert!(claimed.iter().all(|i| i.lease_until == Some(at(1010))));
    assert!(
        store
            .claim_outbox("hook", at(10), lease, 2)
            .await
            .unwrap()
            .is_empty(),
        "the head is claimed: nothing behind it either"
    );
    store
        .record_deliveries(
            &[sent(a, Some("m1")), result(b, DeliveryOutcome::Released)],
            &change(11),
        )
        .await
        .unwrap();
    let claimed = store.claim_outbox("hook", at(11), lease, 5).await.unwrap();
    assert_eq!(ids(&claimed), [b, c]);
    let retry = DeliveryOutcome::Retry {
        error: "HTTP 500".into(),
        at: at(100),
    };
    store
        .record_deliveries(
            &[result(b, retry), result(c, DeliveryOutcome::Released)],
            &change(12),
        )
        .await
        .unwrap();
    assert_eq!(store.next_outbox_due("hook").await.unwrap(), Some(at(100)));
    assert!(
        store
            .claim_outbox("hook", at(50), lease, 5)
            .await
            .unwrap()
            .is_empty(),
        "c waits behind b's retry: a channel's order holds"
    );
    let claimed = store.claim_outbox("hook", at(100), lease, 5).await.unwrap();
    assert_eq!(ids(&claimed), [b, c]);
    assert_eq!(claimed[0].attempts, 1);
    assert_eq!(claimed[0].last_error.as_deref(), Some("HTTP 500"));
    store
        .record_deliveries(&[sent(b, None), sent(c, None)], &change(101))
        .await
        .unwrap();
    let all = rows(&store, "hook").await;
    assert!(
        all.iter()
            .all(|r| r.status == OutboxStatus::Sent && r.lease_until.is_none())
    );
    assert_eq!(all[0].sent_at, Some(at(11)));
    let attempts = store.outbox_attempts(b).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(!attempts[0].ok && attempts[1].ok);
    assert_eq!(attempts[0].error.as_deref(), Some("HTTP 500"));
    assert_eq!(attempts[0].http_status, Some(200));
    assert_eq!(attempts[0].latency, Duration::from_millis(3));
    assert_eq!(
        store.outbox_attempts(c).await.unwrap().len(),
        1,
        "a release is no attempt"
    );
    assert_eq!(
        store
            .outbox_by_remote("hook", "m1")
            .await
            .unwrap()
            .map(|r| r.id),
        Some(a)
    );
    assert_eq!(store.outbox_by_remote("other", "m1").await.unwrap(), None);
    assert_eq!(store.next_outbox_due("hook").await.unwrap(), None);
    // The other channel was never held back.
    assert_eq!(
        store
            .claim_outbox("other", at(10), lease, 5)
            .await
            .unwrap()
            .len(),
        1
    );
    // A late record of a settled row changes nothing.
    let late = DeliveryOutcome::Retry {
        error: "late".into(),
        at: at(500),
    };
    let after = store
        .record_deliveries(&[result(a, late)], &change(200))
        .await
        .unwrap();
    assert_eq!(after[0].status, OutboxStatus::Sent);
    assert_eq!(store.outbox_attempts(a).await.unwrap().len(), 1);
}

pub async fn an_expired_lease_delivers_again_under_the_same_id_and_survives_a_restart<
    B: Backend,
>() {
    let mut t = B::fresh().await;
    let store = t.store();
    let [x] = pings(&store, "hook", 1).await[..] else {
        panic!()
    };
    let lease = Duration::from_millis(100);
    assert_eq!(
        ids(&store.claim_outbox("hook", at(10), lease, 1).await.unwrap()),
        [x]
    );
    // The sender delivered, then died before recording: nothing is written.
    drop(store);
    t.reopen().await;
    let store = t.store();
    assert!(
        store
            .claim_outbox("hook", at(50), lease, 1)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.next_outbox_due("hook").await.unwrap(), Some(at(110)));
    let again = store.claim_outbox("hook", at(110), lease, 1).await.unwrap();
    assert_eq!(ids(&again), [x], "the same row, the same id");
    assert_eq!(again[0].attempts, 0);
    store
        .record_deliveries(&[sent(x, None)], &change(111))
        .await
        .unwrap();
    assert!(
        store
            .claim_outbox("hook", at(1000), lease, 1)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn a_dead_notification_opens_its_incident_in_the_same_transaction<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let [x, y] = pings(&store, "hook", 2).await[..] else {
        panic!()
    };
    let lease = Duration::from_secs(1);
    store.claim_outbox("hook", at(10), lease, 1).await.unwrap();
    let before = store.last_event_seq().await.unwrap();
    let dead = |error: &str| DeliveryOutcome::Dead {
        error: error.to_owned(),
        finding: dead_finding("hook"),
    };
    let after = store
        .record_deliveries(&[result(x, dead("HTTP 503"))], &change(20))
        .await
        .unwrap();
    assert_eq!(after[0].status, OutboxStatus::Dead);
    assert_eq!(after[0].attempts, 1);
    let events = store
        .events(&EventQuery {
            since: before,
            ticket: None,
            limit: 10,
        })
        .await
        .unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["incident.opened"]);
    let open = store
        .incidents(&IncidentFilter {
            limit: 10,
            ..IncidentFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].fingerprint.to_string(), "notify_dead:hook");
    // The dead row no longer holds the channel back; the next one dying counts again.
    assert_eq!(
        ids(&store.claim_outbox("hook", at(21), lease, 5).await.unwrap()),
        [y]
    );
    store
        .record_deliveries(&[result(y, dead("timed out"))], &change(22))
        .await
        .unwrap();
    let (incident, occurrences) = store.incident(open[0].id, 10).await.unwrap();
    assert_eq!(incident.occurrences, 2);
    assert_eq!(occurrences.len(), 2);
    let dead_rows = store
        .outbox(&OutboxFilter {
            status: Some(OutboxStatus::Dead),
            limit: 10,
            ..OutboxFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&dead_rows), [y, x]);
}

pub async fn cursors_only_move_forward_and_count_what_was_ignored<B: Backend>() {
    let mut t = B::fresh().await;
    let store = t.store();
    assert_eq!(store.notify_cursor("telegram").await.unwrap(), None);
    store.advance_notify_cursor("telegram", 5, 2).await.unwrap();
    store.advance_notify_cursor("telegram", 3, 1).await.unwrap();
    drop(store);
    t.reopen().await;
    let store = t.store();
    assert_eq!(store.notify_cursor("telegram").await.unwrap(), Some(5));
    assert_eq!(
        store.notify_cursor("telegram.ignored").await.unwrap(),
        Some(3)
    );
}
