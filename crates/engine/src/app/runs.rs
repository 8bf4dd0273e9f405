//! A run talking back: ask, progress, submit — identified by its run token, fenced by its
//! attempt (a superseded attempt's report is refused).

use super::{App, AppError, AppResult};
use mission_core::{Actor, Run, Ticket, check_message};
use mission_store::StoreError;

impl App {
    /// The run a token belongs to. Tokens are stored hashed; an unknown token names no run.
    pub async fn run_for_token(&self, token: &str) -> AppResult<Run> {
        self.store
            .run_for_token(&crate::token::hash(token))
            .await?
            .ok_or_else(|| AppError::invalid("the run token does not name a run of this instance"))
    }

    /// The run asks a question: the ticket waits in needs_input, the run's slot is freed.
    pub async fn run_ask(&self, run: &Run, text: &str) -> AppResult<Ticket> {
        check_message("question", text)?;
        let ticket = self
            .store
            .run_ask(
                run.id,
                run.attempt,
                text,
                &self.settings.gate.routes,
                &self.change(&actor(run)),
            )
            .await
            .map_err(|e| fenced(e, run))?;
        self.waker.wake();
        Ok(ticket)
    }

    pub async fn run_progress(&self, run: &Run, text: &str) -> AppResult<()> {
        check_message("progress report", text)?;
        self.store
            .run_progress(run.id, run.attempt, text, &self.change(&actor(run)))
            .await
            .map_err(|e| fenced(e, run))
    }

    /// The run submits its work for review.
    pub async fn run_submit(&self, run: &Run) -> AppResult<Ticket> {
        let ticket = self
            .store
            .run_submit(run.id, run.attempt, &self.change(&actor(run)))
            .await
            .map_err(|e| fenced(e, run))?;
        self.waker.wake();
        Ok(ticket)
    }
}

fn actor(run: &Run) -> Actor {
    Actor::new(format!("run:{}#{}", run.ticket, run.attempt))
}

/// A report from an attempt that is no longer current is refused, with the attempt named.
fn fenced(err: StoreError, run: &Run) -> AppError {
    match err {
        StoreError::Fenced { .. } => AppError::refused(format!(
            "refused: attempt {} of {} is no longer the current attempt, or has ended",
            run.attempt, run.ticket
        )),
        other => other.into(),
    }
}
