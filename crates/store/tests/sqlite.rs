//! What only the SQLite backend has: its files (missing, corrupt, foreign, of a newer or older
//! schema), the database's own guards (append-only events, one live run per ticket) seen through
//! raw SQL, its errors, and opening it by URL. Everything else about the store is in the
//! conformance suite (`sqlite_conformance.rs`).

mod common;

use common::{change, fresh, key, new_ticket, open};
use mission_core::{Lane, Name, SlotLimits, State, TicketId};
use mission_store::prelude::*;
use mission_store::sqlite::SqliteOptions;
use mission_store::{ClaimRequest, ErrorKind, OpenOptions, SqliteStore, StoreError, TicketFilter};
use std::time::Duration;

fn id(n: i64) -> TicketId {
    TicketId::new(&key(), n)
}

#[tokio::test]
async fn the_event_log_refuses_updates_and_deletes() {
    let t = fresh().await;
    t.store
        .create_tickets(&key(), vec![new_ticket("t", None)], &change(1))
        .await
        .unwrap();
    t.store.close().await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", t.path.display()))
        .await
        .unwrap();
    let update = sqlx::query("UPDATE events SET kind = 'forged'")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(
        update.to_string().contains("events are append-only"),
        "{update}"
    );
    let delete = sqlx::query("DELETE FROM events")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(
        delete.to_string().contains("events are append-only"),
        "{delete}"
    );
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_left_untouched() {
    let t = fresh().await;
    t.store
        .create_tickets(&key(), vec![new_ticket("t", None)], &change(1))
        .await
        .unwrap();
    t.store.close().await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", t.path.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = SqliteStore::open(&t.path, SqliteOptions::default())
        .await
        .unwrap();
    let err = store.migrate().await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 999,
                supported: 11
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_input_error());
    let tickets = store.list_tickets(&TicketFilter::default()).await.unwrap();
    assert_eq!(tickets.len(), 1);
}

#[tokio::test]
async fn garbage_and_foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    let bytes: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&garbage, &bytes).unwrap();
    let err = match SqliteStore::open(&garbage, SqliteOptions::default()).await {
        Ok(store) => store.migrate().await.unwrap_err(),
        Err(err) => err,
    };
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert_eq!(
        std::fs::read(&garbage).unwrap(),
        bytes,
        "a corrupt file is left as it was"
    );

    let foreign = dir.path().join("foreign.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}?mode=rwc", foreign.display()))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE photos (id INTEGER)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let store = SqliteStore::open(&foreign, SqliteOptions::default())
        .await
        .unwrap();
    let err = store.migrate().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the database is corrupt or not a Mission Control store: it has tables but no schema_migrations"
    );
}

#[tokio::test]
async fn a_missing_file_is_not_created_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.db");
    let err = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("run `mission init` first"),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(!path.exists());
}

/// Creates the migrations table and applies `migrations` (name, SQL) as versions 1, 2, …, the
/// way an older binary would have left the store.
async fn apply_raw(pool: &sqlx::SqlitePool, migrations: &[(&str, &str)]) {
    sqlx::query(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
         applied_at INTEGER NOT NULL)",
    )
    .execute(pool)
    .await
    .unwrap();
    for (version, (name, sql)) in migrations.iter().enumerate() {
        sqlx::raw_sql(sql).execute(pool).await.unwrap();
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, 0)")
            .bind(version as i64 + 1)
            .bind(name)
            .execute(pool)
            .await
            .unwrap();
    }
}

async fn raw_pool(path: &std::path::Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite:{}?mode=rwc", path.display()))
        .await
        .unwrap()
}

