//! Evidence, the gate and review through the store's traits: records fenced and written with one
//! event each, the gate deciding in one transaction on fresh verifications, reviews only from
//! non-authors, a rejection sending the ticket back (or failing it with an inbox item), an
//! oversized diff asking a human.

use super::Backend;
use super::runs::{id, request, retry, routes};
use crate::common::{change, key, new_ticket};
use mission_core::evidence::{CommitEvidence, TestEvidence};
use mission_core::review::{ReviewDecision, ReviewEffect, ReviewRules};
use mission_core::{
    Attempt, CommitSha, Evidence, EvidenceId, GateDecision, InboxKind, Lane, Name, Reviewer,
    ReviewerKind, State, Timestamp, Verification,
};
use mission_store::Store;
use mission_store::{
    ClaimOutcome, EventQuery, Fence, GateRequest, InboxFilter, Observation, RecordEvidence,
    RecordReview, StoreError, Verdict,
};
use std::sync::Arc;

fn commit(c: char) -> Evidence {
    Evidence::Commit(CommitEvidence {
        sha: CommitSha::parse(&c.to_string().repeat(40)).unwrap(),
    })
}

fn test_run(exit: i32) -> Evidence {
    Evidence::Test(TestEvidence {
        name: Name::parse("unit").unwrap(),
        at_commit: None,
        exit_code: Some(exit),
        duration_ms: 5,
        output_tail: mission_core::evidence::OutputTail::of(b"ok\n"),
        output_sha256: mission_core::evidence::Sha256Hex::parse(&"0".repeat(64)).unwrap(),
    })
}

fn verified(at: i64) -> Verification {
    Verification::Verified {
        at: Timestamp::from_millis(at),
    }
}

fn failed(at: i64, reason: &str) -> Verification {
    Verification::Failed {
        at: Timestamp::from_millis(at),
        reason: reason.to_owned(),
    }
}

fn seen(evidence: Evidence, verification: Verification) -> Observation {
    Observation {
        evidence,
        verification,
    }
}

fn reviewer(name: &str, kind: ReviewerKind) -> Reviewer {
    Reviewer {
        name: Name::parse(name).unwrap(),
        kind,
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

/// MC-1 for luci with `body`, claimed and submitted: in review at attempt 1.
async fn in_review(store: &Arc<dyn Store>, body: &str) -> mission_core::Run {
    let mut ticket = new_ticket("t", Some("luci"));
    ticket.body = body.to_owned();
    store
        .create_tickets(&key(), vec![ticket], &change(1))
        .await
        .unwrap();
    let ClaimOutcome::Claimed(run) = store
        .claim(&request(1, 1, Lane::Normal, "a"), &change(2))
        .await
        .unwrap()
    else {
        panic!("not claimed")
    };
    store
        .run_submit(run.id, Attempt::new(1), &change(3))
        .await
        .unwrap();
    *run
}

fn gate_request(rules: &ReviewRules, since: i64, close: bool) -> GateRequest<'_> {
    GateRequest {
        ticket: id(1),
        new: vec![],
        reverified: vec![],
        verified_since: Timestamp::from_millis(since),
        review: rules,
        close,
    }
}

pub async fn evidence_is_fenced_and_recorded_with_one_event_each<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    store
        .create_tickets(&key(), vec![new_ticket("t", Some("luci"))], &change(1))
        .await
        .unwrap();
    let ClaimOutcome::Claimed(run) = store
        .claim(&request(1, 1, Lane::Normal, "a"), &change(2))
        .await
        .unwrap()
    else {
        panic!()
    };
    let before = store.last_event_seq().await.unwrap();
    let records = store
        .record_evidence(
            &RecordEvidence {
                ticket: id(1),
                fence: Fence::LiveRun {
                    run: run.id,
                    attempt: Attempt::new(1),
                },
                observations: vec![
                    seen(commit('a'), verified(3)),
                    seen(test_run(1), failed(3, "last run exited 1")),
                ],
            },
            &change(3),
        )
        .await
        .unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(
        kinds(&store, before).await,
        ["evidence.recorded", "evidence.recorded"]
    );
    let listed = store.evidence_of(&id(1)).await.unwrap();
    assert_eq!(listed, records, "read back as written");
    assert_eq!(listed[1].verification.failure(), Some("last run exited 1"));

    // A superseded attempt, or a run that ended, attaches nothing.
    store
        .run_submit(run.id, Attempt::new(1), &change(4))
        .await
        .unwrap();
    let late = store
        .record_evidence(
            &RecordEvidence {
                ticket: id(1),
                fence: Fence::LiveRun {
                    run: run.id,
                    attempt: Attempt::new(1),
                },
                observations: vec![seen(commit('b'), verified(5))],
            },
            &change(5),
        )
        .await;
    assert!(matches!(late, Err(StoreError::Fenced { .. })), "{late:?}");
    // The harness may still record about the current attempt after the run ended...
    store
        .record_evidence(
            &RecordEvidence {
                ticket: id(1),
                fence: Fence::Attempt(Attempt::new(1)),
                observations: vec![seen(commit('c'), verified(6))],
            },
            &change(6),
        )
        .await
        .unwrap();
    // ...but not about an old one.
    let stale = store
        .record_evidence(
            &RecordEvidence {
                ticket: id(1),
                fence: Fence::Attempt(Attempt::new(7)),
                observations: vec![seen(commit('d'), verified(7))],
            },
            &change(7),
        )
        .await;
    assert!(stale.is_err());
    assert_eq!(store.evidence_of(&id(1)).await.unwrap().len(), 3);
}

