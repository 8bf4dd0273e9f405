//! The inbox through the store's traits: questions become items and answers act on them, an
//! item is acted only with its action (once), deliveries take a lease that expires back to
//! pending and, used up, fail the item with an alert; a failed ticket raises an item in the
//! transaction that fails it. And the inbox as a property test through the real store.

use super::Backend;
use super::runs::{id, request, retry, routes};
use crate::common::{change, key, new_ticket};
use mission_core::inbox::InboxStatus;
use mission_core::review::ReviewRules;
use mission_core::{
    ActionKind, Addressee, Attempt, FailureClass, InboxId, InboxKind, InboxPolicy, Lane, Name,
    NewInboxItem, Reviewer, ReviewerKind, State, Timestamp,
};
use mission_store::Store;
use mission_store::{
    ActOnItem, ClaimOutcome, Delivered, EventQuery, InboxFilter, RunEnd, StoreError,
};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use std::sync::Arc;
use std::time::Duration;

fn operator() -> Reviewer {
    Reviewer {
        name: Name::parse("operator").unwrap(),
        kind: ReviewerKind::Human,
    }
}

fn council() -> Reviewer {
    Reviewer {
        name: Name::parse("council").unwrap(),
        kind: ReviewerKind::Worker,
    }
}

fn policy(max_deliveries: u32) -> InboxPolicy {
    InboxPolicy {
        worker_lease: Duration::from_millis(100),
        channel_lease: Duration::from_millis(100),
        max_deliveries,
        ..InboxPolicy::default()
    }
}

struct Acts {
    rules: ReviewRules,
    routes: mission_core::proof::InboxRoutes,
}

impl Acts {
    fn new() -> Self {
        Acts {
            rules: ReviewRules::default(),
            routes: routes(),
        }
    }

    fn act(
        &self,
        item: InboxId,
        action: ActionKind,
        text: Option<&str>,
        by: Reviewer,
        token: Option<&str>,
    ) -> ActOnItem<'_> {
        ActOnItem {
            item,
            action,
            text: text.map(str::to_owned),
            by,
            token_hash: token.map(str::to_owned),
            rules: &self.rules,
            max_attempts: 3,
            routes: &self.routes,
        }
    }
}

