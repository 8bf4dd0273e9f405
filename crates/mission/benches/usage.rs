//! Usage benchmark.
//!
//! - the budget check's cost in a dispatch pass: a board of 100,000 tickets and a ledger holding
//!   a year of 1,000,000 runs (their rows per series and 15-minute bucket: the instance, four
//!   workers, two pools, four labels and each run's ticket); the same pass (capacity full) with no
//!   budget and with four (a local day, a week, a month, a rolling 5 hours; instance, worker,
//!   pool, label), interleaved in the same run — with four, half the passes find the holds'
//!   version unchanged (they judge by the facts kept from the last pass) and half find it moved
//!   (as after a claim or a run's end: they read the facts again); every pass reads the holds'
//!   version with its capacity count, so the version's own cost is measured apart (the count
//!   with it next to the count without it) and added to the judging's;
//! - `mission usage` over that year, through the binary, by worker, label, day and ticket (the
//!   first 50 by cost, the default, and every ticket).
//!
//! Run: `cargo bench -p mission --bench usage` (BENCH_TICKETS and BENCH_RUNS scale it).

use mission_core::usage::{BUCKET_MS, bucket_of};
use mission_core::{Actor, Lane, TicketDraft, TicketKey, Timestamp};
use mission_engine::{Dispatcher, Settings, SystemClock};
use mission_store::prelude::*;
use mission_store::sqlite::SqliteOptions;
use mission_store::{Change, SqliteStore};
use mission_testkit::stats::Stats;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

const MISSION: &str = env!("CARGO_BIN_EXE_mission");

const WORKERS: &str = "[dispatch]\nmax_workers = 4\n\n\
    [workers.w0]\nruntime = \"shell\"\ncommand = [\"true\"]\nmax_concurrent = 4\npool = \"p0\"\n\n\
    [workers.w1]\nruntime = \"shell\"\ncommand = [\"true\"]\npool = \"p0\"\n\n\
    [workers.w2]\nruntime = \"shell\"\ncommand = [\"true\"]\npool = \"p1\"\n\n\
    [workers.w3]\nruntime = \"shell\"\ncommand = [\"true\"]\npool = \"p1\"\n";

const BUDGETS: &str = "\n[[budgets]]\nwindow = \"day\"\nusd = 1000000\n\n\
    [[budgets]]\nworker = \"w0\"\nwindow = \"week\"\ntokens = 100000000000\n\n\
    [[budgets]]\npool = \"p0\"\nwindow = \"month\"\nruns = 100000000\n\n\
    [[budgets]]\nlabel = \"l0\"\nwindow = \"5h\"\nrun_hours = 100000000\n";

