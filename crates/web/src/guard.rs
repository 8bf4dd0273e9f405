//! The guards every request passes, outermost first: the Host allow-list (DNS rebinding), the
//! Origin check of unsafe methods (cross-site requests), authentication and scope, and — for
//! everything but the event streams — a bound on requests in flight and on their time, so that
//! the HTTP side can never hold the server's resources for long.

use crate::Web;
use crate::auth::{Principal, required_scope};
use crate::error::ApiError;
use crate::session::Csrf;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;

/// Refuses a request whose `Host` is not this server's: `localhost`, an IP address, or a name
/// of `[server] allowed_hosts`. A page on a foreign name that resolves here (DNS rebinding)
/// sends its own name, and is refused.
pub async fn host(State(web): State<Web>, request: Request, next: Next) -> Response {
    let host = request_host(&request);
    match host {
        Some(host) if host_allowed(&host, &web.config.allowed_hosts) => next.run(request).await,
        Some(host) => ApiError::new(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            format!(
                "host {:?} is not served here (allowed: localhost, IP addresses, [server] allowed_hosts)",
                truncate(&host)
            ),
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            "the request names no host",
        )
        .into_response(),
    }
}

fn request_host(request: &Request) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
}

fn truncate(text: &str) -> String {
    text.chars().take(100).collect()
}

/// The name part of `HOST[:PORT]` (an IPv6 address in brackets).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = host_name(host);
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok()
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Refuses an unsafe request (anything but GET, HEAD, OPTIONS) that a browser says comes from
/// another site: `Sec-Fetch-Site` other than `same-origin` / `none`, or an `Origin` whose host
/// is not the request's. Clients that send neither (curl, scripts) pass on to authentication.
pub async fn origin(request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    if let Err(message) = same_origin(request.headers()) {
        return ApiError::new(StatusCode::FORBIDDEN, "cross_origin", message).into_response();
    }
    next.run(request).await
}

fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if !matches!(site, "same-origin" | "none") {
            return Err(format!(
                "a {site:?} request may not change anything (Sec-Fetch-Site)"
            ));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let origin_host = origin
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/'));
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        match origin_host {
            Some(origin_host) if origin_host.eq_ignore_ascii_case(host) => {}
            _ => {
                return Err(format!(
                    "origin {:?} may not change anything on {:?}",
                    truncate(origin),
                    truncate(host)
                ));
            }
        }
    }
    Ok(())
}

/// Authenticates the request and checks its scope; the `Principal` (and the `Csrf` token its
/// forms must carry) go into the request's extensions for the handler. Without `[server]
/// auth`, every request is `Local`.
///
/// With it: a bearer token, on any route; or a dashboard session cookie — on the dashboard's
/// pages, and on the API for reading only (the pages' live updates), never to write through the
/// API. A page without a valid session sends the browser to the login form.
pub async fn authenticate(State(web): State<Web>, mut request: Request, next: Next) -> Response {
    let Some(needed) = required_scope(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let page = crate::dashboard::is_page(request.uri().path());
    if !web.config.auth {
        let extensions = request.extensions_mut();
        extensions.insert(Principal::Local);
        extensions.insert(Csrf::Expected(web.sessions.local_csrf().to_owned()));
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_owned);
    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    let (principal, csrf) = if let Some(presented) = presented {
        match web.tokens.authenticate(&presented).await {
            Ok(Ok(principal)) => (principal, Csrf::NotNeeded),
            Ok(Err(denial)) => return ApiError::unauthorized(denial.message()).into_response(),
            Err(error) => return ApiError::from(error).into_response(),
        }
    } else if let Some((id, session)) = session_of(&web, request.headers()) {
        if !page && !safe {
            return ApiError::unauthorized(
                "a dashboard session only reads the API; writes need Authorization: Bearer mc_…",
            )
            .into_response();
        }
        match web.tokens.authenticate_hash(&session.token_hash).await {
            Ok(Ok(Principal::Token { id, scope })) => (
                Principal::Session { token: id, scope },
                Csrf::Expected(session.csrf),
            ),
            Ok(Ok(other)) => (other, Csrf::Expected(session.csrf)),
            Ok(Err(denial)) => {
                // The token was revoked or expired: so is every session it opened.
                web.sessions.close_all_of(&session.token_hash);
                web.sessions.close(&id);
                if page {
                    return crate::dashboard::to_login(request.uri());
                }
                return ApiError::unauthorized(denial.message()).into_response();
            }
            Err(error) => return ApiError::from(error).into_response(),
        }
    } else if page {
        return crate::dashboard::to_login(request.uri());
    } else {
        return ApiError::unauthorized("an API token is needed: Authorization: Bearer mc_…")
            .into_response();
    };
    if let Some(scope) = principal.scope()
        && !scope.allows(needed)
    {
        let message = format!("this token's scope is {scope}; this request needs {needed}");
        if page {
            return crate::dashboard::refusal(StatusCode::FORBIDDEN, &message);
        }
        return ApiError::forbidden(message).into_response();
    }
    let extensions = request.extensions_mut();
    extensions.insert(principal);
    extensions.insert(csrf);
    next.run(request).await
}

/// The session named by the request's cookie, with its id.
fn session_of(web: &Web, headers: &HeaderMap) -> Option<(String, crate::session::Session)> {
    let id = crate::session::cookie(headers, crate::session::COOKIE)?;
    let session = web.sessions.get(&id)?;
    Some((id, session))
}

/// Bounds the requests in flight (more are refused at once with 503, never queued) and the
/// time of each (503 `timeout` after `request_timeout`).
pub async fn limit(State(web): State<Web>, request: Request, next: Next) -> Response {
    let Ok(_permit) = web.requests.clone().try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests at once; retry shortly",
        )
        .into_response();
    };
    match tokio::time::timeout(web.config.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {} s",
                web.config.request_timeout.as_secs()
            ),
        )
        .into_response(),
    }
}

/// Counts every routed request by method, route and status, with its duration.
pub async fn observe(State(web): State<Web>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    web.metrics.observe_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn hosts() {
        let allowed = vec!["mission.example.org".to_owned()];
        for host in [
            "localhost",
            "localhost:3001",
            "LOCALHOST:3001",
            "127.0.0.1:3001",
            "[::1]:3001",
            "10.1.2.3",
            "mission.example.org:443",
        ] {
            assert!(host_allowed(host, &allowed), "{host}");
        }
        for host in [
            "evil.example.com:3001",
            "localhost.evil.com",
            "mission.example.org.evil",
        ] {
            assert!(!host_allowed(host, &allowed), "{host}");
        }
    }

    #[test]
    fn origins() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.insert(*k, HeaderValue::from_static(v));
            }
            map
        };
        assert!(same_origin(&headers(&[("host", "127.0.0.1:3001")])).is_ok());
        assert!(
            same_origin(&headers(&[
                ("host", "127.0.0.1:3001"),
                ("origin", "http://127.0.0.1:3001")
            ]))
            .is_ok()
        );
        assert!(
            same_origin(&headers(&[
                ("host", "127.0.0.1:3001"),
                ("origin", "http://evil.example.com")
            ]))
            .is_err()
        );
        assert!(same_origin(&headers(&[("host", "x"), ("origin", "null")])).is_err());
        assert!(same_origin(&headers(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-site")])).is_err());
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])).is_ok());
    }
}
