//! The scheduler in virtual time, against a real SQLite store and real `sh` processes: the time
//! is whatever the test says; only the tasks' own work takes real time.

use mission_core::Timestamp;
use mission_core::config::Config;
use mission_core::task::{Outcome, Trigger};
use mission_engine::scheduler::{Fired, Scheduler};
use mission_engine::tasks::TaskContext;
use mission_engine::{Settings, SystemClock};
use mission_store::SqliteStore;
use mission_store::prelude::*;
use mission_store::sqlite::SqliteOptions;
use std::collections::BTreeMap;
use std::sync::Arc;

struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<dyn Store>,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tasks")).unwrap();
        let options = SqliteOptions {
            create: true,
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open(&dir.path().join("mission.db"), options)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        Fixture {
            dir,
            store: Arc::new(store),
        }
    }

    fn task(&self, name: &str, text: &str) {
        std::fs::write(
            self.dir.path().join("tasks").join(format!("{name}.md")),
            text,
        )
        .unwrap();
    }

    fn scheduler(&self) -> Scheduler {
        let path = self.dir.path();
        let settings =
            Settings::from_config(&Config::default(), path, path, "test", "/bin/true").unwrap();
        let (sink, _) = tokio::sync::mpsc::unbounded_channel();
        Scheduler::new(TaskContext {
            store: self.store.clone(),
            settings: Arc::new(settings),
            clock: Arc::new(SystemClock),
            runs: sink,
            waker: Arc::new(mission_engine::wake::NoWaker),
        })
    }

    /// Slots by outcome, as RFC 3339 strings, oldest first.
    async fn slots(&self, task: &str) -> BTreeMap<String, Vec<String>> {
        let mut runs = self.store.task_runs(task, 10_000).await.unwrap();
        runs.reverse();
        let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for run in runs {
            let outcome = run
                .outcome
                .map(|o| o.as_str().to_owned())
                .unwrap_or_else(|| "open".into());
            by.entry(outcome)
                .or_default()
                .push(run.slot.map(|s| s.to_rfc3339()).unwrap_or_default());
        }
        by
    }
}

fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

fn hours(from: &str, to: &str, minute: u32) -> Vec<String> {
    let (from, to) = (at(from).as_millis(), at(to).as_millis());
    let mut out = Vec::new();
    let mut t = from - from.rem_euclid(3_600_000) + i64::from(minute) * 60_000;
    while t <= to {
        if t >= from {
            out.push(Timestamp::from_millis(t).to_rfc3339());
        }
        t += 3_600_000;
    }
    out
}

/// Runs the scheduler from its next deadline to `until`, firing at each deadline, waiting for
/// each firing's work to finish.
async fn run_until(scheduler: &mut Scheduler, until: Timestamp) {
    while let Some(deadline) = scheduler.next_deadline() {
        if deadline > until {
            break;
        }
        scheduler.tick(deadline).await.unwrap();
        while scheduler.next_finished().await.is_some() {}
    }
}