pub async fn the_gate_decides_on_fresh_evidence_and_prose_counts_for_nothing<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    // The body claims the work is done: it has no way into the gate.
    in_review(&store, "fixed, verified. All tests pass. Resolved.").await;
    let rules = ReviewRules::default();

    let before = store.last_event_seq().await.unwrap();
    let outcome = store
        .decide_gate(&gate_request(&rules, 10, true), &change(10))
        .await
        .unwrap();
    assert_eq!(
        outcome.decision,
        GateDecision::Refused(vec![mission_core::Missing {
            requirement: "commit".into(),
            detail: "no commit reachable from mission/MC-1 (none recorded)".into(),
        }])
    );
    assert_eq!(outcome.ticket.state, State::Review);
    assert_eq!(
        store.last_event_seq().await.unwrap(),
        before,
        "nothing written"
    );

    // A commit recorded earlier counts only re-verified for this decision.
    let records = store
        .record_evidence(
            &RecordEvidence {
                ticket: id(1),
                fence: Fence::Attempt(Attempt::new(1)),
                observations: vec![seen(commit('a'), verified(11))],
            },
            &change(11),
        )
        .await
        .unwrap();
    let stale = store
        .decide_gate(&gate_request(&rules, 20, true), &change(20))
        .await
        .unwrap();
    assert!(!stale.decision.is_open());
    assert!(
        stale.decision.missing()[0]
            .detail
            .contains("not re-verified for this decision"),
        "{:?}",
        stale.decision
    );

    // Re-verified and found gone from the branch: refused, and the failure is on record.
    let mut vanished = gate_request(&rules, 30, true);
    vanished.reverified = vec![(
        records[0].id,
        failed(30, "aaaaaaaaaaaa is not reachable from mission/MC-1"),
    )];
    let before = store.last_event_seq().await.unwrap();
    let outcome = store.decide_gate(&vanished, &change(30)).await.unwrap();
    assert_eq!(
        outcome.decision.missing()[0].to_string(),
        "commit: aaaaaaaaaaaa is not reachable from mission/MC-1"
    );
    assert_eq!(kinds(&store, before).await, ["evidence.failed"]);

    // A record of another ticket cannot be re-verified through this one.
    let mut foreign = gate_request(&rules, 35, true);
    foreign.reverified = vec![(EvidenceId::new(999), verified(35))];
    assert!(store.decide_gate(&foreign, &change(35)).await.is_err());

    // Re-verified now: the gate opens and moves the ticket, once.
    let mut fresh = gate_request(&rules, 40, true);
    fresh.reverified = vec![(records[0].id, verified(40))];
    let before = store.last_event_seq().await.unwrap();
    let outcome = store.decide_gate(&fresh, &change(40)).await.unwrap();
    assert!(outcome.decision.is_open());
    assert_eq!(outcome.ticket.state, State::Done);
    assert_eq!(
        kinds(&store, before).await,
        ["evidence.verified", "ticket.moved"]
    );
    let moved = store
        .events(&EventQuery {
            since: before,
            limit: 10,
            ticket: None,
        })
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(moved.data["via"], "gate");
    assert_eq!(moved.data["evidence"][0], records[0].id.get());
    // Done is final: the gate is not asked again.
    let again = store.decide_gate(&fresh, &change(41)).await;
    assert!(matches!(again, Err(StoreError::Transition { .. })));
}

