//! Incidents: the list, one with its occurrences, an operator's resolution — the same use cases
//! as `mission incident list | show | resolve`.

use super::types::{IncidentBody, IncidentDetail, IncidentQuery, ResolveIncident};
use super::{ApiJson, ApiQuery};
use crate::Web;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use mission_core::incident::Severity;

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 500;

pub(crate) fn severity(text: Option<&str>) -> ApiResult<Option<Severity>> {
    text.map(|s| {
        s.parse::<Severity>().map_err(|_| {
            ApiError::invalid(format!("severity {s:?}: must be warning or critical"))
                .on_field("severity")
        })
    })
    .transpose()
}

/// Open incidents (all with `all=true`), newest first.
#[utoipa::path(get, path = "/api/v1/incidents", tag = "incidents", params(IncidentQuery),
    responses(
        (status = 200, body = Vec<IncidentBody>),
        (status = 422, body = ErrorBody),
    ))]
pub async fn list(
    State(web): State<Web>,
    ApiQuery(query): ApiQuery<IncidentQuery>,
) -> ApiResult<Json<Vec<IncidentBody>>> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(
            ApiError::invalid(format!("limit {limit}: must be 1..={MAX_LIMIT}")).on_field("limit"),
        );
    }
    let severity = severity(query.severity.as_deref())?;
    let incidents = web
        .app
        .list_incidents(query.all.unwrap_or(false), severity, limit)
        .await?;
    Ok(Json(incidents.into_iter().map(Into::into).collect()))
}

/// An incident with its latest occurrences and the evidence each one recorded.
#[utoipa::path(get, path = "/api/v1/incidents/{id}", tag = "incidents",
    params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, body = IncidentDetail),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn show(
    State(web): State<Web>,
    Path(id): Path<String>,
) -> ApiResult<Json<IncidentDetail>> {
    let id = web.app.incident_id(&id)?;
    Ok(Json(web.app.show_incident(id).await?.into()))
}

/// Resolves an open incident with a reason. If its condition persists, the next audit reopens
/// it.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/resolve", tag = "incidents",
    request_body = ResolveIncident, params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, body = IncidentBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "already resolved"),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn resolve(
    State(web): State<Web>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ResolveIncident>,
) -> ApiResult<Json<IncidentBody>> {
    let id = web.app.incident_id(&id)?;
    let incident = web
        .app
        .resolve_incident(id, &request.reason, &principal.actor())
        .await?;
    Ok(Json(incident.into()))
}
