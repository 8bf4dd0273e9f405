//! API tokens over HTTP (the admin scope): list, create (the response is the only place the
//! token is ever shown), revoke. The same use cases as `mission token`.

use super::ApiJson;
use super::types::{CreateToken, CreatedTokenBody, TokenBody};
use crate::Web;
use crate::auth::TokenState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

/// Every token, revoked and expired ones included; never the tokens themselves.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<TokenBody>)))]
pub async fn list(State(web): State<Web>) -> ApiResult<Json<Vec<TokenBody>>> {
    let tokens = web.tokens.list().await?;
    Ok(Json(
        tokens
            .into_iter()
            .map(|t| {
                let state = web.tokens.state(&t);
                TokenBody::new(t, state)
            })
            .collect(),
    ))
}

/// Creates a token. The response carries it once; only its hash is kept.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateToken,
    responses(
        (status = 201, body = CreatedTokenBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn create(
    State(web): State<Web>,
    ApiJson(request): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedTokenBody>)> {
    let (record, secret) = web
        .tokens
        .create(&request.scope, request.expires.as_deref(), request.label)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedTokenBody {
            token: secret.expose().to_owned(),
            record: TokenBody::new(record, TokenState::Active),
        }),
    ))
}

/// Revokes a token at once; revoking it again changes nothing.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, body = TokenBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn revoke(State(web): State<Web>, Path(id): Path<String>) -> ApiResult<Json<TokenBody>> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::invalid(format!("token id {id:?}: a number")).on_field("id"))?;
    Ok(Json(TokenBody::new(
        web.tokens.revoke(id).await?,
        TokenState::Revoked,
    )))
}
