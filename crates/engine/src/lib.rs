//! Mission Control's engines, written against `mission-core` and the `Store` trait.
//!
//! - `dispatcher` — one pass of one lane: count capacity (failing closed), record changed
//!   decisions, claim runnable tickets.
//! - `runner` — supervises one run: workspace, process group, log, heartbeat, stall and timeout,
//!   termination, classification, the run's end.
//! - `recovery` — closes runs whose supervisor is gone (startup, lease expiry, a dead node).
//! - `leader` — the scheduler's leadership among servers sharing a store (a lease).
//! - `server` — the loop that ties them together, woken by events, beating its heartbeat.
//! - `health` — the verdict's facts gathered, assessed and recorded once per change.
//! - `audit` — the operator audit's checks and probes, and the incidents they open.
//! - `gatekeeper` — closing a ticket through the gate (observe, decide, merge, clean up);
//!   `evidence` observes (tests, routes, files, commits), `git` holds every git call of the
//!   harness.
//! - `app` — the use cases the CLI and the HTTP API call: one function per action.
//! - `sandbox` — what a run may touch, and the launcher that enforces it before the agent runs;
//!   `callback` — a run's requests (ask, progress, submit) over its own socket; `prompt` — the
//!   agent's instructions, rendered from its worker's template.
//! - `redact` — the secrets of an instance, kept out of what it shows (a run's log).

pub mod app;
pub mod audit;
pub mod callback;
pub mod clock;
pub mod dispatcher;
pub mod error;
pub mod evidence;
pub mod explain;
pub mod foreground;
pub mod gatekeeper;
pub mod git;
pub mod health;
pub mod holds;
pub mod leader;
pub mod notify;
pub mod process;
pub mod prompt;
pub mod recovery;
pub mod redact;
pub mod runner;
pub mod sandbox;
pub mod scheduler;
pub mod server;
pub mod settings;
pub mod stats;
pub mod tasks;
pub mod token;
pub mod wake;
pub mod worker_call;
pub mod workspace;

pub use app::{App, AppError, AppResult, ErrorKind};
pub use clock::{Clock, ManualClock, SystemClock};
pub use dispatcher::{Dispatcher, PassReport};
pub use error::EngineError;
pub use runner::{RunReport, Runner};
pub use settings::Settings;

/// Sets up fault injection from the `FAILPOINTS` environment variable (a no-op unless built with
/// the `failpoints` feature). Keep the guard alive for the life of the process.
pub fn failpoints_from_env() -> fail::FailScenario<'static> {
    fail::FailScenario::setup()
}