/// A store written by a version-3 binary (the schema of migrations 1-3, tickets with a gap in
/// their numbers) gets its ticket counter from the tickets there: numbers continue after the
/// highest, across batches and restarts.
#[tokio::test]
async fn numbers_continue_after_migrating_a_version_3_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mission.db");
    let pool = raw_pool(&path).await;
    let version_3 = [
        (
            "0001_tickets_and_events",
            include_str!("../migrations/sqlite/0001_tickets_and_events.sql"),
        ),
        (
            "0002_runs",
            include_str!("../migrations/sqlite/0002_runs.sql"),
        ),
        (
            "0003_task_runs",
            include_str!("../migrations/sqlite/0003_task_runs.sql"),
        ),
    ];
    apply_raw(&pool, &version_3).await;
    for number in [1, 2, 7] {
        sqlx::query(
            "INSERT INTO tickets (number, id, title, body, state, evidence_policy, created_at, \
             updated_at, state_since) VALUES (?, ?, 'old', '', 'todo', 'none', 0, 0, 0)",
        )
        .bind(number)
        .bind(format!("MC-{number}"))
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let store = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .unwrap();
    let report = store.migrate().await.unwrap();
    // Later migrations follow; the counter's is the first one a version-3 store gets.
    assert_eq!(report.from_version, 3);
    assert_eq!(
        (report.from_version, report.to_version, report.applied),
        (
            3,
            11,
            vec![
                "0004_counters".to_owned(),
                "0005_web".to_owned(),
                "0006_incidents_health".to_owned(),
                "0007_evidence_inbox".to_owned(),
                "0008_health_reads".to_owned(),
                "0009_outbox".to_owned(),
                "0010_usage".to_owned(),
                "0011_usage_reads".to_owned()
            ]
        )
    );
    assert_eq!(
        store
            .list_tickets(&TicketFilter::default())
            .await
            .unwrap()
            .len(),
        3
    );
    let batch = vec![new_ticket("a", None), new_ticket("b", None)];
    let created = store
        .create_tickets(&key(), batch, &change(1))
        .await
        .unwrap();
    assert_eq!(
        created.iter().map(|t| t.id.number()).collect::<Vec<_>>(),
        [8, 9]
    );
    store.close().await;
    let store = open(&path, false).await;
    let created = store
        .create_tickets(&key(), vec![new_ticket("c", None)], &change(2))
        .await
        .unwrap();
    assert_eq!(created[0].id, id(10));
}

/// The partial unique index `runs_one_active_per_ticket` is the last guard of "one live run per
/// ticket". SQLite's single writer means no two claims can both pass the claim's own check, so a
/// trigger plays the racing claim: it inserts a live run of the same ticket just before the
/// claim inserts its own, after the check looked. Only the index can refuse the claim then.
#[tokio::test]
async fn the_database_refuses_a_second_live_run_that_got_past_the_claim_check() {
    let t = fresh().await;
    t.store
        .create_tickets(&key(), vec![new_ticket("t", Some("luci"))], &change(1))
        .await
        .unwrap();
    let pool = raw_pool(&t.path).await;
    sqlx::query(
        "CREATE TRIGGER racing_claim BEFORE INSERT ON runs WHEN NEW.token_hash <> 'racer' \
         BEGIN \
             INSERT INTO runs (ticket, attempt, worker, pool, lane, node, token_hash, started_at, \
                 heartbeat_at, lease_expires_at) \
             VALUES (NEW.ticket, NEW.attempt + 100, NEW.worker, NEW.pool, NEW.lane, 'racer:1', \
                 'racer', NEW.started_at, NEW.heartbeat_at, NEW.lease_expires_at); \
         END",
    )
    .execute(&pool)
    .await
    .unwrap();
    let before = t.store.ticket(&id(1)).await.unwrap();
    let events_before = t.store.last_event_seq().await.unwrap();
    let request = ClaimRequest {
        ticket: id(1),
        lane: Lane::Normal,
        expected_version: before.version,
        limits: SlotLimits {
            worker: Name::parse("luci").unwrap(),
            worker_max: 2,
            pool: "default".into(),
            pool_max: None,
            global_max: 3,
        },
        node: "test:1".into(),
        token_hash: "a".into(),
        lease: Duration::from_secs(30),
    };
    let err = t.store.claim(&request, &change(2)).await.unwrap_err();
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.to_string()
            .contains("UNIQUE constraint failed: runs.ticket"),
        "{err}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "the database's error is kept as the source"
    );
    // Nothing else changed: the claim's transaction rolled back whole.
    assert_eq!(t.store.ticket(&id(1)).await.unwrap(), before);
    assert_eq!(t.store.last_event_seq().await.unwrap(), events_before);
    assert!(t.store.runs_of(&id(1)).await.unwrap().is_empty());
    assert_eq!(t.store.active_counts().await.unwrap().total, 0);
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);

    // Without the racer, the same claim goes through.
    sqlx::query("DROP TRIGGER racing_claim")
        .execute(&pool)
        .await
        .unwrap();
    assert!(matches!(
        t.store.claim(&request, &change(3)).await.unwrap(),
        mission_store::ClaimOutcome::Claimed(_)
    ));
    assert_eq!(t.store.ticket(&id(1)).await.unwrap().state, State::Running);
}

