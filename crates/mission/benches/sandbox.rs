//! The sandboxing launcher's own cost: spawn to exit of `/bin/true`, directly (the baseline),
//! through the small launcher binary `mission-sandbox` (what runs use when it is installed) and
//! through the fallback `mission __run-sandboxed`, with a run's Landlock policy, 300 times each,
//! interleaved.
//!
//! `cargo bench -p mission --bench sandbox`

use mission_testkit::stats::Stats;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

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
    let time = |command: &mut Command| {
        let t = Instant::now();
        let status = command.status().unwrap();
        assert!(status.success());
        t.elapsed()
    };
    let mut direct = Vec::new();
    let mut small = Vec::new();
    let mut launched = Vec::new();
    for _ in 0..300 {
        direct.push(time(&mut Command::new(&program)));
        small.push(time(
            Command::new(LAUNCHER)
                .arg("--spec")
                .arg(&spec_file)
                .arg("--"),
        ));
        launched.push(time(
            Command::new(MISSION)
                .arg("__run-sandboxed")
                .arg("--spec")
                .arg(&spec_file)
                .arg("--"),
        ));
    }
    println!(
        "{}",
        Stats::new(direct).line("spawn to exit: /bin/true directly (baseline)")
    );
    println!(
        "{}",
        Stats::new(small).line("spawn to exit: /bin/true through mission-sandbox")
    );
    println!(
        "{}",
        Stats::new(launched).line("spawn to exit: /bin/true through mission __run-sandboxed")
    );
}
