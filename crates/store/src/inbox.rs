//! The inbox: items that need a decision, delivered under a lease, acted on only together with
//! the action they caused (and that action's effect on the ticket), in one transaction.

use crate::{Change, Result};
use async_trait::async_trait;
use mission_core::inbox::{Delivery, InboxStatus};
use mission_core::proof::InboxRoutes;
use mission_core::review::ReviewRules;
use mission_core::{
    Action, ActionKind, Addressee, InboxId, InboxItem, InboxPolicy, NewInboxItem, Reviewer,
    TicketId,
};

#[async_trait]
pub trait InboxStore: Send + Sync {
    /// Creates an item, pending (`inbox.created`).
    async fn create_inbox_item(&self, item: &NewInboxItem, change: &Change) -> Result<InboxItem>;

    async fn inbox_item(&self, id: InboxId) -> Result<InboxItem>;

    /// Items by filter, oldest first.
    async fn inbox_items(&self, filter: &InboxFilter) -> Result<Vec<InboxItem>>;

    /// The item delivered under this token (a worker run's), if any.
    async fn inbox_item_for_token(&self, token_hash: &str) -> Result<Option<InboxItem>>;

    /// Delivers a pending item (`inbox.delivered`) under `policy`'s lease; a worker delivery
    /// records its run's token. An item whose deliveries are used up fails instead, raising its
    /// alert (`inbox.failed`, `inbox.created`).
    async fn deliver_inbox_item(
        &self,
        id: InboxId,
        policy: &InboxPolicy,
        token_hash: Option<&str>,
        change: &Change,
    ) -> Result<Delivered>;

    /// Every delivered item whose lease ran out by `change.at` goes back to pending
    /// (`inbox.expired`) or, with its deliveries used up, fails and raises its alert.
    async fn expire_inbox_leases(
        &self,
        policy: &InboxPolicy,
        change: &Change,
    ) -> Result<Vec<Expired>>;

    /// Fails an unsettled item (its addressee is gone, say), raising its alert.
    async fn fail_inbox_item(
        &self,
        id: InboxId,
        reason: &str,
        policy: &InboxPolicy,
        change: &Change,
    ) -> Result<Expired>;

    /// Acts on an item: the action row, the item `acted` and the action's effect on the ticket
    /// (`mission_core::inbox_flow::action_effect`) in one transaction (`inbox.acted` and the
    /// effect's own events). A worker acts only on an item delivered to it under its token.
    async fn act_on_inbox_item(&self, request: &ActOnItem<'_>, change: &Change) -> Result<Acted>;
}

/// Which items `inbox_items` returns. Empty fields match everything.
#[derive(Clone, Debug, Default)]
pub struct InboxFilter {
    pub status: Option<InboxStatus>,
    pub addressee: Option<Addressee>,
    /// Only items addressed to some worker.
    pub to_workers: bool,
    pub ticket: Option<TicketId>,
    /// Only items still waiting for a decision (pending or delivered).
    pub open: bool,
    /// Only items after this one (a page's last id: the next page).
    pub after: Option<InboxId>,
    pub limit: Option<u32>,
}

/// What a delivery did.
#[derive(Clone, Debug)]
pub enum Delivered {
    Delivered {
        item: InboxItem,
        delivery: Delivery,
    },
    /// Its deliveries were used up: it failed, and this alert was raised.
    Failed {
        item: InboxItem,
        alert: Option<InboxItem>,
    },
}

/// An item whose lease expired, or that failed.
#[derive(Clone, Debug)]
pub struct Expired {
    pub item: InboxItem,
    /// The alert raised when the item failed.
    pub alert: Option<InboxItem>,
}

/// An action on an item.
#[derive(Clone, Debug)]
pub struct ActOnItem<'a> {
    pub item: InboxId,
    pub action: ActionKind,
    pub text: Option<String>,
    /// Who acts: a person (`ReviewerKind::Human`) or the worker the item is delivered to.
    pub by: Reviewer,
    /// A worker acts under the token of the run the item was delivered to.
    pub token_hash: Option<String>,
    pub rules: &'a ReviewRules,
    pub max_attempts: u32,
    pub routes: &'a InboxRoutes,
}

#[derive(Clone, Debug)]
pub struct Acted {
    pub item: InboxItem,
    pub action: Action,
}
