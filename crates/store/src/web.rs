//! What the HTTP side keeps and reads beyond the use cases: API tokens (hashed), the idempotency
//! keys of retried creates, and the counts `/metrics` exports. One part of the `Store`.

use crate::Result;
use async_trait::async_trait;
use mission_core::{State, Timestamp};

#[async_trait]
pub trait WebStore: Send + Sync {
    /// Stores a new API token (its hash only) and returns its record.
    async fn create_api_token(&self, token: &NewApiToken) -> Result<ApiToken>;

    /// Every API token, revoked and expired ones included, oldest first.
    async fn api_tokens(&self) -> Result<Vec<ApiToken>>;

    /// The token whose hash this is, whatever its state (revoked, expired).
    async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>>;

    /// Revokes a token (a second revocation keeps the first time); `None` when there is no such
    /// token.
    async fn revoke_api_token(&self, id: i64, at: Timestamp) -> Result<Option<ApiToken>>;

    /// Records that the token was used at `at`.
    async fn touch_api_token(&self, id: i64, at: Timestamp) -> Result<()>;

    /// Reserves an idempotency key for a request, or returns what the key already holds. Keys
    /// older than `forget_before` are forgotten first.
    async fn reserve_idempotency_key(
        &self,
        key: &IdempotencyKey,
        at: Timestamp,
        forget_before: Timestamp,
    ) -> Result<Reservation>;

    /// Stores the response of the request that reserved the key.
    async fn complete_idempotency_key(
        &self,
        key: &IdempotencyKey,
        status: u16,
        response: &str,
    ) -> Result<()>;

    /// Gives a reserved key back (its request failed in a way a retry may fix).
    async fn release_idempotency_key(&self, key: &IdempotencyKey) -> Result<()>;

    /// How many tickets are in each state (states without tickets are left out).
    async fn ticket_counts(&self) -> Result<Vec<(State, i64)>>;

    /// Ended runs counted by outcome and failure class.
    async fn run_counts(&self) -> Result<Vec<RunCount>>;

    /// Ended task runs counted by task and outcome.
    async fn task_outcome_counts(&self) -> Result<Vec<TaskOutcomeCount>>;

    /// Unsettled inbox items (pending, delivered) counted by kind and status, each group with
    /// its oldest item's creation time; by kind, then status.
    async fn inbox_counts(&self) -> Result<Vec<InboxCount>>;

    /// Open incidents counted by severity (severities without one are left out).
    async fn open_incident_counts(&self) -> Result<Vec<(String, i64)>>;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxCount {
    pub kind: String,
    pub status: String,
    pub count: i64,
    pub oldest: Timestamp,
}

/// A token to store: its hash, never the token.
#[derive(Clone, Debug)]
pub struct NewApiToken {
    pub token_hash: String,
    pub scope: String,
    pub label: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

/// A stored API token, without anything that would let one use it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub scope: String,
    pub label: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// An idempotency key as the store keys it: per sender, with the fingerprint of the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub principal: String,
    pub key: String,
    pub request_hash: String,
}

/// What reserving an idempotency key found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// The key is new and now reserved for this request.
    Reserved,
    /// The key was used before: by a request with this fingerprint, and its response when the
    /// request finished.
    Existing {
        request_hash: String,
        response: Option<(u16, String)>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunCount {
    pub outcome: String,
    pub failure_class: Option<String>,
    pub count: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskOutcomeCount {
    pub task: String,
    pub outcome: String,
    pub count: i64,
}
