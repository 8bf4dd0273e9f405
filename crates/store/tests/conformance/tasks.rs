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
