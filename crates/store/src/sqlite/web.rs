//! The HTTP side's part of the SQLite store: API tokens, idempotency keys, and the counts that
//! `/metrics` exports.

use super::SqliteStore;
use crate::web::{
    ApiToken, IdempotencyKey, InboxCount, NewApiToken, Reservation, RunCount, TaskOutcomeCount,
    WebStore,
};
use crate::{Result, StoreError};
use async_trait::async_trait;
use mission_core::{State, Timestamp};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

const TOKEN_COLUMNS: &str = "id, scope, label, created_at, expires_at, last_used_at, revoked_at";

fn decode_token(row: &SqliteRow) -> Result<ApiToken> {
    let time = |name: &str| -> Result<Option<Timestamp>> {
        Ok(row
            .try_get::<Option<i64>, _>(name)?
            .map(Timestamp::from_millis))
    };
    Ok(ApiToken {
        id: row.try_get("id")?,
        scope: row.try_get("scope")?,
        label: row.try_get("label")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        expires_at: time("expires_at")?,
        last_used_at: time("last_used_at")?,
        revoked_at: time("revoked_at")?,
    })
}

#[async_trait]
impl WebStore for SqliteStore {
    async fn create_api_token(&self, token: &NewApiToken) -> Result<ApiToken> {
        let _turn = self.write_turn().await;
        let row = sqlx::query(&format!(
            "INSERT INTO api_tokens (token_hash, scope, label, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING {TOKEN_COLUMNS}"
        ))
        .bind(&token.token_hash)
        .bind(&token.scope)
        .bind(&token.label)
        .bind(token.created_at.as_millis())
        .bind(token.expires_at.map(|t| t.as_millis()))
        .fetch_one(&self.pool)
        .await?;
        decode_token(&row)
    }

    async fn api_tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_token).collect()
    }

    async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = ?"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_token).transpose()
    }

    async fn revoke_api_token(&self, id: i64, at: Timestamp) -> Result<Option<ApiToken>> {
        let _turn = self.write_turn().await;
        let row = sqlx::query(&format!(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? \
             RETURNING {TOKEN_COLUMNS}"
        ))
        .bind(at.as_millis())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_token).transpose()
    }

    async fn touch_api_token(&self, id: i64, at: Timestamp) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE api_tokens SET last_used_at = ? WHERE id = ?")
            .bind(at.as_millis())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn reserve_idempotency_key(
        &self,
        key: &IdempotencyKey,
        at: Timestamp,
        forget_before: Timestamp,
    ) -> Result<Reservation> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(forget_before.as_millis())
            .execute(&mut *tx)
            .await?;
        let existing = sqlx::query(
            "SELECT request_hash, status, response FROM idempotency_keys \
             WHERE principal = ? AND key = ?",
        )
        .bind(&key.principal)
        .bind(&key.key)
        .fetch_optional(&mut *tx)
        .await?;
        let reservation = match existing {
            Some(row) => {
                let status: Option<i64> = row.try_get("status")?;
                let response: Option<String> = row.try_get("response")?;
                let response = match (status, response) {
                    (Some(status), Some(body)) => Some((
                        u16::try_from(status).map_err(|_| {
                            StoreError::Corrupt(format!("idempotency status {status}"))
                        })?,
                        body,
                    )),
                    _ => None,
                };
                Reservation::Existing {
                    request_hash: row.try_get("request_hash")?,
                    response,
                }
            }
            None => {
                sqlx::query(
                    "INSERT INTO idempotency_keys (principal, key, request_hash, created_at) \
                     VALUES (?, ?, ?, ?)",
                )
                .bind(&key.principal)
                .bind(&key.key)
                .bind(&key.request_hash)
                .bind(at.as_millis())
                .execute(&mut *tx)
                .await?;
                Reservation::Reserved
            }
        };
        tx.commit().await?;
        Ok(reservation)
    }

    async fn complete_idempotency_key(
        &self,
        key: &IdempotencyKey,
        status: u16,
        response: &str,
    ) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE idempotency_keys SET status = ?, response = ? \
             WHERE principal = ? AND key = ? AND request_hash = ?",
        )
        .bind(i64::from(status))
        .bind(response)
        .bind(&key.principal)
        .bind(&key.key)
        .bind(&key.request_hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release_idempotency_key(&self, key: &IdempotencyKey) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "DELETE FROM idempotency_keys \
             WHERE principal = ? AND key = ? AND request_hash = ? AND response IS NULL",
        )
        .bind(&key.principal)
        .bind(&key.key)
        .bind(&key.request_hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn ticket_counts(&self) -> Result<Vec<(State, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM tickets GROUP BY state ORDER BY state")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get(0)?;
                let state = state
                    .parse::<State>()
                    .map_err(|_| StoreError::Corrupt(format!("unknown ticket state {state:?}")))?;
                Ok((state, row.try_get(1)?))
            })
            .collect()
    }

    async fn run_counts(&self) -> Result<Vec<RunCount>> {
        let rows = sqlx::query(
            "SELECT outcome, failure_class, COUNT(*) FROM runs \
             WHERE ended_at IS NOT NULL AND outcome IS NOT NULL \
             GROUP BY outcome, failure_class ORDER BY outcome, failure_class",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RunCount {
                    outcome: row.try_get(0)?,
                    failure_class: row.try_get(1)?,
                    count: row.try_get(2)?,
                })
            })
            .collect()
    }

    async fn task_outcome_counts(&self) -> Result<Vec<TaskOutcomeCount>> {
        let rows = sqlx::query(
            "SELECT task, outcome, COUNT(*) FROM task_runs WHERE outcome IS NOT NULL \
             GROUP BY task, outcome ORDER BY task, outcome",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TaskOutcomeCount {
                    task: row.try_get(0)?,
                    outcome: row.try_get(1)?,
                    count: row.try_get(2)?,
                })
            })
            .collect()
    }

    async fn inbox_counts(&self) -> Result<Vec<InboxCount>> {
        let rows = sqlx::query(
            "SELECT kind, status, COUNT(*), MIN(created_at) FROM inbox_items \
             WHERE status IN ('pending', 'delivered') \
             GROUP BY kind, status ORDER BY kind, status",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(InboxCount {
                    kind: row.try_get(0)?,
                    status: row.try_get(1)?,
                    count: row.try_get(2)?,
                    oldest: Timestamp::from_millis(row.try_get(3)?),
                })
            })
            .collect()
    }

    async fn open_incident_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT severity, COUNT(*) FROM incidents WHERE status = 'open' \
             GROUP BY severity ORDER BY severity",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }
}
