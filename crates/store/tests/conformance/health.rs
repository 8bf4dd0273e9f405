//! The health facts through the store's traits: heartbeats per node, one snapshot of what the
//! verdict reads (with the narrowing of waiting tickets), and the verdict recorded once per
//! change whatever the number of processes recording it.

use super::Backend;
use super::runs::request;
use crate::common::{change, key, new_ticket};
use mission_core::health::{HealthReason, ReasonCode};
use mission_core::incident::{AutoResolve, CheckName, Finding, Severity};
use mission_core::task::{Outcome, TaskResult, Trigger};
use mission_core::transition::Via;
use mission_core::{
    Fingerprint, HealthReport, Lane, State, TicketDraft, TicketId, Timestamp, Verdict, Workforce,
};
use mission_store::{
    AuditPass, CapacityFact, ClaimOutcome, EventQuery, HealthQuery, Move, ServerHeartbeat,
    TaskRunStart,
};
use std::time::Duration;

fn workforce() -> Workforce {
    let config: mission_core::config::Config = serde_json::from_value(serde_json::json!({
        "workers": {
            "luci": { "runtime": "shell", "command": ["w"], "max_concurrent": 2 },
            "larry": { "runtime": "shell", "command": ["w"], "enabled": false },
        }
    }))
    .unwrap();
    Workforce::new(&config).unwrap()
}

fn beat(node: &str, at: i64, pass: Option<i64>) -> ServerHeartbeat {
    ServerHeartbeat {
        node: node.to_owned(),
        pid: 7,
        started_at: Timestamp::from_millis(1),
        at: Timestamp::from_millis(at),
        interval: Duration::from_secs(2),
        dispatcher_pass_at: pass.map(Timestamp::from_millis),
    }
}

fn report(verdict: Verdict, codes: &[ReasonCode]) -> HealthReport {
    HealthReport {
        verdict,
        reasons: codes
            .iter()
            .map(|code| HealthReason {
                code: *code,
                component: code.component(),
                severity: Severity::Warning,
                detail: String::new(),
                since: None,
                ids: vec![],
            })
            .collect(),
    }
}

pub async fn heartbeats_are_one_row_per_node<B: Backend>() {
    let mut t = B::fresh().await;
    let store = t.store();
    let tasks: Vec<String> = vec![];
    let workforce = workforce();
    let query = HealthQuery {
        now: Timestamp::from_millis(100),
        workforce: &workforce,
        tasks: &tasks,
        runs_per_task: 5,
        waiting_limit: 10,
    };
    let empty = store.health_snapshot(&query).await.unwrap();
    assert!(empty.servers.is_empty() && empty.dispatcher_last_pass.is_none());
    store.record_heartbeat(&beat("a", 10, None)).await.unwrap();
    store
        .record_heartbeat(&beat("a", 20, Some(15)))
        .await
        .unwrap();
    store
        .record_heartbeat(&beat("b", 30, Some(12)))
        .await
        .unwrap();
    t.reopen().await;
    let snapshot = t.store().health_snapshot(&query).await.unwrap();
    let beats: Vec<(&str, i64)> = snapshot
        .servers
        .iter()
        .map(|s| (s.node.as_str(), s.last_beat.as_millis()))
        .collect();
    assert_eq!(beats, [("a", 20), ("b", 30)]);
    assert_eq!(snapshot.servers[0].interval, Duration::from_secs(2));
    assert_eq!(
        snapshot.dispatcher_last_pass,
        Some(Timestamp::from_millis(15))
    );
}

