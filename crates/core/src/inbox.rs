//! The inbox: messages that need a decision — a worker's question, a review request, an
//! approval, an alert, a failed ticket — and the state machine that keeps "processed" honest.
//!
//! Items move `pending → delivered → acted | failed`. Delivery takes a lease; a delivered item
//! whose handler died goes back to pending when its lease expires and is delivered again, until
//! its deliveries reach the maximum: then it fails and asks for an alert. An item is `acted` only
//! together with the structured action it caused — `InboxState::Acted` carries the `Action`, so
//! "acted without an action" cannot be written, and `act` returns that action for the store to
//! insert in the same transaction. Nothing here marks an item processed because a loop ran.

use crate::event::Actor;
use crate::id::{Name, TicketId, store_id};
use crate::ticket::{ValidationError, check_message};
use crate::time::{Timestamp, deserialize_duration};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

store_id!(
    /// An inbox item's id, assigned by the store.
    InboxId
);

/// What an item asks for. Stable strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboxKind {
    /// A running worker's question (`mission run ask`); its ticket waits in needs_input.
    Question,
    /// A ticket in review waits for a reviewer (e.g. its diff was too large for auto-review).
    ReviewRequest,
    /// Something needs a yes or no before work goes on (a merge, say).
    Approval,
    /// Something went wrong that a person should know: an item that could not be delivered, a
    /// merge conflict, an incident.
    Alert,
    /// A ticket used up its attempts or failed in a way retrying cannot fix.
    FailedTicket,
}

impl InboxKind {
    pub const ALL: [InboxKind; 5] = [
        InboxKind::Question,
        InboxKind::ReviewRequest,
        InboxKind::Approval,
        InboxKind::Alert,
        InboxKind::FailedTicket,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InboxKind::Question => "question",
            InboxKind::ReviewRequest => "review_request",
            InboxKind::Approval => "approval",
            InboxKind::Alert => "alert",
            InboxKind::FailedTicket => "failed_ticket",
        }
    }

    /// Whether an item of this kind is always about a ticket. Only an alert may stand alone.
    pub fn needs_ticket(self) -> bool {
        self != InboxKind::Alert
    }

    /// The actions that settle an item of this kind. Every kind can be escalated or dismissed.
    pub fn allows(self, action: ActionKind) -> bool {
        use ActionKind::*;
        match action {
            Escalated | Dismissed => true,
            Answered => self == InboxKind::Question,
            Approved | Rejected => matches!(self, InboxKind::ReviewRequest | InboxKind::Approval),
            Requeued => matches!(self, InboxKind::FailedTicket | InboxKind::Alert),
        }
    }
}

impl fmt::Display for InboxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InboxKind {
    type Err = InboxError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InboxKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| InboxError::Unknown("inbox kind", s.to_owned()))
    }
}

/// Who an item is for: a human channel (`channel:operator`), or a worker acting as an
/// orchestrator (`worker:council`), which is delivered the item by being run with it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Addressee {
    Channel(Name),
    Worker(Name),
}

impl Addressee {
    pub fn is_worker(&self) -> bool {
        matches!(self, Addressee::Worker(_))
    }

    pub fn name(&self) -> &Name {
        match self {
            Addressee::Channel(name) | Addressee::Worker(name) => name,
        }
    }
}

impl fmt::Display for Addressee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addressee::Channel(name) => write!(f, "channel:{name}"),
            Addressee::Worker(name) => write!(f, "worker:{name}"),
        }
    }
}

impl FromStr for Addressee {
    type Err = InboxError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || InboxError::Unknown("addressee", s.to_owned());
        let (kind, name) = s.split_once(':').ok_or_else(unknown)?;
        let name = Name::parse(name).map_err(|_| unknown())?;
        match kind {
            "channel" => Ok(Addressee::Channel(name)),
            "worker" => Ok(Addressee::Worker(name)),
            _ => Err(unknown()),
        }
    }
}

impl Serialize for Addressee {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Addressee {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What acting on an item did. Stable strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// A question answered; the text is the answer.
    Answered,
    Approved,
    /// The text is the reason.
    Rejected,
    /// The ticket was put back to todo for another attempt.
    Requeued,
    /// Handed to someone else.
    Escalated,
    /// Closed without acting on a ticket.
    Dismissed,
}

impl ActionKind {
    pub const ALL: [ActionKind; 6] = [
        ActionKind::Answered,
        ActionKind::Approved,
        ActionKind::Rejected,
        ActionKind::Requeued,
        ActionKind::Escalated,
        ActionKind::Dismissed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Answered => "answered",
            ActionKind::Approved => "approved",
            ActionKind::Rejected => "rejected",
            ActionKind::Requeued => "requeued",
            ActionKind::Escalated => "escalated",
            ActionKind::Dismissed => "dismissed",
        }
    }

