//! The runner's time limits on an injected clock: a real process, a real SQLite store, and a
//! clock that jumps — the stall and run timeouts fire without waiting for them in real time.

use mission_core::config::{Config, DispatchConfig, WorkerConfig};
use mission_core::{Actor, FailureClass, Lane, Run, TicketDraft, TicketKey, Timestamp};
use mission_engine::{Clock, Dispatcher, ManualClock, RunReport, Runner, Settings};
use mission_store::prelude::*;
use mission_store::sqlite::SqliteOptions;
use mission_store::{Change, SqliteStore};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longer than any test may take in real time: only the injected clock can reach it.
const HOUR: Duration = Duration::from_secs(3600);

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    settings: Arc<Settings>,
    clock: ManualClock,
}

impl Fixture {
    /// A store with one todo ticket for the worker `sleeper`, whose process sleeps silently
    /// for a minute.
    async fn new(stall_timeout: Duration, run_timeout: Duration) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        let options = SqliteOptions {
            create: true,
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open(&path.join("mission.db"), options)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let worker: WorkerConfig = serde_json::from_value(serde_json::json!({
            "runtime": "shell",
            "command": ["sleep", "60"],
        }))
        .unwrap();
        let workers = BTreeMap::from([("sleeper".to_owned(), worker)]);
        let dispatch = DispatchConfig {
            // A tick every 100 ms.
            lease: Duration::from_millis(300),
            stall_timeout,
            run_timeout,
            kill_grace: Duration::from_millis(200),
            ..DispatchConfig::default()
        };
        let config = Config {
            workers,
            dispatch,
            ..Config::default()
        };
        let settings = Settings::from_config(&config, path, path, "test", "/bin/true").unwrap();
        let clock = ManualClock::at(Timestamp::now());
        let draft = TicketDraft {
            title: "sleeps".to_owned(),
            assignee: Some("sleeper".to_owned()),
            ..TicketDraft::default()
        }
        .validate()
        .unwrap();
        store
            .create_tickets(
                &TicketKey::default(),
                vec![draft],
                &Change::new(Actor::new("test"), clock.now()),
            )
            .await
            .unwrap();
        Fixture {
            _dir: dir,
            store: Arc::new(store),
            settings: Arc::new(settings),
            clock,
        }
    }

    /// Claims the ticket and starts its run; returns once the run is watched (its heartbeat
    /// carries a time the clock reached after the claim).
    async fn start(&self) -> (Run, tokio::task::JoinHandle<RunReport>) {
        let clock: Arc<dyn Clock> = Arc::new(self.clock.clone());
        let dispatcher = Dispatcher::new(self.store.clone(), self.settings.clone(), clock.clone());
        let report = dispatcher.dispatch_once(Lane::Normal).await.unwrap();
        let (run, token) = report.claimed.into_iter().next().expect("a claimed run");
        self.clock.advance(Duration::from_millis(1));
        let watched = self.clock.now();
        let runner = Runner::new(self.store.clone(), self.settings.clone(), clock);
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let handle = {
            let run = run.clone();
            tokio::spawn(async move {
                let report = runner.run(run, token, shutdown).await;
                // The sender lives as long as the run: no shutdown.
                drop(stop);
                report
            })
        };
        self.heartbeat_at(&run, watched).await;
        (run, handle)
    }

    /// Waits (in real time, bounded) until the run's heartbeat carries `time` or later: its
    /// supervisor has checked it at that time.
    async fn heartbeat_at(&self, run: &Run, time: Timestamp) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let stored = self.store.run(run.id).await.unwrap();
            if stored.pid.is_some() && stored.heartbeat_at >= time {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no heartbeat at {time} (the last at {})",
                stored.heartbeat_at
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits (in real time, bounded) for the run to end.
async fn ended(handle: tokio::task::JoinHandle<RunReport>) -> RunReport {
    tokio::time::timeout(Duration::from_secs(20), handle)
        .await
        .expect("the run ends soon after the clock jumps")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_run_is_stopped_as_stalled_when_the_clock_jumps_past_the_stall_timeout() {
    let fixture = Fixture::new(HOUR, 10 * HOUR).await;
    let (_, handle) = fixture.start().await;
    let started = Instant::now();
    fixture.clock.advance(HOUR);
    let report = ended(handle).await;
    assert_eq!(
        report.failure_class,
        Some(FailureClass::Stalled),
        "{report:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(report.recorded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_stopped_as_timed_out_when_the_clock_jumps_past_the_run_timeout() {
    let fixture = Fixture::new(10 * HOUR, HOUR).await;
    let (run, handle) = fixture.start().await;
    // Not yet: a jump short of the limit stops nothing. A heartbeat after the one at the jumped
    // time shows that the check at that time is over, and the run goes on.
    fixture.clock.advance(HOUR / 2);
    fixture.heartbeat_at(&run, fixture.clock.now()).await;
    fixture.clock.advance(Duration::from_millis(1));
    fixture.heartbeat_at(&run, fixture.clock.now()).await;
    assert!(!handle.is_finished(), "stopped before its time limit");
    fixture.clock.advance(HOUR / 2);
    let report = ended(handle).await;
    assert_eq!(
        report.failure_class,
        Some(FailureClass::Timeout),
        "{report:?}"
    );
    let stored = fixture.store.run(run.id).await.unwrap();
    assert_eq!(stored.failure_class, Some(FailureClass::Timeout));
}
