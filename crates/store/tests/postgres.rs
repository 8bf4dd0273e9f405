//! What only the PostgreSQL backend has: its refusals (a newer schema, a foreign schema), the
//! database's own guards seen through raw SQL (append-only events, one live run per ticket, the
//! event counter's lock, the inbox's rules), its errors (a lock waited on too long, a server or database that is not
//! there, a URL's password kept out of messages), servers migrating at once, and text it cannot
//! store as it is. Everything else about the store is in the conformance suite
//! (`postgres_conformance.rs`).

mod common;

use common::{change, key, new_ticket};
use mission_core::{Attempt, FailureClass, Lane, Name, SlotLimits, State, TicketId};
use mission_store::prelude::*;
use mission_store::{
    ClaimOutcome, ClaimRequest, ErrorKind, OpenOptions, PgStore, RunEnd, StoreError, TicketFilter,
};
use mission_testkit::pg::Cluster;
use std::time::Duration;

fn id(n: i64) -> TicketId {
    TicketId::new(&key(), n)
}

/// A fresh, empty schema's URL on the shared cluster.
async fn fresh_url() -> String {
    tokio::task::spawn_blocking(|| Cluster::shared().create_schema())
        .await
        .unwrap()
}

async fn open(url: &str) -> PgStore {
    let store = PgStore::connect(url, OpenOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    store
}

async fn raw(url: &str) -> sqlx::PgPool {
    sqlx::PgPool::connect(url).await.unwrap()
}

fn claim_request(n: i64, version: i64, token: &str) -> ClaimRequest {
    ClaimRequest {
        ticket: id(n),
        lane: Lane::Normal,
        expected_version: version,
        limits: SlotLimits {
            worker: Name::parse("luci").unwrap(),
            worker_max: 2,
            pool: "default".into(),
            pool_max: None,
            global_max: 3,
        },
        node: "test:1".into(),
        token_hash: token.into(),
        lease: Duration::from_secs(30),
    }
}

#[tokio::test]
async fn the_event_log_refuses_updates_deletes_and_truncation() {
    let url = fresh_url().await;
    let store = open(&url).await;
    store
        .create_tickets(&key(), vec![new_ticket("t", None)], &change(1))
        .await
        .unwrap();
    let pool = raw(&url).await;
    for sql in [
        "UPDATE events SET kind = 'forged'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let err = sqlx::query(sql).execute(&pool).await.unwrap_err();
        assert!(
            err.to_string().contains("events are append-only"),
            "{sql}: {err}"
        );
    }
    assert_eq!(store.last_event_seq().await.unwrap(), 1);
}

/// The database itself refuses an inbox item marked acted without its action, a settled item
/// changed or deleted, an action rewritten or deleted, and truncation of either table — whatever
/// code gets past the store's checks.
#[tokio::test]
async fn the_database_keeps_inbox_items_honest() {
    use mission_core::{Addressee, InboxKind, NewInboxItem};
    let url = fresh_url().await;
    let store = open(&url).await;
    let item = store
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
    let pool = raw(&url).await;
    let acted = sqlx::query("UPDATE inbox_items SET status = 'acted' WHERE id = $1")
        .bind(item.id.get())
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(
        acted
            .to_string()
            .contains("acted only together with its action"),
        "{acted}"
    );
    let born_acted = sqlx::query(
        "INSERT INTO inbox_items (kind, addressee, text, created_at, status) \
         VALUES ('alert', 'channel:operator', 'x', 1, 'acted')",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(
        born_acted
            .to_string()
            .contains("acted only together with its action"),
        "{born_acted}"
    );
    sqlx::query(
        "INSERT INTO inbox_actions (item, kind, actor, at) VALUES ($1, 'dismissed', 'x', 2)",
    )
    .bind(item.id.get())
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE inbox_items SET status = 'acted' WHERE id = $1")
        .bind(item.id.get())
        .execute(&pool)
        .await
        .unwrap();
    for (sql, message) in [
        (
            "UPDATE inbox_items SET status = 'pending' WHERE id = $1",
            "a settled inbox item does not change",
        ),
        (
            "DELETE FROM inbox_items WHERE id = $1",
            "a settled inbox item does not change",
        ),
        (
            "UPDATE inbox_actions SET kind = 'approved' WHERE item = $1",
            "inbox actions are append-only",
        ),
        (
            "DELETE FROM inbox_actions WHERE item = $1",
            "inbox actions are append-only",
        ),
    ] {
        let refused = sqlx::query(sql)
            .bind(item.id.get())
            .execute(&pool)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains(message), "{sql}: {refused}");
    }
    for sql in ["TRUNCATE inbox_actions", "TRUNCATE inbox_items CASCADE"] {
        assert!(sqlx::query(sql).execute(&pool).await.is_err(), "{sql}");
    }
    // The item reads back acted, with its action.
    let read = store.inbox_item(item.id).await.unwrap();
    assert_eq!(read.action().map(|a| a.kind.as_str()), Some("dismissed"));
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_left_untouched() {
    let url = fresh_url().await;
    let store = open(&url).await;
    store
        .create_tickets(&key(), vec![new_ticket("t", None)], &change(1))
        .await
        .unwrap();
    store.close().await;
    let pool = raw(&url).await;
    sqlx::query(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();

    let store = PgStore::connect(&url, OpenOptions::default())
        .await
        .unwrap();
    let err = store.migrate().await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 999,
                supported: 9
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_input_error());
    let tickets = store.list_tickets(&TicketFilter::default()).await.unwrap();
    assert_eq!(tickets.len(), 1);
}

#[tokio::test]
async fn a_foreign_schema_is_refused_before_anything_is_written() {
    let url = fresh_url().await;
    let pool = raw(&url).await;
    sqlx::query("CREATE TABLE photos (id INTEGER)")
        .execute(&pool)
        .await
        .unwrap();
    let store = PgStore::connect(&url, OpenOptions::default())
        .await
        .unwrap();
    let err = store.migrate().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the database is corrupt or not a Mission Control store: it has tables but no schema_migrations"
    );
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::TEXT FROM pg_tables WHERE schemaname = current_schema()",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(tables, ["photos"], "nothing was created");
}

/// Servers started together migrate one after another (an advisory lock): each sees the schema
/// current or makes it so, and every migration is applied once.
#[tokio::test]
async fn servers_migrating_at_once_apply_each_migration_once() {
    let url = fresh_url().await;
    let mut migrations = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let url = url.clone();
        migrations.spawn(async move {
            let store = PgStore::connect(&url, OpenOptions::default())
                .await
                .unwrap();
            let report = store.migrate().await.unwrap();
            store.close().await;
            report
        });
    }
    let mut applied = Vec::new();
    while let Some(report) = migrations.join_next().await {
        let report = report.unwrap();
        assert_eq!(report.to_version, 9);
        applied.extend(report.applied);
    }
    assert_eq!(
        applied,
        [
            "0001_schema",
            "0002_cluster",
            "0003_web",
            "0004_incidents_health",
            "0005_evidence_inbox",
            "0006_health_reads",
            "0007_outbox",
            "0008_usage",
            "0009_usage_totals"
        ]
    );
}

