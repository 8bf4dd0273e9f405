//! Gate and inbox benchmark, on a board of 100,000 tickets (BENCH_TICKETS scales it).
//!
//! - `ticket done` through the use case the CLI calls (`App::close_ticket`) for a ticket in
//!   review with `commit+test:unit` evidence in a real git worktree: the whole call, the test
//!   command's own time (the harness runs it again), and the gate's own overhead — the whole
//!   call less the test command: the ticket read, the commit re-verified (the branch's ref and
//!   the loose commit read from the repository's files: the branch points at it, so no git
//!   process), the decision's write transaction, the worktree retired (its folder and its
//!   registration under `.git/worktrees/` renamed into the workspaces' trash, in-process, under
//!   the repository's worktree lock). No git process runs in the measured call on this path.
//!   The retired worktree's files are deleted after the answer (`Trash::empty_later`; `mission
//!   ticket done` waits for it before its process exits): that deletion is timed apart, after
//!   each call and before the next, so it never overlaps a measured call.
//! - Acting on an inbox item (`App::inbox_act`, dismissed): one write transaction.
//!
//! Run: `cargo bench -p mission --bench gate`.

use mission_core::{
    ActionKind, Actor, Addressee, Attempt, InboxKind, Lane, Name, NewInboxItem, TicketDraft,
    TicketKey, Timestamp,
};
use mission_engine::wake::NoWaker;
use mission_engine::workspace::Workspaces;
use mission_engine::{App, Settings, SystemClock};
use mission_store::prelude::*;
use mission_store::sqlite::SqliteOptions;
use mission_store::{
    Change, ClaimOutcome, ClaimRequest, Fence, Observation, RecordEvidence, SqliteStore,
};
use mission_testkit::stats::Stats;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MISSION: &str = env!("CARGO_BIN_EXE_mission");
const SAMPLES: usize = 100;