    /// An answer needs its text, a rejection its reason.
    pub fn needs_text(self) -> bool {
        matches!(self, ActionKind::Answered | ActionKind::Rejected)
    }

    /// These act on the item's ticket, so the item must have one.
    pub fn needs_ticket(self) -> bool {
        matches!(
            self,
            ActionKind::Answered
                | ActionKind::Approved
                | ActionKind::Rejected
                | ActionKind::Requeued
        )
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActionKind {
    type Err = InboxError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ActionKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| InboxError::Unknown("action", s.to_owned()))
    }
}

/// The structured action an item caused, written in the same transaction that makes the item
/// `acted`, naming the ticket and the actor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub item: InboxId,
    pub kind: ActionKind,
    pub ticket: Option<TicketId>,
    pub actor: Actor,
    pub text: Option<String>,
    pub at: Timestamp,
}

/// An item's state. `Acted` carries its action: there is no acted item without one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InboxState {
    Pending,
    Delivered { lease_expires_at: Timestamp },
    Acted(Action),
    Failed { reason: String, at: Timestamp },
}

/// The stored status: the `status` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboxStatus {
    Pending,
    Delivered,
    Acted,
    Failed,
}

impl InboxStatus {
    pub const ALL: [InboxStatus; 4] = [
        InboxStatus::Pending,
        InboxStatus::Delivered,
        InboxStatus::Acted,
        InboxStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InboxStatus::Pending => "pending",
            InboxStatus::Delivered => "delivered",
            InboxStatus::Acted => "acted",
            InboxStatus::Failed => "failed",
        }
    }

    /// Acted and failed items are settled: nothing moves them again.
    pub fn is_settled(self) -> bool {
        matches!(self, InboxStatus::Acted | InboxStatus::Failed)
    }
}

impl fmt::Display for InboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InboxStatus {
    type Err = InboxError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InboxStatus::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| InboxError::Unknown("inbox status", s.to_owned()))
    }
}

/// How delivery works: the lease of a delivery to a worker and to a human channel, the most
/// deliveries before an item fails, and who hears about a failed item. Shaped to be read from an
/// `[inbox]` section of `mission.toml`; every field has a default.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboxPolicy {
    /// How long a worker run delivered an item has to act on it.
    #[serde(deserialize_with = "deserialize_duration")]
    pub worker_lease: Duration,
    /// How long a person notified of an item has before it is delivered again (a reminder).
    #[serde(deserialize_with = "deserialize_duration")]
    pub channel_lease: Duration,
    /// Deliveries before an item that was never acted on fails. At least 1.
    #[serde(deserialize_with = "at_least_one")]
    pub max_deliveries: u32,
    /// Where the alert about a failed item goes.
    pub alert_to: Addressee,
}

fn at_least_one<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    match u32::deserialize(deserializer)? {
        0 => Err(serde::de::Error::custom("must be at least 1")),
        n => Ok(n),
    }
}

impl Default for InboxPolicy {
    fn default() -> Self {
        InboxPolicy {
            worker_lease: Duration::from_secs(15 * 60),
            channel_lease: Duration::from_secs(24 * 3600),
            max_deliveries: 3,
            alert_to: Addressee::Channel(Name::parse("operator").expect("a valid name")),
        }
    }
}

impl InboxPolicy {
    pub fn lease_for(&self, addressee: &Addressee) -> Duration {
        match addressee {
            Addressee::Worker(_) => self.worker_lease,
            Addressee::Channel(_) => self.channel_lease,
        }
    }
}

/// Why an inbox operation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboxError {
    #[error("unknown {0} {1:?}")]
    Unknown(&'static str, String),
    #[error("inbox item {item} is {status}; only a pending item is delivered")]
    NotPending { item: InboxId, status: InboxStatus },
    #[error("inbox item {item} is {status}; only a delivered item's lease expires")]
    NotDelivered { item: InboxId, status: InboxStatus },
    #[error("inbox item {item}'s lease runs until {until}")]
    LeaseRunning { item: InboxId, until: Timestamp },
    #[error("inbox item {item} was delivered {deliveries} times, the most allowed; it fails")]
    DeliveriesExhausted { item: InboxId, deliveries: u32 },
    #[error("inbox item {item} is already {status}")]
    Settled { item: InboxId, status: InboxStatus },
    #[error("a {kind} item cannot be {action}")]
    ActionNotAllowed { kind: InboxKind, action: ActionKind },
    #[error("inbox item {0} names no ticket to act on")]
    NoTicket(InboxId),
    #[error("a {0} item must name its ticket")]
    TicketRequired(InboxKind),
    #[error("inbox item {item} is addressed to {addressee}, not to worker {worker}")]
    NotAddressee {
        item: InboxId,
        addressee: Addressee,
        worker: Name,
    },
    #[error("inbox item {item} is not delivered to {worker} now; act on it while it is")]
    NotDeliveredTo { item: InboxId, worker: Name },
    #[error("stored inbox item {0} is inconsistent: {1}")]
    Inconsistent(InboxId, &'static str),
    #[error(transparent)]
    Text(#[from] ValidationError),
}

/// A new item, checked: its text is a bounded message, and every kind but an alert names its
/// ticket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewInboxItem {
    pub kind: InboxKind,
    pub ticket: Option<TicketId>,
    pub addressee: Addressee,
    pub text: String,
}

impl NewInboxItem {
    pub fn new(
        kind: InboxKind,
        ticket: Option<TicketId>,
        addressee: Addressee,
        text: &str,
    ) -> Result<Self, InboxError> {
        check_message("inbox text", text)?;
        if kind.needs_ticket() && ticket.is_none() {
            return Err(InboxError::TicketRequired(kind));
        }
        Ok(NewInboxItem {
            kind,
            ticket,
            addressee,
            text: text.to_owned(),
        })
    }
}

/// What a person or a worker does with an item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionRequest {
    pub kind: ActionKind,
    pub actor: Actor,
    pub text: Option<String>,
}

