//! Notifications: the outbox as it stands (`notify_list`), and a webhook's test ping
//! (`webhook_test`), sent at once through the same signing and HTTP code as every delivery.

use super::{App, AppError, AppResult};
use crate::notify::{Attempted, http_client, webhook::Webhook};
use mission_core::notify::OutboxStatus;
use mission_store::{OutboxAttempt, OutboxFilter, OutboxItem};

impl App {
    /// Outbox rows, newest first: `state` is `pending`, `sent` or `dead`.
    pub async fn notify_list(
        &self,
        state: Option<&str>,
        channel: Option<String>,
        limit: u32,
    ) -> AppResult<Vec<OutboxItem>> {
        let status = state
            .map(str::parse::<OutboxStatus>)
            .transpose()
            .map_err(AppError::invalid)?;
        Ok(self
            .store
            .outbox(&OutboxFilter {
                status,
                channel,
                limit: limit.clamp(1, 10_000),
            })
            .await?)
    }

    /// A row's attempts, oldest first.
    pub async fn notify_attempts(&self, id: i64) -> AppResult<Vec<OutboxAttempt>> {
        Ok(self.store.outbox_attempts(id).await?)
    }

    /// Sends a signed ping to the webhook `name` now (not through the outbox).
    pub async fn webhook_test(&self, name: &str) -> AppResult<Attempted> {
        let settings = self.settings.notify.webhook(name).ok_or_else(|| {
            let known: Vec<String> = self
                .settings
                .notify
                .webhooks
                .iter()
                .map(|w| w.name.to_string())
                .collect();
            AppError::not_found(if known.is_empty() {
                format!("no webhook {name:?}: mission.toml has no [[notify.webhooks]]")
            } else {
                format!("no webhook {name:?}; configured: {}", known.join(", "))
            })
        })?;
        let hook = Webhook::new(settings.clone(), http_client(), self.clock.clone());
        Ok(hook.ping().await)
    }
}