pub async fn a_decision_without_close_records_but_does_not_move<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    in_review(&store, "").await;
    let rules = ReviewRules::default();
    let mut request = gate_request(&rules, 10, false);
    request.new = vec![seen(commit('a'), verified(10))];
    let outcome = store.decide_gate(&request, &change(10)).await.unwrap();
    assert!(outcome.decision.is_open());
    assert_eq!(outcome.ticket.state, State::Review);
    assert_eq!(outcome.recorded.len(), 1);
    let closed = store
        .decide_gate(&gate_request(&rules, 10, true), &change(11))
        .await
        .unwrap();
    assert_eq!(closed.ticket.state, State::Done);
}

fn auto() -> ReviewRules {
    ReviewRules {
        default: mission_core::ReviewMode::Auto,
        ..ReviewRules::default()
    }
}

fn verdict(decision: ReviewDecision, reason: &str, by: Reviewer) -> Verdict {
    Verdict::Decision {
        decision,
        reason: reason.to_owned(),
        reviewer: by,
    }
}

fn review<'a>(
    rules: &'a ReviewRules,
    routes: &'a mission_core::proof::InboxRoutes,
    verdict: Verdict,
    max_attempts: u32,
) -> RecordReview<'a> {
    RecordReview {
        ticket: id(1),
        attempt: Attempt::new(1),
        verdict,
        request: None,
        rules,
        max_attempts,
        routes,
    }
}

pub async fn the_author_cannot_approve_and_an_approval_opens_the_gate<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    in_review(&store, "").await;
    let (rules, routes) = (auto(), routes());
    store
        .record_evidence(
            &RecordEvidence {
                ticket: id(1),
                fence: Fence::Attempt(Attempt::new(1)),
                observations: vec![seen(commit('a'), verified(5))],
            },
            &change(5),
        )
        .await
        .unwrap();
    let refused = store
        .decide_gate(&gate_request(&rules, 5, true), &change(6))
        .await
        .unwrap();
    assert_eq!(
        refused.decision.missing()[0].to_string(),
        "review: needs approval by a reviewer other than luci"
    );

    // luci ran the ticket: its own approval is refused and writes nothing.
    let before = store.last_event_seq().await.unwrap();
    let own = store
        .record_review(
            &review(
                &rules,
                &routes,
                verdict(
                    ReviewDecision::Approve,
                    "mine",
                    reviewer("luci", ReviewerKind::Worker),
                ),
                3,
            ),
            &change(7),
        )
        .await;
    let Err(error) = own else {
        panic!("the author approved its own ticket")
    };
    assert_eq!(
        error.to_string(),
        "MC-1: luci worked on this ticket and cannot review it"
    );
    assert_eq!(store.last_event_seq().await.unwrap(), before);

    let approved = store
        .record_review(
            &review(
                &rules,
                &routes,
                verdict(
                    ReviewDecision::Approve,
                    "looks right",
                    reviewer("larry", ReviewerKind::Worker),
                ),
                3,
            ),
            &change(8),
        )
        .await
        .unwrap();
    assert_eq!(approved.effect, ReviewEffect::AskGate);
    assert_eq!(kinds(&store, before).await, ["review.approved"]);
    let open = store
        .decide_gate(&gate_request(&rules, 5, true), &change(9))
        .await
        .unwrap();
    assert!(open.decision.is_open(), "{:?}", open.decision);
    assert_eq!(open.ticket.state, State::Done);
}