async fn kinds(store: &Arc<dyn Store>, since: i64) -> Vec<String> {
    store
        .events(&EventQuery {
            since,
            limit: 1000,
            ticket: None,
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

pub async fn questions_become_items_and_answers_act_on_them<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let acts = Acts::new();
    store
        .create_tickets(
            &key(),
            vec![new_ticket("a", Some("luci")), new_ticket("b", Some("luci"))],
            &change(1),
        )
        .await
        .unwrap();
    let mut items = Vec::new();
    for (n, at) in [(1, 2), (2, 3)] {
        let ClaimOutcome::Claimed(run) = store
            .claim(&request(n, 1, Lane::Normal, &format!("t{n}")), &change(at))
            .await
            .unwrap()
        else {
            panic!()
        };
        let before = store.last_event_seq().await.unwrap();
        store
            .run_ask(
                run.id,
                Attempt::new(1),
                "Which branch?",
                &routes(),
                &change(at),
            )
            .await
            .unwrap();
        assert_eq!(
            kinds(&store, before).await,
            ["ticket.moved", "inbox.created"],
            "the question and its item in one transaction"
        );
        let item = store
            .inbox_items(&InboxFilter {
                ticket: Some(id(n)),
                ..InboxFilter::default()
            })
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(item.kind, InboxKind::Question);
        assert_eq!(item.text, "Which branch?");
        assert_eq!(item.addressee, routes().questions);
        items.push(item);
    }

    // `ticket answer` acts on the item: answered, in the same transaction.
    let before = store.last_event_seq().await.unwrap();
    store.answer(&id(1), "main", &change(5)).await.unwrap();
    assert_eq!(kinds(&store, before).await, ["ticket.moved", "inbox.acted"]);
    let answered = store.inbox_item(items[0].id).await.unwrap();
    let action = answered.action().unwrap();
    assert_eq!(
        (action.kind, action.text.as_deref()),
        (ActionKind::Answered, Some("main"))
    );
    assert_eq!(action.ticket, Some(id(1)));

    // Acting on the item answers the question: the ticket goes back for the needs-input lane.
    let acted = store
        .act_on_inbox_item(
            &acts.act(
                items[1].id,
                ActionKind::Answered,
                Some("develop"),
                operator(),
                None,
            ),
            &change(6),
        )
        .await
        .unwrap();
    assert_eq!(acted.action.kind, ActionKind::Answered);
    let ticket = store.ticket(&id(2)).await.unwrap();
    assert_eq!((ticket.state, ticket.resume), (State::Todo, true));
    let context = store.resume_context(&id(2)).await.unwrap().unwrap();
    assert_eq!(context.answer, "develop");
    // Settled: a second action is refused and writes nothing.
    let before = store.last_event_seq().await.unwrap();
    let again = store
        .act_on_inbox_item(
            &acts.act(items[1].id, ActionKind::Dismissed, None, operator(), None),
            &change(7),
        )
        .await;
    assert!(matches!(again, Err(StoreError::Inbox(_))), "{again:?}");
    assert_eq!(store.last_event_seq().await.unwrap(), before);
}

pub async fn an_item_is_acted_once_only_with_its_action_and_its_effect<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let acts = Acts::new();
    store
        .create_tickets(&key(), vec![new_ticket("a", Some("luci"))], &change(1))
        .await
        .unwrap();
    let new = |kind| {
        NewInboxItem::new(
            kind,
            Some(id(1)),
            Addressee::Channel(Name::parse("operator").unwrap()),
            "look",
        )
        .unwrap()
    };
    let alert = store
        .create_inbox_item(&new(InboxKind::Alert), &change(2))
        .await
        .unwrap();
    assert_eq!(alert.status(), InboxStatus::Pending);
    // An action the kind does not allow, or without its text, is refused and writes nothing.
    let before = store.last_event_seq().await.unwrap();
    for (action, text) in [
        (ActionKind::Answered, Some("x")),
        (ActionKind::Approved, None),
    ] {
        let refused = store
            .act_on_inbox_item(
                &acts.act(alert.id, action, text, operator(), None),
                &change(3),
            )
            .await;
        assert!(refused.is_err(), "{action}");
    }
    assert_eq!(store.last_event_seq().await.unwrap(), before);
    // Requeue: the action and its effect on the ticket commit together (todo → todo is no move,
    // so the whole action is refused).
    let refused = store
        .act_on_inbox_item(
            &acts.act(alert.id, ActionKind::Requeued, None, operator(), None),
            &change(4),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Transition { .. })),
        "{refused:?}"
    );
    assert_eq!(
        store.inbox_item(alert.id).await.unwrap().status(),
        InboxStatus::Pending,
        "a refused effect leaves the item as it was"
    );
    store
        .move_ticket(
            &id(1),
            &crate::common::operator_move(State::Blocked),
            &change(5),
        )
        .await
        .unwrap();
    let before = store.last_event_seq().await.unwrap();
    let acted = store
        .act_on_inbox_item(
            &acts.act(
                alert.id,
                ActionKind::Requeued,
                Some("try again"),
                operator(),
                None,
            ),
            &change(6),
        )
        .await
        .unwrap();
    assert_eq!(acted.item.status(), InboxStatus::Acted);
    assert_eq!(acted.action.actor.as_str(), "test");
    assert_eq!(store.ticket(&id(1)).await.unwrap().state, State::Todo);
    assert_eq!(kinds(&store, before).await, ["ticket.moved", "inbox.acted"]);
    // Read back (e.g. after a restart), an acted item carries its action.
    let read = store.inbox_item(alert.id).await.unwrap();
    assert_eq!(read.action(), Some(&acted.action));
    assert!(matches!(
        store.inbox_item(InboxId::new(999)).await,
        Err(StoreError::InboxNotFound(_))
    ));
}