fn main() {
    let tickets: usize = std::env::var("BENCH_TICKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("gate benchmark: board of {tickets} tickets");
    runtime.block_on(run(tickets));
}

fn change() -> Change {
    Change::new(Actor::new("bench"), Timestamp::now())
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.invalid",
            // The setup's commits start no detached maintenance that would run during the
            // measured call.
            "-c",
            "maintenance.auto=false",
            "-c",
            "gc.auto=0",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

const CONFIG: &str = r#"
[workers.luci]
runtime = "shell"
command = ["true"]
max_concurrent = 1000

[review]
default = "none"

[[evidence.tests]]
name = "unit"
command = ["true"]
"#;

fn settings(dir: &Path) -> Settings {
    let text = std::fs::read_to_string(dir.join("mission.toml")).unwrap();
    let config: mission_core::config::Config = toml::from_str(&text).unwrap();
    Settings::from_config(&config, dir, &dir.join("data"), "bench", MISSION).unwrap()
}

async fn run(tickets: usize) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mission.toml"), CONFIG).unwrap();
    let out = Command::new(MISSION)
        .args(["init", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README.md"), "bench\n").unwrap();
    git(&repo, &["add", "README.md"]);
    git(&repo, &["commit", "-q", "-m", "initial"]);

    let store = Arc::new(
        SqliteStore::open(
            &dir.path().join("data/mission.db"),
            SqliteOptions {
                max_connections: 4,
                ..SqliteOptions::default()
            },
        )
        .await
        .unwrap(),
    );
    store.migrate().await.unwrap();
    // The board.
    let key = TicketKey::default();
    let mut left = tickets;
    while left > 0 {
        let n = left.min(1000);
        let drafts = (0..n)
            .map(|i| {
                TicketDraft {
                    title: format!("ticket {i}"),
                    assignee: Some("luci".into()),
                    ..TicketDraft::default()
                }
                .validate()
                .unwrap()
            })
            .collect();
        store.create_tickets(&key, drafts, &change()).await.unwrap();
        left -= n;
    }
    let settings = Arc::new(settings(dir.path()));
    let app = App::new(
        store.clone(),
        settings.clone(),
        Arc::new(SystemClock),
        Arc::new(NoWaker),
    );
    let workspaces = Workspaces::new(&settings.workspaces_dir, &settings.instance_dir);
    let luci = Name::parse("luci").unwrap();

    let mut total = Vec::new();
    let mut overhead = Vec::new();
    let mut tests = Vec::new();
    let mut verify = Vec::new();
    let mut decide = Vec::new();
    let mut cleanup = Vec::new();
    let mut deleted = Vec::new();
    for i in 0..SAMPLES {
        // A ticket in review with a commit in its worktree, recorded by the harness (setup).
        let draft = TicketDraft {
            title: format!("gated {i}"),
            assignee: Some("luci".into()),
            repo: Some("repo".into()),
            evidence_policy: Some("commit+test:unit".into()),
            ..TicketDraft::default()
        }
        .validate()
        .unwrap();
        let ticket = store
            .create_tickets(&key, vec![draft], &change())
            .await
            .unwrap()
            .remove(0);
        let request = ClaimRequest {
            ticket: ticket.id.clone(),
            lane: Lane::Normal,
            expected_version: ticket.version,
            limits: mission_core::SlotLimits {
                worker: luci.clone(),
                worker_max: u32::MAX,
                pool: "default".into(),
                pool_max: None,
                global_max: u32::MAX,
            },
            node: "bench:1".into(),
            token_hash: format!("token-{i}"),
            lease: Duration::from_secs(60),
        };
        let ClaimOutcome::Claimed(run) = store.claim(&request, &change()).await.unwrap() else {
            panic!("not claimed");
        };
        let workspace = workspaces.prepare(&ticket.id, Some("repo")).await.unwrap();
        std::fs::write(workspace.path.join(format!("work-{i}.txt")), "work\n").unwrap();
        git(&workspace.path, &["add", "."]);
        git(&workspace.path, &["commit", "-q", "-m", "work"]);
        let head = git(&workspace.path, &["rev-parse", "HEAD"]);
        store
            .record_evidence(
                &RecordEvidence {
                    ticket: ticket.id.clone(),
                    fence: Fence::Attempt(Attempt::new(1)),
                    observations: vec![Observation {
                        evidence: mission_engine::evidence::commit(
                            mission_core::CommitSha::parse(&head).unwrap(),
                        ),
                        verification: mission_core::Verification::Verified {
                            at: Timestamp::now(),
                        },
                    }],
                },
                &change(),
            )
            .await
            .unwrap();
        store
            .run_submit(run.id, run.attempt, &change())
            .await
            .unwrap();

        // Measured: `ticket done`.
        let started = Instant::now();
        let closing = app.close_ticket(&ticket.id, &Actor::cli()).await.unwrap();
        let elapsed = started.elapsed();
        assert!(closing.done);
        let deleting = Instant::now();
        mission_engine::workspace::trash_emptied().await;
        deleted.push(deleting.elapsed());
        let us = Duration::from_micros;
        let checks = us(closing.timings.checks_us);
        verify.push(us(closing.timings.verify_us));
        decide.push(us(closing.timings.decide_us));
        cleanup.push(us(closing.timings.cleanup_us));
        total.push(elapsed);
        tests.push(checks);
        overhead.push(elapsed.saturating_sub(checks));
    }
    println!(
        "{}",
        Stats::new(total).line("ticket done, commit+test:unit (whole call)")
    );
    println!(
        "{}",
        Stats::new(tests).line("  the test command (`true`), run by the harness")
    );
    println!(
        "{}",
        Stats::new(overhead).line("  the gate's own overhead (all but the test)")
    );
    println!(
        "{}",
        Stats::new(verify).line("    read + commit re-verified (ref files)")
    );
    println!(
        "{}",
        Stats::new(decide).line("    the decision: one write transaction")
    );
    println!(
        "{}",
        Stats::new(cleanup).line("    worktree retired (renamed into the trash)")
    );
    println!(
        "{}",
        Stats::new(deleted).line("  after the answer: the retired worktree deleted")
    );

    // Inbox: acting on an item is one write transaction.
    let operator = Addressee::Channel(Name::parse("operator").unwrap());
    let mut acts = Vec::new();
    for i in 0..200 {
        let item = store
            .create_inbox_item(
                &NewInboxItem::new(
                    InboxKind::Alert,
                    None,
                    operator.clone(),
                    &format!("alert {i}"),
                )
                .unwrap(),
                &change(),
            )
            .await
            .unwrap();
        let started = Instant::now();
        app.inbox_act(
            item.id,
            ActionKind::Dismissed,
            None,
            Name::parse("operator").unwrap(),
            &Actor::cli(),
        )
        .await
        .unwrap();
        acts.push(started.elapsed());
    }
    println!("{}", Stats::new(acts).line("inbox act (dismissed)"));
    store.close().await;
}
