//! The scheduler's leadership among servers sharing a PostgreSQL store: one leader at a time; a
//! leader that stops renewing stops trusting its lease before anyone else may take it; another
//! takes over once it lapsed; a release hands it over at once. On SQLite (one server), the
//! lease is always granted.

use mission_engine::SystemClock;
use mission_engine::leader::Leadership;
use mission_store::{OpenOptions, Store};
use mission_testkit::pg::Cluster;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep_until};

const TTL: Duration = Duration::from_millis(1500);

async fn postgres_store() -> Arc<dyn Store> {
    let url = tokio::task::spawn_blocking(|| Cluster::shared().create_schema())
        .await
        .unwrap();
    let store = mission_store::open(&url, OpenOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
}

fn leadership(store: &Arc<dyn Store>, holder: &str) -> Leadership {
    Leadership::new(store.clone(), Arc::new(SystemClock), holder.to_owned(), TTL)
}

#[tokio::test]
async fn one_leader_and_a_silent_one_distrusts_its_lease_before_another_takes_it() {
    let store = postgres_store().await;
    let mut a = leadership(&store, "a:1");
    let mut b = leadership(&store, "b:1");
    assert_eq!(a.check().await, Some(1));
    assert_eq!(b.check().await, None);

    // a renews every third of the ttl and stays the leader; b stays out.
    let mut silent = Instant::now();
    for _ in 0..4 {
        sleep_until(a.next_check()).await;
        silent = Instant::now();
        assert_eq!(a.check().await, Some(1), "a renews");
        assert_eq!(b.check().await, None, "b stays out");
    }

    // Then a falls silent (paused, partitioned). Past two thirds of the ttl it no longer trusts
    // its lease, while the lease itself still runs: nobody else may take it yet.
    sleep_until(silent + TTL * 2 / 3 + Duration::from_millis(50)).await;
    assert_eq!(a.trusted_now(), None, "a distrusts its lease");
    b.check().await;
    assert_eq!(b.trusted_now(), None, "the lease still runs");

    // Once it lapsed, b takes it (the next fencing number) within a third of the ttl; a, waking
    // up, finds it gone.
    sleep_until(silent + TTL + Duration::from_millis(50)).await;
    let deadline = Instant::now() + TTL / 3 + Duration::from_millis(100);
    let taken = loop {
        if let Some(fencing) = b.check().await {
            break fencing;
        }
        assert!(Instant::now() < deadline, "b did not take the lapsed lease");
        sleep_until(b.next_check()).await;
    };
    assert_eq!(taken, 2);
    assert_eq!(a.check().await, None);

    // A release hands the lease over at once.
    b.release().await;
    let mut c = leadership(&store, "c:1");
    assert_eq!(c.check().await, Some(3));
}

#[tokio::test]
async fn on_sqlite_the_only_server_always_leads() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("mission.db").display());
    let create = OpenOptions {
        create: true,
        ..OpenOptions::default()
    };
    let store = mission_store::open(&url, create).await.unwrap();
    store.migrate().await.unwrap();
    let mut a = leadership(&store, "a:1");
    let mut b = leadership(&store, "b:1");
    assert!(a.check().await.is_some());
    assert!(b.check().await.is_some());
}
