//! Incidents through the store's traits: an audit pass opens, updates, reopens and auto-resolves
//! with one event per change; an operator resolves with a reason; recurrence after a resolution
//! reopens (as a property over random passes, against the real store).

use super::Backend;
use crate::common::change;
use mission_core::incident::{AutoResolve, CheckName, Finding, IncidentChange, Severity};
use mission_core::{Fingerprint, IncidentId, TicketId, TicketKey};
use mission_store::{AuditPass, ErrorKind, EventQuery, IncidentFilter};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use std::collections::BTreeSet;

fn finding(fingerprint: &str, severity: Severity) -> Finding {
    Finding {
        fingerprint: Fingerprint::parse(fingerprint).unwrap(),
        severity,
        detail: format!("{fingerprint} seen"),
        evidence: serde_json::json!({ "seen": fingerprint }),
        ticket: Some(TicketId::new(&TicketKey::default(), 12)),
    }
}

fn checks(names: &[&str]) -> BTreeSet<CheckName> {
    names.iter().map(|n| CheckName::parse(n).unwrap()).collect()
}

fn pass(findings: Vec<Finding>, checked: &[&str], auto: bool) -> AuditPass {
    AuditPass {
        findings,
        checked: checks(checked),
        auto_resolve: AutoResolve {
            default: auto,
            ..AutoResolve::default()
        },
    }
}

async fn kinds<S: mission_store::EventLog + ?Sized>(store: &S) -> Vec<String> {
    let query = EventQuery {
        since: 0,
        limit: 1000,
        ticket: None,
    };
    store
        .events(&query)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

pub async fn audit_passes_open_update_reopen_and_resolve<B: Backend>() {
    let mut t = B::fresh().await;
    let store = t.store();
    let stuck = finding("stuck_run:MC-12", Severity::Warning);
    let changed = store
        .record_audit(
            &pass(vec![stuck.clone(), stuck.clone()], &["stuck_run"], true),
            &change(10),
        )
        .await
        .unwrap();
    assert_eq!(
        changed.len(),
        1,
        "the same fingerprint twice is one finding"
    );
    let (opened, what) = &changed[0];
    assert_eq!(*what, IncidentChange::Opened);
    assert_eq!((opened.occurrences, opened.is_open()), (1, true));

    // Found again: an update with a second occurrence and its evidence.
    let changed = store
        .record_audit(
            &pass(vec![stuck.clone()], &["stuck_run"], true),
            &change(20),
        )
        .await
        .unwrap();
    assert_eq!(changed[0].1, IncidentChange::Updated);
    assert_eq!(changed[0].0.occurrences, 2);

    // A pass that did not run the check leaves it alone; one that ran it and found nothing
    // resolves it (auto-resolve configured).
    assert!(
        store
            .record_audit(&pass(vec![], &["starvation"], true), &change(25))
            .await
            .unwrap()
            .is_empty()
    );
    let changed = store
        .record_audit(&pass(vec![], &["stuck_run"], true), &change(30))
        .await
        .unwrap();
    assert_eq!(changed[0].1, IncidentChange::Resolved);
    assert!(
        store
            .incidents(&IncidentFilter {
                limit: 10,
                ..IncidentFilter::default()
            })
            .await
            .unwrap()
            .is_empty()
    );

    // The condition is back, after a restart: the same incident reopens, counting it.
    t.reopen().await;
    let store = t.store();
    let changed = store
        .record_audit(
            &pass(vec![stuck.clone()], &["stuck_run"], true),
            &change(40),
        )
        .await
        .unwrap();
    let (reopened, what) = &changed[0];
    assert_eq!(*what, IncidentChange::Reopened);
    assert_eq!(
        (reopened.id, reopened.occurrences, reopened.reopened),
        (opened.id, 3, 1)
    );
    let (incident, occurrences) = store.incident(opened.id, 100).await.unwrap();
    assert_eq!(incident, *reopened);
    let numbers: Vec<u64> = occurrences.iter().map(|o| o.number).collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert_eq!(occurrences[2].evidence, stuck.evidence);
    assert_eq!(
        kinds(store.as_ref()).await,
        [
            "incident.opened",
            "incident.updated",
            "incident.resolved",
            "incident.reopened"
        ]
    );
    let events = store
        .events(&EventQuery {
            since: 0,
            limit: 10,
            ticket: Some(TicketId::new(&TicketKey::default(), 12)),
        })
        .await
        .unwrap();
    assert_eq!(
        events.len(),
        4,
        "incident events name the ticket they are about"
    );
    assert_eq!(events[0].data["fingerprint"], "stuck_run:MC-12");
}

pub async fn without_auto_resolve_an_incident_stays_open_until_an_operator_resolves_it<
    B: Backend,
>() {
    let t = B::fresh().await;
    let store = t.store();
    let disk = finding("probe.disk:/", Severity::Critical);
    let changed = store
        .record_audit(
            &pass(vec![disk.clone()], &["probe.disk"], false),
            &change(1),
        )
        .await
        .unwrap();
    let id = changed[0].0.id;
    assert!(
        store
            .record_audit(&pass(vec![], &["probe.disk"], false), &change(2))
            .await
            .unwrap()
            .is_empty(),
        "cleared, but the check does not auto-resolve"
    );
    let empty = store
        .resolve_incident(id, "  ", &change(3))
        .await
        .unwrap_err();
    assert_eq!(empty.kind(), ErrorKind::Invalid);
    let resolved = store
        .resolve_incident(id, "disk cleaned", &change(4))
        .await
        .unwrap();
    assert!(!resolved.is_open());
    let again = store
        .resolve_incident(id, "again", &change(5))
        .await
        .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Conflict);
    let missing = store
        .resolve_incident(IncidentId::new(999), "x", &change(6))
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    let all = store
        .incidents(&IncidentFilter {
            all: true,
            limit: 10,
            ..IncidentFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    let events = store
        .events(&EventQuery {
            since: 0,
            limit: 10,
            ticket: None,
        })
        .await
        .unwrap();
    let resolved_event = events.last().unwrap();
    assert_eq!(resolved_event.kind, "incident.resolved");
    assert_eq!(resolved_event.data["resolution"]["reason"], "disk cleaned");
    assert_eq!(resolved_event.actor, "test");
}

/// Two audits (two handles, as two processes) record the same new condition at once: one
/// incident, opened once, updated once — the fingerprint is unique and each pass plans inside
/// its write transaction.
pub async fn concurrent_audits_open_one_incident<B: Backend>() {
    let t = B::fresh().await;
    let (a, b) = (t.store(), t.connect().await);
    let f = finding("starvation:MC-3", Severity::Warning);
    let (pa, pb) = (
        pass(vec![f.clone()], &["starvation"], true),
        pass(vec![f], &["starvation"], true),
    );
    let at = change(1);
    let (ra, rb) = tokio::join!(a.record_audit(&pa, &at), b.record_audit(&pb, &at));
    let mut changes: Vec<IncidentChange> = ra
        .unwrap()
        .into_iter()
        .chain(rb.unwrap())
        .map(|(_, c)| c)
        .collect();
    changes.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(changes, [IncidentChange::Opened, IncidentChange::Updated]);
    assert_eq!(
        kinds(a.as_ref()).await,
        ["incident.opened", "incident.updated"]
    );
}

#[derive(Clone, Copy, Debug)]
enum Op {
    /// An audit pass found the condition.
    Found,
    /// An audit pass ran the check and did not find it.
    Cleared { auto: bool },
    /// An operator resolved it.
    Resolve,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Found),
        2 => any::<bool>().prop_map(|auto| Op::Cleared { auto }),
        1 => Just(Op::Resolve),
    ]
}