/// A delivery just made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// 1 for the first delivery.
    pub delivery: u32,
    pub lease_expires_at: Timestamp,
}

/// What an expired lease did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Back to pending, to be delivered again.
    Redeliver,
    /// Its deliveries reached the maximum: the item failed. `alert` is the item to create
    /// about it in the same transaction (none for an alert, so alerts never cascade).
    Failed { alert: Option<NewInboxItem> },
}

/// An item in the inbox. Its state and delivery count change only through the transition
/// functions below, each checked against the current state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxItem {
    pub id: InboxId,
    pub kind: InboxKind,
    pub ticket: Option<TicketId>,
    pub addressee: Addressee,
    pub text: String,
    pub created_at: Timestamp,
    deliveries: u32,
    state: InboxState,
}

impl InboxItem {
    /// A new item, pending, as the store creates it with the id it allocated.
    pub fn new(id: InboxId, item: NewInboxItem, created_at: Timestamp) -> Self {
        InboxItem {
            id,
            kind: item.kind,
            ticket: item.ticket,
            addressee: item.addressee,
            text: item.text,
            created_at,
            deliveries: 0,
            state: InboxState::Pending,
        }
    }

    pub fn state(&self) -> &InboxState {
        &self.state
    }

    pub fn status(&self) -> InboxStatus {
        match self.state {
            InboxState::Pending => InboxStatus::Pending,
            InboxState::Delivered { .. } => InboxStatus::Delivered,
            InboxState::Acted(_) => InboxStatus::Acted,
            InboxState::Failed { .. } => InboxStatus::Failed,
        }
    }

    /// How many times the item was delivered.
    pub fn deliveries(&self) -> u32 {
        self.deliveries
    }

    /// The action that settled the item, if it was acted on.
    pub fn action(&self) -> Option<&Action> {
        match &self.state {
            InboxState::Acted(action) => Some(action),
            _ => None,
        }
    }

    /// Delivers a pending item: one more delivery, under a lease until `now` plus the lease of
    /// its addressee. Refused for any other state, and once its deliveries reached the maximum
    /// (the item must then `fail`).
    pub fn deliver(
        &mut self,
        policy: &InboxPolicy,
        now: Timestamp,
    ) -> Result<Delivery, InboxError> {
        if self.state != InboxState::Pending {
            return Err(InboxError::NotPending {
                item: self.id,
                status: self.status(),
            });
        }
        if self.deliveries >= policy.max_deliveries {
            return Err(InboxError::DeliveriesExhausted {
                item: self.id,
                deliveries: self.deliveries,
            });
        }
        self.deliveries += 1;
        let lease_expires_at = now.plus(policy.lease_for(&self.addressee));
        self.state = InboxState::Delivered { lease_expires_at };
        Ok(Delivery {
            delivery: self.deliveries,
            lease_expires_at,
        })
    }

    /// A delivered item whose lease ran out without an action: back to pending for another
    /// delivery, or failed once its deliveries reached the maximum.
    pub fn expire(&mut self, policy: &InboxPolicy, now: Timestamp) -> Result<Expiry, InboxError> {
        let InboxState::Delivered { lease_expires_at } = self.state else {
            return Err(InboxError::NotDelivered {
                item: self.id,
                status: self.status(),
            });
        };
        if now < lease_expires_at {
            return Err(InboxError::LeaseRunning {
                item: self.id,
                until: lease_expires_at,
            });
        }
        if self.deliveries < policy.max_deliveries {
            self.state = InboxState::Pending;
            return Ok(Expiry::Redeliver);
        }
        let reason = format!(
            "not acted on after {} deliveries to {}",
            self.deliveries, self.addressee
        );
        let alert = self.fail(&reason, policy, now)?;
        Ok(Expiry::Failed { alert })
    }