/// A write that waits for the lock past the busy timeout fails as `Unavailable` (for the HTTP
/// layer, 503), keeping SQLite's error as its source.
#[tokio::test]
async fn a_database_locked_past_the_busy_timeout_is_unavailable() {
    let t = fresh().await;
    let store = SqliteStore::open(
        &t.path,
        SqliteOptions {
            busy_timeout: Duration::from_millis(50),
            ..SqliteOptions::default()
        },
    )
    .await
    .unwrap();
    let pool = raw_pool(&t.path).await;
    let mut blocker = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query("SELECT COUNT(*) FROM tickets")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let err = store
        .create_tickets(&key(), vec![new_ticket("t", None)], &change(1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(!err.is_input_error());
    assert!(err.to_string().contains("database is locked"), "{err}");
    assert!(std::error::Error::source(&err).is_some());
    blocker.rollback().await.unwrap();
    store
        .create_tickets(&key(), vec![new_ticket("t", None)], &change(2))
        .await
        .unwrap();
}

/// A process's writers take turns for SQLite's write lock, first come first served, instead of
/// meeting in SQLite's busy handler (whose sleeps grow to 100 ms a try): with no busy timeout at
/// all, many concurrent writers of one store still all commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_process_writers_take_turns_for_the_write_lock() {
    let t = fresh().await;
    let store = std::sync::Arc::new(
        SqliteStore::open(
            &t.path,
            SqliteOptions {
                busy_timeout: Duration::ZERO,
                max_connections: 8,
                ..SqliteOptions::default()
            },
        )
        .await
        .unwrap(),
    );
    let writers: Vec<_> = (0..32)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                for j in 0..10 {
                    store
                        .create_tickets(
                            &key(),
                            vec![new_ticket(&format!("w{i} t{j}"), None)],
                            &change(1),
                        )
                        .await?;
                    store
                        .touch_api_token(1, mission_core::Timestamp::from_millis(j))
                        .await?;
                }
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    let all = store.list_tickets(&TicketFilter::default()).await.unwrap();
    assert_eq!(all.len(), 320);
}

/// `mission_store::open` picks the backend by the URL's scheme.
#[tokio::test]
async fn stores_open_by_url() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mission.db");
    let url = format!("sqlite:{}", path.display());
    let err = mission_store::open(&url, OpenOptions::default())
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("run `mission init` first"),
        "{err}"
    );
    let create = OpenOptions {
        create: true,
        ..OpenOptions::default()
    };
    let store = mission_store::open(&url, create).await.unwrap();
    store.migrate().await.unwrap();
    store
        .create_tickets(&key(), vec![new_ticket("t", None)], &change(1))
        .await
        .unwrap();
    store.close().await;
    let store = mission_store::open(
        &format!("sqlite://{}", path.display()),
        OpenOptions::default(),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.ticket(&id(1)).await.unwrap().title, "t");
    store.close().await;

    for (url, message) in [
        (
            "mysql://mission:hunter2@db",
            "unsupported store URL scheme \"mysql\"; expected sqlite:PATH or postgres://…",
        ),
        ("sqlite:", "the sqlite: URL names no file"),
    ] {
        let err = mission_store::open(url, OpenOptions::default())
            .await
            .err()
            .unwrap();
        assert_eq!(err.to_string(), message);
        assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::Invalid);
    }
}

