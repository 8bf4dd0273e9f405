//! Shared helpers for the store tests: tickets and changes, and a fresh SQLite file per test.

#![allow(dead_code)]

use mission_core::{Actor, NewTicket, TicketDraft, TicketKey, Timestamp};
use mission_store::prelude::*;
use mission_store::sqlite::SqliteOptions;
use mission_store::{Change, SqliteStore};
use std::path::PathBuf;

pub struct TestStore {
    pub store: SqliteStore,
    pub path: PathBuf,
    pub dir: tempfile::TempDir,
}

pub async fn fresh() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mission.db");
    let store = open(&path, true).await;
    TestStore { store, path, dir }
}

pub async fn open(path: &std::path::Path, create: bool) -> SqliteStore {
    let store = SqliteStore::open(
        path,
        SqliteOptions {
            create,
            ..SqliteOptions::default()
        },
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    store
}

pub fn key() -> TicketKey {
    TicketKey::default()
}

pub fn change(at: i64) -> Change {
    Change::new(Actor::new("test"), Timestamp::from_millis(at))
}

pub fn new_ticket(title: &str, assignee: Option<&str>) -> NewTicket {
    TicketDraft {
        title: title.to_owned(),
        assignee: assignee.map(str::to_owned),
        ..TicketDraft::default()
    }
    .validate()
    .unwrap()
}

/// An operator's move to `to`.
pub fn operator_move(to: mission_core::State) -> mission_store::Move {
    mission_store::Move {
        to,
        via: mission_core::transition::Via::Operator,
        reason: None,
    }
}
