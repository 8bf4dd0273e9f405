//! The dispatcher: ONE implementation, run the same way by the server loop, a scheduled task and
//! `mission dispatch --once`.
//!
//! A pass over one lane:
//! 1. counts active runs — and if counting fails, dispatches nothing and records
//!    `capacity_unknown` (never "0 active, so full capacity");
//! 2. records the decision about each todo ticket of the lane that changed since the last pass
//!    and is not runnable — once per distinct decision, never once per pass;
//! 3. asks the store for the best candidates (todo, this lane, an enabled worker with a free
//!    slot, out of backoff, dependencies done) and asks the policy about each;
//! 4. claims each runnable one with a compare-and-set that re-counts capacity in the same
//!    transaction. A refused claim is a typed reason, not a log line.

use crate::clock::Clock;
use crate::error::EngineError;
use crate::settings::Settings;
use crate::token;
use mission_core::policy::{Capacity, Holds, PolicyContext, Reason, runnability};
use mission_core::{ActiveCounts, Actor, Lane, Name, Run, SlotLimits, State, TicketId};
use mission_store::{
    CapacityFact, Change, ClaimOutcome, ClaimRefusal, ClaimRequest, Store, StoreError,
};
use serde::Serialize;
use std::sync::Arc;

/// Ticket events read per pass when looking for changed decisions.
const TOUCHED_EVENTS_PER_PASS: u32 = 2000;
/// Most claims in one pass.
const CLAIMS_PER_PASS: u32 = 64;

/// What one pass did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PassReport {
    pub lane: Option<Lane>,
    /// Runs claimed, with their tokens (handed to the runner; never serialized).
    #[serde(skip)]
    pub claimed: Vec<(Run, String)>,
    pub claimed_tickets: Vec<TicketId>,
    pub refused: Vec<Refused>,
    /// Decisions written because they changed.
    pub decisions_recorded: u32,
    /// `None` when capacity was counted; the error when it could not be.
    pub capacity_unknown: Option<String>,
    pub candidates: u32,
    /// The holds this pass judged by (its claims counted): the second half's decisions judge
    /// by them too, so a pass reads the budgets, parks and breakers once.
    #[serde(skip)]
    pub holds: Option<crate::holds::HoldsView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Refused {
    pub ticket: TicketId,
    #[serde(flatten)]
    pub refusal: ClaimRefusal,
}