#[tokio::test]
async fn forty_eight_hours_with_dst_jumps_and_a_restart_fire_each_slot_once() {
    let f = Fixture::new().await;
    for policy in ["skip", "latest", "all"] {
        f.task(
            &format!("hourly-{policy}"),
            &format!("+++\nkind = \"command\"\nevery = \"1h\"\ncatch_up = \"{policy}\"\ncatch_up_window = \"3h\"\n+++\nexit 0\n"),
        );
    }
    // 02:30 Berlin time: on 2026-03-29 the clocks jump from 02:00 to 03:00.
    f.task("nightly-berlin", "+++\nkind = \"command\"\nschedule = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"\n+++\nexit 0\n");
    f.task("every-berlin-hour", "+++\nkind = \"command\"\nschedule = \"15 * * * *\"\ntimezone = \"Europe/Berlin\"\ncatch_up = \"all\"\n+++\nexit 0\n");

    // Day 1 from 00:00 UTC to 10:05.
    let start = at("2026-03-28T00:00:00Z");
    let mut scheduler = f.scheduler();
    scheduler.reload(start).await.unwrap();
    run_until(&mut scheduler, at("2026-03-28T10:05:00Z")).await;
    // A restart in the middle: the new scheduler fires what is due at 10:05 — nothing the old
    // one fired, even when both tick.
    drop(scheduler);
    let mut restarted = f.scheduler();
    restarted.reload(at("2026-03-28T10:05:00Z")).await.unwrap();
    let again = restarted.tick(at("2026-03-28T10:05:00Z")).await.unwrap();
    assert!(again.is_empty(), "{again:?}");
    run_until(&mut restarted, at("2026-03-28T11:30:00Z")).await;

    // Down from 11:30 until 16:10 (a clock jump from the scheduler's point of view).
    drop(restarted);
    let mut after_downtime = f.scheduler();
    after_downtime
        .reload(at("2026-03-28T16:10:00Z"))
        .await
        .unwrap();
    after_downtime
        .tick(at("2026-03-28T16:10:00Z"))
        .await
        .unwrap();
    while after_downtime.next_finished().await.is_some() {}
    // The clock jumps back two hours: nothing fires twice; the schedule resumes.
    after_downtime
        .tick(at("2026-03-28T14:10:00Z"))
        .await
        .unwrap();
    run_until(&mut after_downtime, at("2026-03-30T00:00:00Z")).await;

    let before = hours("2026-03-28T00:00:01Z", "2026-03-28T11:30:00Z", 0);
    let after = hours("2026-03-28T17:00:00Z", "2026-03-30T00:00:00Z", 0);
    let skip = f.slots("hourly-skip").await;
    assert_eq!(skip["acted"], [before.clone(), after.clone()].concat());
    assert_eq!(
        skip["skipped"],
        vec!["2026-03-28T16:00:00.000Z"],
        "12:00-16:00 missed, one record"
    );
    let latest = f.slots("hourly-latest").await;
    assert_eq!(
        latest["acted"],
        [
            before.clone(),
            vec!["2026-03-28T16:00:00.000Z".into()],
            after.clone()
        ]
        .concat()
    );
    assert_eq!(latest["skipped"], vec!["2026-03-28T15:00:00.000Z"]);
    let all = f.slots("hourly-all").await;
    let window = vec![
        "2026-03-28T14:00:00.000Z".to_owned(),
        "2026-03-28T15:00:00.000Z".into(),
        "2026-03-28T16:00:00.000Z".into(),
    ];
    assert_eq!(
        all["acted"],
        [before.clone(), window, after.clone()].concat()
    );
    assert_eq!(
        all["skipped"],
        vec!["2026-03-28T13:00:00.000Z"],
        "12:00 and 13:00 were outside the 3h window"
    );

    // 02:30 Berlin: 01:30 UTC in winter time; on the switch day 02:30 does not exist and the run
    // comes at the first valid time after the gap, 03:00 CEST = 01:00 UTC — once.
    let nightly = f.slots("nightly-berlin").await;
    assert_eq!(
        nightly["acted"],
        vec!["2026-03-28T01:30:00.000Z", "2026-03-29T01:00:00.000Z"]
    );
    // Hourly at :15 local time is hourly in UTC across the switch; its missed slots (all, within
    // the default 24h window) were caught up.
    let berlin = f.slots("every-berlin-hour").await;
    assert_eq!(
        berlin["acted"],
        hours("2026-03-28T00:00:01Z", "2026-03-30T00:00:00Z", 15)
    );
    assert!(!berlin.contains_key("skipped"));

    // Every run ended with exactly one outcome; no slot twice.
    for task in [
        "hourly-skip",
        "hourly-latest",
        "hourly-all",
        "nightly-berlin",
        "every-berlin-hour",
    ] {
        let runs = f.store.task_runs(task, 10_000).await.unwrap();
        assert!(runs.iter().all(|r| r.outcome.is_some()), "{task}");
        let mut slots: Vec<_> = runs.iter().map(|r| r.slot).collect();
        let count = slots.len();
        slots.sort();
        slots.dedup();
        assert_eq!(slots.len(), count, "{task}: a slot fired twice");
    }
}

#[tokio::test]
async fn overlap_policies_with_a_slow_command() {
    let f = Fixture::new().await;
    for policy in ["forbid", "replace", "allow"] {
        f.task(
            &format!("slow-{policy}"),
            &format!(
                "+++\nkind = \"command\"\nevery = \"1h\"\noverlap = \"{policy}\"\n+++\nsleep 5\n"
            ),
        );
    }
    let mut scheduler = f.scheduler();
    scheduler.reload(at("2026-01-01T00:00:00Z")).await.unwrap();
    let specs = scheduler.tasks().specs.clone();
    for (name, spec) in &specs {
        let first = scheduler
            .fire(spec, Some(at("2026-01-01T01:00:00Z")), Trigger::Schedule)
            .await
            .unwrap();
        assert!(matches!(first, Fired::Started { .. }), "{name}");
        // Wait until the first run's process group is recorded, so replacing it kills it.
        for _ in 0..200 {
            if f.store
                .open_task_runs(Some(name))
                .await
                .unwrap()
                .iter()
                .all(|r| r.pid.is_some())
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let second = scheduler
            .fire(spec, Some(at("2026-01-01T02:00:00Z")), Trigger::Schedule)
            .await
            .unwrap();
        match name.as_str() {
            "slow-forbid" => assert!(
                matches!(second, Fired::Skipped { ref reason } if reason.starts_with("overlap")),
                "{second:?}"
            ),
            _ => assert!(
                matches!(second, Fired::Started { .. }),
                "{name}: {second:?}"
            ),
        }
    }
    scheduler.stop_all("test over").await;
    let forbid = f.slots("slow-forbid").await;
    assert_eq!(forbid["skipped"], vec!["2026-01-01T02:00:00.000Z"]);
    let replace = f.store.task_runs("slow-replace", 10).await.unwrap();
    let old = replace
        .iter()
        .find(|r| r.slot == Some(at("2026-01-01T01:00:00Z")))
        .unwrap();
    assert_eq!(old.outcome, Some(Outcome::Failed));
    assert!(
        old.reason
            .as_deref()
            .unwrap()
            .starts_with("cancelled: replaced"),
        "{old:?}"
    );
    assert!(
        !alive_group(old.pid.unwrap()),
        "the replaced run's processes are gone"
    );
    let allow = f.store.task_runs("slow-allow", 10).await.unwrap();
    assert_eq!(allow.len(), 2);
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let f = Fixture::new().await;
    f.task(
        "stuck",
        "+++\nkind = \"command\"\nevery = \"1h\"\ntimeout = \"1s\"\n+++\nsleep 100 &\nsleep 100\n",
    );
    let mut scheduler = f.scheduler();
    scheduler.reload(at("2026-01-01T00:00:00Z")).await.unwrap();
    let spec = scheduler.tasks().specs["stuck"].clone();
    scheduler.fire(&spec, None, Trigger::Manual).await.unwrap();
    let (_, result) = scheduler.next_finished().await.unwrap();
    assert_eq!(result.outcome, Outcome::Failed);
    assert_eq!(result.reason, "timed out after 1s");
    let run = f.store.task_runs("stuck", 1).await.unwrap().remove(0);
    let pid = run.pid.unwrap();
    for _ in 0..100 {
        if !alive_group(pid) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!alive_group(pid), "both sleeps of the group are gone");
}

#[tokio::test]
async fn a_command_reports_its_own_outcome() {
    let f = Fixture::new().await;
    f.task("reports", "+++\nkind = \"command\"\nevery = \"1h\"\n+++\necho working\necho '{\"outcome\": \"degraded\", \"reason\": \"review skipped: diff over the cap\", \"counts\": {\"lines\": 41969}}'\n");
    f.task(
        "fails",
        "+++\nkind = \"command\"\nevery = \"1h\"\n+++\necho '{\"outcome\": \"acted\"}'\nexit 4\n",
    );
    let mut scheduler = f.scheduler();
    scheduler.reload(at("2026-01-01T00:00:00Z")).await.unwrap();
    for name in ["reports", "fails"] {
        let spec = scheduler.tasks().specs[name].clone();
        scheduler.fire(&spec, None, Trigger::Manual).await.unwrap();
        scheduler.next_finished().await.unwrap();
    }
    let reports = f.store.task_runs("reports", 1).await.unwrap().remove(0);
    assert_eq!(reports.outcome, Some(Outcome::Degraded));
    assert_eq!(reports.counts["lines"], 41969);
    let fails = f.store.task_runs("fails", 1).await.unwrap().remove(0);
    assert_eq!(
        (fails.outcome, fails.reason.as_deref()),
        (Some(Outcome::Failed), Some("exit code 4"))
    );
}

/// Whether any process of the group is alive (zombies excepted).
fn alive_group(pgid: i64) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        let after = stat.rsplit(')').next().unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        fields.len() > 3 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
}

#[tokio::test]
async fn a_task_enabled_again_does_not_replay_the_slots_it_was_disabled_for() {
    let f = Fixture::new().await;
    let file = |enabled: bool| {
        format!(
            "+++\nkind = \"command\"\nevery = \"1h\"\ncatch_up = \"all\"\nenabled = {enabled}\n+++\nexit 0\n"
        )
    };
    f.task("paused", &file(true));
    let mut scheduler = f.scheduler();
    scheduler.reload(at("2026-01-01T00:00:00Z")).await.unwrap();
    run_until(&mut scheduler, at("2026-01-01T02:30:00Z")).await;
    f.task("paused", &file(false));
    scheduler.reload(at("2026-01-01T02:30:00Z")).await.unwrap();
    scheduler.tick(at("2026-01-01T06:30:00Z")).await.unwrap();
    f.task("paused", &file(true));
    scheduler.reload(at("2026-01-01T07:10:00Z")).await.unwrap();
    scheduler.tick(at("2026-01-01T07:10:00Z")).await.unwrap();
    run_until(&mut scheduler, at("2026-01-01T09:00:00Z")).await;
    let slots = f.slots("paused").await;
    assert_eq!(
        slots["acted"],
        vec![
            "2026-01-01T01:00:00.000Z",
            "2026-01-01T02:00:00.000Z",
            "2026-01-01T08:00:00.000Z",
            "2026-01-01T09:00:00.000Z"
        ]
    );
    assert!(!slots.contains_key("skipped"), "{slots:?}");
}

/// An agent task every minute whose agent takes five: one ticket, not five — the firings while
/// its ticket is open are skipped and name it; once it is closed, the next firing makes a new
/// one. With `if_open = "create"`, every firing makes its own.
#[tokio::test]
async fn a_minutely_agent_task_with_a_slow_agent_creates_one_ticket_not_five() {
    use mission_store::{Move, TicketFilter};
    let f = Fixture::new().await;
    f.task(
        "sweep",
        "+++\nkind = \"agent\"\nevery = \"1m\"\nworker = \"slow\"\n+++\nLook at the logs.\n",
    );
    f.task(
        "piles",
        "+++\nkind = \"agent\"\nevery = \"1m\"\nworker = \"slow\"\nif_open = \"create\"\n+++\nLook again.\n",
    );
    let config: Config = serde_json::from_value(serde_json::json!({
        "workers": { "slow": { "runtime": "shell", "command": ["sleep", "300"] } }
    }))
    .unwrap();
    let path = f.dir.path();
    let settings = Settings::from_config(&config, path, path, "test", "/bin/true").unwrap();
    let (sink, _) = tokio::sync::mpsc::unbounded_channel();
    let mut scheduler = Scheduler::new(TaskContext {
        store: f.store.clone(),
        settings: Arc::new(settings),
        clock: Arc::new(SystemClock),
        runs: sink,
        waker: Arc::new(mission_engine::wake::NoWaker),
    });
    scheduler.reload(at("2026-06-01T09:59:30Z")).await.unwrap();
    run_until(&mut scheduler, at("2026-06-01T10:04:30Z")).await;
    let tickets = |label: &'static str| {
        let store = f.store.clone();
        async move {
            let all = store.list_tickets(&TicketFilter::default()).await.unwrap();
            all.into_iter()
                .filter(|t| t.labels.iter().any(|l| l == label))
                .map(|t| t.id)
                .collect::<Vec<_>>()
        }
    };
    let sweep = tickets("task:sweep").await;
    assert_eq!(sweep.len(), 1, "{sweep:?}");
    assert!(tickets("task:piles").await.len() >= 4);
    let runs = f.store.task_runs("sweep", 100).await.unwrap();
    let skipped: Vec<_> = runs
        .iter()
        .filter(|r| r.outcome == Some(Outcome::Skipped))
        .collect();
    assert!(skipped.len() >= 3, "{runs:?}");
    assert!(
        skipped[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains(&sweep[0].to_string()) && r.contains("still todo")),
        "{:?}",
        skipped[0].reason
    );
    // The agent finished (its ticket closed): the next firing makes a new ticket.
    f.store
        .move_ticket(
            &sweep[0],
            &Move {
                to: mission_core::State::Cancelled,
                via: mission_core::transition::Via::Operator,
                reason: None,
            },
            &mission_store::Change::new(
                mission_core::Actor::new("test"),
                at("2026-06-01T10:04:40Z"),
            ),
        )
        .await
        .unwrap();
    run_until(&mut scheduler, at("2026-06-01T10:05:30Z")).await;
    assert_eq!(tickets("task:sweep").await.len(), 2);
}
