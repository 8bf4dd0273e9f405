//! Signing in and out. With `[server] auth = true`, a person pastes an API token (`mission
//! token create --scope write`) into the form; a valid token opens a session (a new id at every
//! login) whose cookie is HttpOnly and SameSite=Strict. A failed login is answered more slowly
//! each time. Without authentication there is nothing to sign in to: the form sends the
//! browser to the board.

use super::{PageError, PageResult, page};
use crate::Web;
use crate::session::{self, Csrf};
use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::time::Duration;

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub csrf: String,
    pub next: String,
    pub error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    pub next: Option<String>,
}

/// Where to go after signing in: a path of this server, never another site.
fn next_page(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control)
                && !path.starts_with("/login") =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

pub async fn form(State(web): State<Web>, Query(query): Query<LoginQuery>) -> PageResult {
    if !web.config.auth {
        return Ok(Redirect::to("/").into_response());
    }
    page(&LoginPage {
        csrf: web.sessions.local_csrf().to_owned(),
        next: next_page(query.next.as_deref()),
        error: None,
    })
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

pub async fn login(
    State(web): State<Web>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> PageResult {
    if !web.config.auth {
        return Ok(Redirect::to("/").into_response());
    }
    let next = next_page(form.next.as_deref());
    if !Csrf::Expected(web.sessions.local_csrf().to_owned()).accepts(&form.csrf) {
        return Err(PageError {
            status: StatusCode::FORBIDDEN,
            message: "the form's CSRF token is missing or wrong: reload the page".to_owned(),
        });
    }
    let presented = form.token.trim();
    let token_id = match web.tokens.authenticate(presented).await? {
        Ok(principal) => match principal {
            crate::auth::Principal::Token { id, .. } => Some(id),
            _ => None,
        },
        Err(denial) => {
            let delay = web.sessions.failed_login();
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                "a dashboard login failed"
            );
            tokio::time::sleep(delay).await;
            let mut response = page(&LoginPage {
                csrf: web.sessions.local_csrf().to_owned(),
                next,
                error: Some(denial.message().to_owned()),
            })?;
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            return Ok(response);
        }
    };
    web.sessions.login_succeeded();
    // A session lasts at most as long as its token.
    let expires_at = web
        .tokens
        .list()
        .await?
        .into_iter()
        .find(|t| Some(t.id) == token_id)
        .and_then(|t| t.expires_at);
    let lifetime = expires_at.map_or(session::LIFETIME, |at| {
        let left = at.as_millis() - web.app.clock().now().as_millis();
        Duration::from_millis(left.max(0) as u64)
    });
    let hash = crate::auth::hash(presented);
    // The session the browser had, if any, ends: a login is always a new session id.
    if let Some(old) = session::cookie(&headers, session::COOKIE) {
        web.sessions.close(&old);
    }
    let (id, _) = web.sessions.open(hash, lifetime).map_err(|e| PageError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("no session could be opened: {e}"),
    })?;
    let mut response = Redirect::to(&next).into_response();
    let cookie = session::set_cookie(&id, lifetime, over_tls(&headers));
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// A proxy in front terminated TLS: the cookie is `Secure`.
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// Ends the session (its CSRF token must come with the form) and clears the cookie.
pub async fn logout(
    State(web): State<Web>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    if let Some(id) = session::cookie(&headers, session::COOKIE)
        && let Some(session) = web.sessions.get(&id)
    {
        if !Csrf::Expected(session.csrf).accepts(&form.csrf) {
            return PageError {
                status: StatusCode::FORBIDDEN,
                message: "the form's CSRF token is missing or wrong: reload the page".to_owned(),
            }
            .into_response();
        }
        web.sessions.close(&id);
    }
    let mut response = Redirect::to(if web.config.auth { "/login" } else { "/" }).into_response();
    if let Ok(value) = HeaderValue::from_str(&session::clear_cookie()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_login_only_pages_of_this_server() {
        assert_eq!(next_page(Some("/inbox?status=all")), "/inbox?status=all");
        for foreign in [
            "//evil.example.com/",
            "https://evil.example.com",
            "/\\x",
            "/login",
        ] {
            assert_eq!(next_page(Some(foreign)), "/", "{foreign}");
        }
        assert_eq!(next_page(None), "/");
    }
}
