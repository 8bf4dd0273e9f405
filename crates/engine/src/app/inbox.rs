//! The inbox: list, show, act — by a person, or by the worker an item was delivered to (under
//! the token of the run it was delivered by).

use super::review::refusal;
use super::{App, AppError, AppResult};
use crate::gatekeeper::Closing;
use mission_core::inbox::StoredInboxItem;
use mission_core::inbox_flow::{ActionEffect, action_effect};
use mission_core::review::ReviewDecision;
use mission_core::{ActionKind, Actor, InboxId, Name, Reviewer, ReviewerKind};
use mission_store::{ActOnItem, InboxFilter, StoreError};
use serde::Serialize;

/// An item acted on, and what followed.
#[derive(Clone, Debug, Serialize)]
pub struct ActedItem {
    pub item: StoredInboxItem,
    /// After a person approved a review request, the gate was asked: what it said.
    pub gate: Option<Closing>,
}

impl App {
    pub async fn inbox_list(&self, filter: &InboxFilter) -> AppResult<Vec<StoredInboxItem>> {
        Ok(self
            .store
            .inbox_items(filter)
            .await?
            .iter()
            .map(|item| item.to_stored())
            .collect())
    }

    pub async fn inbox_show(&self, id: InboxId) -> AppResult<StoredInboxItem> {
        Ok(self.store.inbox_item(id).await?.to_stored())
    }

    /// A person acts on an item. Approving a review request asks the gate at once.
    pub async fn inbox_act(
        &self,
        id: InboxId,
        action: ActionKind,
        text: Option<String>,
        by: Name,
        actor: &Actor,
    ) -> AppResult<ActedItem> {
        let by = Reviewer {
            name: by,
            kind: ReviewerKind::Human,
        };
        let acted = self.act(id, action, text, by, None, actor).await?;
        let gate = match (
            action_effect(acted.item.kind, acted.action.kind),
            &acted.item.ticket,
        ) {
            (ActionEffect::Review(ReviewDecision::Approve), Some(ticket)) => {
                Some(self.gatekeeper().close(ticket, actor).await?)
            }
            _ => None,
        };
        self.waker.wake();
        Ok(ActedItem {
            item: acted.item.to_stored(),
            gate,
        })
    }

    /// The worker an item was delivered to acts on it, under its run's token.
    pub async fn inbox_act_in_run(
        &self,
        token: &str,
        id: InboxId,
        action: ActionKind,
        text: Option<String>,
    ) -> AppResult<ActedItem> {
        let hash = crate::token::hash(token);
        let delivered = self
            .store
            .inbox_item_for_token(&hash)
            .await?
            .ok_or_else(|| {
                AppError::invalid("the run token does not name an inbox delivery of this instance")
            })?;
        let worker = delivered.addressee.name().clone();
        let by = Reviewer {
            name: worker.clone(),
            kind: ReviewerKind::Worker,
        };
        let actor = Actor::new(format!("worker:{worker}#inbox-{}", delivered.id));
        let acted = self.act(id, action, text, by, Some(hash), &actor).await?;
        self.waker.wake();
        Ok(ActedItem {
            item: acted.item.to_stored(),
            gate: None,
        })
    }

    async fn act(
        &self,
        id: InboxId,
        action: ActionKind,
        text: Option<String>,
        by: Reviewer,
        token_hash: Option<String>,
        actor: &Actor,
    ) -> AppResult<mission_store::Acted> {
        let request = ActOnItem {
            item: id,
            action,
            text,
            by,
            token_hash,
            rules: &self.settings.gate.review,
            max_attempts: self.settings.dispatch.max_attempts,
            routes: &self.settings.gate.routes,
        };
        self.store
            .act_on_inbox_item(&request, &self.change(actor))
            .await
            .map_err(|error| match error {
                StoreError::Inbox(ref inner)
                    if !matches!(
                        inner,
                        mission_core::inbox::InboxError::Text(_)
                            | mission_core::inbox::InboxError::Unknown(..)
                    ) =>
                {
                    AppError::refused(format!("refused: {error}"))
                }
                other => refusal(other),
            })
    }
}
