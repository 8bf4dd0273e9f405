//! "Is it working?": the verdict over durable facts, whether or not a server runs, and the
//! verdict recorded when it changed. `mission status` and `GET /api/v1/health` call `status`.

use super::{App, AppResult};
use crate::health::{self, ServerLiveness};
use mission_core::health::{HealthChange, HealthReason};
use mission_core::{Actor, Timestamp, Verdict};
use serde::Serialize;

/// The verdict, its reasons, and the server's liveness.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub verdict: Verdict,
    pub reasons: Vec<HealthReason>,
    pub server: ServerLiveness,
    pub at: Timestamp,
    /// The change this assessment recorded (`health.changed`), if the verdict changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<HealthChange>,
}

impl StatusReport {
    /// The exit code of `mission status`: 0 working, 1 degraded, 2 broken.
    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            Verdict::Working => 0,
            Verdict::Degraded => 1,
            Verdict::Broken => 2,
        }
    }
}

impl App {
    /// Assesses health now and records the verdict if it changed since the last one recorded
    /// (by this or any process: the store decides under its write lock, so each change is
    /// written once).
    pub async fn status(&self, actor: &Actor) -> AppResult<StatusReport> {
        let tasks = self.load_tasks().await?;
        let assessment = health::assess_now(
            self.store.as_ref(),
            &self.settings,
            &tasks,
            self.clock.now(),
        )
        .await?;
        let changed = health::record(self.store.as_ref(), &assessment, actor.clone()).await?;
        Ok(StatusReport {
            verdict: assessment.report.verdict,
            reasons: assessment.report.reasons,
            server: assessment.server,
            at: assessment.at,
            changed,
        })
    }
}