pub async fn the_snapshot_gathers_the_durable_facts<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    // MC-1 luci (waits), MC-2 larry (disabled), MC-3 luci depending on MC-1, MC-4 in triage,
    // MC-5 luci (claimed below: a live run), MC-6 luci.
    let mut drafts = vec![
        new_ticket("waits", Some("luci")),
        new_ticket("disabled worker", Some("larry")),
    ];
    drafts.push(
        TicketDraft {
            title: "depends".into(),
            assignee: Some("luci".into()),
            depends_on: vec![mission_core::TicketId::new(&key(), 1)],
            ..TicketDraft::default()
        }
        .validate()
        .unwrap(),
    );
    drafts.push(new_ticket("triage", None));
    drafts.push(new_ticket("runs", Some("luci")));
    store
        .create_tickets(&key(), drafts, &change(10))
        .await
        .unwrap();
    store
        .create_tickets(&key(), vec![new_ticket("later", Some("luci"))], &change(20))
        .await
        .unwrap();
    let claimed = store
        .claim(&request(5, 1, Lane::Normal, "t5"), &change(30))
        .await
        .unwrap();
    assert!(matches!(claimed, ClaimOutcome::Claimed(_)));
    store
        .set_capacity_fact(
            &CapacityFact::Unknown {
                error: "disk image is malformed".into(),
            },
            &change(40),
        )
        .await
        .unwrap();
    for (n, outcome) in [Outcome::Noop, Outcome::Degraded].into_iter().enumerate() {
        let start = TaskRunStart {
            task: "sweep".into(),
            slot: None,
            trigger: Trigger::Manual,
            node: "n:1".into(),
        };
        let run = store
            .begin_task_run(&start, &change(50 + n as i64))
            .await
            .unwrap()
            .unwrap();
        store
            .finish_task_run(
                run,
                &TaskResult::new(outcome, "why"),
                &change(60 + n as i64),
            )
            .await
            .unwrap();
    }
    let open = TaskRunStart {
        task: "sweep".into(),
        slot: None,
        trigger: Trigger::Manual,
        node: "n:1".into(),
    };
    store.begin_task_run(&open, &change(70)).await.unwrap();
    let incident = Finding {
        fingerprint: Fingerprint::parse("probe.disk:/").unwrap(),
        severity: Severity::Critical,
        detail: "low".into(),
        evidence: serde_json::json!({}),
        ticket: None,
    };
    let pass = AuditPass {
        findings: vec![incident],
        checked: [CheckName::parse("probe.disk").unwrap()].into(),
        auto_resolve: AutoResolve::default(),
    };
    store.record_audit(&pass, &change(80)).await.unwrap();

    let tasks = vec!["sweep".to_owned(), "never-ran".to_owned()];
    let workforce = workforce();
    let snapshot = store
        .health_snapshot(&HealthQuery {
            now: Timestamp::from_millis(100),
            workforce: &workforce,
            tasks: &tasks,
            runs_per_task: 5,
            waiting_limit: 10,
        })
        .await
        .unwrap();
    let capacity = snapshot.capacity_unknown.unwrap();
    assert_eq!(
        (capacity.since.as_millis(), capacity.error.as_str()),
        (40, "disk image is malformed")
    );
    assert_eq!(snapshot.active.total, 1);
    let waiting: Vec<(String, i64)> = snapshot
        .waiting
        .iter()
        .map(|w| (w.ticket.id.to_string(), w.since.as_millis()))
        .collect();
    assert_eq!(
        waiting,
        [("MC-1".to_owned(), 10), ("MC-6".to_owned(), 20)],
        "oldest first; not a disabled worker's, not one with an open dependency, not a running one"
    );
    assert_eq!(snapshot.waiting[0].ticket.state, State::Todo);
    assert_eq!(snapshot.tickets_in_triage, 1);
    assert_eq!(snapshot.live_runs.len(), 1);
    assert_eq!(snapshot.live_runs[0].ticket.to_string(), "MC-5");
    assert_eq!(
        snapshot.live_runs[0].lease_expires_at.as_millis(),
        30 + 30_000
    );
    let (name, runs) = &snapshot.task_runs[0];
    assert_eq!(name, "sweep");
    let outcomes: Vec<Outcome> = runs.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [Outcome::Degraded, Outcome::Noop],
        "ended runs, newest first"
    );
    assert!(snapshot.task_runs[1].1.is_empty());
    assert_eq!(snapshot.open_incidents.len(), 1);
    assert_eq!(snapshot.open_incidents[0].severity, Severity::Critical);
    assert!(snapshot.last_verdict.is_none());

    // With luci's two slots taken, nothing of luci's waits with capacity free.
    store
        .claim(&request(1, 1, Lane::Normal, "t1"), &change(90))
        .await
        .unwrap();
    let busy = store
        .health_snapshot(&HealthQuery {
            now: Timestamp::from_millis(100),
            workforce: &workforce,
            tasks: &tasks,
            runs_per_task: 5,
            waiting_limit: 10,
        })
        .await
        .unwrap();
    assert!(busy.waiting.is_empty());
}