pub async fn deliveries_lease_expire_redeliver_and_fail_with_an_alert<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let acts = Acts::new();
    store
        .create_tickets(&key(), vec![new_ticket("a", Some("luci"))], &change(1))
        .await
        .unwrap();
    let item = store
        .create_inbox_item(
            &NewInboxItem::new(
                InboxKind::Alert,
                Some(id(1)),
                Addressee::Worker(Name::parse("council").unwrap()),
                "decide",
            )
            .unwrap(),
            &change(2),
        )
        .await
        .unwrap();
    let p = policy(2);
    let Delivered::Delivered { delivery, .. } = store
        .deliver_inbox_item(item.id, &p, Some("tok1"), &change(10))
        .await
        .unwrap()
    else {
        panic!("not delivered")
    };
    assert_eq!(delivery.delivery, 1);
    assert_eq!(delivery.lease_expires_at, Timestamp::from_millis(110));
    assert_eq!(
        store
            .inbox_item_for_token("tok1")
            .await
            .unwrap()
            .unwrap()
            .id,
        item.id
    );
    // Delivered already: not again.
    assert!(
        store
            .deliver_inbox_item(item.id, &p, Some("tok2"), &change(11))
            .await
            .is_err()
    );
    // Only the worker it was delivered to, under that delivery's token, acts as a worker.
    for token in [None, Some("other")] {
        let refused = store
            .act_on_inbox_item(
                &acts.act(item.id, ActionKind::Dismissed, None, council(), token),
                &change(12),
            )
            .await;
        assert!(refused.is_err(), "{token:?}");
    }
    // The handler died: nothing before the lease runs out...
    assert!(
        store
            .expire_inbox_leases(&p, &change(109))
            .await
            .unwrap()
            .is_empty()
    );
    // ...then back to pending, and the old token acts no more.
    let before = store.last_event_seq().await.unwrap();
    let expired = store.expire_inbox_leases(&p, &change(110)).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].item.status(), InboxStatus::Pending);
    assert_eq!(kinds(&store, before).await, ["inbox.expired"]);
    assert!(store.inbox_item_for_token("tok1").await.unwrap().is_none());
    // Redelivered; its second lease runs out too: deliveries used up, it fails. An alert about
    // an alert would cascade, so none is raised for it.
    store
        .deliver_inbox_item(item.id, &p, Some("tok3"), &change(200))
        .await
        .unwrap();
    let failed = store.expire_inbox_leases(&p, &change(300)).await.unwrap();
    assert_eq!(failed[0].item.status(), InboxStatus::Failed);
    assert!(failed[0].alert.is_none());

    // A question that is never acted on fails and raises an alert for the operator.
    let question = store
        .create_inbox_item(
            &NewInboxItem::new(
                InboxKind::Approval,
                Some(id(1)),
                Addressee::Worker(Name::parse("council").unwrap()),
                "merge?",
            )
            .unwrap(),
            &change(400),
        )
        .await
        .unwrap();
    let p1 = policy(1);
    store
        .deliver_inbox_item(question.id, &p1, Some("tok4"), &change(401))
        .await
        .unwrap();
    let before = store.last_event_seq().await.unwrap();
    let failed = store.expire_inbox_leases(&p1, &change(600)).await.unwrap();
    let alert = failed[0].alert.clone().unwrap();
    assert_eq!(alert.kind, InboxKind::Alert);
    assert_eq!(alert.addressee, p1.alert_to);
    assert_eq!(
        kinds(&store, before).await,
        ["inbox.created", "inbox.failed"]
    );
    // A delivered item acted on by its worker under its token.
    let third = store
        .create_inbox_item(
            &NewInboxItem::new(
                InboxKind::Alert,
                None,
                Addressee::Worker(Name::parse("council").unwrap()),
                "fyi",
            )
            .unwrap(),
            &change(700),
        )
        .await
        .unwrap();
    store
        .deliver_inbox_item(third.id, &p, Some("tok5"), &change(701))
        .await
        .unwrap();
    let acted = store
        .act_on_inbox_item(
            &acts.act(
                third.id,
                ActionKind::Dismissed,
                None,
                council(),
                Some("tok5"),
            ),
            &change(702),
        )
        .await
        .unwrap();
    assert_eq!(acted.action.kind, ActionKind::Dismissed);
    assert!(
        store
            .expire_inbox_leases(&p, &change(10_000))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn a_ticket_that_fails_raises_an_item_in_the_same_transaction<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
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
    let end = RunEnd {
        failure: Some(FailureClass::RuntimeMissing),
        detail: Some("cannot start agent".into()),
        ..RunEnd::default()
    };
    let before = store.last_event_seq().await.unwrap();
    let ended = store
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
    assert_eq!(ended.ticket_state, State::Failed);
    assert_eq!(
        kinds(&store, before).await,
        ["ticket.moved", "inbox.created"]
    );
    let item = store
        .inbox_items(&InboxFilter::default())
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(item.kind, InboxKind::FailedTicket);
    assert_eq!(item.addressee, routes().failures);
    assert!(item.text.contains("runtime_missing"), "{}", item.text);
}

