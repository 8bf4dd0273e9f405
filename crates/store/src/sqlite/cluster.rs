//! Several servers, in SQLite: there is one (one file, one host), so it holds every lease and no
//! node is known dead by heartbeat (recovery judges supervisors by their process on this host).

use super::SqliteStore;
use crate::{ClusterStore, Lease, Result};
use async_trait::async_trait;
use mission_core::Timestamp;
use std::time::Duration;

#[async_trait]
impl ClusterStore for SqliteStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        Ok(Some(Lease {
            name: name.to_owned(),
            holder: holder.to_owned(),
            fencing: 1,
            expires_at: Timestamp::from_millis(now.as_millis().saturating_add(ttl)),
        }))
    }

    async fn release_lease(&self, _: &str, _: &str, _: i64, _: Timestamp) -> Result<()> {
        Ok(())
    }

    async fn node_heartbeat(&self, _: &str, _: Timestamp, _: Duration) -> Result<()> {
        Ok(())
    }

    async fn node_stopped(&self, _: &str, _: Timestamp) -> Result<()> {
        Ok(())
    }

    async fn dead_nodes(&self, _: Timestamp) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}
