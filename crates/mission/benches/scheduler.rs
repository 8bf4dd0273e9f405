//! Scheduler benchmark, with `mission serve` running on SQLite:
//! - firing lateness: when a task run started against the moment its slot was due (slot plus its
//!   fixed jitter), over many firings of tasks due every second;
//! - an idle scheduler holding 1,000 tasks: CPU and memory of the whole server.
//!
//! Run: `cargo bench -p mission --bench scheduler` (BENCH_SECONDS sets the lateness run's length).

use mission_core::task::parse_task;
use mission_store::SqliteStore;
use mission_store::prelude::*;
use mission_store::sqlite::SqliteOptions;
use mission_testkit::process::{Guard, cpu_share, memory_mib, wait_for_wake_socket};
use mission_testkit::stats::Stats;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const MISSION: &str = env!("CARGO_BIN_EXE_mission");

fn instance() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mission.toml"),
        "[instance]\nkey = \"MC\"\n",
    )
    .unwrap();
    let out = Command::new(MISSION)
        .args(["init", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // Only the benchmark's own tasks.
    for entry in std::fs::read_dir(dir.path().join("tasks"))
        .unwrap()
        .flatten()
    {
        std::fs::remove_file(entry.path()).unwrap();
    }
    dir
}

fn serve(dir: &Path) -> Guard {
    let child = Command::new(MISSION)
        .arg("--config")
        .arg(dir.join("mission.toml"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("MISSION_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_wake_socket(&dir.join("data/wake.sock"), Duration::from_secs(30));
    Guard(child)
}

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        lateness(seconds).await;
        idle().await;
    });
}

async fn lateness(seconds: u64) {
    let dir = instance();
    let tasks = 20;
    for i in 0..tasks {
        let text = "+++\nkind = \"board-sweep\"\nevery = \"1s\"\njitter = \"900ms\"\nlimits = { running = \"1h\" }\n+++\n";
        std::fs::write(dir.path().join("tasks").join(format!("t{i}.md")), text).unwrap();
    }
    let server = serve(dir.path());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    drop(server);
    let store = SqliteStore::open(
        &dir.path().join("data/mission.db"),
        SqliteOptions::default(),
    )
    .await
    .unwrap();
    let mut late = Vec::new();
    let mut outcomes = std::collections::BTreeMap::new();
    for i in 0..tasks {
        let name = format!("t{i}");
        let path = dir.path().join("tasks").join(format!("{name}.md"));
        let spec = parse_task(&name, &name, &std::fs::read(&path).unwrap()).unwrap();
        for run in store.task_runs(&name, 100_000).await.unwrap() {
            let Some(slot) = run.slot else { continue };
            *outcomes
                .entry(run.outcome.map(|o| o.as_str()).unwrap_or("open"))
                .or_insert(0) += 1;
            let due = spec.fire_time(slot).as_millis();
            late.push(Duration::from_millis(
                (run.started_at.as_millis() - due).max(0) as u64,
            ));
        }
    }
    println!(
        "{}",
        Stats::new(late).line(&format!(
            "firing lateness ({tasks} tasks every 1s, {seconds}s)"
        ))
    );
    println!("{:<48} {outcomes:?}", "  outcomes");
    store.close().await;
}

async fn idle() {
    let dir = instance();
    for i in 0..1000 {
        let (minute, hour) = (i % 60, (i / 60) % 24);
        let text = format!(
            "+++\nkind = \"command\"\nschedule = \"{minute} {hour} * * *\"\ntimezone = \"Europe/Berlin\"\n+++\ntrue\n"
        );
        std::fs::write(dir.path().join("tasks").join(format!("daily-{i}.md")), text).unwrap();
    }
    let server = serve(dir.path());
    let out = Command::new(MISSION)
        .arg("--config")
        .arg(dir.path().join("mission.toml"))
        .args(["task", "list", "--json"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 1000);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = server.0.id();
    let span = Duration::from_secs(30);
    let share = tokio::task::spawn_blocking(move || cpu_share(pid, span))
        .await
        .unwrap();
    let (rss, peak) = memory_mib(pid);
    println!(
        "{:<48} cpu={share:.2}% of one core over {:.0}s, rss={:.1} MiB, peak rss={:.1} MiB",
        "idle `mission serve` with 1000 tasks",
        span.as_secs_f64(),
        rss,
        peak
    );
}
