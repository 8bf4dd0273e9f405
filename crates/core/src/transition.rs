//! Every legal state transition, in one table, checked by one function.
//!
//! A transition is legal for a given path (`Via`): an operator may park or cancel a ticket, but
//! only the dispatcher moves it to `running`, only a run moves it to `review` or `needs_input`,
//! only an answer takes it out of `needs_input`, and only the gate moves it to `done`.

use crate::ticket::State;
use serde::{Deserialize, Serialize};

/// The path through which a transition is requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// A person or script moving a ticket by hand (CLI `ticket move`, API, dashboard).
    Operator,
    /// Triage assigning a ticket and releasing it to the board.
    Triage,
    /// The dispatcher claiming a ticket for a run.
    Claim,
    /// A run asking a question.
    RunAsk,
    /// A run submitting its work for review.
    RunSubmit,
    /// The runner putting a ticket back after a failed or orphaned attempt with attempts left.
    RunRequeue,
    /// The runner giving up: attempts exhausted or a failure that retrying cannot fix.
    RunFail,
    /// The open question answered; the ticket goes back for the needs-input lane to resume.
    Answer,
    /// The evidence and review gate.
    Gate,
    /// A reviewer's rejection: back to todo for the author, or failed when its attempts are
    /// used up (a rejection counts against them).
    Review,
}

impl Via {
    pub const ALL: [Via; 10] = [
        Via::Operator,
        Via::Triage,
        Via::Claim,
        Via::RunAsk,
        Via::RunSubmit,
        Via::RunRequeue,
        Via::RunFail,
        Via::Answer,
        Via::Gate,
        Via::Review,
    ];
}

use State::*;

/// The whole table: (from, to, via).
const LEGAL: &[(State, State, Via)] = &[
    (Triage, Todo, Via::Operator),
    (Triage, Todo, Via::Triage),
    (Triage, Blocked, Via::Operator),
    (Triage, Cancelled, Via::Operator),
    (Todo, Triage, Via::Operator),
    (Todo, Blocked, Via::Operator),
    (Todo, Cancelled, Via::Operator),
    (Todo, Running, Via::Claim),
    (Running, NeedsInput, Via::RunAsk),
    (Running, Review, Via::RunSubmit),
    (Running, Todo, Via::RunRequeue),
    (Running, Failed, Via::RunFail),
    (Running, Cancelled, Via::Operator),
    (NeedsInput, Todo, Via::Answer),
    (NeedsInput, Cancelled, Via::Operator),
    (Review, Done, Via::Gate),
    (Review, Todo, Via::Review),
    (Review, Failed, Via::Review),
    (Review, Todo, Via::Operator),
    (Review, Blocked, Via::Operator),
    (Review, Cancelled, Via::Operator),
    (Blocked, Triage, Via::Operator),
    (Blocked, Todo, Via::Operator),
    (Blocked, Cancelled, Via::Operator),
    (Failed, Triage, Via::Operator),
    (Failed, Todo, Via::Operator),
    (Failed, Cancelled, Via::Operator),
    (Cancelled, Triage, Via::Operator),
    (Cancelled, Todo, Via::Operator),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot move from {from} to {to}{hint}", hint = hint(*.from, *.to, *.via))]
pub struct TransitionError {
    pub from: State,
    pub to: State,
    pub via: Via,
}

fn hint(from: State, to: State, via: Via) -> &'static str {
    if from == to {
        return " (it is already there)";
    }
    if via != Via::Operator {
        return "";
    }
    match (from, to) {
        (Done, _) => " (done is final; open a new ticket)",
        (_, Running) => " (only the dispatcher starts a run)",
        (_, Done) => " (only the gate closes a ticket: use `mission ticket done`)",
        (_, NeedsInput) => " (only a running worker asks a question)",
        (NeedsInput, Todo) => " (answer the question: `mission ticket answer`)",
        (_, Review) => " (only a run submits for review)",
        (_, Failed) => " (only the runner fails a ticket; cancel it instead)",
        _ => "",
    }
}

/// Whether `from → to` is legal through `via`.
pub fn check_transition(from: State, to: State, via: Via) -> Result<(), TransitionError> {
    plan_transition(from, to, via).map(|_| ())
}

/// What a legal transition does besides changing the state. Decided here, carried out by the
/// store in the same transaction as the move.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// The ticket leaves `needs_input` without an answer (cancelled, say): its open question will
    /// never be answered, so it is closed — it neither takes an answer meant for a later question
    /// nor blocks the next one.
    pub close_question: bool,
}

/// Checks `from → to` through `via` and says what else the move does.
pub fn plan_transition(from: State, to: State, via: Via) -> Result<Effects, TransitionError> {
    if !LEGAL.contains(&(from, to, via)) {
        return Err(TransitionError { from, to, via });
    }
    Ok(Effects {
        close_question: from == NeedsInput && via != Via::Answer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_no_duplicates_and_no_self_loops() {
        for (i, a) in LEGAL.iter().enumerate() {
            assert_ne!(a.0, a.1, "{a:?}");
            assert!(!LEGAL[i + 1..].contains(a), "duplicate {a:?}");
        }
    }

    #[test]
    fn only_the_designated_paths_reach_engine_states() {
        for from in State::ALL {
            for via in Via::ALL {
                let ok = |to| check_transition(from, to, via).is_ok();
                if ok(Running) {
                    assert_eq!(via, Via::Claim);
                }
                if ok(Done) {
                    assert_eq!(via, Via::Gate);
                }
                if ok(NeedsInput) {
                    assert_eq!(via, Via::RunAsk);
                }
                if ok(Review) {
                    assert_eq!(via, Via::RunSubmit);
                }
                if from == NeedsInput && ok(Todo) {
                    assert_eq!(via, Via::Answer);
                }
                if ok(Failed) {
                    assert!(
                        matches!(via, Via::RunFail | Via::Review),
                        "{from} via {via:?}"
                    );
                }
                if via == Via::Review && State::ALL.into_iter().any(ok) {
                    assert_eq!(from, Review, "only a ticket in review is rejected");
                }
                assert!(from != Done || !ok(Todo), "done is final");
            }
        }
    }

    #[test]
    fn leaving_needs_input_other_than_by_answer_closes_the_question() {
        for from in State::ALL {
            for to in State::ALL {
                for via in Via::ALL {
                    if let Ok(effects) = plan_transition(from, to, via) {
                        let expect = from == NeedsInput && via != Via::Answer;
                        assert_eq!(effects.close_question, expect, "{from} -> {to} via {via:?}");
                    }
                }
            }
        }
        assert!(
            plan_transition(NeedsInput, Cancelled, Via::Operator)
                .unwrap()
                .close_question
        );
        assert!(
            !plan_transition(NeedsInput, Todo, Via::Answer)
                .unwrap()
                .close_question
        );
    }

    #[test]
    fn errors_name_both_states() {
        let err = check_transition(Done, Todo, Via::Operator).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot move from done to todo (done is final; open a new ticket)"
        );
        let err = check_transition(Todo, Running, Via::Operator).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot move from todo to running (only the dispatcher starts a run)"
        );
    }
}