#[derive(Clone, Debug)]
enum Op {
    Deliver(usize),
    Act(usize, ActionKind),
    /// A handler was delivered the item and died before acting: nothing of it is written.
    Crash(usize),
    /// Time passes, then expired leases are reaped.
    Tick(i64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<usize>().prop_map(Op::Deliver),
        3 => (any::<usize>(), prop::sample::select(vec![
            ActionKind::Dismissed, ActionKind::Escalated, ActionKind::Approved, ActionKind::Answered,
        ])).prop_map(|(i, a)| Op::Act(i, a)),
        2 => any::<usize>().prop_map(Op::Crash),
        3 => (0..300i64).prop_map(Op::Tick),
        1 => Just(Op::Reopen),
    ]
}

async fn run_property<B: Backend>(
    items: usize,
    max: u32,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let mut t = B::fresh().await;
    let mut store = t.store();
    let acts = Acts::new();
    let p = policy(max);
    let worker = Addressee::Worker(Name::parse("council").unwrap());
    store
        .create_tickets(&key(), vec![new_ticket("t", None)], &change(0))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..items {
        // Alerts about nothing, and approvals about the ticket.
        let (kind, ticket) =
            [(InboxKind::Alert, None), (InboxKind::Approval, Some(id(1)))][i % 2].clone();
        let new = NewInboxItem::new(kind, ticket, worker.clone(), "decide").unwrap();
        ids.push(store.create_inbox_item(&new, &change(0)).await.unwrap().id);
    }
    let mut now = 1;
    let mut tokens: Vec<Option<String>> = vec![None; items];
    let mut serial = 0;
    for op in ops {
        match op {
            Op::Deliver(i) | Op::Crash(i) => {
                let i = i % items;
                let token = format!("token-{serial}");
                serial += 1;
                let got = store
                    .deliver_inbox_item(ids[i], &p, Some(&token), &change(now))
                    .await;
                if let Ok(Delivered::Delivered { .. }) = got {
                    tokens[i] = Some(token);
                }
            }
            Op::Act(i, action) => {
                let i = i % items;
                let text = matches!(action, ActionKind::Answered).then_some("yes");
                let token = tokens[i].clone();
                let _ = store
                    .act_on_inbox_item(
                        &acts.act(ids[i], action, text, council(), token.as_deref()),
                        &change(now),
                    )
                    .await;
            }
            Op::Tick(ms) => {
                now += ms;
                store.expire_inbox_leases(&p, &change(now)).await.unwrap();
            }
            Op::Reopen => {
                drop(store);
                t.reopen().await;
                store = t.store();
            }
        }
        check(&store, &ids, max).await?;
    }
    // Nobody acts any more; deliveries and expiries go on: every item settles.
    for (i, item) in ids.iter().enumerate() {
        for _ in 0..=(2 * max + 1) {
            let current = store.inbox_item(*item).await.unwrap();
            match current.status() {
                InboxStatus::Acted | InboxStatus::Failed => break,
                InboxStatus::Pending => {
                    store
                        .deliver_inbox_item(
                            *item,
                            &p,
                            Some(&format!("final-{i}-{now}")),
                            &change(now),
                        )
                        .await
                        .unwrap();
                }
                InboxStatus::Delivered => {
                    now += 1000;
                    store.expire_inbox_leases(&p, &change(now)).await.unwrap();
                }
            }
        }
        let settled = store.inbox_item(*item).await.unwrap().status();
        prop_assert!(settled.is_settled(), "item {item} never settles: {settled}");
    }
    check(&store, &ids, max).await?;
    store.close().await;
    Ok(())
}

