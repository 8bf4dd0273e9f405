//! Tasks: the list with next firings and last outcomes, a task's history, and a run now (the
//! same path as a scheduled firing).

use super::ApiQuery;
use super::types::{HistoryParams, TaskListBody, TaskRunBody, TaskRunResult};
use crate::Web;
use crate::error::{ApiError, ApiResult, ErrorBody};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

const DEFAULT_HISTORY: u32 = 20;
const MAX_HISTORY: u32 = 500;

/// Every task with its schedule, next firing and last outcome, and every broken task file.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks",
    responses((status = 200, body = TaskListBody)))]
pub async fn list(State(web): State<Web>) -> ApiResult<Json<TaskListBody>> {
    Ok(Json(web.app.list_tasks().await?.into()))
}

/// A task's runs, newest first.
#[utoipa::path(get, path = "/api/v1/tasks/{name}/history", tag = "tasks",
    params(("name" = String, Path), HistoryParams),
    responses(
        (status = 200, body = Vec<TaskRunBody>),
        (status = 422, body = ErrorBody),
    ))]
pub async fn history(
    State(web): State<Web>,
    Path(name): Path<String>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> ApiResult<Json<Vec<TaskRunBody>>> {
    let limit = params.limit.unwrap_or(DEFAULT_HISTORY);
    if !(1..=MAX_HISTORY).contains(&limit) {
        return Err(
            ApiError::invalid(format!("limit {limit}: must be 1..={MAX_HISTORY}"))
                .on_field("limit"),
        );
    }
    let runs = web.app.task_history(&name, limit).await?;
    Ok(Json(runs.into_iter().map(TaskRunBody::from).collect()))
}

/// Runs a task now, through the same path as a scheduled firing. Answers with the outcome when
/// the run ends within the wait (200), else `running` (202): the run goes on, and its outcome
/// lands in the task's history. A client that goes away does not stop it.
#[utoipa::path(post, path = "/api/v1/tasks/{name}/run", tag = "tasks",
    params(("name" = String, Path)),
    responses(
        (status = 200, body = TaskRunResult, description = "finished: the outcome"),
        (status = 202, body = TaskRunResult, description = "still running"),
        (status = 404, body = ErrorBody, description = "no such task"),
        (status = 422, body = ErrorBody, description = "the task file is broken"),
    ))]
pub async fn run_now(State(web): State<Web>, Path(name): Path<String>) -> ApiResult<Response> {
    let app = web.app.clone();
    let task = name.clone();
    let mut running = tokio::spawn(async move { app.run_task(&task).await });
    match tokio::time::timeout(web.config.task_wait, &mut running).await {
        Ok(joined) => {
            let report =
                joined.map_err(|e| ApiError::internal(format!("the task run failed: {e}")))??;
            Ok(Json(TaskRunResult::finished(report)).into_response())
        }
        Err(_) => Ok((StatusCode::ACCEPTED, Json(TaskRunResult::running(name))).into_response()),
    }
}