/// The waiting tickets come with everything the policy reads: the ticket as stored (its
/// dependency ids) and each dependency's state, in the narrowing's order, whatever their
/// number (the snapshot loads them as one batch).
pub async fn waiting_tickets_carry_their_dependencies<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    // MC-1 and MC-2 are closed through the path the gate takes; MC-3 depends on both, MC-4 on
    // MC-1, MC-5 on nothing.
    store
        .create_tickets(
            &key(),
            vec![new_ticket("a", Some("luci")), new_ticket("b", Some("luci"))],
            &change(1),
        )
        .await
        .unwrap();
    for n in [1, 2] {
        for (to, via) in [
            (State::Running, Via::Claim),
            (State::Review, Via::RunSubmit),
            (State::Done, Via::Gate),
        ] {
            let moved = Move {
                to,
                via,
                reason: None,
            };
            store
                .move_ticket(&TicketId::new(&key(), n), &moved, &change(2))
                .await
                .unwrap();
        }
    }
    let depending = |title: &str, on: &[i64]| {
        TicketDraft {
            title: title.into(),
            assignee: Some("luci".into()),
            depends_on: on.iter().map(|n| TicketId::new(&key(), *n)).collect(),
            ..TicketDraft::default()
        }
        .validate()
        .unwrap()
    };
    for (at, draft) in [
        (10, depending("both", &[2, 1])),
        (11, depending("one", &[1])),
        (12, depending("none", &[])),
    ] {
        store
            .create_tickets(&key(), vec![draft], &change(at))
            .await
            .unwrap();
    }
    let tasks = Vec::new();
    let workforce = workforce();
    let snapshot = store
        .health_snapshot(&HealthQuery {
            now: Timestamp::from_millis(100),
            workforce: &workforce,
            tasks: &tasks,
            runs_per_task: 5,
            waiting_limit: 10,
        })
        .await
        .unwrap();
    type Seen = (String, Vec<String>, Vec<(String, Option<State>)>, i64);
    let seen: Vec<Seen> = snapshot
        .waiting
        .iter()
        .map(|w| {
            (
                w.ticket.id.to_string(),
                w.ticket.depends_on.iter().map(|d| d.to_string()).collect(),
                w.dependencies
                    .iter()
                    .map(|d| (d.id.to_string(), d.state))
                    .collect(),
                w.since.as_millis(),
            )
        })
        .collect();
    let done = |n: &str| (n.to_owned(), Some(State::Done));
    assert_eq!(
        seen,
        [
            (
                "MC-3".to_owned(),
                vec!["MC-1".to_owned(), "MC-2".to_owned()],
                vec![done("MC-1"), done("MC-2")],
                10
            ),
            (
                "MC-4".to_owned(),
                vec!["MC-1".to_owned()],
                vec![done("MC-1")],
                11
            ),
            ("MC-5".to_owned(), vec![], vec![], 12),
        ]
    );
}

pub async fn a_verdict_change_is_recorded_once<B: Backend>() {
    let t = B::fresh().await;
    let (a, b) = (t.store(), t.connect().await);
    let degraded = report(Verdict::Degraded, &[ReasonCode::TaskChurn]);
    // Two processes assess the same change at once: one writes it.
    let at = change(1);
    let (ra, rb) = tokio::join!(
        a.record_verdict(&degraded, &at),
        b.record_verdict(&degraded, &at)
    );
    let written: Vec<_> = [ra.unwrap(), rb.unwrap()].into_iter().flatten().collect();
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].from, None);
    assert!(
        a.record_verdict(&degraded, &change(2))
            .await
            .unwrap()
            .is_none()
    );
    let working = report(Verdict::Working, &[]);
    let back = a
        .record_verdict(&working, &change(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (back.from, back.to),
        (Some(Verdict::Degraded), Verdict::Working)
    );
    let events = a
        .events(&EventQuery {
            since: 0,
            limit: 10,
            ticket: None,
        })
        .await
        .unwrap();
    let changes: Vec<(&str, &serde_json::Value)> = events
        .iter()
        .map(|e| (e.kind.as_str(), &e.data["to"]))
        .collect();
    assert_eq!(
        changes,
        [
            ("health.changed", &serde_json::json!("degraded")),
            ("health.changed", &serde_json::json!("working"))
        ]
    );
    assert_eq!(events[0].data["codes"], serde_json::json!(["task_churn"]));
}
