//! Capacity under concurrent dispatchers: several claimers, each with its own handle (as separate
//! processes), claim and end runs at once; the worker, pool and global caps are never exceeded,
//! and the pool and global caps are the ones that bind.

use super::Backend;
use crate::common::{change, key, new_ticket, operator_move};
use mission_core::{Lane, Name, SlotLimits, State, TicketId};
use mission_store::prelude::*;
use mission_store::{ClaimOutcome, ClaimRequest, EventQuery};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const GLOBAL_MAX: u32 = 5;
const GPU_MAX: u32 = 3;
const WORKER_MAX: u32 = 2;
/// Four workers share the `gpu` pool (capped at 3); two are in `cpu` (no pool cap). Together
/// they could run 12, the instance runs at most 5.
const WORKERS: [&str; 6] = ["w1", "w2", "w3", "w4", "c1", "c2"];
const CLAIMERS: usize = 4;
const TICKETS_PER_WORKER: usize = 8;

fn pool_of(worker: &str) -> &'static str {
    if worker.starts_with('w') {
        "gpu"
    } else {
        "cpu"
    }
}

fn limits(worker: &str) -> SlotLimits {
    let pool = pool_of(worker);
    SlotLimits {
        worker: Name::parse(worker).unwrap(),
        worker_max: WORKER_MAX,
        pool: pool.to_owned(),
        pool_max: (pool == "gpu").then_some(GPU_MAX),
        global_max: GLOBAL_MAX,
    }
}

/// Live runs per worker, per pool and in all.
#[derive(Clone, Debug, Default)]
struct Live {
    worker: BTreeMap<String, u32>,
    pool: BTreeMap<String, u32>,
    total: u32,
}

impl Live {
    fn add(&mut self, worker: &str, delta: i32) {
        let apply = |n: &mut u32| *n = n.checked_add_signed(delta).expect("negative count");
        apply(self.worker.entry(worker.to_owned()).or_default());
        apply(self.pool.entry(pool_of(worker).to_owned()).or_default());
        apply(&mut self.total);
    }

    fn assert_within_caps(&self, when: &str) {
        for (worker, n) in &self.worker {
            assert!(*n <= WORKER_MAX, "{when}: worker {worker} runs {n}");
        }
        let gpu = self.pool.get("gpu").copied().unwrap_or(0);
        assert!(gpu <= GPU_MAX, "{when}: pool gpu runs {gpu}");
        assert!(self.total <= GLOBAL_MAX, "{when}: {} runs", self.total);
    }