pub async fn a_rejection_sends_back_with_its_reason_and_counts_against_attempts<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    in_review(&store, "Fix the loop.").await;
    let (rules, routes) = (auto(), routes());
    let before = store.last_event_seq().await.unwrap();
    let rejected = store
        .record_review(
            &review(
                &rules,
                &routes,
                verdict(
                    ReviewDecision::Reject,
                    "no tests",
                    reviewer("larry", ReviewerKind::Worker),
                ),
                3,
            ),
            &change(5),
        )
        .await
        .unwrap();
    assert_eq!(rejected.ticket.state, State::Todo);
    assert!(
        rejected
            .ticket
            .body
            .ends_with("Review of attempt 1 rejected by larry: no tests\n"),
        "{:?}",
        rejected.ticket.body
    );
    assert_eq!(
        store.ticket(&id(1)).await.unwrap().body,
        rejected.ticket.body
    );
    assert_eq!(
        kinds(&store, before).await,
        ["review.rejected", "ticket.moved"]
    );

    // At its last attempt, a rejection fails the ticket and raises a failed_ticket item.
    let t = B::fresh().await;
    let store = t.store();
    in_review(&store, "").await;
    let failed = store
        .record_review(
            &review(
                &rules,
                &routes,
                verdict(
                    ReviewDecision::Reject,
                    "wrong approach",
                    reviewer("ana", ReviewerKind::Human),
                ),
                1,
            ),
            &change(5),
        )
        .await
        .unwrap();
    assert_eq!(failed.ticket.state, State::Failed);
    let items = store.inbox_items(&InboxFilter::default()).await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].kind, InboxKind::FailedTicket);
    assert_eq!(items[0].ticket, Some(id(1)));
    // A verdict about an attempt that is over is refused.
    let stale = store
        .record_review(
            &review(
                &rules,
                &routes,
                verdict(
                    ReviewDecision::Approve,
                    "",
                    reviewer("larry", ReviewerKind::Worker),
                ),
                3,
            ),
            &change(6),
        )
        .await;
    assert!(stale.is_err());
}

pub async fn an_oversized_diff_stays_in_review_and_asks_a_human<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    in_review(&store, "").await;
    let (rules, routes) = (auto(), routes());
    store
        .record_evidence(
            &RecordEvidence {
                ticket: id(1),
                fence: Fence::Attempt(Attempt::new(1)),
                observations: vec![seen(commit('a'), verified(5))],
            },
            &change(5),
        )
        .await
        .unwrap();
    let skipped = Verdict::SkippedOversized {
        changed_lines: 6_000,
        cap: 5_000,
    };
    let before = store.last_event_seq().await.unwrap();
    let result = store
        .record_review(&review(&rules, &routes, skipped.clone(), 3), &change(6))
        .await
        .unwrap();
    assert!(matches!(result.effect, ReviewEffect::AskHuman { .. }));
    assert_eq!(result.ticket.state, State::Review);
    assert_eq!(
        kinds(&store, before).await,
        ["review.skipped_oversized", "inbox.created"]
    );
    // Skipped again on the next pass: no second request for the same ticket.
    store
        .record_review(&review(&rules, &routes, skipped, 3), &change(7))
        .await
        .unwrap();
    let items = store.inbox_items(&InboxFilter::default()).await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].kind, InboxKind::ReviewRequest);
    // A worker's approval does not open the gate of a diff nobody could review; a human's does,
    // and settles the request.
    store
        .record_review(
            &review(
                &rules,
                &routes,
                verdict(
                    ReviewDecision::Approve,
                    "",
                    reviewer("larry", ReviewerKind::Worker),
                ),
                3,
            ),
            &change(8),
        )
        .await
        .unwrap();
    let refused = store
        .decide_gate(&gate_request(&rules, 5, true), &change(9))
        .await
        .unwrap();
    assert!(refused.decision.missing()[0].detail.contains("human"));
    store
        .record_review(
            &review(
                &rules,
                &routes,
                verdict(
                    ReviewDecision::Approve,
                    "read it all",
                    reviewer("ana", ReviewerKind::Human),
                ),
                3,
            ),
            &change(10),
        )
        .await
        .unwrap();
    let item = store.inbox_item(items[0].id).await.unwrap();
    assert_eq!(
        item.action().unwrap().kind,
        mission_core::ActionKind::Approved
    );
    let open = store
        .decide_gate(&gate_request(&rules, 5, true), &change(11))
        .await
        .unwrap();
    assert_eq!(open.ticket.state, State::Done);
}

