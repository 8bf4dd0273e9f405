//! Property test of the ticket state machine through a real store.
//!
//! Random sequences of operations (create, move through any path, edit dependencies, close and
//! reopen the store) run against the store and a tiny reference model. After every step:
//! an accepted change wrote exactly one event and a rejected one none; stored states equal the
//! model's; and replaying the event log shows only legal transitions that chain.

use super::Backend;
use crate::common::{change, key, new_ticket};
use mission_core::transition::Via;
use mission_core::{State, TicketId, TicketPatch};
use mission_store::{EventQuery, Move, StoreError, TicketFilter};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use std::collections::{HashMap, HashSet};

#[derive(Clone, Debug)]
enum Op {
    Create {
        assigned: bool,
    },
    /// With `steer`, the move is picked (by `pick`) among those the model allows (1) or the core
    /// allows (2), so that sequences walk deep into the state machine instead of bouncing off
    /// refusals, and a disagreement in either direction is found.
    Move {
        ticket: usize,
        to: State,
        via: Via,
        steer: u8,
        pick: usize,
    },
    SetDeps {
        ticket: usize,
        deps: Vec<usize>,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => any::<bool>().prop_map(|assigned| Op::Create { assigned }),
        6 => (any::<usize>(), prop::sample::select(State::ALL.to_vec()), prop::sample::select(Via::ALL.to_vec()), 0..3u8, any::<usize>())
            .prop_map(|(ticket, to, via, steer, pick)| Op::Move { ticket, to, via, steer, pick }),
        2 => (any::<usize>(), prop::collection::vec(any::<usize>(), 0..3))
            .prop_map(|(ticket, deps)| Op::SetDeps { ticket, deps }),
        1 => Just(Op::Reopen),
    ]
}

/// The reference model: states and dependency edges, by ticket number.
#[derive(Default)]
struct Model {
    states: Vec<State>,
    deps: HashMap<i64, Vec<i64>>,
}

impl Model {
    /// Independent statement of the rules a move must satisfy (SPEC §1), not the core's table.
    fn move_allowed(from: State, to: State, via: Via) -> bool {
        use State::*;
        if from == to || from == Done {
            return false;
        }
        match (to, via) {
            (Running, Via::Claim) => from == Todo,
            (Running, _) => false,
            (Done, Via::Gate) => from == Review,
            (Done, _) => false,
            (NeedsInput, Via::RunAsk) => from == Running,
            (NeedsInput, _) => false,
            (Review, Via::RunSubmit) => from == Running,
            (Review, _) => false,
            (Failed, Via::RunFail) => from == Running,
            (Failed, Via::Review) => from == Review,
            (Failed, _) => false,
            (Todo, Via::Answer) => from == NeedsInput,
            (Todo, Via::RunRequeue) => from == Running,
            (Todo, Via::Triage) => from == Triage,
            (Todo, Via::Review) => from == Review,
            (Todo, Via::Operator) => matches!(from, Triage | Review | Blocked | Failed | Cancelled),
            (Todo, _) => false,
            (Triage, Via::Operator) => matches!(from, Todo | Blocked | Failed | Cancelled),
            (Blocked, Via::Operator) => matches!(from, Triage | Todo | Review),
            (Cancelled, Via::Operator) => !matches!(from, Cancelled),
            _ => false,
        }
    }

    fn creates_cycle(&self, ticket: i64, new_deps: &[i64]) -> bool {
        let mut seen = HashSet::new();
        let mut stack: Vec<i64> = new_deps.to_vec();
        while let Some(n) = stack.pop() {
            if n == ticket {
                return true;
            }
            if seen.insert(n) {
                stack.extend(self.deps.get(&n).into_iter().flatten().copied());
            }
        }
        false
    }
}

fn id(n: i64) -> TicketId {
    TicketId::new(&key(), n)
}