fn main() {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let tickets = env("BENCH_TICKETS", 100_000);
    let runs = env("BENCH_RUNS", 1_000_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("usage benchmark: {tickets} tickets, a year of {runs} runs in the ledger");
    runtime.block_on(run(tickets, runs));
}

fn settings(dir: &Path, text: &str) -> Settings {
    let config: mission_core::config::Config = toml::from_str(text).unwrap();
    Settings::from_config(&config, dir, &dir.join("data"), "bench", MISSION).unwrap()
}

async fn run(tickets: usize, runs: usize) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mission.toml"),
        format!("{WORKERS}{BUDGETS}"),
    )
    .unwrap();
    let out = Command::new(MISSION)
        .args(["init", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let db = dir.path().join("data/mission.db");
    let store = SqliteStore::open(&db, SqliteOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let setup = Instant::now();
    let change = Change::new(Actor::new("bench"), Timestamp::now());
    let mut left = tickets;
    while left > 0 {
        let n = left.min(1000);
        let drafts = (0..n)
            .map(|i| {
                TicketDraft {
                    title: format!("ticket {i}"),
                    assignee: Some(format!("w{}", i % 4)),
                    labels: vec![format!("l{}", i % 4)],
                    ..TicketDraft::default()
                }
                .validate()
                .unwrap()
            })
            .collect();
        store
            .create_tickets(&TicketKey::default(), drafts, &change)
            .await
            .unwrap();
        left -= n;
    }
    store.close().await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", db.display()))
        .await
        .unwrap();
    // 95% done; the rest todo, more than four slots' worth.
    sqlx::query("UPDATE tickets SET state = 'done' WHERE number % 20 <> 0")
        .execute(&pool)
        .await
        .unwrap();
    ledger(&pool, tickets, runs).await;
    // Each series' totals, as `end_run` keeps them beside the ledger (the migration's own
    // statement for a ledger written before them).
    sqlx::query(
        "INSERT INTO usage_totals SELECT scope, key, MIN(bucket), MAX(bucket), SUM(runs), \
         SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens), SUM(cost_micros), \
         SUM(run_ms) FROM usage_ledger GROUP BY scope, key",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    pool.close().await;
    println!(
        "setup: {tickets} tickets, {runs} runs' ledger rows ({:.1}s, not measured)",
        setup.elapsed().as_secs_f64()
    );

    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(
            &db,
            SqliteOptions {
                max_connections: 4,
                ..SqliteOptions::default()
            },
        )
        .await
        .unwrap(),
    );
    let plain = Arc::new(settings(dir.path(), WORKERS));
    let budgeted = Arc::new(settings(dir.path(), &format!("{WORKERS}{BUDGETS}")));
    assert_eq!(budgeted.workforce.budgets().len(), 4);
    let without = Dispatcher::new(store.clone(), plain.clone(), Arc::new(SystemClock));
    let with = Dispatcher::new(store.clone(), budgeted.clone(), Arc::new(SystemClock));
    // Warm up until the decision cursors caught up and capacity is full (not measured).
    for _ in 0..200 {
        without.dispatch_once(Lane::Normal).await.unwrap();
        with.dispatch_once(Lane::Normal).await.unwrap();
    }
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", db.display()))
        .await
        .unwrap();
    let (mut a, mut b, mut gather) = (Vec::new(), Vec::new(), Vec::new());
    let (cache, mut kept) = (mission_engine::holds::HoldsCache::default(), Vec::new());
    let (mut moved, mut counted, mut versioned) = (Vec::new(), Vec::new(), Vec::new());
    let mut decisions = (0, 0);
    for i in 0..2000 {
        let t = Instant::now();
        let report = without.dispatch_once(Lane::Normal).await.unwrap();
        a.push(t.elapsed());
        assert!(report.claimed.is_empty(), "capacity is full");
        decisions.0 += report.decisions_recorded;
        // Every other pass, the holds' facts changed since the last one (as when a run ended or
        // was claimed): the pass reads them again instead of judging by the kept ones.
        let changed = i % 2 == 1;
        if changed {
            sqlx::query("UPDATE holds_version SET version = version + 1")
                .execute(&pool)
                .await
                .unwrap();
        }
        let t = Instant::now();
        let report = with.dispatch_once(Lane::Normal).await.unwrap();
        if changed {
            moved.push(t.elapsed());
        } else {
            b.push(t.elapsed());
        }
        assert!(report.claimed.is_empty(), "capacity is full");
        decisions.1 += report.decisions_recorded;
        let t = Instant::now();
        mission_engine::holds::gather(store.as_ref(), &budgeted.workforce, Timestamp::now())
            .await
            .unwrap();
        gather.push(t.elapsed());
        // What an unchanged pass pays for its budgets: the version, read with the capacity
        // count the pass makes anyway (measured against the count without it), and the kept
        // facts judged.
        let t = Instant::now();
        store.active_counts().await.unwrap();
        counted.push(t.elapsed());
        let t = Instant::now();
        let (_, version) = store.active_counts_versioned().await.unwrap();
        versioned.push(t.elapsed());
        let t = Instant::now();
        mission_engine::holds::gather_with(
            store.as_ref(),
            &budgeted.workforce,
            Timestamp::now(),
            Some((&cache, version)),
        )
        .await
        .unwrap();
        if !changed {
            kept.push(t.elapsed());
        }
    }
    println!(
        "decisions recorded by the measured passes: {} without budgets, {} with",
        decisions.0, decisions.1
    );
    let (a, b, moved, gather) = (
        Stats::new(a),
        Stats::new(b),
        Stats::new(moved),
        Stats::new(gather),
    );
    println!("{}", a.line("dispatch pass, capacity full, no budget"));
    println!(
        "{}",
        b.line("dispatch pass, 4 budgets, holds unchanged since the last pass")
    );
    println!(
        "{}",
        moved.line("dispatch pass, 4 budgets, holds changed (read again)")
    );
    println!("{}", gather.line("  the holds read alone (4 budgets)"));
    let (kept, counted, versioned) = (Stats::new(kept), Stats::new(counted), Stats::new(versioned));
    println!("{}", counted.line("  the capacity count alone"));
    println!(
        "{}",
        versioned.line("  the capacity count with the holds' version")
    );
    println!(
        "{}",
        kept.line("  the kept holds judged, unchanged (4 budgets)")
    );
    let p50 = |s: &Stats| s.percentile(0.5).as_secs_f64() * 1000.0;
    println!(
        "{:<48} {:.3} ms",
        "budget check, unchanged: version + judging, p50",
        p50(&versioned) - p50(&counted) + p50(&kept)
    );
    let added = |with: &Stats| with.percentile(0.5).as_secs_f64() - a.percentile(0.5).as_secs_f64();
    println!(
        "{:<48} {:.3} ms",
        "budget check added to a pass, p50, unchanged",
        added(&b) * 1000.0
    );
    println!(
        "{:<48} {:.3} ms",
        "budget check added to a pass, p50, changed",
        added(&moved) * 1000.0
    );

    for (by, limit, what) in [
        ("worker", None, ""),
        ("label", None, ""),
        ("day", None, ""),
        ("ticket", None, " (the first 50 by cost)"),
        ("ticket", Some("0"), " (every ticket)"),
    ] {
        let mut samples = Vec::new();
        for _ in 0..7 {
            let t = Instant::now();
            let mut args = vec!["usage", "--by", by, "--since", "366d", "--json"];
            if let Some(limit) = limit {
                args.extend(["--limit", limit]);
            }
            let out = Command::new(MISSION)
                .args(&args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            samples.push(t.elapsed());
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        println!(
            "{}",
            Stats::new(samples).line(&format!(
                "mission usage --by {by}, a year{what}, whole process"
            ))
        );
    }
}

/// A year of `runs` runs' ledger rows, written as `end_run` would (amounts and running totals
/// per series and bucket), oldest first.
async fn ledger(pool: &sqlx::SqlitePool, tickets: usize, runs: usize) {
    let now = bucket_of(Timestamp::now());
    let year = 365 * 24 * 3_600_000 / BUCKET_MS;
    let first = now - year;
    // Series → (last bucket, running totals: runs, tokens in, out, micros, ms).
    let mut totals: std::collections::HashMap<(String, String), (i64, [i64; 5])> =
        std::collections::HashMap::new();
    let mut tx = pool.begin().await.unwrap();
    for i in 0..runs {
        let bucket = first + (i as i64 * year) / runs as i64;
        let ticket = (i * 7919) % tickets + 1;
        let worker = ticket % 4;
        let amounts = [1i64, 1000, 100, 5000, 600_000];
        let series = [
            ("instance".to_owned(), String::new()),
            ("worker".to_owned(), format!("w{worker}")),
            ("pool".to_owned(), format!("p{}", worker / 2)),
            ("label".to_owned(), format!("l{worker}")),
            ("ticket".to_owned(), format!("MC-{ticket}")),
        ];
        for key in series {
            let entry = totals.entry(key.clone()).or_insert((i64::MIN, [0; 5]));
            for (t, a) in entry.1.iter_mut().zip(amounts) {
                *t += a;
            }
            let cum = entry.1;
            let same = entry.0 == bucket;
            entry.0 = bucket;
            if same {
                sqlx::query(
                    "UPDATE usage_ledger SET runs = runs + 1, input_tokens = input_tokens + 1000, \
                     output_tokens = output_tokens + 100, cost_micros = cost_micros + 5000, \
                     run_ms = run_ms + 600000, cum_runs = ?, cum_input_tokens = ?, \
                     cum_output_tokens = ?, cum_cost_micros = ?, cum_run_ms = ? \
                     WHERE scope = ? AND key = ? AND bucket = ?",
                )
                .bind(cum[0])
                .bind(cum[1])
                .bind(cum[2])
                .bind(cum[3])
                .bind(cum[4])
                .bind(&key.0)
                .bind(&key.1)
                .bind(bucket)
                .execute(&mut *tx)
                .await
                .unwrap();
            } else {
                sqlx::query(
                    "INSERT INTO usage_ledger VALUES (?, ?, ?, 1, 1000, 100, 0, 5000, 600000, \
                     ?, ?, ?, 0, ?, ?)",
                )
                .bind(&key.0)
                .bind(&key.1)
                .bind(bucket)
                .bind(cum[0])
                .bind(cum[1])
                .bind(cum[2])
                .bind(cum[3])
                .bind(cum[4])
                .execute(&mut *tx)
                .await
                .unwrap();
            }
        }
    }
    tx.commit().await.unwrap();
}