/// After every step: an item is acted exactly when one `inbox.acted` event (and one action)
/// exists for it; never more than one; deliveries never exceed the maximum.
async fn check(store: &Arc<dyn Store>, ids: &[InboxId], max: u32) -> Result<(), TestCaseError> {
    let events = store
        .events(&EventQuery {
            since: 0,
            limit: 100_000,
            ticket: None,
        })
        .await
        .unwrap();
    for id in ids {
        let item = store.inbox_item(*id).await.unwrap();
        let acted = events
            .iter()
            .filter(|e| e.kind == "inbox.acted" && e.data["item"] == id.get())
            .count();
        prop_assert!(acted <= 1, "two actions for item {id}");
        prop_assert_eq!(
            item.status() == InboxStatus::Acted,
            acted == 1,
            "item {}",
            id
        );
        prop_assert_eq!(item.status() == InboxStatus::Acted, item.action().is_some());
        prop_assert!(item.deliveries() <= max);
    }
    Ok(())
}

/// The inbox through the real store under random deliveries, actions, handler crashes, lease
/// expiries and reopens (32 cases).
pub fn the_inbox_never_fakes_or_loses_an_action<B: Backend>() {
    let config = ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let strategy = (1..4usize, 1..4u32, prop::collection::vec(op(), 0..40));
    let result = runner.run(&strategy, |(items, max, ops)| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run_property::<B>(items, max, ops))
    });
    if let Err(failure) = result {
        panic!("{failure}\n{runner}");
    }
}

/// Three handles (as three nodes) deliver one item at once, then act on it at once: it is
/// delivered once and acted on once, with one action and one event each; the others are
/// refused as conflicts and write nothing.
pub async fn concurrent_writers_deliver_and_act_on_an_item_once<B: Backend>() {
    let t = B::fresh().await;
    let handles = [t.store(), t.connect().await, t.connect().await];
    let store = &handles[0];
    let acts = Acts::new();
    let item = store
        .create_inbox_item(
            &NewInboxItem::new(
                InboxKind::Alert,
                None,
                Addressee::Channel(Name::parse("operator").unwrap()),
                "disk low",
            )
            .unwrap(),
            &change(1),
        )
        .await
        .unwrap();
    let before = store.last_event_seq().await.unwrap();
    let policy = policy(3);
    let at = change(2);
    let deliveries = futures_join3(
        handles[0].deliver_inbox_item(item.id, &policy, None, &at),
        handles[1].deliver_inbox_item(item.id, &policy, None, &at),
        handles[2].deliver_inbox_item(item.id, &policy, None, &at),
    )
    .await;
    let delivered = deliveries
        .iter()
        .filter(|d| matches!(d, Ok(Delivered::Delivered { .. })))
        .count();
    assert_eq!(delivered, 1, "{deliveries:?}");
    for refused in deliveries.iter().filter(|d| d.is_err()) {
        let kind = refused.as_ref().unwrap_err().kind();
        assert_eq!(kind, mission_store::ErrorKind::Conflict, "{refused:?}");
    }
    assert_eq!(kinds(store, before).await, ["inbox.delivered"]);

    let before = store.last_event_seq().await.unwrap();
    let act =
        |text: &'static str| acts.act(item.id, ActionKind::Dismissed, Some(text), operator(), None);
    let (first, second, third) = (act("one"), act("two"), act("three"));
    let at = change(3);
    let actions = futures_join3(
        handles[0].act_on_inbox_item(&first, &at),
        handles[1].act_on_inbox_item(&second, &at),
        handles[2].act_on_inbox_item(&third, &at),
    )
    .await;
    let acted: Vec<_> = actions.iter().filter_map(|a| a.as_ref().ok()).collect();
    assert_eq!(acted.len(), 1, "{actions:?}");
    for refused in actions.iter().filter(|a| a.is_err()) {
        let kind = refused.as_ref().unwrap_err().kind();
        assert_eq!(kind, mission_store::ErrorKind::Conflict, "{refused:?}");
    }
    assert_eq!(kinds(store, before).await, ["inbox.acted"]);
    let read = store.inbox_item(item.id).await.unwrap();
    assert_eq!(read.action(), Some(&acted[0].action));
}

