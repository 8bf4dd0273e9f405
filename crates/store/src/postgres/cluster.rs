//! Several servers in PostgreSQL: leases and node heartbeats. None of these writes an event, so
//! none takes the event counter; each is one statement on one row.

use super::PgStore;
use crate::{ClusterStore, Lease, Result};
use async_trait::async_trait;
use mission_core::Timestamp;
use sqlx::Row;
use std::time::Duration;

/// Rows of nodes dead this long, with nothing left to settle, are deleted.
const FORGET_DEAD_NODES_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl ClusterStore for PgStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        // Renewed by its holder while it runs (same fencing number); taken by anyone once it
        // expired (the next number). While another holder's lease runs, nothing is written and
        // no row comes back.
        let row = sqlx::query(
            "INSERT INTO leases AS l (name, holder, fencing, acquired_at, expires_at) \
             VALUES ($1, $2, 1, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET \
                 fencing = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > $3 \
                     THEN l.fencing ELSE l.fencing + 1 END, \
                 acquired_at = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > $3 \
                     THEN l.acquired_at ELSE $3 END, \
                 holder = EXCLUDED.holder, \
                 expires_at = EXCLUDED.expires_at \
             WHERE l.holder = EXCLUDED.holder OR l.expires_at <= $3 \
             RETURNING fencing, expires_at",
        )
        .bind(name)
        .bind(holder)
        .bind(now.as_millis())
        .bind(now.as_millis().saturating_add(millis(ttl)))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Lease {
                name: name.to_owned(),
                holder: holder.to_owned(),
                fencing: row.try_get(0)?,
                expires_at: Timestamp::from_millis(row.try_get(1)?),
            })
        })
        .transpose()
    }

    async fn release_lease(
        &self,
        name: &str,
        holder: &str,
        fencing: i64,
        now: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE leases SET expires_at = $4 \
             WHERE name = $1 AND holder = $2 AND fencing = $3 AND expires_at > $4",
        )
        .bind(name)
        .bind(holder)
        .bind(fencing)
        .bind(now.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn node_heartbeat(&self, node: &str, now: Timestamp, ttl: Duration) -> Result<()> {
        sqlx::query(
            "INSERT INTO nodes (node, started_at, heartbeat_at, expires_at) VALUES ($1, $2, $2, $3) \
             ON CONFLICT (node) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at, \
                 expires_at = EXCLUDED.expires_at, stopped_at = NULL",
        )
        .bind(node)
        .bind(now.as_millis())
        .bind(now.as_millis().saturating_add(millis(ttl)))
        .execute(&self.pool)
        .await?;
        // Nodes long dead that left nothing unsettled are forgotten.
        sqlx::query(
            "DELETE FROM nodes n WHERE n.expires_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.node = n.node AND r.exited_at IS NULL) \
             AND NOT EXISTS (SELECT 1 FROM task_runs t WHERE t.node = n.node AND t.ended_at IS NULL)",
        )
        .bind(now.as_millis() - millis(FORGET_DEAD_NODES_AFTER))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn node_stopped(&self, node: &str, now: Timestamp) -> Result<()> {
        sqlx::query(
            "UPDATE nodes SET stopped_at = $2, expires_at = LEAST(expires_at, $2) WHERE node = $1",
        )
        .bind(node)
        .bind(now.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn dead_nodes(&self, now: Timestamp) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT node FROM nodes WHERE expires_at < $1 OR stopped_at IS NOT NULL ORDER BY node",
        )
        .bind(now.as_millis())
        .fetch_all(&self.pool)
        .await?)
    }
}