pub async fn review_requests_are_found_by_token_and_never_go_to_an_author<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    in_review(&store, "").await;
    let luci = Name::parse("luci").unwrap();
    let larry = Name::parse("larry").unwrap();
    assert!(
        store
            .request_review(&id(1), Attempt::new(1), &luci, "h1", &change(5))
            .await
            .is_err()
    );
    assert!(
        store
            .request_review(&id(1), Attempt::new(2), &larry, "h1", &change(5))
            .await
            .is_err()
    );
    let request = store
        .request_review(&id(1), Attempt::new(1), &larry, "h2", &change(5))
        .await
        .unwrap();
    let found = store.review_request_for_token("h2").await.unwrap().unwrap();
    assert_eq!(found, request);
    assert!(
        store
            .review_request_for_token("nope")
            .await
            .unwrap()
            .is_none()
    );
    let (rules, routes) = (auto(), routes());
    let mut with_request = review(
        &rules,
        &routes,
        verdict(
            ReviewDecision::Approve,
            "",
            reviewer("larry", ReviewerKind::Worker),
        ),
        3,
    );
    with_request.request = Some(request.id);
    store
        .record_review(&with_request, &change(6))
        .await
        .unwrap();
    let closed = store.review_request_for_token("h2").await.unwrap().unwrap();
    assert!(closed.closed_at.is_some());
    // A closed request gives no second verdict.
    assert!(
        store
            .record_review(&with_request, &change(7))
            .await
            .is_err()
    );
    let _ = retry();
}

/// Two gatekeepers (on separate handles, as on two nodes) close an approved ticket at once: it
/// moves to done once; the other sees it no longer in review and writes nothing.
pub async fn concurrent_gates_close_a_ticket_once<B: Backend>() {
    let t = B::fresh().await;
    let (a, b) = (t.store(), t.connect().await);
    in_review(&a, "").await;
    let (rules, routes) = (auto(), routes());
    a.record_evidence(
        &RecordEvidence {
            ticket: id(1),
            fence: Fence::Attempt(Attempt::new(1)),
            observations: vec![seen(commit('a'), verified(5))],
        },
        &change(5),
    )
    .await
    .unwrap();
    a.record_review(
        &review(
            &rules,
            &routes,
            verdict(
                ReviewDecision::Approve,
                "",
                reviewer("larry", ReviewerKind::Worker),
            ),
            3,
        ),
        &change(6),
    )
    .await
    .unwrap();
    let before = a.last_event_seq().await.unwrap();
    let (gate, at) = (gate_request(&rules, 5, true), change(7));
    let (ra, rb) = tokio::join!(a.decide_gate(&gate, &at), b.decide_gate(&gate, &at));
    let (closed, refused): (Vec<_>, Vec<_>) = [ra, rb].into_iter().partition(Result::is_ok);
    assert_eq!(
        (closed.len(), refused.len()),
        (1, 1),
        "{closed:?} {refused:?}"
    );
    assert_eq!(closed[0].as_ref().unwrap().ticket.state, State::Done);
    assert!(
        matches!(refused[0], Err(StoreError::Transition { .. })),
        "{refused:?}"
    );
    assert_eq!(kinds(&a, before).await, ["ticket.moved"]);
    assert_eq!(a.ticket(&id(1)).await.unwrap().state, State::Done);
}

/// A reviewer's verdict and the close of its request (its run ended) at once, on separate
/// handles: either the verdict is recorded and closes the request, or the request was closed
/// first and the verdict is refused as stale — never a verdict on a request another closed.
pub async fn a_verdict_and_the_close_of_its_request_end_it_once<B: Backend>() {
    let t = B::fresh().await;
    let (a, b) = (t.store(), t.connect().await);
    in_review(&a, "").await;
    let larry = Name::parse("larry").unwrap();
    let request = a
        .request_review(&id(1), Attempt::new(1), &larry, "h1", &change(5))
        .await
        .unwrap();
    let (rules, routes) = (auto(), routes());
    let mut given = review(
        &rules,
        &routes,
        verdict(
            ReviewDecision::Approve,
            "",
            reviewer("larry", ReviewerKind::Worker),
        ),
        3,
    );
    given.request = Some(request.id);
    let before = a.last_event_seq().await.unwrap();
    let at = change(10);
    let (verdict, closed) = tokio::join!(
        a.record_review(&given, &at),
        b.close_review_request(request.id, Timestamp::from_millis(20)),
    );
    closed.unwrap();
    let after = a.review_request_for_token("h1").await.unwrap().unwrap();
    match verdict {
        Ok(_) => {
            assert_eq!(after.closed_at, Some(Timestamp::from_millis(10)));
            assert_eq!(kinds(&a, before).await, ["review.approved"]);
        }
        Err(StoreError::StaleReview { .. }) => {
            assert_eq!(after.closed_at, Some(Timestamp::from_millis(20)));
            assert!(kinds(&a, before).await.is_empty());
        }
        Err(other) => panic!("{other:?}"),
    }
}

