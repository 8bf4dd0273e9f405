//! The backend conformance suite, run against SQLite files.

mod common;
mod conformance;

use conformance::Backend;
use mission_store::prelude::*;
use mission_store::{SqliteStore, Store};
use std::path::PathBuf;
use std::sync::Arc;

/// A fresh SQLite file in a temporary folder.
struct Sqlite {
    store: Arc<SqliteStore>,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Backend for Sqlite {
    async fn fresh() -> Self {
        let t = common::fresh().await;
        Sqlite {
            store: Arc::new(t.store),
            path: t.path,
            _dir: t.dir,
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn reopen(&mut self) {
        self.store.close().await;
        self.store = Arc::new(common::open(&self.path, false).await);
    }

    async fn connect(&self) -> Arc<dyn Store> {
        Arc::new(common::open(&self.path, false).await)
    }
}

conformance::conformance_suite!(sqlite, Sqlite);