/// The partial unique index `runs_one_active_per_ticket` is the last guard of "one live run per
/// ticket". A trigger plays a racing claim that got past the claim's own check: it inserts a live
/// run of the same ticket just before the claim inserts its own. Only the index can refuse the
/// claim then, and the whole claim rolls back.
#[tokio::test]
async fn the_database_refuses_a_second_live_run_that_got_past_the_claim_check() {
    let url = fresh_url().await;
    let store = open(&url).await;
    store
        .create_tickets(&key(), vec![new_ticket("t", Some("luci"))], &change(1))
        .await
        .unwrap();
    let pool = raw(&url).await;
    sqlx::raw_sql(
        "CREATE FUNCTION racing_claim() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN \
             INSERT INTO runs (ticket, attempt, worker, pool, lane, node, token_hash, started_at, \
                 heartbeat_at, lease_expires_at) \
             VALUES (NEW.ticket, NEW.attempt + 100, NEW.worker, NEW.pool, NEW.lane, 'racer:1', \
                 'racer', NEW.started_at, NEW.heartbeat_at, NEW.lease_expires_at); \
             RETURN NEW; \
         END $$; \
         CREATE TRIGGER racing_claim BEFORE INSERT ON runs FOR EACH ROW \
             WHEN (NEW.token_hash <> 'racer') EXECUTE FUNCTION racing_claim();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let before = store.ticket(&id(1)).await.unwrap();
    let events_before = store.last_event_seq().await.unwrap();
    let request = claim_request(1, before.version, "a");
    let err = store.claim(&request, &change(2)).await.unwrap_err();
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.to_string().contains("runs_one_active_per_ticket"),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!(store.ticket(&id(1)).await.unwrap(), before);
    assert_eq!(store.last_event_seq().await.unwrap(), events_before);
    assert!(store.runs_of(&id(1)).await.unwrap().is_empty());

    sqlx::query("DROP TRIGGER racing_claim ON runs")
        .execute(&pool)
        .await
        .unwrap();
    assert!(matches!(
        store.claim(&request, &change(3)).await.unwrap(),
        ClaimOutcome::Claimed(_)
    ));
    assert_eq!(store.ticket(&id(1)).await.unwrap().state, State::Running);
}

/// The mechanism of event order: a transaction holding the event counter (as every event writer
/// does from its first statement to its commit) makes the next event writer wait, so it takes
/// the next number only once the first committed. Numbers are dense: a rolled back writer gives
/// its number back.
#[tokio::test]
async fn event_writers_wait_for_the_counter_and_take_dense_numbers() {
    let url = fresh_url().await;
    let store = std::sync::Arc::new(open(&url).await);
    let pool = raw(&url).await;
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT value FROM counters WHERE name = 'event_seq' FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .create_tickets(&key(), vec![new_ticket("waits", None)], &change(1))
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!writer.is_finished(), "the writer waits for the counter");
    assert_eq!(store.last_event_seq().await.unwrap(), 0);
    // The holder takes a number and rolls back: the number is given back.
    sqlx::query("UPDATE counters SET value = value + 1 WHERE name = 'event_seq'")
        .execute(&mut *holder)
        .await
        .unwrap();
    holder.rollback().await.unwrap();
    writer.await.unwrap();
    assert_eq!(store.last_event_seq().await.unwrap(), 1);
}

