//! The backend conformance suite: every test here speaks only through the store's traits, so
//! that each backend runs all of it by implementing `Backend` and adding one line:
//!
//! ```ignore
//! conformance::conformance_suite!(sqlite, SqliteBackend);
//! ```
//!
//! which expands to one test per case (`cargo test -p mission-store sqlite::`). Tests that need
//! a backend's own files or SQL (a corrupt file, the append-only trigger, a version-3 store) stay
//! in that backend's test file.

#![allow(dead_code)]

pub mod concurrency;
pub mod dispatch;
pub mod events;
pub mod evidence;
pub mod health;
pub mod inbox;
pub mod incidents;
pub mod outbox;
pub mod runs;
pub mod state_machine;
pub mod tasks;
pub mod tickets;
pub mod usage;
pub mod web;

use mission_store::Store;
use std::future::Future;
use std::sync::Arc;

/// A backend under test: how to get a fresh store, restart it, and reach it from elsewhere.
pub trait Backend: Send + Sync + Sized + 'static {
    /// A fresh, migrated, empty store, deleted when dropped.
    fn fresh() -> impl Future<Output = Self> + Send;

    /// The store under test (a handle: cheap to clone, valid until `reopen`).
    fn store(&self) -> Arc<dyn Store>;

    /// Closes the store and opens it again, migrating: a restart.
    fn reopen(&mut self) -> impl Future<Output = ()> + Send;

    /// Another, independent handle on the same database, with connections of its own: another
    /// process, for tests of concurrent writers.
    fn connect(&self) -> impl Future<Output = Arc<dyn Store>> + Send;
}

/// Expands to one test per conformance case, for `$backend`, in a module named `$suite`.
macro_rules! conformance_suite {
    ($suite:ident, $backend:ty) => {
        mod $suite {
            use super::*;

            $crate::conformance::cases!($backend;
                tickets::created_tickets_round_trip_byte_exact,
                tickets::numbers_continue_across_batches_and_reopen,
                tickets::numbers_stay_unique_and_dense_under_concurrent_creators,
                tickets::a_batch_with_a_missing_dependency_writes_nothing,
                tickets::moves_are_checked_against_the_current_state,
                tickets::unknown_ticket_is_not_found,
                tickets::edits_reject_cycles_and_record_only_what_changed,
                tickets::a_ticket_reads_with_its_dependencies_states_in_order,
                tickets::listing_filters_and_orders_by_priority,
                tickets::events_page_and_filter_by_ticket,
                tickets::errors_have_kinds,
                runs::claims_are_compare_and_set,
                runs::a_claim_batch_decides_each_claim_in_turn,
                runs::reports_from_a_superseded_attempt_are_fenced,
                runs::ask_and_answer_move_the_ticket_between_lanes,
                runs::a_ticket_is_not_claimed_again_while_its_last_process_may_still_run,
                runs::a_question_left_by_a_cancel_is_closed_not_answered_later,
                dispatch::decisions_are_recorded_only_when_they_change,
                dispatch::the_capacity_fact_is_recorded_once_per_change,
                dispatch::decision_cursors_are_kept_per_lane,
                dispatch::touched_tickets_miss_no_event_of_a_concurrent_writer,
                events::a_follower_misses_no_event_of_concurrent_writers,
                tasks::task_runs_keep_their_trigger,
                tasks::a_slot_fires_once_across_concurrent_schedulers,
                concurrency::concurrent_claims_never_exceed_the_pool_and_global_caps,
                incidents::audit_passes_open_update_reopen_and_resolve,
                incidents::without_auto_resolve_an_incident_stays_open_until_an_operator_resolves_it,
                incidents::concurrent_audits_open_one_incident,
                health::heartbeats_are_one_row_per_node,
                health::the_snapshot_gathers_the_durable_facts,
                health::waiting_tickets_carry_their_dependencies,
                health::a_verdict_change_is_recorded_once,
                evidence::evidence_is_fenced_and_recorded_with_one_event_each,
                evidence::the_gate_decides_on_fresh_evidence_and_prose_counts_for_nothing,
                evidence::a_decision_without_close_records_but_does_not_move,
                evidence::the_author_cannot_approve_and_an_approval_opens_the_gate,
                evidence::a_rejection_sends_back_with_its_reason_and_counts_against_attempts,
                evidence::an_oversized_diff_stays_in_review_and_asks_a_human,
                evidence::review_requests_are_found_by_token_and_never_go_to_an_author,
                evidence::concurrent_gates_close_a_ticket_once,
                evidence::a_verdict_and_the_close_of_its_request_end_it_once,
                evidence::a_done_ticket_whose_evidence_stops_verifying_is_a_health_fact,
                inbox::questions_become_items_and_answers_act_on_them,
                inbox::an_item_is_acted_once_only_with_its_action_and_its_effect,
                inbox::deliveries_lease_expire_redeliver_and_fail_with_an_alert,
                inbox::a_ticket_that_fails_raises_an_item_in_the_same_transaction,
                inbox::concurrent_writers_deliver_and_act_on_an_item_once,
                web::tokens_are_found_by_hash_revoked_once_and_touched,
                web::an_idempotency_key_holds_its_first_response,
                web::counts_and_pages_of_the_board,
                web::unsettled_inbox_items_and_open_incidents_are_counted,
                web::racing_senders_reserve_a_key_once,
                inbox::the_health_snapshot_reads_unsettled_and_failed_items,
                runs::orphaned_attempts_are_not_charged_but_bounded,
                outbox::notifications_are_queued_with_their_fact_for_subscribed_channels,
                outbox::claims_are_ordered_leased_and_held_behind_a_retry,
                outbox::an_expired_lease_delivers_again_under_the_same_id_and_survives_a_restart,
                outbox::a_dead_notification_opens_its_incident_in_the_same_transaction,
                outbox::cursors_only_move_forward_and_count_what_was_ignored,
                usage::the_ledger_counts_each_run_once_and_answers_windows,
                usage::a_rate_limit_parks_the_worker_and_charges_no_attempt,
                usage::a_worker_breaker_opens_after_failures_in_a_row_and_closes_on_success,
                usage::a_task_breaker_records_its_runs_verdicts,
                usage::a_budget_alert_is_raised_once_per_window,
                usage::the_holds_version_moves_with_every_write_the_holds_read,
            );

            #[test]
            fn the_ledger_matches_hand_computed_sums() {
                $crate::conformance::usage::the_ledger_matches_hand_computed_sums::<$backend>();
            }

            #[test]
            fn incident_recurrence_holds() {
                $crate::conformance::incidents::incident_recurrence_holds::<$backend>();
            }

            #[test]
            fn the_inbox_never_fakes_or_loses_an_action() {
                $crate::conformance::inbox::the_inbox_never_fakes_or_loses_an_action::<$backend>();
            }

            #[test]
            fn state_machine_holds() {
                $crate::conformance::state_machine::state_machine_holds::<$backend>();
            }
        }
    };
}

/// One `#[tokio::test]` per case.
macro_rules! cases {
    ($backend:ty; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::conformance::$module::$case::<$backend>().await;
            }
        )*
    };
}

pub(crate) use {cases, conformance_suite};
