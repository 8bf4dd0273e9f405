//! API tokens: created with a scope (read, write, admin) and an optional expiry, shown once,
//! stored only as a SHA-256 hash, revocable, their last use recorded. These are the token use
//! cases: `mission token create | list | revoke` and the admin API call the same functions, and
//! every request with a bearer token is checked by `authenticate`.
//!
//! What each scope allows is decided by `required_scope` from the method and the path alone, for
//! every route the router has (and for those it does not), so a new route cannot be left open:
//! reads (GET) need `read`, every other method `write`, the token routes `admin`; only
//! `/healthz` needs nothing.

use axum::http::Method;
use mission_core::Timestamp;
use mission_engine::{AppError, AppResult, Clock};
use mission_store::{ApiToken, NewApiToken, Store};
use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Recognisable prefix of API tokens (run tokens are `mcr_`).
pub const PREFIX: &str = "mc_";

/// Random bytes in a token: 256 bits.
const TOKEN_BYTES: usize = 32;

/// A token's last use is written at most this often, so that reads stay reads.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// The longest label.
const MAX_LABEL: usize = 100;

/// What a token may do; each scope includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    pub fn parse(text: &str) -> AppResult<Scope> {
        match text {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            other => Err(AppError::invalid(format!(
                "scope {other:?}: must be read, write or admin"
            ))
            .on_field("scope")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scope a request needs: `None` only for liveness, the dashboard's login and logout (a
/// logout checks its own session) and its static files (a script and a style sheet).
pub fn required_scope(method: &Method, path: &str) -> Option<Scope> {
    if matches!(path, "/healthz" | "/login" | "/logout") || path.starts_with("/static/") {
        return None;
    }
    if path == "/api/v1/tokens" || path.starts_with("/api/v1/tokens/") {
        return Some(Scope::Admin);
    }
    if method == Method::GET || method == Method::HEAD {
        Some(Scope::Read)
    } else {
        Some(Scope::Write)
    }
}

/// A token in clear: exists only between its creation and the one output that shows it. Its
/// `Debug` is redacted and it has neither `Display` nor `Serialize`.
pub struct Secret(String);

impl Secret {
    /// The token itself, for the one place that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Whether a token can be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenState {
    Active,
    Expired,
    Revoked,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Active => "active",
            TokenState::Expired => "expired",
            TokenState::Revoked => "revoked",
        }
    }
}

/// Who a request acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// Authentication is off (loopback only): the request may do everything.
    Local,
    /// A valid token.
    Token { id: i64, scope: Scope },
    /// A dashboard session, opened with a valid token (checked again at every request).
    Session { token: i64, scope: Scope },
}

impl Principal {
    /// The actor recorded in the events this request causes.
    pub fn actor(&self) -> mission_core::Actor {
        match self {
            Principal::Local => mission_core::Actor::new("api"),
            Principal::Token { id, .. } => mission_core::Actor::new(format!("api:token-{id}")),
            Principal::Session { token, .. } => {
                mission_core::Actor::new(format!("dashboard:token-{token}"))
            }
        }
    }

    /// The actor of what a dashboard form causes.
    pub fn dashboard_actor(&self) -> mission_core::Actor {
        match self {
            Principal::Local => mission_core::Actor::new("dashboard"),
            Principal::Token { id, .. } | Principal::Session { token: id, .. } => {
                mission_core::Actor::new(format!("dashboard:token-{id}"))
            }
        }
    }

    /// What it may do; `None` is everything (no authentication).
    pub fn scope(&self) -> Option<Scope> {
        match self {
            Principal::Local => None,
            Principal::Token { scope, .. } | Principal::Session { scope, .. } => Some(*scope),
        }
    }

    /// The namespace of its idempotency keys.
    pub fn key(&self) -> String {
        match self {
            Principal::Local => "local".to_owned(),
            Principal::Token { id, .. } | Principal::Session { token: id, .. } => {
                format!("token:{id}")
            }
        }
    }
}

/// Why a presented token is not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    Unknown,
    Expired,
    Revoked,
}

impl Denial {
    pub fn message(self) -> &'static str {
        match self {
            Denial::Unknown => "the token is not an API token of this instance",
            Denial::Expired => "the token has expired",
            Denial::Revoked => "the token has been revoked",
        }
    }
}

/// A token's state at `now`: `revoked`, `expired` or `active` — the one rule, for
/// authentication and for listings.
pub fn token_state(token: &ApiToken, now: Timestamp) -> TokenState {
    if token.revoked_at.is_some() {
        TokenState::Revoked
    } else if token.expires_at.is_some_and(|at| at <= now) {
        TokenState::Expired
    } else {
        TokenState::Active
    }
}

/// The token use cases, over the store.
#[derive(Clone)]
pub struct Tokens {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    touched: Arc<Mutex<HashMap<i64, Timestamp>>>,
}

