//! The HTTP side's part of the PostgreSQL store: API tokens, idempotency keys, and the counts
//! that `/metrics` exports. Nothing here writes an event, so nothing takes the event counter:
//! each write is one statement on the rows it changes, and the primary key of
//! `idempotency_keys` decides between two nodes reserving the same key at once.

use super::PgStore;
use super::rows::text;
use crate::web::{
    ApiToken, IdempotencyKey, InboxCount, NewApiToken, Reservation, RunCount, TaskOutcomeCount,
    WebStore,
};
use crate::{Result, StoreError};
use async_trait::async_trait;
use mission_core::{State, Timestamp};
use sqlx::Row;
use sqlx::postgres::PgRow;

/// How often a reservation tries again when the key's holder gave it back between the insert
/// that found it taken and the read of what it holds.
const RESERVE_TRIES: usize = 3;

const TOKEN_COLUMNS: &str = "id, scope, label, created_at, expires_at, last_used_at, revoked_at";

fn decode_token(row: &PgRow) -> Result<ApiToken> {
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

/// What a key holds: the fingerprint of the request that reserved it, and its response once it
/// finished.
fn decode_existing(row: &PgRow) -> Result<Reservation> {
    let status: Option<i64> = row.try_get("status")?;
    let response: Option<String> = row.try_get("response")?;
    let response = match (status, response) {
        (Some(status), Some(body)) => Some((
            u16::try_from(status)
                .map_err(|_| StoreError::Corrupt(format!("idempotency status {status}")))?,
            body,
        )),
        _ => None,
    };
    Ok(Reservation::Existing {
        request_hash: row.try_get("request_hash")?,
        response,
    })
}

#[async_trait]
impl WebStore for PgStore {
    async fn create_api_token(&self, token: &NewApiToken) -> Result<ApiToken> {
        let row = sqlx::query(&format!(
            "INSERT INTO api_tokens (token_hash, scope, label, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {TOKEN_COLUMNS}"
        ))
        .bind(&token.token_hash)
        .bind(&token.scope)
        .bind(token.label.as_deref().map(text))
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
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_token).transpose()
    }

    async fn revoke_api_token(&self, id: i64, at: Timestamp) -> Result<Option<ApiToken>> {
        let row = sqlx::query(&format!(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 \
             RETURNING {TOKEN_COLUMNS}"
        ))
        .bind(at.as_millis())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_token).transpose()
    }

    async fn touch_api_token(&self, id: i64, at: Timestamp) -> Result<()> {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
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
        let mut tx = self.row_tx().await?;
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(forget_before.as_millis())
            .execute(&mut *tx)
            .await?;
        // Of two requests reserving one key at once, the primary key lets one insert; the other
        // waits for it to commit and then reads what it reserved (or, when its holder gave it
        // back meanwhile, tries again).
        let mut reservation = None;
        for _ in 0..RESERVE_TRIES {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (principal, key, request_hash, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (principal, key) DO NOTHING",
            )
            .bind(text(&key.principal))
            .bind(text(&key.key))
            .bind(&key.request_hash)
            .bind(at.as_millis())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                reservation = Some(Reservation::Reserved);
                break;
            }
            let row = sqlx::query(
                "SELECT request_hash, status, response FROM idempotency_keys \
                 WHERE principal = $1 AND key = $2",
            )
            .bind(text(&key.principal))
            .bind(text(&key.key))
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = row {
                reservation = Some(decode_existing(&row)?);
                break;
            }
        }
        let Some(reservation) = reservation else {
            return Err(StoreError::Unavailable(
                "the idempotency key kept being reserved and released by others".into(),
            ));
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
        sqlx::query(
            "UPDATE idempotency_keys SET status = $1, response = $2 \
             WHERE principal = $3 AND key = $4 AND request_hash = $5",
        )
        .bind(i64::from(status))
        .bind(text(response))
        .bind(text(&key.principal))
        .bind(text(&key.key))
        .bind(&key.request_hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release_idempotency_key(&self, key: &IdempotencyKey) -> Result<()> {
        sqlx::query(
            "DELETE FROM idempotency_keys \
             WHERE principal = $1 AND key = $2 AND request_hash = $3 AND response IS NULL",
        )
        .bind(text(&key.principal))
        .bind(text(&key.key))
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
        // NULLS FIRST: the order SQLite gives, so that both backends list the same.
        let rows = sqlx::query(
            "SELECT outcome, failure_class, COUNT(*) FROM runs \
             WHERE ended_at IS NOT NULL AND outcome IS NOT NULL \
             GROUP BY outcome, failure_class ORDER BY outcome, failure_class NULLS FIRST",
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