async fn run<B: Backend>(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut t = B::fresh().await;
    let mut store = t.store();
    let mut model = Model::default();
    let mut events: i64 = 0;
    let mut accepted_moves = 0;
    for (step, op) in ops.into_iter().enumerate() {
        let at = step as i64 + 1;
        match op {
            Op::Create { assigned } => {
                let assignee = assigned.then_some("luci");
                let created = store
                    .create_tickets(&key(), vec![new_ticket("t", assignee)], &change(at))
                    .await
                    .unwrap();
                model.states.push(created[0].state);
                prop_assert_eq!(created[0].id.number(), model.states.len() as i64);
                events += 1;
            }
            Op::Move {
                ticket,
                mut to,
                mut via,
                steer,
                pick,
            } if !model.states.is_empty() => {
                let n = ticket % model.states.len();
                let from = model.states[n];
                if steer > 0 {
                    let allowed: Vec<(State, Via)> = State::ALL
                        .iter()
                        .flat_map(|t| Via::ALL.iter().map(move |v| (*t, *v)))
                        .filter(|(t, v)| match steer {
                            1 => Model::move_allowed(from, *t, *v),
                            _ => mission_core::check_transition(from, *t, *v).is_ok(),
                        })
                        .collect();
                    if !allowed.is_empty() {
                        (to, via) = allowed[pick % allowed.len()];
                    }
                }
                let request = Move {
                    to,
                    via,
                    reason: None,
                };
                let got = store
                    .move_ticket(&id(n as i64 + 1), &request, &change(at))
                    .await;
                if Model::move_allowed(from, to, via) {
                    prop_assert!(got.is_ok(), "{from} -> {to} via {via:?} refused: {got:?}");
                    model.states[n] = to;
                    events += 1;
                    accepted_moves += 1;
                } else {
                    let refused = matches!(got, Err(StoreError::Transition { .. }));
                    prop_assert!(refused, "{from} -> {to} via {via:?} accepted");
                }
            }
            Op::SetDeps { ticket, deps } if !model.states.is_empty() => {
                let count = model.states.len();
                let n = (ticket % count) as i64 + 1;
                let mut deps: Vec<i64> = deps.iter().map(|d| (d % count) as i64 + 1).collect();
                deps.sort();
                deps.dedup();
                let patch = TicketPatch {
                    depends_on: Some(deps.iter().map(|d| id(*d)).collect()),
                    ..TicketPatch::default()
                };
                let got = store.edit_ticket(&id(n), &patch, &change(at)).await;
                let current = model.deps.get(&n).cloned().unwrap_or_default();
                if deps.contains(&n) || model.creates_cycle(n, &deps) {
                    prop_assert!(got.is_err(), "cycle through {n} accepted: {deps:?}");
                } else {
                    prop_assert!(got.is_ok(), "{got:?}");
                    if current != deps {
                        events += 1;
                    }
                    model.deps.insert(n, deps);
                }
            }
            Op::Reopen => {
                drop(store);
                t.reopen().await;
                store = t.store();
            }
            Op::Move { .. } | Op::SetDeps { .. } => {}
        }

        prop_assert_eq!(
            store.last_event_seq().await.unwrap(),
            events,
            "events after step {}",
            step
        );
        let stored = store.list_tickets(&TicketFilter::default()).await.unwrap();
        let mut by_number: Vec<(i64, State)> =
            stored.iter().map(|s| (s.id.number(), s.state)).collect();
        by_number.sort();
        let expected: Vec<(i64, State)> = model
            .states
            .iter()
            .enumerate()
            .map(|(i, s)| (i as i64 + 1, *s))
            .collect();
        prop_assert_eq!(by_number, expected);
    }

    // The generator must actually exercise the machine; a run of refusals proves little.
    let moves_logged = store
        .events(&EventQuery {
            since: 0,
            limit: 1_000_000,
            ticket: None,
        })
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == "ticket.moved")
        .count();
    prop_assert_eq!(moves_logged, accepted_moves);

    // Replay: every recorded move is legal and starts where the previous one ended.
    let log = store
        .events(&EventQuery {
            since: 0,
            limit: 1_000_000,
            ticket: None,
        })
        .await
        .unwrap();
    let mut replayed: HashMap<TicketId, State> = HashMap::new();
    for event in &log {
        let ticket = event.ticket.clone().unwrap();
        let state = |v: &serde_json::Value| serde_json::from_value::<State>(v.clone()).unwrap();
        match event.kind.as_str() {
            "ticket.created" => {
                prop_assert!(
                    replayed
                        .insert(ticket, state(&event.data["state"]))
                        .is_none()
                );
            }
            "ticket.moved" => {
                let (from, to) = (state(&event.data["from"]), state(&event.data["to"]));
                let via: Via = serde_json::from_value(event.data["via"].clone()).unwrap();
                prop_assert_eq!(replayed.get(&ticket).copied(), Some(from));
                prop_assert!(Model::move_allowed(from, to, via));
                replayed.insert(ticket, to);
            }
            "ticket.edited" => {}
            other => prop_assert!(false, "unexpected event {}", other),
        }
    }
    store.close().await;
    Ok(())
}

/// Runs the property against fresh stores of `B` (48 cases; failures are kept in
/// `state_machine.proptest-regressions` beside this file and replayed first).
pub fn state_machine_holds<B: Backend>() {
    let config = ProptestConfig {
        cases: 48,
        source_file: Some(file!()),
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&prop::collection::vec(op(), 1..60), |ops| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run::<B>(ops))
    });
    if let Err(failure) = result {
        panic!("{failure}\n{runner}");
    }
}