impl Tokens {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Tokens {
            store,
            clock,
            touched: Arc::default(),
        }
    }

    /// Creates a token; the secret is returned once and only its hash is stored.
    pub async fn create(
        &self,
        scope: &str,
        expires: Option<&str>,
        label: Option<String>,
    ) -> AppResult<(ApiToken, Secret)> {
        let scope = Scope::parse(scope)?;
        let now = self.clock.now();
        let expires_at = match expires {
            None => None,
            Some(text) => {
                let duration = mission_core::time::parse_duration(text).map_err(|e| {
                    AppError::invalid(format!("expires {text:?}: {e}")).on_field("expires")
                })?;
                let millis = i64::try_from(duration.as_millis())
                    .ok()
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| {
                        AppError::invalid(format!("expires {text:?}: must be positive"))
                            .on_field("expires")
                    })?;
                Some(Timestamp::from_millis(
                    now.as_millis().saturating_add(millis),
                ))
            }
        };
        if let Some(label) = &label
            && (label.chars().count() > MAX_LABEL || label.chars().any(char::is_control))
        {
            return Err(AppError::invalid(format!(
                "label: at most {MAX_LABEL} characters on one line"
            ))
            .on_field("label"));
        }
        let secret = generate().map_err(|e| {
            AppError::internal(format!("cannot read random bytes for a token: {e}"))
        })?;
        let record = self
            .store
            .create_api_token(&NewApiToken {
                token_hash: hash(secret.expose()),
                scope: scope.as_str().to_owned(),
                label,
                created_at: now,
                expires_at,
            })
            .await?;
        tracing::info!(token.id = record.id, scope = %scope, "API token created");
        Ok((record, secret))
    }

    pub async fn list(&self) -> AppResult<Vec<ApiToken>> {
        Ok(self.store.api_tokens().await?)
    }

    /// A token's state now.
    pub fn state(&self, token: &ApiToken) -> TokenState {
        token_state(token, self.clock.now())
    }

    /// Revokes a token; revoking it again is not an error.
    pub async fn revoke(&self, id: i64) -> AppResult<ApiToken> {
        let record = self
            .store
            .revoke_api_token(id, self.clock.now())
            .await?
            .ok_or_else(|| AppError::not_found(format!("no API token {id}")).on_field("id"))?;
        tracing::info!(token.id = id, "API token revoked");
        Ok(record)
    }

    /// Checks a presented token; records its use (at most once a minute).
    pub async fn authenticate(&self, presented: &str) -> AppResult<Result<Principal, Denial>> {
        if !presented.starts_with(PREFIX) {
            return Ok(Err(Denial::Unknown));
        }
        self.authenticate_hash(&hash(presented)).await
    }

    /// Checks the token whose hash is `hash` (a dashboard session keeps the hash of the token
    /// it was opened with, never the token): revoked or expired since, it is refused.
    pub async fn authenticate_hash(&self, hash: &str) -> AppResult<Result<Principal, Denial>> {
        let Some(record) = self.store.api_token_by_hash(hash).await? else {
            return Ok(Err(Denial::Unknown));
        };
        let now = self.clock.now();
        match token_state(&record, now) {
            TokenState::Revoked => return Ok(Err(Denial::Revoked)),
            TokenState::Expired => return Ok(Err(Denial::Expired)),
            TokenState::Active => {}
        }
        let Ok(scope) = Scope::parse(&record.scope) else {
            // A scope this binary does not know grants nothing.
            return Ok(Err(Denial::Unknown));
        };
        self.touch(record.id, now);
        Ok(Ok(Principal::Token {
            id: record.id,
            scope,
        }))
    }

    /// Writes the last use in the background, at most once per `TOUCH_EVERY` per token.
    fn touch(&self, id: i64, now: Timestamp) {
        {
            let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
            let due = touched.get(&id).is_none_or(|last| {
                now.as_millis() - last.as_millis() >= TOUCH_EVERY.as_millis() as i64
            });
            if !due {
                return;
            }
            touched.insert(id, now);
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(error) = store.touch_api_token(id, now).await {
                tracing::warn!(token.id = id, %error, "could not record a token's use");
            }
        });
    }
}

/// The stored form of a token: its SHA-256.
pub fn hash(presented: &str) -> String {
    mission_engine::token::hash(presented)
}

/// A new random token: the prefix and 256 random bits in hex.
fn generate() -> std::io::Result<Secret> {
    Ok(Secret(format!("{PREFIX}{}", random_hex(TOKEN_BYTES)?)))
}

/// `bytes` random bytes from the kernel, in hex.
pub(crate) fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buffer)?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_include_the_lesser_ones() {
        assert!(Scope::Admin.allows(Scope::Write) && Scope::Write.allows(Scope::Read));
        assert!(!Scope::Read.allows(Scope::Write) && !Scope::Write.allows(Scope::Admin));
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()).unwrap(), scope);
        }
        assert!(Scope::parse("root").is_err());
    }

    #[test]
    fn every_path_but_liveness_needs_a_scope() {
        let cases = [
            (Method::GET, "/healthz", None),
            (Method::GET, "/metrics", Some(Scope::Read)),
            (Method::GET, "/api/v1/tickets", Some(Scope::Read)),
            (Method::POST, "/api/v1/tickets", Some(Scope::Write)),
            (Method::DELETE, "/api/v1/anything", Some(Scope::Write)),
            (Method::GET, "/api/v1/tokens", Some(Scope::Admin)),
            (Method::DELETE, "/api/v1/tokens/3", Some(Scope::Admin)),
            (Method::GET, "/api/v1/tokensx", Some(Scope::Read)),
            (Method::GET, "/healthz/", Some(Scope::Read)),
            (Method::GET, "/login", None),
            (Method::POST, "/login", None),
            (Method::POST, "/logout", None),
            (Method::GET, "/static/live.js", None),
            (Method::GET, "/", Some(Scope::Read)),
            (Method::GET, "/tickets/MC-1", Some(Scope::Read)),
            (Method::POST, "/inbox/3/act", Some(Scope::Write)),
            (Method::GET, "/staticfile", Some(Scope::Read)),
        ];
        for (method, path, scope) in cases {
            assert_eq!(required_scope(&method, path), scope, "{method} {path}");
        }
    }

    #[test]
    fn secrets_are_prefixed_random_and_redacted() {
        let (a, b) = (generate().unwrap(), generate().unwrap());
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with(PREFIX));
        assert_eq!(a.expose().len(), PREFIX.len() + 2 * TOKEN_BYTES);
        assert_eq!(format!("{a:?}"), "[REDACTED]");
    }
}
