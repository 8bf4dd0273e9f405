//! The sandbox's own cost at a process's start: spawn to exit of `/bin/true`, 300 times each,
//! interleaved —
//! - directly, unconfined (the baseline);
//! - confined as runs start (`sandbox::Confined::spawn`: a thread restricts itself with the
//!   run's Landlock policy, drops capabilities, sets `no_new_privs`, writes the status file, and
//!   starts the program), with and without the Landlock policy (a worker's `sandbox = "off"`);
//! - through the launcher binaries (`mission-sandbox`, and the fallback `mission
//!   __run-sandboxed`), which only runs that change their user take: a second `exec`.
//!
//! Every confined start writes a new status file, as each run's does in its own new folder (a
//! file rewritten in place costs ext4 a flush on close that no run pays).
//!
//! `cargo bench -p mission --bench sandbox`

use mission_engine::sandbox::{Confined, Spec};
use mission_testkit::stats::Stats;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MISSION: &str = env!("CARGO_BIN_EXE_mission");
const LAUNCHER: &str = env!("CARGO_BIN_EXE_mission-sandbox");

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    std::fs::create_dir_all(run_dir.join("tmp")).unwrap();
    let worker: mission_core::config::WorkerConfig =
        serde_json::from_value(serde_json::json!({"runtime": "shell", "command": ["true"]}))
            .unwrap();
    let program = PathBuf::from("/bin/true");
    let workspace = mission_engine::sandbox::WorkspaceAccess {
        path: dir.path().join("work"),
        git: None,
    };
    std::fs::create_dir_all(&workspace.path).unwrap();
    let policy = mission_engine::sandbox::Policy::for_run(
        &worker,
        &mission_engine::sandbox::RunPaths {
            workspace: &workspace,
            run_dir: &run_dir,
            home: dir.path(),
            private_home: true,
            program: &program,
            mission_bin: Path::new(MISSION),
            instance_dir: dir.path(),
            server_home: None,
            env: &[],
        },
    );
    let spec = mission_engine::sandbox::Spec {
        program: program.clone(),
        arg0: "true".into(),
        landlock: true,
        policy,
        run_as: None,
        status_file: run_dir.join("sandbox.status"),
    };
    let spec_file = run_dir.join("sandbox.json");
    std::fs::write(&spec_file, serde_json::to_vec(&spec).unwrap()).unwrap();
    let off = Spec {
        landlock: false,
        ..spec.clone()
    };
    let status_file = spec.status_file.clone();
    let fresh = || {
        let _ = std::fs::remove_file(&status_file);
    };
    let time = |command: &mut Command| {
        let t = Instant::now();
        let status = command.status().unwrap();
        assert!(status.success());
        t.elapsed()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let confined = |spec: &Spec| -> Duration {
        runtime.block_on(async {
            let t = Instant::now();
            let mut command = Confined::restricted(spec.clone(), &[]);
            command.env_clear();
            let status = command.spawn().await.unwrap().wait().await.unwrap();
            assert!(status.success());
            t.elapsed()
        })
    };
    let direct_async = || -> Duration {
        runtime.block_on(async {
            let t = Instant::now();
            let status = tokio::process::Command::new(&program)
                .env_clear()
                .status()
                .await
                .unwrap();
            assert!(status.success());
            t.elapsed()
        })
    };
    let (mut direct, mut on, mut unlocked, mut small, mut launched) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..300 {
        direct.push(direct_async());
        fresh();
        on.push(confined(&spec));
        fresh();
        unlocked.push(confined(&off));
        fresh();
        small.push(time(
            Command::new(LAUNCHER)
                .arg("--spec")
                .arg(&spec_file)
                .arg("--"),
        ));
        fresh();
        launched.push(time(
            Command::new(MISSION)
                .arg("__run-sandboxed")
                .arg("--spec")
                .arg(&spec_file)
                .arg("--"),
        ));
    }
    let direct = Stats::new(direct);
    let on = Stats::new(on);
    let unlocked = Stats::new(unlocked);
    println!(
        "{}",
        direct.line("spawn to exit: /bin/true directly (baseline)")
    );
    println!(
        "{}",
        on.line("spawn to exit: /bin/true confined, Landlock on (runs)")
    );
    println!(
        "{}",
        unlocked.line("spawn to exit: /bin/true confined, sandbox = \"off\"")
    );
    println!(
        "{}",
        Stats::new(small).line("spawn to exit: /bin/true through mission-sandbox (run_as)")
    );
    println!(
        "{}",
        Stats::new(launched).line("spawn to exit: /bin/true through mission __run-sandboxed")
    );
    let p50 = |s: &Stats| s.percentile(0.5).as_secs_f64() * 1000.0;
    println!(
        "the sandbox's setup at a run's start, p50: {:.3} ms (Landlock on), {:.3} ms (off)",
        p50(&on) - p50(&direct),
        p50(&unlocked) - p50(&direct)
    );
}