/// A budget alert: the budget, its window's start, the kind (`soft`, `exhausted`).
type AlertKey = (String, i64, &'static str);

#[derive(Clone)]
pub struct Dispatcher {
    store: Arc<dyn Store>,
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
    /// Budget alerts this process raised (budget, window, kind): the store raises each once per
    /// window anyway; this spares a write per pass.
    alerts: Arc<std::sync::Mutex<std::collections::HashSet<AlertKey>>>,
    /// The holds' facts of the last pass, judged by again while the store's version holds.
    holds_cache: Arc<crate::holds::HoldsCache>,
    /// Each lane's decision cursor as this dispatcher moved it, written to the store at most
    /// every `CURSOR_WRITE_INTERVAL` (see `record_changed_decisions`).
    cursors: Arc<std::sync::Mutex<std::collections::HashMap<Lane, LaneCursor>>>,
}

/// Where a lane's decisions stand in this process, and when the store was last told.
#[derive(Clone, Copy, Debug)]
struct LaneCursor {
    seq: i64,
    written: std::time::Instant,
}

/// How often a lane's decision cursor is written to the store while it moves. Between writes the
/// stored cursor lags: a process that stops looks again at the events since — and records
/// nothing twice, since a decision is recorded only when its fingerprint changed.
const CURSOR_WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Counts active runs: the one place capacity is counted. The failpoint `capacity-count` makes it
/// fail in tests.
pub async fn count_active(store: &dyn Store) -> Result<ActiveCounts, EngineError> {
    Ok(count_active_versioned(store).await?.0)
}

/// [`count_active`], with the holds' version read in the same statement (a dispatch pass judges
/// by the holds it kept while that version has not moved).
pub async fn count_active_versioned(
    store: &dyn Store,
) -> Result<(ActiveCounts, Option<i64>), EngineError> {
    fail::fail_point!("capacity-count", |arg| Err(EngineError::CapacityUnknown(
        arg.unwrap_or_else(|| "injected failure".to_owned())
    )));
    store
        .active_counts_versioned()
        .await
        .map_err(|e| EngineError::CapacityUnknown(e.to_string()))
}

/// Capacity as `explain` and the dispatcher see it: counted now, and not marked unknown by the
/// dispatcher's last pass.
pub async fn capacity_view(store: &dyn Store) -> Result<ActiveCounts, EngineError> {
    let counts = count_active(store).await?;
    match store.capacity_fact().await? {
        Some(CapacityFact::Unknown { .. }) => Err(EngineError::CapacityUnknownAtLastPass),
        _ => Ok(counts),
    }
}

fn actor() -> Actor {
    Actor::new("dispatcher")
}

impl Dispatcher {
    pub fn new(store: Arc<dyn Store>, settings: Arc<Settings>, clock: Arc<dyn Clock>) -> Self {
        Dispatcher {
            store,
            settings,
            clock,
            alerts: Arc::default(),
            holds_cache: Arc::default(),
            cursors: Arc::default(),
        }
    }

    fn change(&self) -> Change {
        Change::new(actor(), self.clock.now())
    }

    /// One pass of `lane`: claim what is runnable, then record what changed about the rest.
    pub async fn dispatch_once(&self, lane: Lane) -> Result<PassReport, StoreError> {
        let mut report = self.claim_runnable(lane).await?;
        self.record_decisions(&mut report).await?;
        Ok(report)
    }

    /// The first half of a pass: count capacity (failing closed) and claim the runnable
    /// candidates. The server starts the claimed runs before the second half, so that the
    /// decisions' bookkeeping is never on the path from a commit to an agent's start.
    pub async fn claim_runnable(&self, lane: Lane) -> Result<PassReport, StoreError> {
        let mut reports = self.claim_runnable_lanes(&[lane]).await?;
        reports.pop().unwrap_or_else(|| {
            Ok(PassReport {
                lane: Some(lane),
                ..PassReport::default()
            })
        })
    }

    /// The first half of a pass over `lanes`, in their order (the first has the first call on
    /// capacity): capacity is counted, its fact recorded and the holds read once for all of
    /// them; each lane then claims against what is left after the lanes before it. A lane whose
    /// claims fail has its error in its place; the others still claim.
    pub async fn claim_runnable_lanes(
        &self,
        lanes: &[Lane],
    ) -> Result<Vec<Result<PassReport, StoreError>>, StoreError> {
        tracing::debug!(?lanes, "pass started");
        let _timer = crate::stats::PassTimer::start();
        let (mut counts, version) = match count_active_versioned(self.store.as_ref()).await {
            Ok(counted) => {
                self.capacity_fact(&CapacityFact::Counted).await?;
                counted
            }
            Err(error) => {
                tracing::error!(%error, "active runs could not be counted; dispatching nothing");
                let error = error.detail();
                let fact = CapacityFact::Unknown {
                    error: error.clone(),
                };
                self.capacity_fact(&fact).await?;
                return Ok(lanes
                    .iter()
                    .map(|lane| {
                        Ok(PassReport {
                            lane: Some(*lane),
                            capacity_unknown: Some(error.clone()),
                            ..PassReport::default()
                        })
                    })
                    .collect());
            }
        };
        let mut holds = self.gather_holds(version).await?;
        self.raise_budget_alerts(&holds).await;
        let mut reports = Vec::with_capacity(lanes.len());
        for &lane in lanes {
            let mut report = PassReport {
                lane: Some(lane),
                ..PassReport::default()
            };
            let claimed = self
                .claim_candidates(lane, counts.clone(), &mut holds, &mut report)
                .await;
            // The next lane counts this one's runs: those claimed, not those refused. (The
            // holds keep counting a refused claim against a runs budget until the next pass —
            // on the safe side; a refusal means another writer moved, which wakes the server.)
            for (run, _) in &report.claimed {
                counts.add(run.worker.as_str(), &run.pool);
            }
            reports.push(claimed.map(|()| report));
        }
        for report in reports.iter_mut().flatten() {
            report.holds = Some(holds.clone());
        }
        Ok(reports)
    }

    /// The holds as the store has them at `version` (kept from the last pass while it holds).
    async fn gather_holds(
        &self,
        version: Option<i64>,
    ) -> Result<crate::holds::HoldsView, StoreError> {
        crate::holds::gather_with(
            self.store.as_ref(),
            &self.settings.workforce,
            self.clock.now(),
            Some((&self.holds_cache, version)),
        )
        .await
    }

    /// A budget past its soft limit raises an inbox alert, and one reaching its hard limit
    /// another, once per window each. A failure is logged: the next pass tries again.
    async fn raise_budget_alerts(&self, view: &crate::holds::HoldsView) {
        use mission_core::usage::Standing;
        for standing in &view.standings {
            let kind = match standing.standing {
                Standing::Within => continue,
                Standing::Soft { .. } => "soft",
                Standing::Exhausted { .. } => "exhausted",
            };
            let key = (
                standing.budget.name.clone(),
                standing.window_start.as_millis(),
                kind,
            );
            if self.alerts.lock().is_ok_and(|raised| raised.contains(&key)) {
                continue;
            }
            let zone = self.settings.workforce.zone();
            let resets = standing
                .resets
                .map_or_else(|| "as its usage ages out".to_owned(), |at| zone.show(at));
            let what = standing.standing.describe().unwrap_or_default();
            let text = match kind {
                "soft" => format!(
                    "Budget {} ({}, {}) passed its soft limit: {what}. It resets at {resets}.",
                    standing.budget.name, standing.budget.scope, standing.budget.window
                ),
                _ => format!(
                    "Budget {} ({}, {}) is exhausted: {what}. Nothing more is dispatched under it until it resets at {resets}.",
                    standing.budget.name, standing.budget.scope, standing.budget.window
                ),
            };
            let alert = mission_store::BudgetAlert {
                budget: key.0.clone(),
                window_start: key.1,
                kind: kind.to_owned(),
                text,
            };
            match self
                .store
                .raise_budget_alert(&alert, &self.settings.gate.routes.alerts, &self.change())
                .await
            {
                Ok(raised) => {
                    if raised.is_some() {
                        tracing::warn!(budget = %alert.budget, kind, "budget alert raised");
                    }
                    if let Ok(mut set) = self.alerts.lock() {
                        set.insert(key);
                    }
                }
                Err(error) => tracing::error!(%error, "raising a budget alert failed"),
            }
        }
    }

    /// Records the capacity fact; when it changed, its incident opens (could not count) or
    /// clears (counted again) — SPEC §4 scenario 4. A failure to record the incident is logged:
    /// the operator audit's capacity check records it at its next pass.
    async fn capacity_fact(&self, fact: &CapacityFact) -> Result<(), StoreError> {
        let change = self.change();
        if self.store.set_capacity_fact(fact, &change).await?
            && let Err(error) =
                crate::audit::capacity_changed(self.store.as_ref(), &self.settings, fact, &change)
                    .await
        {
            tracing::error!(%error, "recording the capacity incident failed");
        }
        Ok(())
    }

    /// The second half of a pass: the decisions about tickets that changed since the last pass,
    /// judged against capacity as counted now, after this pass's claims, and the holds the first
    /// half read (with its claims counted). Nothing to do when the first half could not count
    /// capacity; when counting fails now, the next pass records it.
    pub async fn record_decisions(&self, report: &mut PassReport) -> Result<(), StoreError> {
        let Some(lane) = report.lane.filter(|_| report.capacity_unknown.is_none()) else {
            return Ok(());
        };
        let Ok((counts, version)) = count_active_versioned(self.store.as_ref()).await else {
            return Ok(());
        };
        let holds = match report.holds.take() {
            Some(holds) => holds,
            None => self.gather_holds(version).await?,
        };
        let recorded = self
            .record_changed_decisions(lane, &counts, &holds.holds, report)
            .await;
        report.holds = Some(holds);
        recorded
    }

    /// Decisions about tickets that changed since the last pass.
    async fn record_changed_decisions(
        &self,
        lane: Lane,
        counts: &ActiveCounts,
        holds: &Holds,
        report: &mut PassReport,
    ) -> Result<(), StoreError> {
        let kept = self
            .cursors
            .lock()
            .ok()
            .and_then(|cursors| cursors.get(&lane).copied());
        let cursor = match kept {
            Some(kept) => kept.seq,
            None => self.store.decision_cursor(lane).await?,
        };
        let (touched, last) = self
            .store
            .touched_tickets(lane, cursor, TOUCHED_EVENTS_PER_PASS)
            .await?;
        for id in touched {
            let (ticket, deps) = match self.store.ticket_with_dependencies(&id).await {
                Ok(found) => found,
                Err(StoreError::NotFound(_)) => continue,
                Err(err) => return Err(err),
            };
            if ticket.state != State::Todo || Lane::of(ticket.resume) != lane {
                continue;
            }
            let verdict = runnability(&ticket, &deps, self.context(counts, holds));
            if !verdict.is_runnable() && self.record(&id, lane, verdict.reasons()).await? {
                report.decisions_recorded += 1;
            }
        }
        if last > cursor {
            // A write per pass would put a commit (an fsync) into every pass's aftermath, where
            // the next ticket's pickup waits behind it: the store is told at most every
            // `CURSOR_WRITE_INTERVAL`; this process goes on from where it got.
            let written = match kept {
                Some(kept) if kept.written.elapsed() < CURSOR_WRITE_INTERVAL => kept.written,
                _ => {
                    self.store
                        .set_decision_cursor(lane, last, &self.change())
                        .await?;
                    std::time::Instant::now()
                }
            };
            if let Ok(mut cursors) = self.cursors.lock() {
                cursors.insert(lane, LaneCursor { seq: last, written });
            }
        }
        Ok(())
    }

    fn context<'a>(&'a self, counts: &'a ActiveCounts, holds: &'a Holds) -> PolicyContext<'a> {
        PolicyContext {
            workforce: &self.settings.workforce,
            capacity: Capacity::Counted(counts),
            holds,
            now: self.clock.now(),
        }
    }

    async fn record(
        &self,
        id: &TicketId,
        lane: Lane,
        reasons: &[Reason],
    ) -> Result<bool, StoreError> {
        let fingerprint: Vec<&str> = reasons.iter().map(|r| r.code.as_str()).collect();
        let decision = serde_json::json!({ "runnable": false, "reasons": reasons });
        self.store
            .record_decision(id, lane, &fingerprint.join(","), &decision, &self.change())
            .await
    }

    /// Enabled workers with a free slot (their own, their pool's and the global one), by the
    /// one capacity check, and not held back (parked, breaker open, a budget of theirs or of
    /// their pool exhausted).
    fn free_workers(&self, counts: &ActiveCounts, holds: &Holds) -> Vec<Name> {
        let workforce = &self.settings.workforce;
        let now = self.clock.now();
        workforce
            .workers()
            .filter(|(name, worker)| {
                worker.enabled
                    && SlotLimits::of(workforce, name).is_some_and(|l| l.check(counts).is_ok())
                    && !holds.worker_held(workforce, name, counts.worker(name.as_str()), now)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Steps 3 and 4.
    async fn claim_candidates(
        &self,
        lane: Lane,
        mut counts: ActiveCounts,
        holds: &mut crate::holds::HoldsView,
        report: &mut PassReport,
    ) -> Result<(), StoreError> {
        let workforce = &self.settings.workforce;
        let free = self.free_workers(&counts, &holds.holds);
        let slots = workforce
            .max_workers()
            .saturating_sub(counts.total)
            .min(CLAIMS_PER_PASS);
        if slots == 0 || free.is_empty() {
            // Nothing can be claimed: no need to rank the board's candidates (on a board with
            // thousands waiting, that was most of a full pass).
            return Ok(());
        }
        let candidates = self
            .store
            .dispatch_candidates(lane, &free, self.clock.now(), slots)
            .await?;
        report.candidates = candidates.len() as u32;
        let mut requests = Vec::new();
        let mut tokens = Vec::new();
        for id in candidates {
            let (ticket, deps) = match self.store.ticket_with_dependencies(&id).await {
                Ok(found) => found,
                Err(StoreError::NotFound(_)) => continue,
                Err(err) => return Err(err),
            };
            let verdict = runnability(&ticket, &deps, self.context(&counts, &holds.holds));
            if !verdict.is_runnable() {
                if self.record(&id, lane, verdict.reasons()).await? {
                    report.decisions_recorded += 1;
                }
                continue;
            }
            let Some(worker_name) = ticket.assignee.clone() else {
                continue;
            };
            let Some(limits) = SlotLimits::of(workforce, &worker_name) else {
                continue;
            };
            let token =
                token::generate().map_err(|e| StoreError::backend(format!("run token: {e}")))?;
            let request = ClaimRequest {
                ticket: id.clone(),
                lane,
                expected_version: ticket.version,
                limits,
                node: crate::recovery::supervisor_id(&self.settings),
                token_hash: token::hash(&token),
                lease: self.settings.dispatch.lease,
            };
            // Count the planned claim, so that the policy sees this pass's own claims.
            counts.add(worker_name.as_str(), &request.limits.pool);
            holds.count_claim(
                workforce,
                worker_name.as_str(),
                &request.limits.pool,
                &ticket.labels,
            );
            requests.push(request);
            tokens.push(token);
        }
        if requests.is_empty() {
            return Ok(());
        }
        // One write transaction for the pass's claims; each is its own compare-and-set.
        let outcomes = self.store.claim_many(&requests, &self.change()).await?;
        for ((request, token), outcome) in requests.into_iter().zip(tokens).zip(outcomes) {
            let id = request.ticket;
            match outcome {
                ClaimOutcome::Claimed(run) => {
                    tracing::info!(ticket.id = %id, run.id = %run.id, attempt = %run.attempt, worker = %request.limits.worker, %lane, "claimed");
                    report.claimed_tickets.push(id);
                    report.claimed.push((*run, token));
                }
                ClaimOutcome::Refused(refusal) => {
                    tracing::debug!(ticket.id = %id, ?refusal, "claim refused");
                    report.refused.push(Refused {
                        ticket: id,
                        refusal,
                    });
                }
            }
        }
        Ok(())
    }
}
