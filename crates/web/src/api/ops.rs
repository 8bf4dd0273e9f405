//! The operational routes: the status verdict, liveness, metrics, the OpenAPI document, and
//! the answers to unknown routes and methods.

use super::types::{StatusBody, StatusReason};
use crate::ErrorBody;
use crate::Web;
use crate::error::{ApiError, ApiResult};
use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The OpenAPI document as served.
#[derive(Clone)]
pub struct Document(pub Arc<String>);

/// The health verdict over durable facts — the same use case as `mission status` (a change of
/// verdict is recorded once, whoever assessed it).
#[utoipa::path(get, path = "/api/v1/status", tag = "status",
    responses((status = 200, body = StatusBody), (status = 503, body = ErrorBody)))]
pub async fn status(State(web): State<Web>) -> ApiResult<Json<StatusBody>> {
    let report = web.app.status(&mission_core::Actor::new("api")).await?;
    Ok(Json(StatusBody {
        verdict: report.verdict.as_str().to_owned(),
        reasons: report
            .reasons
            .into_iter()
            .map(|reason| StatusReason {
                code: reason.code.as_str().to_owned(),
                component: reason.component.as_str().to_owned(),
                severity: reason.severity.as_str().to_owned(),
                detail: reason.detail,
                since: reason.since.map(|t| t.to_string()),
                ids: reason.ids,
            })
            .collect(),
        server_alive: report.server.alive,
    }))
}

/// Liveness only: the process answers. Says nothing about the board, the dispatcher or the
/// store (see `/api/v1/status`).
#[utoipa::path(get, path = "/healthz", tag = "status", security(()),
    responses((status = 200, body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Metrics in the OpenMetrics text format: tickets by state, ended runs by outcome and failure
/// class, task runs by outcome, HTTP requests.
#[utoipa::path(get, path = "/metrics", tag = "status",
    responses((status = 200, body = String, content_type = "application/openmetrics-text")))]
pub async fn metrics(State(web): State<Web>) -> ApiResult<Response> {
    let text = crate::metrics::render(&web).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        )],
        text,
    )
        .into_response())
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "status",
    responses((status = 200, body = Object, content_type = "application/json")))]
pub async fn openapi(Extension(document): Extension<Document>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document.0.as_str().to_owned(),
    )
        .into_response()
}

/// An unknown route: the API's error shape, or a page saying so for the dashboard's paths.
pub async fn not_found(uri: axum::http::Uri) -> Response {
    if crate::dashboard::is_page(uri.path()) {
        return crate::dashboard::refusal(StatusCode::NOT_FOUND, "no such page");
    }
    ApiError::not_found("no such route").into_response()
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take this method",
    )
}
