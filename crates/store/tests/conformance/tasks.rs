//! Task runs through the store's traits: the typed trigger, and each slot firing once whatever
//! the number of schedulers.

use super::Backend;
use crate::common::change;
use mission_core::Timestamp;
use mission_core::task::{Outcome, TaskResult, Trigger};
use mission_store::{EventQuery, TaskRunStart};

fn start(task: &str, slot: Option<i64>, trigger: Trigger) -> TaskRunStart {
    TaskRunStart {
        task: task.to_owned(),
        slot: slot.map(Timestamp::from_millis),
        trigger,
        node: "test:1".to_owned(),
    }
}

pub async fn task_runs_keep_their_trigger<B: Backend>() {
    let t = B::fresh().await;
    let store = t.store();
    let triggers = [Trigger::Schedule, Trigger::CatchUp, Trigger::Manual];
    for (n, trigger) in triggers.iter().enumerate() {
        let slot = (*trigger != Trigger::Manual).then_some(n as i64 * 1000);
        let run = store
            .begin_task_run(&start("sweep", slot, *trigger), &change(n as i64))
            .await
            .unwrap()
            .unwrap();
        let result = TaskResult::new(Outcome::Noop, "nothing to do");
        assert!(
            store
                .finish_task_run(run, &result, &change(n as i64 + 1))
                .await
                .unwrap()
        );
    }
    let runs = store.task_runs("sweep", 10).await.unwrap();
    let stored: Vec<Trigger> = runs.iter().rev().map(|r| r.trigger).collect();
    assert_eq!(stored, triggers);
    let events = store
        .events(&EventQuery {
            since: 0,
            limit: 10,
            ticket: None,
        })
        .await
        .unwrap();
    let recorded: Vec<&str> = events
        .iter()
        .map(|e| e.data["trigger"].as_str().unwrap())
        .collect();
    assert_eq!(recorded, ["schedule", "catch_up", "manual"]);
    assert!(events.iter().all(|e| e.kind == "task.finished"));
}

/// Two schedulers (two handles, as two processes) fire the same slots at the same moment: for
/// each slot exactly one of them starts a run, and a skip of a taken slot is refused. Only the
/// database's unique (task, slot) index can make this hold, since neither looks first.
pub async fn a_slot_fires_once_across_concurrent_schedulers<B: Backend>() {
    const SLOTS: i64 = 40;
    let t = B::fresh().await;
    let (a, b) = (t.connect().await, t.connect().await);
    for slot in 0..SLOTS {
        let slot_start = start("nightly", Some(slot * 60_000), Trigger::Schedule);
        let at = change(slot);
        let (first, second) = tokio::join!(
            a.begin_task_run(&slot_start, &at),
            b.begin_task_run(&slot_start, &at),
        );
        let started = [first.unwrap(), second.unwrap()];
        assert_eq!(
            started.iter().flatten().count(),
            1,
            "slot {slot}: {started:?}"
        );
        let skipped = TaskResult::new(Outcome::Skipped, "overlap");
        let catch_up = start("nightly", Some(slot * 60_000), Trigger::CatchUp);
        let (first, second) = tokio::join!(
            a.record_task_skip(&catch_up, &skipped, &at),
            b.record_task_skip(&catch_up, &skipped, &at),
        );
        assert_eq!((first.unwrap(), second.unwrap()), (false, false));
    }
    let store = t.store();
    assert_eq!(
        store.task_runs("nightly", 1000).await.unwrap().len(),
        SLOTS as usize
    );
    assert_eq!(
        store.last_event_seq().await.unwrap(),
        0,
        "refused skips write no task.finished"
    );
}