/// What the health snapshot says of MC-1's evidence now.
async fn invalid_now(store: &Arc<dyn Store>) -> Vec<mission_core::health::InvalidEvidence> {
    let workforce = mission_core::Workforce::from_parts(
        &Default::default(),
        &mission_core::config::PolicyConfig::default(),
    )
    .unwrap();
    store
        .health_snapshot(&mission_store::HealthQuery {
            now: Timestamp::from_millis(1_000),
            workforce: &workforce,
            tasks: &[],
            runs_per_task: 1,
            waiting_limit: 10,
        })
        .await
        .unwrap()
        .invalid_evidence
        .expect("this backend records evidence")
}

pub async fn a_done_ticket_whose_evidence_stops_verifying_is_a_health_fact<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    in_review(&store, "").await;
    let rules = ReviewRules::default();
    // A failure before done (the gate refused once) is history, not a fact of a done ticket.
    let records = store
        .record_evidence(
            &RecordEvidence {
                ticket: id(1),
                fence: Fence::Attempt(Attempt::new(1)),
                observations: vec![
                    seen(commit('b'), failed(11, "bbbbbbbbbbbb is not reachable")),
                    seen(commit('a'), verified(12)),
                ],
            },
            &change(12),
        )
        .await
        .unwrap();
    let good = records[1].id;
    let mut close = gate_request(&rules, 20, true);
    close.reverified = vec![(good, verified(20))];
    let done = store.decide_gate(&close, &change(20)).await.unwrap();
    assert_eq!(done.ticket.state, State::Done);
    assert!(invalid_now(&store).await.is_empty());

    // The audit finds it still verifies: nothing written.
    let before = store.last_event_seq().await.unwrap();
    let changed = store
        .reverify_evidence(&id(1), &[(good, verified(50))], &change(50))
        .await
        .unwrap();
    assert_eq!(changed, 0);
    assert_eq!(store.last_event_seq().await.unwrap(), before);

    // The commit vanished from the branch: one event, and a fact since then.
    let gone = failed(60, "aaaaaaaaaaaa is not reachable from mission/MC-1");
    let changed = store
        .reverify_evidence(&id(1), &[(good, gone.clone())], &change(60))
        .await
        .unwrap();
    assert_eq!(changed, 1);
    assert_eq!(kinds(&store, before).await, ["evidence.failed"]);
    let invalid = invalid_now(&store).await;
    assert_eq!(invalid.len(), 1);
    assert_eq!(invalid[0].ticket, id(1));
    assert_eq!(invalid[0].since, Timestamp::from_millis(60));
    assert!(
        invalid[0].reason.contains("no longer verifies")
            && invalid[0].reason.contains("not reachable"),
        "{}",
        invalid[0].reason
    );
    // Found again: the first failure's time is kept, nothing written.
    let before = store.last_event_seq().await.unwrap();
    store
        .reverify_evidence(&id(1), &[(good, failed(70, "still gone"))], &change(70))
        .await
        .unwrap();
    assert_eq!(store.last_event_seq().await.unwrap(), before);
    assert_eq!(
        invalid_now(&store).await[0].since,
        Timestamp::from_millis(60)
    );

    // A record of another ticket is refused, and nothing of the batch is written.
    let refused = store
        .reverify_evidence(
            &id(1),
            &[(good, verified(75)), (EvidenceId::new(999), verified(75))],
            &change(75),
        )
        .await;
    assert!(refused.is_err());
    assert_eq!(store.last_event_seq().await.unwrap(), before);
    assert_eq!(invalid_now(&store).await.len(), 1);

    // Verifies again (the branch was restored): the fact clears.
    store
        .reverify_evidence(&id(1), &[(good, verified(80))], &change(80))
        .await
        .unwrap();
    assert_eq!(kinds(&store, before).await, ["evidence.verified"]);
    assert!(invalid_now(&store).await.is_empty());
}