async fn recurrence<B: Backend>(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let t = B::fresh().await;
    let store = t.store();
    let f = finding("task_churn:dispatch", Severity::Warning);
    // The model: occurrences, open or not, reopenings.
    let (mut occurrences, mut open, mut reopened) = (0u64, false, 0u64);
    let mut id = None;
    for (step, op) in ops.into_iter().enumerate() {
        let at = change(step as i64 + 1);
        match op {
            Op::Found => {
                let changed = store
                    .record_audit(&pass(vec![f.clone()], &["task_churn"], true), &at)
                    .await
                    .unwrap();
                let expect = match (id.is_some(), open) {
                    (false, _) => IncidentChange::Opened,
                    (true, true) => IncidentChange::Updated,
                    (true, false) => IncidentChange::Reopened,
                };
                if expect == IncidentChange::Reopened {
                    reopened += 1;
                }
                occurrences += 1;
                open = true;
                prop_assert_eq!(changed.len(), 1);
                prop_assert_eq!(changed[0].1, expect);
                id = Some(changed[0].0.id);
            }
            Op::Cleared { auto } => {
                let changed = store
                    .record_audit(&pass(vec![], &["task_churn"], auto), &at)
                    .await
                    .unwrap();
                let resolves = open && auto;
                prop_assert_eq!(changed.len(), usize::from(resolves));
                open &= !resolves;
            }
            Op::Resolve => {
                if let Some(id) = id {
                    let resolved = store.resolve_incident(id, "handled", &at).await;
                    prop_assert_eq!(resolved.is_ok(), open);
                    open = false;
                }
            }
        }
        if let Some(id) = id {
            let (incident, list) = store.incident(id, 1000).await.unwrap();
            prop_assert_eq!(incident.occurrences, occurrences);
            prop_assert_eq!(list.len() as u64, occurrences);
            prop_assert_eq!(incident.is_open(), open);
            prop_assert_eq!(incident.reopened, reopened);
        }
    }
    store.close().await;
    Ok(())
}

/// Open → resolve (by an operator or by clearing) → recur → reopen, in any order, through the
/// real store: every occurrence is counted and kept, every recurrence reopens.
pub fn incident_recurrence_holds<B: Backend>() {
    let config = ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&prop::collection::vec(op(), 1..30), |ops| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(recurrence::<B>(ops))
    });
    if let Err(failure) = result {
        panic!("{failure}\n{runner}");
    }
}