/// A writer that waits for a lock past the busy timeout (here: the event counter, held by a
/// transaction that does not end) fails as `Unavailable`, with PostgreSQL's error as its source.
#[tokio::test]
async fn a_write_blocked_past_the_lock_timeout_is_unavailable() {
    let url = fresh_url().await;
    open(&url).await.close().await;
    let store = PgStore::connect(
        &url,
        OpenOptions {
            busy_timeout: Duration::from_millis(100),
            ..OpenOptions::default()
        },
    )
    .await
    .unwrap();
    let pool = raw(&url).await;
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("SELECT value FROM counters WHERE name = 'event_seq' FOR UPDATE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let err = store
        .create_tickets(&key(), vec![new_ticket("t", None)], &change(1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("lock timeout"), "{err}");
    assert!(std::error::Error::source(&err).is_some());
    blocker.rollback().await.unwrap();
    store
        .create_tickets(&key(), vec![new_ticket("t", None)], &change(2))
        .await
        .unwrap();
}

/// A server that is not there, or a database that does not exist, is `Unavailable`; a URL that
/// cannot be parsed is invalid. No message repeats the URL's password.
#[tokio::test]
async fn unreachable_servers_and_missing_databases_are_unavailable() {
    let port = tokio::task::spawn_blocking(|| Cluster::shared().port())
        .await
        .unwrap();
    let quick = OpenOptions {
        busy_timeout: Duration::from_secs(2),
        ..OpenOptions::default()
    };
    for url in [
        "postgres://mission:hunter2@127.0.0.1:1/mission".to_owned(),
        format!("postgres://postgres:hunter2@127.0.0.1:{port}/no_such_database"),
    ] {
        let err = mission_store::open(&url, quick.clone())
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{url}: {err:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
    let err = mission_store::open("postgres://mission:hunter2@db:port/x", quick)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

/// `mission_store::open` picks PostgreSQL for `postgres://` and `postgresql://` URLs.
#[tokio::test]
async fn stores_open_by_url() {
    let url = fresh_url().await;
    for url in [url.clone(), url.replacen("postgres://", "postgresql://", 1)] {
        let store = mission_store::open(&url, OpenOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
            .create_tickets(&key(), vec![new_ticket("t", None)], &change(1))
            .await
            .unwrap();
        store.close().await;
    }
    let store = open(&url).await;
    assert_eq!(
        store
            .list_tickets(&TicketFilter::default())
            .await
            .unwrap()
            .len(),
        2
    );
}

/// PostgreSQL's text cannot hold a NUL. Bodies are BYTEA (byte for byte, in the conformance
/// suite); free text from a process (a run's detail) keeps everything but the NUL, which becomes
/// U+FFFD, instead of failing the write.
#[tokio::test]
async fn a_nul_in_free_text_does_not_fail_the_write() {
    let url = fresh_url().await;
    let store = open(&url).await;
    store
        .create_tickets(&key(), vec![new_ticket("t", Some("luci"))], &change(1))
        .await
        .unwrap();
    let ClaimOutcome::Claimed(run) = store
        .claim(&claim_request(1, 1, "a"), &change(2))
        .await
        .unwrap()
    else {
        panic!("not claimed");
    };
    let end = RunEnd {
        failure: Some(FailureClass::AgentError),
        detail: Some("bad\0byte".to_owned()),
        session_id: Some("s\0".to_owned()),
        ..RunEnd::default()
    };
    let retry = mission_core::RetryPolicy {
        max_attempts: 1,
        backoff_base: Duration::ZERO,
        backoff_max: Duration::ZERO,
        max_orphaned: 1,
        ..mission_core::RetryPolicy::default()
    };
    let ended = store
        .end_run(
            run.id,
            Attempt::new(1),
            &end,
            &retry,
            &mission_core::proof::InboxRoutes::default(),
            &change(3),
        )
        .await
        .unwrap();
    assert_eq!(ended.run.detail.as_deref(), Some("bad\u{fffd}byte"));
    assert_eq!(ended.run.session_id.as_deref(), Some("s\u{fffd}"));
}

/// Wake-ups across nodes: a notification reaches a listener; a listener whose connection is
/// killed connects again, says so with a wake-up (for what it may have missed), and hears the
/// notifications after.
#[tokio::test]
async fn notifications_wake_listeners_that_survive_a_dropped_connection() {
    use mission_store::postgres::wake::{Notifier, listen};
    let url = fresh_url().await;
    let (woken, mut wakes) = tokio::sync::mpsc::unbounded_channel();
    let listener = listen(&url, move || {
        let _ = woken.send(());
    })
    .unwrap();
    let next_wake = async |wakes: &mut tokio::sync::mpsc::UnboundedReceiver<()>, what: &str| {
        tokio::time::timeout(Duration::from_secs(20), wakes.recv())
            .await
            .unwrap_or_else(|_| panic!("no wake-up: {what}"))
            .unwrap();
        while wakes.try_recv().is_ok() {}
    };
    next_wake(&mut wakes, "when listening starts").await;

    let notifier = Notifier::new(&url).unwrap();
    notifier.notify();
    notifier.flush().await;
    next_wake(&mut wakes, "after a notification").await;

    let pool = raw(&url).await;
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'mission-listener'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(killed, [true], "one listener connection");
    next_wake(&mut wakes, "when listening again").await;
    for _ in 0..3 {
        notifier.notify();
        notifier.flush().await;
        next_wake(&mut wakes, "after a notification, connected again").await;
    }
    listener.abort();
}

/// The scheduler's lease: one holder at a time; renewed by its holder with the same fencing
/// number; taken by another only once it expired or was released, with the next number.
#[tokio::test]
async fn a_lease_has_one_holder_and_changes_hands_only_when_it_lapses() {
    use mission_store::SCHEDULER_LEASE as LEASE;
    let url = fresh_url().await;
    let store = open(&url).await;
    let ttl = Duration::from_secs(3);
    let at = mission_core::Timestamp::from_millis;
    let a = store
        .acquire_lease(LEASE, "a:1", at(1_000), ttl)
        .await
        .unwrap();
    assert_eq!(
        a.as_ref().map(|l| (l.fencing, l.expires_at)),
        Some((1, at(4_000)))
    );
    assert_eq!(
        store
            .acquire_lease(LEASE, "b:1", at(2_000), ttl)
            .await
            .unwrap(),
        None
    );
    let renewed = store
        .acquire_lease(LEASE, "a:1", at(3_000), ttl)
        .await
        .unwrap();
    assert_eq!(
        renewed.map(|l| (l.fencing, l.expires_at)),
        Some((1, at(6_000)))
    );
    assert_eq!(
        store
            .acquire_lease(LEASE, "b:1", at(5_999), ttl)
            .await
            .unwrap(),
        None
    );
    // a fell silent: at its expiry b takes the lease, and a cannot renew it any more.
    let b = store
        .acquire_lease(LEASE, "b:1", at(6_000), ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.fencing, 2);
    assert_eq!(
        store
            .acquire_lease(LEASE, "a:1", at(6_500), ttl)
            .await
            .unwrap(),
        None
    );
    // A release hands it over at once; a stale release (an old fencing number) does nothing.
    store
        .release_lease(LEASE, "b:1", 1, at(7_000))
        .await
        .unwrap();
    assert_eq!(
        store
            .acquire_lease(LEASE, "a:1", at(7_000), ttl)
            .await
            .unwrap(),
        None
    );
    store
        .release_lease(LEASE, "b:1", 2, at(7_000))
        .await
        .unwrap();
    let a = store
        .acquire_lease(LEASE, "a:1", at(7_001), ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.fencing, 3);
}

/// Servers asking for the lease at the same moment, each on its own connections: one gets it.
#[tokio::test]
async fn concurrent_candidates_elect_one_leader() {
    let url = fresh_url().await;
    open(&url).await.close().await;
    for round in 0..5 {
        let mut candidates = tokio::task::JoinSet::new();
        for candidate in 0..6 {
            let url = url.clone();
            candidates.spawn(async move {
                let store = PgStore::connect(&url, OpenOptions::default())
                    .await
                    .unwrap();
                let lease = store
                    .acquire_lease(
                        &format!("lease-{round}"),
                        &format!("node-{candidate}:1"),
                        mission_core::Timestamp::from_millis(1_000),
                        Duration::from_secs(10),
                    )
                    .await
                    .unwrap();
                store.close().await;
                lease
            });
        }
        let mut holders = Vec::new();
        while let Some(lease) = candidates.join_next().await {
            holders.extend(lease.unwrap());
        }
        assert_eq!(holders.len(), 1, "{holders:?}");
        assert_eq!(holders[0].fencing, 1);
    }
}

/// A node is dead once silent past its heartbeat's ttl, or once it stopped; a heartbeat brings it
/// back. A supervisor that never beat is not known dead.
#[tokio::test]
async fn nodes_are_dead_when_silent_past_their_ttl_or_stopped() {
    let url = fresh_url().await;
    let store = open(&url).await;
    let at = mission_core::Timestamp::from_millis;
    let ttl = Duration::from_secs(3);
    store.node_heartbeat("a:1", at(1_000), ttl).await.unwrap();
    store.node_heartbeat("b:2", at(2_000), ttl).await.unwrap();
    assert!(store.dead_nodes(at(3_999)).await.unwrap().is_empty());
    assert_eq!(store.dead_nodes(at(4_001)).await.unwrap(), ["a:1"]);
    store.node_stopped("b:2", at(4_500)).await.unwrap();
    assert_eq!(store.dead_nodes(at(4_600)).await.unwrap(), ["a:1", "b:2"]);
    store.node_heartbeat("a:1", at(5_000), ttl).await.unwrap();
    assert_eq!(store.dead_nodes(at(5_100)).await.unwrap(), ["b:2"]);
}