/// Runs three futures at once on this task.
async fn futures_join3<T>(
    a: impl std::future::Future<Output = T>,
    b: impl std::future::Future<Output = T>,
    c: impl std::future::Future<Output = T>,
) -> [T; 3] {
    let (a, b, c) = tokio::join!(a, b, c);
    [a, b, c]
}

pub async fn the_health_snapshot_reads_unsettled_and_failed_items<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    store
        .create_tickets(&key(), vec![new_ticket("a", Some("luci"))], &change(1))
        .await
        .unwrap();
    let council = || Addressee::Worker(Name::parse("council").unwrap());
    let first = store
        .create_inbox_item(
            &NewInboxItem::new(InboxKind::Approval, Some(id(1)), council(), "merge?").unwrap(),
            &change(5),
        )
        .await
        .unwrap();
    let second = store
        .create_inbox_item(
            &NewInboxItem::new(InboxKind::Alert, None, council(), "disk").unwrap(),
            &change(7),
        )
        .await
        .unwrap();
    let p = policy(1);
    store
        .fail_inbox_item(second.id, "its addressee is gone", &p, &change(9))
        .await
        .unwrap();
    let workforce = mission_core::Workforce::from_parts(
        &Default::default(),
        &mission_core::config::PolicyConfig::default(),
    )
    .unwrap();
    let inbox = store
        .health_snapshot(&mission_store::HealthQuery {
            now: Timestamp::from_millis(1_000),
            workforce: &workforce,
            tasks: &[],
            runs_per_task: 1,
            waiting_limit: 10,
        })
        .await
        .unwrap()
        .inbox
        .expect("this backend has an inbox");
    // The first is unsettled since its creation; failing the second raised an alert item
    // (unsettled too), and the second is failed since then.
    assert_eq!(inbox.unsettled[0].id, first.id);
    assert_eq!(inbox.unsettled[0].kind, InboxKind::Approval);
    assert_eq!(inbox.unsettled[0].ticket, Some(id(1)));
    assert_eq!(inbox.unsettled[0].since, Timestamp::from_millis(5));
    assert!(inbox.unsettled.iter().all(|i| i.id != second.id));
    assert_eq!(inbox.failed.len(), 1);
    assert_eq!(inbox.failed[0].id, second.id);
    assert_eq!(inbox.failed[0].at, Timestamp::from_millis(9));

    // The filter of the inbox's pages: open items only, a page after a given item.
    let listed = |filter: InboxFilter| {
        let store = store.clone();
        async move {
            store
                .inbox_items(&filter)
                .await
                .unwrap()
                .iter()
                .map(|i| i.id)
                .collect::<Vec<_>>()
        }
    };
    let third = store
        .create_inbox_item(
            &NewInboxItem::new(InboxKind::Question, Some(id(1)), council(), "which?").unwrap(),
            &change(11),
        )
        .await
        .unwrap();
    let all = listed(InboxFilter::default()).await;
    assert_eq!(all, [first.id, second.id, third.id]);
    let open = listed(InboxFilter {
        open: true,
        ..InboxFilter::default()
    })
    .await;
    assert_eq!(open, [first.id, third.id], "the failed one is settled");
    let after = listed(InboxFilter {
        open: true,
        after: Some(first.id),
        limit: Some(1),
        ..InboxFilter::default()
    })
    .await;
    assert_eq!(after, [third.id]);
}