    fn max(&mut self, other: &Live) {
        for (k, v) in &other.worker {
            let e = self.worker.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
        for (k, v) in &other.pool {
            let e = self.pool.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
        self.total = self.total.max(other.total);
    }
}

fn counted(counts: &mission_core::ActiveCounts) -> Live {
    Live {
        worker: counts.by_worker.clone().into_iter().collect(),
        pool: counts.by_pool.clone().into_iter().collect(),
        total: counts.total,
    }
}

/// Claims `tickets` (those still todo) in one `claim_many`; returns the runs claimed.
async fn claim(
    store: &Arc<dyn Store>,
    tickets: &[(TicketId, &'static str)],
    tokens: &AtomicU64,
    at: i64,
) -> Vec<mission_core::Run> {
    let mut requests = Vec::new();
    for (id, worker) in tickets {
        let ticket = store.ticket(id).await.unwrap();
        if ticket.state != State::Todo {
            continue;
        }
        requests.push(ClaimRequest {
            ticket: id.clone(),
            lane: Lane::Normal,
            expected_version: ticket.version,
            limits: limits(worker),
            node: "test:1".into(),
            token_hash: format!("token-{}", tokens.fetch_add(1, Ordering::SeqCst)),
            lease: Duration::from_secs(30),
        });
    }
    let outcomes = store.claim_many(&requests, &change(at)).await.unwrap();
    let mut claimed = Vec::new();
    for outcome in outcomes {
        match outcome {
            ClaimOutcome::Claimed(run) => claimed.push(*run),
            ClaimOutcome::Refused(refusal) => assert!(
                matches!(refusal, mission_store::ClaimRefusal::CapacityFull { .. }),
                "only capacity refuses here: {refusal:?}"
            ),
        }
    }
    claimed
}

pub async fn concurrent_claims_never_exceed_the_pool_and_global_caps<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let mut all: Vec<(TicketId, &'static str)> = Vec::new();
    for worker in WORKERS {
        let batch = (0..TICKETS_PER_WORKER)
            .map(|i| new_ticket(&format!("{worker} {i}"), Some(worker)))
            .collect();
        for ticket in store
            .create_tickets(&key(), batch, &change(0))
            .await
            .unwrap()
        {
            all.push((ticket.id, worker));
        }
    }
    let start_seq = store.last_event_seq().await.unwrap();
    let tokens = Arc::new(AtomicU64::new(0));

    // Churn: each claimer claims a few of its own tickets, holds them a moment, submits them and
    // puts them back to todo; their holds overlap. The counts it sees never exceed the caps.
    let mut claimers = tokio::task::JoinSet::new();
    for claimer in 0..CLAIMERS {
        let store = t.connect().await;
        let tokens = tokens.clone();
        let mine: Vec<(TicketId, &'static str)> = all
            .iter()
            .skip(claimer)
            .step_by(CLAIMERS)
            .cloned()
            .collect();
        claimers.spawn(async move {
            for round in 0..12 {
                let batch: Vec<_> = mine
                    .iter()
                    .cycle()
                    .skip(round * 3)
                    .take(3)
                    .cloned()
                    .collect();
                let claimed = claim(&store, &batch, &tokens, round as i64).await;
                counted(&store.active_counts().await.unwrap()).assert_within_caps("while churning");
                tokio::time::sleep(Duration::from_millis(2)).await;
                for run in claimed {
                    store
                        .run_submit(run.id, run.attempt, &change(round as i64))
                        .await
                        .unwrap();
                    store
                        .move_ticket(
                            &run.ticket,
                            &operator_move(State::Todo),
                            &change(round as i64),
                        )
                        .await
                        .unwrap();
                }
            }
        });
    }
    while let Some(done) = claimers.join_next().await {
        done.unwrap();
    }
    assert_eq!(store.active_counts().await.unwrap().total, 0);

    // Fill, in two steps where nothing ends. Demand is far above every cap, so each step ends
    // exactly at the cap that binds it: first only gpu tickets are claimed (the pool cap binds
    // before the global one), then only cpu tickets (the global cap binds before the workers').
    for (step, pool) in ["gpu", "cpu"].into_iter().enumerate() {
        let mut claimers = tokio::task::JoinSet::new();
        for claimer in 0..CLAIMERS {
            let store = t.connect().await;
            let tokens = tokens.clone();
            let mine: Vec<(TicketId, &'static str)> = all
                .iter()
                .filter(|(_, worker)| pool_of(worker) == pool)
                .skip(claimer)
                .step_by(CLAIMERS)
                .cloned()
                .collect();
            claimers.spawn(async move {
                for pair in mine.chunks(2) {
                    claim(&store, pair, &tokens, 100 + step as i64).await;
                }
            });
        }
        while let Some(done) = claimers.join_next().await {
            done.unwrap();
        }
        let full = counted(&store.active_counts().await.unwrap());
        full.assert_within_caps("when full");
        let expected = match pool {
            "gpu" => (GPU_MAX, 0, GPU_MAX),
            _ => (GPU_MAX, GLOBAL_MAX - GPU_MAX, GLOBAL_MAX),
        };
        let of = |pool: &str| full.pool.get(pool).copied().unwrap_or(0);
        assert_eq!((of("gpu"), of("cpu"), full.total), expected, "{full:?}");
    }

    // The peak, replayed from the event log in commit order: +1 at each claim, -1 at each end.
    let events = store
        .events(&EventQuery {
            since: start_seq,
            limit: 1_000_000,
            ticket: None,
        })
        .await
        .unwrap();
    let mut worker_of_run: HashMap<i64, String> = HashMap::new();
    let (mut live, mut peak) = (Live::default(), Live::default());
    for event in events.iter().filter(|e| e.kind == "ticket.moved") {
        let run = event.data["run"].as_i64();
        if event.data["via"] == "claim" {
            let worker = event.data["worker"].as_str().unwrap().to_owned();
            live.add(&worker, 1);
            worker_of_run.insert(run.unwrap(), worker);
        } else if event.data["from"] == "running" {
            live.add(&worker_of_run[&run.unwrap()], -1);
        }
        live.assert_within_caps(&format!("after event {}", event.seq));
        peak.max(&live);
    }
    assert_eq!(peak.total, GLOBAL_MAX, "{peak:?}");
    assert_eq!(peak.pool.get("gpu").copied(), Some(GPU_MAX), "{peak:?}");
}
