//! Dashboard sessions: a person pastes an API token into the login form and gets a session
//! cookie instead. The session lives in this process's memory, keyed by the SHA-256 of its id
//! (the cookie's value is nowhere at rest), with an expiry; it keeps the hash of the token it
//! was opened with — never the token — and every request checks that token again, so revoking
//! the token ends its sessions at once. A new login is a new session id.
//!
//! Every form carries a CSRF token that its POST must send back: the session's own, or, where
//! there are no sessions (`[server] auth = false`, loopback only) and on the login form, one
//! random value of this process. Another site cannot read either (the same-origin policy), and
//! the Origin / `Sec-Fetch-Site` guard refuses its writes anyway.

use crate::auth::random_hex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "mc_session";

/// The longest a session lasts (less when its token expires sooner).
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Sessions kept at once; the oldest go first.
const MAX_SESSIONS: usize = 1024;

/// Random bytes of a session id and of a CSRF token.
const ID_BYTES: usize = 32;

/// Failed logins slow the next ones down: 250 ms doubled per failure in a row, at most 4 s,
/// forgotten after 10 minutes without one.
const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(4);
const FAILURES_FORGOTTEN: Duration = Duration::from_secs(600);

/// The CSRF token a request's forms must carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Csrf {
    /// Forms must send this value back.
    Expected(String),
    /// A request with a bearer token: nothing ambient to forge.
    NotNeeded,
}

impl Csrf {
    /// The value a form carries.
    pub fn value(&self) -> &str {
        match self {
            Csrf::Expected(value) => value,
            Csrf::NotNeeded => "",
        }
    }

    /// Whether `sent` is the expected value (compared in constant time).
    pub fn accepts(&self, sent: &str) -> bool {
        match self {
            Csrf::Expected(expected) => constant_time_eq(expected.as_bytes(), sent.as_bytes()),
            Csrf::NotNeeded => true,
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An open session.
#[derive(Clone, Debug)]
pub struct Session {
    /// The SHA-256 of the token it was opened with.
    pub token_hash: String,
    pub csrf: String,
    pub expires: Instant,
}

struct Failures {
    count: u32,
    last: Option<Instant>,
}

/// The sessions of this process.
pub struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
    local_csrf: String,
    failures: Mutex<Failures>,
}

impl Sessions {
    pub fn new() -> std::io::Result<Self> {
        Ok(Sessions {
            sessions: Mutex::new(HashMap::new()),
            local_csrf: random_hex(ID_BYTES)?,
            failures: Mutex::new(Failures {
                count: 0,
                last: None,
            }),
        })
    }

    /// The CSRF token of forms outside sessions (no authentication; the login form).
    pub fn local_csrf(&self) -> &str {
        &self.local_csrf
    }

    /// Opens a session for the token whose hash is `token_hash`, lasting at most `lifetime`;
    /// returns the cookie's value (the session id) and the session.
    pub fn open(
        &self,
        token_hash: String,
        lifetime: Duration,
    ) -> std::io::Result<(String, Session)> {
        let id = random_hex(ID_BYTES)?;
        let session = Session {
            token_hash,
            csrf: random_hex(ID_BYTES)?,
            expires: Instant::now() + lifetime.min(LIFETIME),
        };
        let mut sessions = self.lock();
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(key(&id), session.clone());
        Ok((id, session))
    }

    /// The session of a cookie's value, while it lasts.
    pub fn get(&self, id: &str) -> Option<Session> {
        let key = key(id);
        let mut sessions = self.lock();
        match sessions.get(&key) {
            Some(session) if session.expires > Instant::now() => Some(session.clone()),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, id: &str) {
        self.lock().remove(&key(id));
    }

    /// Ends every session opened with the token whose hash is `token_hash`.
    pub fn close_all_of(&self, token_hash: &str) {
        self.lock().retain(|_, s| s.token_hash != token_hash);
    }

    /// Records a failed login; returns how long to wait before answering it.
    pub fn failed_login(&self) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if failures
            .last
            .is_some_and(|last| now.duration_since(last) > FAILURES_FORGOTTEN)
        {
            failures.count = 0;
        }
        failures.count = failures.count.saturating_add(1);
        failures.last = Some(now);
        let factor = 1u32 << (failures.count - 1).min(16);
        FIRST_DELAY.saturating_mul(factor).min(MAX_DELAY)
    }

    pub fn login_succeeded(&self) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.count = 0;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn key(id: &str) -> String {
    format!("{:x}", Sha256::digest(id.as_bytes()))
}

/// The value of the cookie `name` in a request's `Cookie` headers.
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

/// The `Set-Cookie` value of a new session: HttpOnly, SameSite=Strict, `Secure` when the
/// request came over TLS (a proxy in front says so).
pub fn set_cookie(id: &str, lifetime: Duration, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        lifetime.min(LIFETIME).as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_expire_and_close() {
        let sessions = Sessions::new().unwrap();
        let (id, session) = sessions.open("h1".into(), LIFETIME).unwrap();
        assert_eq!(id.len(), 64);
        assert_eq!(sessions.get(&id).unwrap().csrf, session.csrf);
        assert!(sessions.get("not-a-session").is_none());
        let (other, _) = sessions.open("h1".into(), LIFETIME).unwrap();
        assert_ne!(id, other, "a new login is a new session");
        let (short, _) = sessions.open("h2".into(), Duration::ZERO).unwrap();
        assert!(sessions.get(&short).is_none(), "expired");
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
        sessions.close_all_of("h1");
        assert!(sessions.get(&other).is_none());
        // Only hashes of ids are kept.
        assert!(!sessions.lock().contains_key(&other));
    }

    #[test]
    fn csrf_tokens_and_cookies() {
        let csrf = Csrf::Expected("abc".into());
        assert!(csrf.accepts("abc") && !csrf.accepts("abd") && !csrf.accepts(""));
        assert!(Csrf::NotNeeded.accepts(""));
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("cookie", "a=1; mc_session=xyz ; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&headers, "c"), None);
        let set = set_cookie("xyz", LIFETIME, false);
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(!set.contains("Secure") && set_cookie("x", LIFETIME, true).ends_with("; Secure"));
    }

    #[test]
    fn failed_logins_slow_down() {
        let sessions = Sessions::new().unwrap();
        let delays: Vec<Duration> = (0..7).map(|_| sessions.failed_login()).collect();
        assert_eq!(delays[0], FIRST_DELAY);
        assert_eq!(delays[1], FIRST_DELAY * 2);
        assert_eq!(delays[6], MAX_DELAY);
        sessions.login_succeeded();
        assert_eq!(sessions.failed_login(), FIRST_DELAY);
    }
}