    /// Acts on a pending or delivered item. Returns the action record, which the store inserts
    /// in the same transaction as the item's new state: an item is acted on once, with exactly
    /// one action.
    pub fn act(&mut self, request: ActionRequest, now: Timestamp) -> Result<Action, InboxError> {
        self.unsettled()?;
        if !self.kind.allows(request.kind) {
            return Err(InboxError::ActionNotAllowed {
                kind: self.kind,
                action: request.kind,
            });
        }
        if request.kind.needs_ticket() && self.ticket.is_none() {
            return Err(InboxError::NoTicket(self.id));
        }
        let text = match request.text.as_deref().map(str::trim) {
            Some(text) if !text.is_empty() => {
                check_message("action text", text)?;
                Some(text.to_owned())
            }
            _ if request.kind.needs_text() => {
                return Err(ValidationError::EmptyMessage(match request.kind {
                    ActionKind::Answered => "answer",
                    _ => "reason",
                })
                .into());
            }
            _ => None,
        };
        let action = Action {
            item: self.id,
            kind: request.kind,
            ticket: self.ticket.clone(),
            actor: request.actor,
            text,
            at: now,
        };
        self.state = InboxState::Acted(action.clone());
        Ok(action)
    }

    /// Fails a pending or delivered item (its ticket is gone, its addressee no longer exists,
    /// its deliveries are used up). Returns the alert to create about it — none when the item
    /// is itself an alert, so that failures never cascade.
    pub fn fail(
        &mut self,
        reason: &str,
        policy: &InboxPolicy,
        now: Timestamp,
    ) -> Result<Option<NewInboxItem>, InboxError> {
        self.unsettled()?;
        self.state = InboxState::Failed {
            reason: reason.to_owned(),
            at: now,
        };
        if self.kind == InboxKind::Alert {
            return Ok(None);
        }
        let about = match &self.ticket {
            Some(ticket) => format!(" about {ticket}"),
            None => String::new(),
        };
        let text = format!(
            "Inbox item {} ({}{about}) failed: {reason}",
            self.id, self.kind
        );
        Ok(Some(NewInboxItem::new(
            InboxKind::Alert,
            self.ticket.clone(),
            policy.alert_to.clone(),
            &text,
        )?))
    }

    /// Whether `worker` may act on this item under its run token: the item is addressed to it
    /// and delivered to it now. People (the CLI, the API) may act on any unsettled item.
    pub fn worker_may_act(&self, worker: &Name) -> Result<(), InboxError> {
        if self.addressee != Addressee::Worker(worker.clone()) {
            return Err(InboxError::NotAddressee {
                item: self.id,
                addressee: self.addressee.clone(),
                worker: worker.clone(),
            });
        }
        if self.status() != InboxStatus::Delivered {
            return Err(InboxError::NotDeliveredTo {
                item: self.id,
                worker: worker.clone(),
            });
        }
        Ok(())
    }

    fn unsettled(&self) -> Result<(), InboxError> {
        if self.status().is_settled() {
            return Err(InboxError::Settled {
                item: self.id,
                status: self.status(),
            });
        }
        Ok(())
    }

    /// The item as the store keeps it: flat columns, and the action from its own table.
    pub fn to_stored(&self) -> StoredInboxItem {
        let (lease_expires_at, failure) = match &self.state {
            InboxState::Delivered { lease_expires_at } => (Some(*lease_expires_at), None),
            InboxState::Failed { reason, at } => (None, Some((reason.clone(), *at))),
            InboxState::Pending | InboxState::Acted(_) => (None, None),
        };
        StoredInboxItem {
            id: self.id,
            kind: self.kind,
            ticket: self.ticket.clone(),
            addressee: self.addressee.clone(),
            text: self.text.clone(),
            created_at: self.created_at,
            deliveries: self.deliveries,
            status: self.status(),
            lease_expires_at,
            failure,
            action: self.action().cloned(),
        }
    }

    /// Reads an item back from its stored form, refusing inconsistent rows: an `acted` item
    /// without its action (or an action on an item that is not acted), a delivered item
    /// without a lease.
    pub fn from_stored(stored: StoredInboxItem) -> Result<Self, InboxError> {
        let id = stored.id;
        let inconsistent = |what| Err(InboxError::Inconsistent(id, what));
        if stored.action.as_ref().is_some_and(|a| a.item != id) {
            return inconsistent("its action belongs to another item");
        }
        let state = match (
            stored.status,
            stored.lease_expires_at,
            stored.failure,
            stored.action,
        ) {
            (InboxStatus::Pending, None, None, None) => InboxState::Pending,
            (InboxStatus::Delivered, Some(lease_expires_at), None, None) => {
                InboxState::Delivered { lease_expires_at }
            }
            (InboxStatus::Acted, None, None, Some(action)) => InboxState::Acted(action),
            (InboxStatus::Acted, _, _, None) => return inconsistent("acted without an action"),
            (InboxStatus::Failed, None, Some((reason, at)), None) => {
                InboxState::Failed { reason, at }
            }
            (_, _, _, Some(_)) => return inconsistent("an action on an item that is not acted"),
            (InboxStatus::Delivered, None, _, _) => {
                return inconsistent("delivered without a lease");
            }
            _ => return inconsistent("fields that do not match its status"),
        };
        if stored.status == InboxStatus::Delivered && stored.deliveries == 0 {
            return inconsistent("delivered but never counted as a delivery");
        }
        Ok(InboxItem {
            id,
            kind: stored.kind,
            ticket: stored.ticket,
            addressee: stored.addressee,
            text: stored.text,
            created_at: stored.created_at,
            deliveries: stored.deliveries,
            state,
        })
    }
}