/// The database itself refuses an inbox item marked acted without its action, a settled item
/// changed, and an action rewritten — whatever code gets past the store's checks.
#[tokio::test]
async fn the_database_keeps_inbox_items_honest() {
    use mission_core::{Addressee, InboxKind, Name, NewInboxItem};
    let t = fresh().await;
    let item = t
        .store
        .create_inbox_item(
            &NewInboxItem::new(
                InboxKind::Alert,
                None,
                Addressee::Channel(Name::parse("operator").unwrap()),
                "disk low",
            )
            .unwrap(),
            &change(1),
        )
        .await
        .unwrap();
    let pool = raw_pool(&t.path).await;
    let acted = sqlx::query("UPDATE inbox_items SET status = 'acted' WHERE id = ?")
        .bind(item.id.get())
        .execute(&pool)
        .await;
    assert!(
        acted
            .unwrap_err()
            .to_string()
            .contains("acted only together with its action")
    );
    sqlx::query(
        "INSERT INTO inbox_actions (item, kind, actor, at) VALUES (?, 'dismissed', 'x', 2)",
    )
    .bind(item.id.get())
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE inbox_items SET status = 'acted' WHERE id = ?")
        .bind(item.id.get())
        .execute(&pool)
        .await
        .unwrap();
    for sql in [
        "UPDATE inbox_items SET status = 'pending' WHERE id = ?",
        "UPDATE inbox_actions SET kind = 'approved' WHERE item = ?",
        "DELETE FROM inbox_actions WHERE item = ?",
    ] {
        let refused = sqlx::query(sql).bind(item.id.get()).execute(&pool).await;
        assert!(refused.is_err(), "{sql}");
    }
}

/// A version-10 store's ledger gets its series' totals when migrated: `usage_by`, which reads
/// them, answers what the ledger held.
#[tokio::test]
async fn a_version_10_ledger_gets_its_totals_when_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mission.db");
    let pool = raw_pool(&path).await;
    macro_rules! migration {
        ($name:literal) => {
            (
                $name,
                include_str!(concat!("../migrations/sqlite/", $name, ".sql")),
            )
        };
    }
    let version_10 = [
        migration!("0001_tickets_and_events"),
        migration!("0002_runs"),
        migration!("0003_task_runs"),
        migration!("0004_counters"),
        migration!("0005_web"),
        migration!("0006_incidents_health"),
        migration!("0007_evidence_inbox"),
        migration!("0008_health_reads"),
        migration!("0009_outbox"),
        migration!("0010_usage"),
    ];
    apply_raw(&pool, &version_10).await;
    // Ticket MC-1: two buckets (1 run, then 2); MC-2: one bucket.
    for (key, bucket, runs, cum) in [("MC-1", 10, 1, 1), ("MC-1", 20, 2, 3), ("MC-2", 15, 1, 1)] {
        sqlx::query(
            "INSERT INTO usage_ledger VALUES ('ticket', ?, ?, ?, ?, 0, 0, ?, 0, ?, ?, 0, 0, ?, 0)",
        )
        .bind(key)
        .bind(bucket)
        .bind(runs)
        .bind(runs * 100)
        .bind(runs * 7)
        .bind(cum)
        .bind(cum * 100)
        .bind(cum * 7)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    let store = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .unwrap();
    let report = store.migrate().await.unwrap();
    assert_eq!(report.from_version, 10);
    let all = store
        .usage_by(mission_core::usage::ScopeKind::Ticket, 0, None, None)
        .await
        .unwrap();
    let got: Vec<_> = all
        .rows
        .iter()
        .map(|(k, u)| (k.as_str(), u.runs, u.input_tokens, u.cost_micros))
        .collect();
    assert_eq!(got, vec![("MC-1", 3, 300, 21), ("MC-2", 1, 100, 7)]);
    // From bucket 20 on: only MC-1's second bucket.
    let later = store
        .usage_by(mission_core::usage::ScopeKind::Ticket, 20, None, None)
        .await
        .unwrap();
    assert_eq!(later.groups, 1);
    assert_eq!(later.rows[0].1.runs, 2);
}
