//! The backend conformance suite, run against PostgreSQL: a fresh schema (as good as a fresh
//! database to the store, which keeps everything in its connection's current schema, and a
//! hundred times faster to create) per test, on the test kit's throwaway cluster (one per test
//! binary).

mod common;
mod conformance;

use conformance::Backend;
use mission_store::prelude::*;
use mission_store::{OpenOptions, PgStore, Store};
use mission_testkit::pg::Cluster;
use std::sync::Arc;

/// A fresh schema on the shared cluster.
struct Postgres {
    store: Arc<PgStore>,
    url: String,
}

/// A new, empty place for a store; the cluster starts on first use.
async fn create_database() -> String {
    tokio::task::spawn_blocking(|| Cluster::shared().create_schema())
        .await
        .unwrap()
}

async fn open(url: &str) -> PgStore {
    let store = PgStore::connect(url, OpenOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    store
}

impl Backend for Postgres {
    async fn fresh() -> Self {
        let url = create_database().await;
        Postgres {
            store: Arc::new(open(&url).await),
            url,
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn reopen(&mut self) {
        self.store.close().await;
        self.store = Arc::new(open(&self.url).await);
    }

    async fn connect(&self) -> Arc<dyn Store> {
        Arc::new(open(&self.url).await)
    }
}

conformance::conformance_suite!(postgres, Postgres);