/// An item's stored form: the `inbox_items` row and, for an acted item, its row in the actions
/// table (one per item, enforced there by a unique key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredInboxItem {
    pub id: InboxId,
    pub kind: InboxKind,
    pub ticket: Option<TicketId>,
    pub addressee: Addressee,
    pub text: String,
    pub created_at: Timestamp,
    pub deliveries: u32,
    pub status: InboxStatus,
    pub lease_expires_at: Option<Timestamp>,
    /// Why and when it failed.
    pub failure: Option<(String, Timestamp)>,
    pub action: Option<Action>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::TicketKey;

    fn ticket(n: i64) -> TicketId {
        TicketId::new(&TicketKey::default(), n)
    }

    fn worker(n: &str) -> Addressee {
        Addressee::Worker(Name::parse(n).unwrap())
    }

    fn item(kind: InboxKind, ticket: Option<TicketId>) -> InboxItem {
        let new = NewInboxItem::new(kind, ticket, worker("council"), "what next?").unwrap();
        InboxItem::new(InboxId::new(1), new, Timestamp::from_millis(0))
    }

    fn request(kind: ActionKind, text: Option<&str>) -> ActionRequest {
        ActionRequest {
            kind,
            actor: Actor::new("cli"),
            text: text.map(str::to_owned),
        }
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn policy(max_deliveries: u32) -> InboxPolicy {
        InboxPolicy {
            worker_lease: Duration::from_millis(100),
            channel_lease: Duration::from_millis(1000),
            max_deliveries,
            ..InboxPolicy::default()
        }
    }

    #[test]
    fn strings_round_trip() {
        for kind in InboxKind::ALL {
            assert_eq!(kind.as_str().parse::<InboxKind>().unwrap(), kind);
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for kind in ActionKind::ALL {
            assert_eq!(kind.as_str().parse::<ActionKind>().unwrap(), kind);
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for status in InboxStatus::ALL {
            assert_eq!(status.as_str().parse::<InboxStatus>().unwrap(), status);
        }
        for text in ["channel:operator", "worker:council"] {
            let addressee: Addressee = text.parse().unwrap();
            assert_eq!(addressee.to_string(), text);
            assert_eq!(serde_json::to_value(&addressee).unwrap(), text);
        }
        for bad in ["council", "team:x", "worker:", "worker:a b"] {
            assert!(bad.parse::<Addressee>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_policy_reads_from_configuration() {
        let p: InboxPolicy =
            toml::from_str("worker_lease = \"5m\"\nalert_to = \"worker:council\"").unwrap();
        assert_eq!(p.worker_lease, Duration::from_secs(300));
        assert_eq!(p.alert_to, worker("council"));
        assert_eq!(p.max_deliveries, InboxPolicy::default().max_deliveries);
        assert!(toml::from_str::<InboxPolicy>("max_deliveries = 0").is_err());
        assert!(toml::from_str::<InboxPolicy>("alert_to = \"nobody\"").is_err());
        assert!(toml::from_str::<InboxPolicy>("lease = \"5m\"").is_err());
    }

    #[test]
    fn new_items_are_checked() {
        let to = worker("council");
        assert!(
            NewInboxItem::new(InboxKind::Question, Some(ticket(7)), to.clone(), "why?").is_ok()
        );
        assert!(NewInboxItem::new(InboxKind::Alert, None, to.clone(), "disk low").is_ok());
        assert_eq!(
            NewInboxItem::new(InboxKind::Question, None, to.clone(), "why?")
                .unwrap_err()
                .to_string(),
            "a question item must name its ticket"
        );
        assert!(NewInboxItem::new(InboxKind::Alert, None, to, " ").is_err());
    }

    #[test]
    fn actions_by_kind() {
        use ActionKind::*;
        use InboxKind::*;
        // (item kind, action, text, the refusal's message or None)
        let cases: Vec<(InboxKind, ActionKind, Option<&str>, Option<&str>)> = vec![
            (Question, Answered, Some("use the v2 API"), None),
            (Question, Answered, None, Some("answer is empty")),
            (Question, Answered, Some("  "), Some("answer is empty")),
            (
                Question,
                Approved,
                None,
                Some("a question item cannot be approved"),
            ),
            (Question, Dismissed, None, None),
            (Question, Escalated, Some("to ana"), None),
            (ReviewRequest, Approved, None, None),
            (ReviewRequest, Rejected, Some("no tests"), None),
            (ReviewRequest, Rejected, None, Some("reason is empty")),
            (Approval, Approved, None, None),
            (FailedTicket, Requeued, None, None),
            (
                FailedTicket,
                Answered,
                Some("x"),
                Some("a failed_ticket item cannot be answered"),
            ),
            (Alert, Dismissed, None, None),
        ];
        for (kind, action, text, refusal) in cases {
            let mut it = item(kind, Some(ticket(7)));
            let got = it.act(request(action, text), at(5));
            match (got, refusal) {
                (Ok(record), None) => {
                    assert_eq!(record.kind, action);
                    assert_eq!(record.ticket, Some(ticket(7)));
                    assert_eq!(record.item, it.id);
                    assert_eq!(it.action(), Some(&record));
                    assert_eq!(it.status(), InboxStatus::Acted);
                }
                (Err(err), Some(want)) => {
                    assert_eq!(err.to_string(), want, "{kind} {action}");
                    assert_eq!(
                        it.status(),
                        InboxStatus::Pending,
                        "a refusal changes nothing"
                    );
                }
                (got, want) => panic!("{kind} {action}: got {got:?}, want {want:?}"),
            }
        }
        // An alert about nothing cannot requeue a ticket.
        let mut alert = item(Alert, None);
        assert_eq!(
            alert.act(request(Requeued, None), at(5)).unwrap_err(),
            InboxError::NoTicket(InboxId::new(1))
        );
    }

    #[test]
    fn delivery_lease_expiry_and_failure() {
        let p = policy(2);
        let mut it = item(InboxKind::Question, Some(ticket(7)));
        assert_eq!(
            it.expire(&p, at(0)).unwrap_err().to_string(),
            "inbox item 1 is pending; only a delivered item's lease expires"
        );
        let first = it.deliver(&p, at(10)).unwrap();
        assert_eq!(
            first,
            Delivery {
                delivery: 1,
                lease_expires_at: at(110)
            }
        );
        assert!(it.deliver(&p, at(11)).is_err(), "delivered twice at once");
        assert_eq!(
            it.expire(&p, at(109)).unwrap_err(),
            InboxError::LeaseRunning {
                item: it.id,
                until: at(110)
            }
        );
        assert_eq!(it.expire(&p, at(110)).unwrap(), Expiry::Redeliver);
        assert_eq!(it.status(), InboxStatus::Pending);
        assert_eq!(it.deliver(&p, at(200)).unwrap().delivery, 2);
        let Expiry::Failed { alert: Some(alert) } = it.expire(&p, at(400)).unwrap() else {
            panic!("the second expiry of two deliveries fails the item");
        };
        assert_eq!(it.status(), InboxStatus::Failed);
        assert_eq!(alert.kind, InboxKind::Alert);
        assert_eq!(alert.ticket, Some(ticket(7)));
        assert_eq!(alert.addressee, p.alert_to);
        assert_eq!(
            alert.text,
            "Inbox item 1 (question about MC-7) failed: not acted on after 2 deliveries to worker:council"
        );
        assert!(
            it.act(request(ActionKind::Dismissed, None), at(500))
                .is_err()
        );
        assert!(it.deliver(&p, at(500)).is_err());
    }

    #[test]
    fn a_failed_alert_raises_no_further_alert() {
        let p = policy(1);
        let mut alert = item(InboxKind::Alert, None);
        alert.deliver(&p, at(0)).unwrap();
        assert_eq!(
            alert.expire(&p, at(100)).unwrap(),
            Expiry::Failed { alert: None }
        );
    }

    #[test]
    fn a_lowered_maximum_stops_delivery() {
        let mut it = item(InboxKind::Question, Some(ticket(7)));
        it.deliver(&policy(3), at(0)).unwrap();
        it.expire(&policy(3), at(100)).unwrap();
        assert!(matches!(
            it.deliver(&policy(1), at(200)),
            Err(InboxError::DeliveriesExhausted { deliveries: 1, .. })
        ));
        assert!(
            it.fail("deliveries used up", &policy(1), at(200))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn only_the_addressed_worker_acts_and_only_while_delivered() {
        let p = policy(3);
        let council = Name::parse("council").unwrap();
        let mut it = item(InboxKind::Question, Some(ticket(7)));
        assert!(matches!(
            it.worker_may_act(&council),
            Err(InboxError::NotDeliveredTo { .. })
        ));
        it.deliver(&p, at(0)).unwrap();
        assert!(it.worker_may_act(&council).is_ok());
        assert!(matches!(
            it.worker_may_act(&Name::parse("luci").unwrap()),
            Err(InboxError::NotAddressee { .. })
        ));
    }

    #[test]
    fn stored_rows_that_break_the_rules_are_refused() {
        let mut acted = item(InboxKind::Question, Some(ticket(7)));
        acted
            .act(request(ActionKind::Answered, Some("yes")), at(1))
            .unwrap();
        let good = acted.to_stored();
        assert_eq!(InboxItem::from_stored(good.clone()).unwrap(), acted);
        let json = serde_json::to_value(&good).unwrap();
        assert_eq!(json["status"], "acted");
        assert_eq!(json["action"]["kind"], "answered");

        let without_action = StoredInboxItem {
            action: None,
            ..good.clone()
        };
        assert_eq!(
            InboxItem::from_stored(without_action)
                .unwrap_err()
                .to_string(),
            "stored inbox item 1 is inconsistent: acted without an action"
        );
        let pending_with_action = StoredInboxItem {
            status: InboxStatus::Pending,
            ..good.clone()
        };
        assert!(InboxItem::from_stored(pending_with_action).is_err());
        let foreign_action = StoredInboxItem {
            id: InboxId::new(2),
            ..good.clone()
        };
        assert!(InboxItem::from_stored(foreign_action).is_err());
        let delivered_without_lease = StoredInboxItem {
            status: InboxStatus::Delivered,
            action: None,
            deliveries: 1,
            ..good
        };
        assert!(InboxItem::from_stored(delivered_without_lease).is_err());
    }
}

/// The inbox as a state machine under random operations: deliveries, actions, handlers that
/// die, lease expiries and store reopens, checked against a reference model after every step.
#[cfg(test)]
mod properties {
    use super::*;
    use crate::id::TicketKey;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const LEASE_MS: i64 = 100;

    #[derive(Clone, Debug)]
    enum Op {
        Deliver(usize),
        Act(usize, ActionKind),
        /// A handler died before its transaction committed: whatever it did to its copy of the
        /// item is lost, and the stored item is as it was.
        Crash(usize, ActionKind),
        /// Time passes by this many milliseconds, then every expired lease is reaped.
        Tick(i64),
        /// The store is closed and opened: every item goes through its stored form.
        Reopen,
        Fail(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<usize>().prop_map(Op::Deliver),
            2 => (any::<usize>(), prop::sample::select(ActionKind::ALL.to_vec()))
                .prop_map(|(i, a)| Op::Act(i, a)),
            2 => (any::<usize>(), prop::sample::select(ActionKind::ALL.to_vec()))
                .prop_map(|(i, a)| Op::Crash(i, a)),
            3 => (0..3 * LEASE_MS).prop_map(Op::Tick),
            1 => Just(Op::Reopen),
            1 => any::<usize>().prop_map(Op::Fail),
        ]
    }

    /// The reference model of one item: its status, deliveries and lease, and the actions
    /// written for it.
    #[derive(Clone, Debug, Default)]
    struct Model {
        status: Option<InboxStatus>,
        deliveries: u32,
        lease_expires_at: i64,
        actions: u32,
    }

    fn policy(max_deliveries: u32) -> InboxPolicy {
        InboxPolicy {
            worker_lease: Duration::from_millis(LEASE_MS as u64),
            channel_lease: Duration::from_millis(LEASE_MS as u64),
            max_deliveries,
            ..InboxPolicy::default()
        }
    }

    fn fresh(n: usize) -> Vec<InboxItem> {
        (0..n)
            .map(|i| {
                let kind = InboxKind::ALL[i % InboxKind::ALL.len()];
                let ticket = TicketId::new(&TicketKey::default(), i as i64 + 1);
                let new = NewInboxItem::new(
                    kind,
                    Some(ticket),
                    Addressee::Worker(Name::parse("council").unwrap()),
                    "decide",
                )
                .unwrap();
                InboxItem::new(InboxId::new(i as i64 + 1), new, Timestamp::from_millis(0))
            })
            .collect()
    }

    fn check_invariants(
        items: &[InboxItem],
        models: &[Model],
        written: &BTreeMap<InboxId, Vec<Action>>,
        max: u32,
    ) -> Result<(), TestCaseError> {
        for (item, model) in items.iter().zip(models) {
            let actions = written.get(&item.id).map(Vec::as_slice).unwrap_or(&[]);
            prop_assert!(actions.len() <= 1, "two actions for item {}", item.id);
            prop_assert_eq!(
                item.status() == InboxStatus::Acted,
                actions.len() == 1,
                "item {} is {} with {} action records",
                item.id,
                item.status(),
                actions.len()
            );
            if let Some(action) = item.action() {
                prop_assert_eq!(Some(action), actions.first());
            }
            prop_assert!(
                item.deliveries() <= max,
                "{} deliveries of at most {max}",
                item.deliveries()
            );
            prop_assert_eq!(Some(item.status()), model.status);
            prop_assert_eq!(item.deliveries(), model.deliveries);
            prop_assert_eq!(model.actions as usize, actions.len());
            if let InboxState::Delivered { lease_expires_at } = item.state() {
                prop_assert_eq!(lease_expires_at.as_millis(), model.lease_expires_at);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn the_inbox_never_loses_or_fakes_an_action(
            count in 1..5usize,
            max in 1..4u32,
            ops in prop::collection::vec(op(), 0..60),
        ) {
            let p = policy(max);
            let mut items = fresh(count);
            let mut models = vec![Model { status: Some(InboxStatus::Pending), ..Model::default() }; count];
            let mut written: BTreeMap<InboxId, Vec<Action>> = BTreeMap::new();
            let mut now: i64 = 0;
            for op in ops {
                match op {
                    Op::Deliver(i) => {
                        let (item, model) = (&mut items[i % count], &mut models[i % count]);
                        let allowed = model.status == Some(InboxStatus::Pending) && model.deliveries < max;
                        let got = item.deliver(&p, Timestamp::from_millis(now));
                        prop_assert_eq!(got.is_ok(), allowed, "deliver {:?}", got);
                        if allowed {
                            model.status = Some(InboxStatus::Delivered);
                            model.deliveries += 1;
                            model.lease_expires_at = now + LEASE_MS;
                        }
                    }
                    Op::Act(i, kind) => {
                        let (item, model) = (&mut items[i % count], &mut models[i % count]);
                        let unsettled = matches!(model.status, Some(InboxStatus::Pending | InboxStatus::Delivered));
                        let allowed = unsettled && item.kind.allows(kind);
                        let text = Some("because".to_owned());
                        let got = item.act(
                            ActionRequest { kind, actor: Actor::new("cli"), text },
                            Timestamp::from_millis(now),
                        );
                        prop_assert_eq!(got.is_ok(), allowed, "act {:?}", got);
                        if let Ok(action) = got {
                            written.entry(item.id).or_default().push(action);
                            model.status = Some(InboxStatus::Acted);
                            model.actions += 1;
                        }
                    }
                    Op::Crash(i, kind) => {
                        let mut lost = items[i % count].clone();
                        let request = ActionRequest { kind, actor: Actor::new("run:MC-1#1"), text: None };
                        let _ = lost.act(request, Timestamp::from_millis(now));
                    }
                    Op::Tick(ms) => {
                        now += ms;
                        for (item, model) in items.iter_mut().zip(models.iter_mut()) {
                            let due = model.status == Some(InboxStatus::Delivered) && now >= model.lease_expires_at;
                            let got = item.expire(&p, Timestamp::from_millis(now));
                            prop_assert_eq!(got.is_ok(), due, "expire {:?}", got);
                            if due {
                                let failed = model.deliveries >= max;
                                model.status = Some(if failed { InboxStatus::Failed } else { InboxStatus::Pending });
                                let alert = matches!(got, Ok(Expiry::Failed { alert: Some(_) }));
                                prop_assert_eq!(alert, failed && item.kind != InboxKind::Alert);
                            }
                        }
                    }
                    Op::Reopen => {
                        for item in items.iter_mut() {
                            let stored = item.to_stored();
                            let json = serde_json::to_string(&stored).unwrap();
                            let back: StoredInboxItem = serde_json::from_str(&json).unwrap();
                            let reopened = InboxItem::from_stored(back).unwrap();
                            prop_assert_eq!(&reopened, &*item);
                            *item = reopened;
                        }
                    }
                    Op::Fail(i) => {
                        let (item, model) = (&mut items[i % count], &mut models[i % count]);
                        let unsettled = matches!(model.status, Some(InboxStatus::Pending | InboxStatus::Delivered));
                        let got = item.fail("its ticket is gone", &p, Timestamp::from_millis(now));
                        prop_assert_eq!(got.is_ok(), unsettled);
                        if unsettled {
                            model.status = Some(InboxStatus::Failed);
                        }
                    }
                }
                check_invariants(&items, &models, &written, max)?;
            }

            // Nobody acts any more; deliveries and expiries go on. Every unsettled item is
            // delivered and then fails within its remaining deliveries.
            for item in items.iter_mut() {
                let mut steps = 0;
                while !item.status().is_settled() {
                    steps += 1;
                    prop_assert!(steps <= 2 * max + 1, "item {} never settles", item.id);
                    match item.status() {
                        InboxStatus::Pending => {
                            item.deliver(&p, Timestamp::from_millis(now)).unwrap();
                        }
                        InboxStatus::Delivered => {
                            now += LEASE_MS;
                            item.expire(&p, Timestamp::from_millis(now)).unwrap();
                        }
                        InboxStatus::Acted | InboxStatus::Failed => unreachable!(),
                    }
                }
                let actions = written.get(&item.id).map_or(0, Vec::len);
                prop_assert_eq!(item.status() == InboxStatus::Acted, actions == 1);
                prop_assert!(item.deliveries() <= max);
            }
        }
    }
}
